//! `carebot shifts`: the clap types of offer, list and cancel, the parsing of what an operator
//! typed into a typed [`OfferRequest`] (words and times here; what needs the roster, such as the
//! branch's time zone, in the runner), and the printing of offers and lists.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, NaiveDateTime, NaiveTime, Utc};
use clap::{Args, Subcommand};
use serde::Serialize;

use std::process::ExitCode;

use super::Cli;
use crate::model::{Audience, ShiftListing, ShiftStatus};
use crate::quiet_hours;
use crate::runner::Runner;
use crate::shifts::{Deadline, OfferReport, OfferRequest, ShiftEnd};
use crate::store::Store;

/// What `carebot shifts offer` asks for, as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct OfferArgs {
    /// The agency's reference for the client (shown to the caregiver who takes the shift).
    #[arg(long = "client")]
    pub client_ref: String,
    /// When the shift starts, in the branch's time zone: "2026-12-01 08:00".
    #[arg(long)]
    pub start: String,
    /// When it ends: "2026-12-01 12:00", or just "12:00" (the next day if before the start).
    #[arg(long)]
    pub end: String,
    /// Where the shift is, as caregivers should read it: "Evanston, IL".
    #[arg(long = "where")]
    pub location: String,
    /// all, group:NAME, branch:NAME or phone:+1…[,+1…]
    #[arg(long)]
    pub to: String,
    /// A short note for caregivers (kept out of texts if empty).
    #[arg(long, default_value = "")]
    pub notes: String,
    /// Deadline for a YES: a time in the branch's zone ("2026-11-30 20:00") or a delay from
    /// now ("2h"). Never later than the start of the shift, which is also the default.
    #[arg(long)]
    pub expires: Option<String>,
    /// The branch whose time zone the times are in (default: the audience's branch).
    #[arg(long)]
    pub branch: Option<String>,
    /// The supervisor told who took the shift (default: the branch's first supervisor).
    #[arg(long)]
    pub supervisor: Option<String>,
    /// Caregivers per wave, best ranked first (fewest shifts won this week); 0 sends to all.
    #[arg(long, default_value_t = 0)]
    pub wave_size: u32,
    /// Minutes between waves while nobody has taken the shift.
    #[arg(long, default_value_t = 30)]
    pub wave_minutes: u32,
}

impl OfferArgs {
    /// Checks what was typed and turns it into a request: empty fields, the audience, and the
    /// shapes of the times. Whether the times exist in the branch's zone and lie ahead is for
    /// the runner, which knows the branch.
    pub fn request(&self) -> Result<OfferRequest, String> {
        let nonempty = |s: &str, what: &str| {
            let s = s.trim();
            if s.is_empty() {
                Err(format!("{what} must not be empty"))
            } else {
                Ok(s.to_owned())
            }
        };
        let client_ref = nonempty(&self.client_ref, "--client")?;
        let location = nonempty(&self.location, "--where")?;
        let audience = Audience::parse(&self.to)?;
        let start = local_datetime(&self.start).ok_or_else(|| {
            format!(
                "--start {:?} must look like \"2026-12-01 08:00\"",
                self.start
            )
        })?;
        let end = match local_datetime(&self.end) {
            Some(t) => ShiftEnd::At(t),
            None => ShiftEnd::Time(NaiveTime::parse_from_str(self.end.trim(), "%H:%M").map_err(
                |_| {
                    format!(
                        "--end {:?} must look like \"2026-12-01 12:00\" or \"12:00\"",
                        self.end
                    )
                },
            )?),
        };
        let expires = match &self.expires {
            None => None,
            Some(e) => Some(match local_datetime(e) {
                Some(local) => Deadline::At(local),
                None => {
                    Deadline::After(crate::flow::definition::parse_duration(e).map_err(|_| {
                        format!(
                            "--expires {e:?} must be a time (\"2026-11-30 20:00\") or a delay \
                             (\"2h\")"
                        )
                    })?)
                }
            }),
        };
        Ok(OfferRequest {
            client_ref,
            location,
            notes: self.notes.trim().to_owned(),
            audience,
            audience_text: self.to.clone(),
            start,
            end,
            expires,
            branch: self.branch.as_ref().map(|b| b.trim().to_owned()),
            supervisor: self.supervisor.clone(),
            wave_size: self.wave_size,
            wave_minutes: self.wave_minutes,
        })
    }
}

