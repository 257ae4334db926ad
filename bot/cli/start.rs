//! `carebot start` and `carebot starts`: a flow started for an audience now or at a time (on
//! one instant, or each caregiver's own clock), durable, with its progress; `--at` and the
//! audience parsed here, at the edge.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::bail;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Cli, StartArgs, progress_bar};
use crate::model::{Audience, StartOrigin};
use crate::runner::{Runner, StartReport};
use crate::store::{AnyStore, Store};

/// Parses `all`, `group:NAME`, `branch:NAME` or `phone:+1…[,+1…]`.
pub fn parse_audience(s: &str) -> anyhow::Result<Audience> {
    Audience::parse(s).map_err(anyhow::Error::msg)
}

/// When `--at` means: one instant, or a wall-clock time read in each caregiver's time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    Instant(DateTime<Utc>),
    Local(chrono::NaiveDateTime),
}

/// Parses `--at`: RFC 3339 with `Z` or an offset is an instant; `YYYY-MM-DD HH:MM` (or with a
/// `T`) is that time on each caregiver's own clock.
pub fn parse_at(s: &str) -> anyhow::Result<At> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(At::Instant(t.with_timezone(&Utc)));
    }
    for format in [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, format) {
            return Ok(At::Local(t));
        }
    }
    bail!(
        "--at {s:?}: expected YYYY-MM-DD HH:MM (each caregiver's local time) or an RFC 3339 \
         instant such as 2026-03-06T16:00:00Z"
    )
}

/// `local` on the wall clock of `tz`: the first of two when clocks go back, the first instant
/// after the gap when they go forward.
pub fn local_instant(local: chrono::NaiveDateTime, tz: chrono_tz::Tz) -> DateTime<Utc> {
    use chrono::TimeZone as _;
    let mut t = local;
    loop {
        if let Some(at) = tz.from_local_datetime(&t).earliest() {
            return at.with_timezone(&Utc);
        }
        t += chrono::Duration::minutes(1);
    }
}

pub(super) async fn run(cli: &Cli, args: &StartArgs) -> anyhow::Result<ExitCode> {
    let config = cli.config()?;
    let catalog = cli.catalog()?;
    let audience = parse_audience(&args.to)?;
    let at = args.at.as_deref().map(parse_at).transpose()?;
    let store = cli.store(&config).await?;
    let runner = Runner::new(store, catalog, config.runner.clone()).await?;
    let vars: BTreeMap<String, Value> = args.vars.iter().cloned().collect();
    let now = Utc::now();
    if catalog_lacks(&runner, &args.flow_id) {
        bail!("no flow with id {:?}", args.flow_id);
    }
    if let Some(at) = at {
        // Later: recorded now, run by `carebot serve`'s scheduler when due.
        let runs: Vec<(Option<String>, DateTime<Utc>)> = match at {
            At::Instant(t) => vec![(None, t)],
            At::Local(local) => runner
                .store
                .caregiver_timezones()
                .await?
                .into_iter()
                .filter_map(|zone| {
                    let tz: chrono_tz::Tz = zone.parse().ok()?;
                    Some((Some(zone), local_instant(local, tz)))
                })
                .collect(),
        };
        for (zone, run_at) in runs {
            let id = runner
                .create_start(
                    &args.flow_id,
                    &audience,
                    zone.clone(),
                    vars.clone(),
                    run_at,
                    StartOrigin::Cli,
                    None,
                )
                .await?;
            println!(
                "scheduled start #{id}: {} to {}{} at {}{}",
                args.flow_id,
                audience,
                zone.as_deref()
                    .map(|z| format!(" in {z}"))
                    .unwrap_or_default(),
                run_at.to_rfc3339(),
                if run_at <= now { " (already due)" } else { "" },
            );
        }
        println!(
            "`carebot serve` runs scheduled starts when they are due; `carebot starts` lists them"
        );
        return Ok(ExitCode::SUCCESS);
    }
    // Now. A start interrupted (killed, a lost connection) is resumed, not begun again.
    let id = match runner
        .store
        .unfinished_start(&args.flow_id, &audience, &vars, now)
        .await?
    {
        Some(s) => {
            eprintln!(
                "resuming start #{} of {} to {} ({} of {} caregivers already handled)",
                s.id, s.flow_id, s.audience, s.processed, s.total
            );
            s.id
        }
        None => {
            runner
                .create_start(
                    &args.flow_id,
                    &audience,
                    None,
                    vars,
                    now,
                    StartOrigin::Cli,
                    None,
                )
                .await?
        }
    };
    let bar = progress_bar("caregivers");
    let row = runner
        .run_start(id, &Utc::now, true, &|row| {
            bar.set_length(row.total);
            bar.set_position(row.processed);
        })
        .await?;
    bar.finish_and_clear();
    let report = StartReport::from(&row);
    println!("{}", describe_start(&report));
    if report.waiting > 0 {
        println!(
            "{} capped caregiver(s) will be started by `carebot serve` when their weekly cap has room",
            report.waiting
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn catalog_lacks(runner: &Runner<AnyStore>, flow_id: &str) -> bool {
    runner.catalog.get(flow_id).is_none()
}

pub fn describe_start(r: &StartReport) -> String {
    // Capped caregivers of a flow that waits are skipped for now, and counted as capped.
    let mut skipped_by: BTreeMap<&str, usize> =
        r.skipped.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    if r.waiting > 0 {
        *skipped_by.entry("capped").or_default() += r.waiting;
    }
    let skipped: usize = skipped_by.values().sum();
    const USUAL: [&str; 5] = [
        "no consent",
        "opted out",
        "already in a conversation",
        "capped",
        "inactive",
    ];
    let mut reasons: Vec<String> = USUAL
        .iter()
        .map(|k| format!("{k}: {}", skipped_by.get(k).copied().unwrap_or(0)))
        .collect();
    for (k, v) in &skipped_by {
        if !USUAL.contains(k) {
            reasons.push(format!("{k}: {v}"));
        }
    }
    format!(
        "started {}, skipped {skipped} ({})",
        r.started,
        reasons.join(", ")
    )
}

/// `carebot starts [--all]`: durable starts with their progress.
pub(super) async fn list(cli: &Cli, all: bool) -> anyhow::Result<ExitCode> {
    let config = cli.config()?;
    let store = cli.store(&config).await?;
    let starts = store.list_starts(all).await?;
    if starts.is_empty() {
        println!(
            "no starts{}",
            if all {
                ""
            } else {
                " to do (--all lists finished ones)"
            }
        );
    }
    for s in starts {
        let report = StartReport::from(&s);
        println!(
            "#{} {} to {}{} at {} [{}, {} origin]: {} of {} handled; {}",
            s.id,
            s.flow_id,
            s.audience,
            s.timezone
                .as_deref()
                .map(|z| format!(" in {z}"))
                .unwrap_or_default(),
            s.run_at.format("%Y-%m-%d %H:%M UTC"),
            s.status.as_str(),
            s.origin.as_str(),
            s.processed,
            s.total,
            describe_start(&report),
        );
    }
    Ok(ExitCode::SUCCESS)
}
