//! `carebot simulate`: one caregiver's conversation with a flow, typed at the terminal, against
//! a throwaway database and the real runner.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use chrono::Utc;
use serde_json::Value;

use super::{Cli, SimulateArgs, describe_start};
use crate::catalog;
use crate::domain::{Address, Channel, Lang};
use crate::model::{Audience, CaregiverRecord, Inbound, SupervisorRecord};
use crate::runner::Runner;
use crate::store::{AnyStore, Store};

// Long because it is an interactive session read top to bottom: a throwaway database, a
// roster of one, the start, then the read-reply loop with its commands.
pub(super) async fn run(cli: &Cli, args: &SimulateArgs) -> anyhow::Result<ExitCode> {
    let catalog = cli.catalog()?;
    if catalog.get(&args.flow_id).is_none() {
        bail!(
            "no flow with id {:?} (flows: {})",
            args.flow_id,
            catalog.flows.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let lang: Lang = args.lang.parse().map_err(anyhow::Error::msg)?;
    let config = cli.config()?;
    let dir = tempfile_dir()?;
    let store =
        AnyStore::connect(&format!("sqlite://{}", dir.join("simulate.db").display())).await?;
    store.migrate().await?;
    let today = Utc::now().date_naive();
    store
        .upsert_supervisors(&[
            SupervisorRecord {
                external_id: "S1".into(),
                name: "Dana Smith".into(),
                phone: "+13125550100".into(),
                email: "dana@example.org".into(),
                branch: "Chicago North".into(),
                timezone: "America/Chicago".into(),
            },
            // The branch's contact: where an alert Dana does not acknowledge goes next.
            SupervisorRecord {
                external_id: "S2".into(),
                name: "Omar Reyes".into(),
                phone: "+13125550101".into(),
                email: "omar@example.org".into(),
                branch: "Chicago North".into(),
                timezone: "America/Chicago".into(),
            },
        ])
        .await?;
    let phone = "+13125550123";
    store
        .upsert_caregivers(&[CaregiverRecord {
            external_id: "SIM-1".into(),
            first_name: args.name.clone(),
            last_name: "Gonzalez".into(),
            phone: phone.into(),
            language: lang,
            timezone: "America/Chicago".into(),
            branch: "Chicago North".into(),
            supervisor_id: Some("S1".into()),
            groups: vec!["pulse".into()],
            consent_at: Some(today),
        }])
        .await?;
    let mut settings = config.runner.clone();
    if settings.agency.name == crate::config::DEFAULT_AGENCY_NAME {
        // A demo reads better with the sample agency the templates are checked against.
        settings.agency = catalog::sample_agency();
    }
    if settings.escalation.branch_contacts.is_empty() {
        settings
            .escalation
            .branch_contacts
            .insert("Chicago North".into(), "S2".into());
    }
    let runner = Runner::new(store, catalog, settings).await?;
    let me = Address::new(Channel::Sms, phone);
    let supervisor = Address::new(Channel::Sms, "+13125550100");
    let manager = Address::new(Channel::Sms, "+13125550101");
    // The simulation's clock: a weekday morning in Chicago, so nothing is held for quiet hours
    // unless the transcript moves the clock into the night.
    let mut now = crate::transcript::start_time();
    let vars: BTreeMap<String, Value> = args.vars.iter().cloned().collect();
    let report = runner
        .start(
            &args.flow_id,
            &Audience::Phones(vec![phone.into()]),
            vars,
            now,
        )
        .await?;
    if report.started == 0 {
        bail!("the flow did not start: {}", describe_start(&report));
    }
    let interactive = std::io::stdin().is_terminal();
    let mut shown = (0, 0, 0);
    shown = show_new(&runner.store, &me, &supervisor, &manager, shown).await?;
    let stdin = std::io::stdin();
    let mut n = 0;
    loop {
        if interactive {
            print!("you> ");
            std::io::stdout().flush()?;
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if !interactive {
            println!("you> {line}");
        }
        if let Some(d) = line
            .strip_prefix("/wait ")
            .or_else(|| line.strip_prefix("/advance "))
        {
            let d = crate::flow::definition::parse_duration(d).map_err(anyhow::Error::msg)?;
            now += chrono::Duration::from_std(d)?;
            println!(
                "       (clock moves to {})",
                now.format("%a %Y-%m-%d %H:%M UTC")
            );
            runner.run_due(now).await?;
            runner.run_due_escalations(now).await?;
            runner.send_digests(now).await?;
        } else if line == "/quit" {
            break;
        } else if let Some((who, text)) = line
            .strip_prefix("/sup ")
            .map(|t| (&supervisor, t))
            .or_else(|| line.strip_prefix("/branch ").map(|t| (&manager, t)))
        {
            // The supervisor (or the branch contact) answers an alert: ACK 1, NOTE 1 …, DONE 1.
            n += 1;
            runner
                .handle_inbound(&Inbound {
                    address: who.clone(),
                    text: text.trim().to_owned(),
                    external_id: format!("sim-{n}"),
                    received_at: now,
                })
                .await?;
        } else {
            n += 1;
            runner
                .handle_inbound(&Inbound {
                    address: me.clone(),
                    text: line.to_owned(),
                    external_id: format!("sim-{n}"),
                    received_at: now,
                })
                .await?;
        }
        shown = show_new(&runner.store, &me, &supervisor, &manager, shown).await?;
    }
    println!("\n== stored answers ==");
    for a in runner.store.answers(Some(&args.flow_id), None).await? {
        println!("{}: {} = {}", a.step, a.key, a.answer);
    }
    println!("== escalations ==");
    for e in runner.store.escalations(None).await? {
        println!(
            "[{}] {} ({}) — {}",
            e.priority, e.reason, e.status, e.message
        );
        for ev in runner.store.escalation_events(e.id).await? {
            println!(
                "    {} {}{}{}",
                ev.at.format("%a %H:%M"),
                ev.action,
                ev.supervisor
                    .map(|s| match ev.action.as_str() {
                        "alerted" | "reescalated" | "resent" => format!(" to {s}"),
                        _ => format!(" by {s}"),
                    })
                    .unwrap_or_default(),
                if ev.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", ev.detail)
                }
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ExitCode::SUCCESS)
}

async fn show_new(
    store: &AnyStore,
    me: &Address,
    supervisor: &Address,
    manager: &Address,
    shown: (usize, usize, usize),
) -> anyhow::Result<(usize, usize, usize)> {
    let mine = store.outbound_to(me).await?;
    for (_, body) in mine.iter().skip(shown.0) {
        for (i, line) in body.lines().enumerate() {
            println!("{}{line}", if i == 0 { "bot> " } else { "     " });
        }
    }
    let alerts = store.outbound_to(supervisor).await?;
    for (_, body) in alerts.iter().skip(shown.1) {
        println!("     [to supervisor Dana] {body}");
    }
    let raised = store.outbound_to(manager).await?;
    for (_, body) in raised.iter().skip(shown.2) {
        println!("     [to branch contact Omar] {body}");
    }
    Ok((mine.len(), alerts.len(), raised.len()))
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("carebot-simulate-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