/// `carebot shifts offer|list|cancel`.
pub(super) async fn run(cli: &Cli, cmd: &ShiftsCommand) -> anyhow::Result<ExitCode> {
    let config = cli.config()?;
    let store = cli.store(&config).await?;
    match cmd {
        ShiftsCommand::List { json, status } => {
            let listings = store.shift_offers(*status).await?;
            if *json {
                let rows: Vec<ListedShift<'_>> = listings.iter().map(ListedShift::from).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", describe_list(&listings));
                println!("{}", summary(&listings));
            }
            Ok(ExitCode::SUCCESS)
        }
        ShiftsCommand::Offer(args) => {
            let runner = Runner::new(store, cli.catalog()?, config.runner.clone()).await?;
            let request = args.request().map_err(anyhow::Error::msg)?;
            let report = runner.offer_shift(&request, Utc::now()).await?;
            println!("{}", describe_offer(&report));
            Ok(ExitCode::SUCCESS)
        }
        ShiftsCommand::Cancel { id } => {
            let runner = Runner::new(store, cli.catalog()?, config.runner.clone()).await?;
            let was = runner.cancel_shift(*id, Utc::now()).await?;
            println!("offer {id} cancelled (it was {})", was.as_str());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Parses "2026-12-01 08:00" (or with a `T`).
pub fn local_datetime(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
}

// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum ShiftsCommand {
    /// Text an open shift to eligible caregivers; the first YES gets it. Prints the offer's id
    /// alone on its last line.
    Offer(OfferArgs),
    /// Every offer: id, status (open, filled, expired, cancelled), who took it and when.
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
        /// Only offers with this status.
        #[arg(long)]
        status: Option<ShiftStatus>,
    },
    /// Cancel an open or filled offer (a caregiver who took it is told).
    Cancel { id: i64 },
}

impl clap::ValueEnum for ShiftStatus {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            ShiftStatus::Open,
            ShiftStatus::Filled,
            ShiftStatus::Expired,
            ShiftStatus::Cancelled,
        ]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

/// `shifts list --json`: the contract's fields first.
#[derive(Debug, Serialize)]
pub struct ListedShift<'a> {
    pub id: i64,
    pub status: ShiftStatus,
    pub filled_by: Option<&'a str>,
    pub filled_at: Option<DateTime<Utc>>,
    pub client: &'a str,
    #[serde(rename = "where")]
    pub location: &'a str,
    pub notes: &'a str,
    pub branch: &'a str,
    pub timezone: &'a str,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub code: u32,
    pub audience: &'a str,
    pub supervisor: Option<&'a str>,
    pub sent: u32,
    pub yes: u32,
    pub no: u32,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

impl<'a> From<&'a ShiftListing> for ListedShift<'a> {
    fn from(l: &'a ShiftListing) -> Self {
        let o = &l.offer;
        ListedShift {
            id: o.id,
            status: o.status,
            filled_by: o.filled_by.as_deref(),
            filled_at: o.filled_at,
            client: &o.client_ref,
            location: &o.location,
            notes: &o.notes,
            branch: &o.branch,
            timezone: &o.timezone,
            starts_at: o.starts_at,
            ends_at: o.ends_at,
            expires_at: o.expires_at,
            code: o.code,
            audience: &o.audience,
            supervisor: o.supervisor.as_ref().map(|s| s.external_id.as_str()),
            sent: l.sent,
            yes: l.yes,
            no: l.no,
            created_at: o.created_at,
            closed_at: o.closed_at,
        }
    }
}

/// What `shifts offer` prints: what was created and who was texted, then the id alone.
pub fn describe_offer(r: &OfferReport) -> String {
    let o = &r.offer;
    let tz = quiet_hours::zone(&o.timezone);
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "offer {} (code {}) for client {}: {} to {} {} ({}), {}; YES accepted until {}",
        o.id,
        o.code,
        o.client_ref,
        local(o.starts_at),
        local(o.ends_at),
        o.timezone,
        o.branch,
        o.location,
        local(o.expires_at),
    );
    let skipped: usize = r.wave.skipped.values().sum();
    let reasons: Vec<String> = r
        .wave
        .skipped
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let _ = writeln!(
        out,
        "wave 1: texted {}, kept for later waves {}, skipped {skipped}{}",
        r.wave.sent,
        r.wave.later,
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        }
    );
    match &o.supervisor {
        Some(s) => {
            let _ = writeln!(
                out,
                "supervisor told of the outcome: {} ({})",
                s.name, s.external_id
            );
        }
        None => {
            let _ = writeln!(
                out,
                "warning: branch {:?} has no supervisor on the roster; nobody will be told the outcome",
                o.branch
            );
        }
    }
    let _ = write!(out, "{}", o.id);
    out
}

/// A table for people.
pub fn describe_list(listings: &[ShiftListing]) -> String {
    let mut out = format!(
        "{:>5} {:<9} {:>4} {:<16} {:<12} {:<20} {:<12} {:<20} {:>4} {:>3} {:>3}\n",
        "id",
        "status",
        "code",
        "starts (local)",
        "client",
        "where",
        "filled_by",
        "filled_at",
        "sent",
        "yes",
        "no"
    );
    for l in listings {
        let o = &l.offer;
        let tz = quiet_hours::zone(&o.timezone);
        let _ = writeln!(
            out,
            "{:>5} {:<9} {:>4} {:<16} {:<12} {:<20} {:<12} {:<20} {:>4} {:>3} {:>3}",
            o.id,
            o.status.as_str(),
            o.code,
            o.starts_at.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
            o.client_ref,
            o.location,
            o.filled_by.as_deref().unwrap_or("-"),
            o.filled_at
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_else(|| "-".into()),
            l.sent,
            l.yes,
            l.no
        );
    }
    out
}

/// Counts by status, for a line under the table.
pub fn summary(listings: &[ShiftListing]) -> String {
    let mut by: HashMap<ShiftStatus, usize> = HashMap::new();
    for l in listings {
        *by.entry(l.offer.status).or_default() += 1;
    }
    [
        ShiftStatus::Open,
        ShiftStatus::Filled,
        ShiftStatus::Expired,
        ShiftStatus::Cancelled,
    ]
    .iter()
    .map(|s| format!("{} {}", by.get(s).copied().unwrap_or(0), s.as_str()))
    .collect::<Vec<_>>()
    .join(", ")
}
