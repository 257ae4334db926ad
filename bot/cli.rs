//! The `carebot` command line: every command an operator or program staff runs, each a thin
//! layer over the library (catalog, runner, store, roster). Exit codes are part of the contract.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::Value;

use crate::catalog::{self, Catalog, Report};
use crate::config::{Config, redact_url};
use crate::domain::{Address, Channel, Lang};
use crate::flow::Severity;
use crate::model::{Audience, CaregiverRecord, Inbound, StartOrigin, SupervisorRecord};
use crate::runner::{Runner, StartReport};
use crate::store::{AnyStore, Store};

pub mod caregiver;
pub mod telegram;

#[derive(Debug, Parser)]
#[command(
    name = "carebot",
    version,
    about = "Scripted SMS and Telegram conversations that help home-care agencies keep their caregivers"
)]
pub struct Cli {
    /// Directory of flow files.
    #[arg(long, global = true, default_value = "flows")]
    pub flows: PathBuf,
    /// Directory of message templates (one sub-directory per language).
    #[arg(long, global = true, default_value = "templates")]
    pub templates: PathBuf,
    /// Settings file (default: ./carebot.toml when it exists).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Database URL (overrides DATABASE_URL): sqlite://FILE or postgres://…
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (webhooks, /healthz, /metrics), the outbox dispatcher and the scheduler.
    Serve,
    /// Apply pending database migrations.
    Migrate,
    /// Check or test the flows and templates.
    #[command(subcommand)]
    Flows(FlowsCommand),
    /// Talk to a flow in the terminal as a caregiver (replies from stdin; `/wait 25h` moves the
    /// clock; `/sup ACK 1` answers an alert as the supervisor, `/branch ACK 1` as the branch
    /// contact it goes to next).
    Simulate(SimulateArgs),
    /// Import the roster from a CSV file.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Start a flow for an audience (all, group:NAME, branch:NAME or phone:+1…[,+1…]), now
    /// or `--at` a later time.
    Start(StartArgs),
    /// List flow starts (scheduled, running, waiting for capped caregivers; `--all` for done).
    Starts {
        /// Include finished starts.
        #[arg(long)]
        all: bool,
    },
    /// Export stored results to stdout.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Shift offers: text an open shift to eligible caregivers; the first YES gets it.
    #[command(subcommand)]
    Shifts(crate::shifts::ShiftsCommand),
    /// Reports over stored results.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Connect the Telegram bot: register or remove its webhook, or show where updates go.
    #[command(subcommand)]
    Telegram(TelegramCommand),
    /// Print a one-time Telegram link that connects a caregiver (or supervisor) to the bot.
    Invite(InviteArgs),
    /// Choose the channel program messages use for a caregiver reachable on SMS and Telegram.
    Prefer(PreferArgs),
    /// One caregiver's data: export it as JSON, or erase it.
    #[command(subcommand)]
    Caregiver(caregiver::CaregiverCommand),
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Week by week: caregivers asked, responded, response rate, mean score and change; and
    /// the escalations raised, acknowledged within their window, median time to acknowledge,
    /// closed. Groups with fewer than 5 respondents are suppressed.
    Pulse {
        /// Also per branch, or per state (the caregiver's `state` field).
        #[arg(long, value_enum)]
        by: Option<ReportBy>,
        /// How many weeks, ending with the current one.
        #[arg(long, default_value_t = 8)]
        weeks: u32,
        /// The pulse flow.
        #[arg(long, default_value = "weekly-pulse")]
        flow: String,
        /// The answer (save_as) that holds the score.
        #[arg(long, default_value = "week_score")]
        score: String,
        /// Report the weeks up to the one holding this date (default: today).
        #[arg(long)]
        until: Option<NaiveDate>,
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReportBy {
    Branch,
    State,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum TelegramCommand {
    /// Register CAREBOT_PUBLIC_URL/webhooks/telegram with TELEGRAM_WEBHOOK_SECRET (run once per
    /// deployment; stopping an instance never removes it).
    SetWebhook,
    /// Remove the webhook, so that `carebot serve` without CAREBOT_PUBLIC_URL can poll.
    DeleteWebhook,
    /// Show the bot's username and where Telegram sends its updates.
    Status,
}

#[derive(Debug, Args)]
pub struct InviteArgs {
    /// The caregiver's (or supervisor's) phone number, as on the roster.
    pub phone: String,
    /// How long the link works (it works once): 7d, 48h…
    #[arg(long, default_value = "7d")]
    pub valid_for: String,
}

#[derive(Debug, Args)]
pub struct PreferArgs {
    /// The caregiver's phone number, as on the roster.
    pub phone: String,
    /// sms, telegram, or last (the channel they last wrote on, the default).
    pub channel: String,
}

#[derive(Debug, Subcommand)]
pub enum FlowsCommand {
    /// Validate every flow and template; each problem as file:line:column; exit 1 on any error.
    Check {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the transcript tests kept with the flows, each through the real runner on a
    /// temporary database; each failure as file:line.
    Test {
        /// Directory of transcript files (default: FLOWS/tests).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The flow to talk to.
    pub flow_id: String,
    /// The simulated caregiver's language.
    #[arg(long, default_value = "en")]
    pub lang: String,
    /// The simulated caregiver's first name.
    #[arg(long, default_value = "Maria")]
    pub name: String,
    /// A start variable, as NAME=VALUE (repeatable).
    #[arg(long = "var", value_parser = parse_var)]
    pub vars: Vec<(String, Value)>,
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// external_id,first_name,last_name,phone,language,timezone,branch,supervisor_id,groups,consent_at
    Caregivers {
        file: PathBuf,
        /// Deactivate (never delete) caregivers missing from the file.
        #[arg(long)]
        sync: bool,
    },
    /// external_id,name,phone,email,branch,timezone
    Supervisors { file: PathBuf },
    /// external_id,module,link,due_date: each row starts the training flow for that caregiver
    /// (at `carebot serve`'s next tick); a module already done is never nudged again.
    Training {
        file: PathBuf,
        /// The flow the assignments drive (its vars: module, link, due_date).
        #[arg(long, default_value = "training-nudge")]
        flow: String,
    },
}

#[derive(Debug, Args)]
pub struct StartArgs {
    pub flow_id: String,
    /// all, group:NAME, branch:NAME or phone:+1…[,+1…]
    #[arg(long)]
    pub to: String,
    /// A start variable, as NAME=VALUE (repeatable).
    #[arg(long = "var", value_parser = parse_var)]
    pub vars: Vec<(String, Value)>,
    /// Start later instead of now (`carebot serve` runs it): `2026-03-06 10:00` is that time
    /// on each caregiver's own clock; `2026-03-06T16:00:00Z` (or with an offset) is one instant.
    #[arg(long)]
    pub at: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// A header, then a row per record; text starting with =, +, -, @, a tab or a carriage
    /// return starts with ' so a spreadsheet shows it instead of running it as a formula.
    Csv,
    /// One JSON object per line, every value as stored.
    Jsonl,
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// One row per stored answer: caregiver, flow, step, answer, answered_at. Anonymous
    /// answers are left out: they are reported only in aggregate (`carebot report pulse`).
    Answers {
        #[arg(long)]
        flow: Option<String>,
        #[arg(long)]
        since: Option<NaiveDate>,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
    },
    /// One row per escalation: id, caregiver, supervisor, priority, reason, status
    /// (open|acknowledged|calling|done), raised_at, acknowledged_at, closed_at.
    Escalations {
        #[arg(long)]
        flow: Option<String>,
        #[arg(long)]
        since: Option<NaiveDate>,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
    },
}

fn parse_var(s: &str) -> Result<(String, Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))?;
    Ok((k.trim().to_owned(), Value::from(v.trim())))
}

impl Cli {
    fn config(&self) -> anyhow::Result<Config> {
        let mut flags = Vec::new();
        if let Some(url) = &self.database_url {
            flags.push(("DATABASE_URL".to_owned(), url.clone()));
        }
        Ok(Config::load(self.config.as_deref(), flags)?)
    }

    async fn store(&self, config: &Config) -> anyhow::Result<AnyStore> {
        let store = AnyStore::connect(&config.database_url)
            .await
            .with_context(|| {
                format!(
                    "cannot open the database {}",
                    redact_url(&config.database_url)
                )
            })?;
        store
            .migrate()
            .await
            .context("cannot migrate the database")?;
        Ok(store)
    }

    /// The catalog, or every error printed and a refusal: nothing runs on a broken flow.
    fn catalog(&self) -> anyhow::Result<Arc<Catalog>> {
        match Catalog::load(&self.flows, &self.templates) {
            Ok((catalog, _)) => Ok(Arc::new(catalog)),
            Err(report) => {
                for p in report
                    .problems
                    .iter()
                    .filter(|p| p.severity == Severity::Error)
                {
                    eprintln!("{p}");
                }
                bail!(
                    "{} error(s) in flows or templates: fix them (see `carebot flows check`)",
                    report.errors()
                )
            }
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Serve => {
            let config = cli.config()?;
            let catalog = cli.catalog()?;
            let addr = std::net::SocketAddr::from(([0, 0, 0, 0], config.port));
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            crate::server::run(
                config,
                catalog,
                listener,
                crate::server::shutdown_on_signals(),
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let config = cli.config()?;
            cli.store(&config).await?;
            println!("migrations applied to {}", redact_url(&config.database_url));
            Ok(ExitCode::SUCCESS)
        }
        Command::Flows(FlowsCommand::Check { json }) => {
            let (_, report) = catalog::check(&cli.flows, &cli.templates);
            print_report(&report, *json)?;
            Ok(if report.errors() > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Flows(FlowsCommand::Test { dir }) => {
            let catalog = cli.catalog()?;
            let dir = dir.clone().unwrap_or_else(|| cli.flows.join("tests"));
            let results = crate::transcript::run_dir(&catalog, &dir).await;
            let failed = results.iter().filter(|r| !r.failures.is_empty()).count();
            for r in &results {
                if r.failures.is_empty() {
                    println!("ok    {}", r.file.display());
                } else {
                    println!("FAIL  {}", r.file.display());
                    for f in r.failure_lines() {
                        println!("      {f}");
                    }
                }
            }
            println!("{} passed, {} failed", results.len() - failed, failed);
            Ok(if failed > 0 || results.is_empty() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Simulate(args) => simulate(&cli, args).await,
        Command::Import(cmd) => {
            let config = cli.config()?;
            let store = cli.store(&config).await?;
            let (file, summary) = match cmd {
                ImportCommand::Caregivers { file, sync } => {
                    let f = std::fs::File::open(file)
                        .with_context(|| format!("cannot open {}", file.display()))?;
                    let bar = progress_bar("rows");
                    let summary = crate::roster::import_caregivers_with_progress(
                        &store,
                        f,
                        *sync,
                        &|done, total| {
                            bar.set_length(total);
                            bar.set_position(done);
                        },
                    )
                    .await;
                    bar.finish_and_clear();
                    (file, summary)
                }
                ImportCommand::Supervisors { file } => {
                    let f = std::fs::File::open(file)
                        .with_context(|| format!("cannot open {}", file.display()))?;
                    (file, crate::roster::import_supervisors(&store, f).await)
                }
                ImportCommand::Training { file, flow } => {
                    let catalog = cli.catalog()?;
                    if catalog.get(flow).is_none() {
                        bail!("no flow with id {flow:?}");
                    }
                    let f = std::fs::File::open(file)
                        .with_context(|| format!("cannot open {}", file.display()))?;
                    (
                        file,
                        crate::roster::import_training(&store, f, flow, Utc::now()).await,
                    )
                }
            };
            let summary =
                summary.with_context(|| format!("import of {} failed", file.display()))?;
            for (line, reason) in &summary.rejected {
                println!("line {line}: {reason}");
            }
            println!("{summary}");
            Ok(if summary.rejected.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Start(args) => start(&cli, args).await,
        Command::Starts { all } => {
            let config = cli.config()?;
            let store = cli.store(&config).await?;
            let starts = store.list_starts(*all).await?;
            if starts.is_empty() {
                println!(
                    "no starts{}",
                    if *all {
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
        Command::Export(_) | Command::Report(_) => {
            // Not `stdout().lock()`: the store calls the sink from a future that must be `Send`.
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
            results(&cli, &mut out).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Telegram(cmd) => {
            let config = cli.config()?;
            match cmd {
                TelegramCommand::SetWebhook => {
                    let url = telegram::set_webhook(&config).await?;
                    println!("Telegram will post updates to {url}");
                }
                TelegramCommand::DeleteWebhook => {
                    telegram::delete_webhook(&config).await?;
                    println!(
                        "webhook removed: `carebot serve` without CAREBOT_PUBLIC_URL polls for updates"
                    );
                }
                TelegramCommand::Status => println!("{}", telegram::status(&config).await?),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Invite(args) => {
            let config = cli.config()?;
            let valid_for = crate::flow::definition::parse_duration(&args.valid_for)
                .map_err(anyhow::Error::msg)?;
            let client = telegram::client(&config)?;
            let store = cli.store(&config).await?;
            let invite =
                telegram::invite(&store, &client, &args.phone, valid_for, Utc::now()).await?;
            let who = match &invite.invitee {
                crate::model::Invitee::Caregiver { external_id, name } => {
                    format!("caregiver {external_id} ({name})")
                }
                crate::model::Invitee::Supervisor { external_id, name } => {
                    format!("supervisor {external_id} ({name})")
                }
            };
            println!(
                "one-time link for {who}, valid until {} UTC:",
                invite.expires_at.format("%Y-%m-%d %H:%M")
            );
            println!("{}", invite.url);
            Ok(ExitCode::SUCCESS)
        }
        Command::Prefer(args) => {
            let channel = match args.channel.to_lowercase().as_str() {
                "sms" => Some(Channel::Sms),
                "telegram" => Some(Channel::Telegram),
                "last" | "auto" => None,
                other => bail!("channel {other:?} must be sms, telegram or last"),
            };
            let config = cli.config()?;
            let store = cli.store(&config).await?;
            telegram::prefer(&store, &args.phone, channel).await?;
            println!(
                "program messages to {} go by {}",
                args.phone,
                channel.map_or("the channel they last wrote on", |c| match c {
                    Channel::Telegram => "Telegram when it is open",
                    _ => "SMS when it is open",
                })
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Shifts(cmd) => shifts(&cli, cmd).await,
        Command::Caregiver(cmd) => {
            let config = cli.config()?;
            let store = cli.store(&config).await?;
            caregiver::run(
                &store,
                cmd,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            )
            .await
        }
    }
}

/// `carebot shifts offer|list|cancel`.
async fn shifts(cli: &Cli, cmd: &crate::shifts::ShiftsCommand) -> anyhow::Result<ExitCode> {
    use crate::shifts::{self, ListedShift, ShiftsCommand};
    let config = cli.config()?;
    let store = cli.store(&config).await?;
    match cmd {
        ShiftsCommand::List { json, status } => {
            let listings = store.shift_offers(*status).await?;
            if *json {
                let rows: Vec<ListedShift<'_>> = listings.iter().map(ListedShift::from).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", shifts::describe_list(&listings));
                println!("{}", shifts::summary(&listings));
            }
            Ok(ExitCode::SUCCESS)
        }
        ShiftsCommand::Offer(args) => {
            let runner = Runner::new(store, cli.catalog()?, config.runner.clone()).await?;
            let report = runner.offer_shift(args, Utc::now()).await?;
            println!("{}", shifts::describe_offer(&report));
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

/// `export` and `report`: they write to `out`, stdout from the command line (tests pass a
/// buffer, to read exactly what an operator would).
pub async fn results(cli: &Cli, out: &mut (dyn std::io::Write + Send)) -> anyhow::Result<()> {
    let config = cli.config()?;
    let store = cli.store(&config).await?;
    match &cli.command {
        Command::Export(cmd) => export(&store, cmd, out).await?,
        Command::Report(ReportCommand::Pulse {
            by,
            weeks,
            flow,
            score,
            until,
            format,
        }) => {
            let options = crate::report::PulseOptions {
                flow: flow.clone(),
                key: score.clone(),
                by: by.map(|b| match b {
                    ReportBy::Branch => crate::report::GroupBy::Branch,
                    ReportBy::State => crate::report::GroupBy::State,
                }),
                weeks: *weeks,
                now: until.map_or_else(Utc::now, |d| d.and_time(chrono::NaiveTime::MIN).and_utc()),
            };
            let windows = &config.runner.escalation;
            let report = crate::report::pulse(&store, &options, windows).await?;
            match format {
                ReportFormat::Table => write!(out, "{}", report.to_table(windows))?,
                ReportFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
            }
        }
        _ => bail!("not an export or a report"),
    }
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn print_report(report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    for p in &report.problems {
        println!("{p}");
    }
    println!();
    println!(
        "{:<20} {:<30} {:<4} {:<6} {:>8} {:>6}",
        "flow", "template", "lang", "enc", "segments", "chars"
    );
    for m in &report.messages {
        println!(
            "{:<20} {:<30} {:<4} {:<6} {:>8} {:>6}",
            m.flow, m.template, m.lang, m.encoding, m.segments, m.chars
        );
    }
    let warnings = report.problems.len() - report.errors();
    println!(
        "\n{} error(s), {} warning(s), {} message(s) checked",
        report.errors(),
        warnings,
        report.messages.len()
    );
    Ok(())
}

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

/// A progress bar on stderr when it is a terminal, and nothing otherwise (a nightly job's log
/// gets the summary line alone).
fn progress_bar(unit: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {unit} ({{per_sec}}, {{eta}} left)"
        ))
        .expect("valid progress template"),
    );
    bar
}

async fn start(cli: &Cli, args: &StartArgs) -> anyhow::Result<ExitCode> {
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

/// Streams an export to stdout: each row is written as the store reads it, so a million rows
/// take no more memory than one.
async fn export(
    store: &AnyStore,
    cmd: &ExportCommand,
    out: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<()> {
    let mut out = Rows::new(
        matches!(
            cmd,
            ExportCommand::Answers {
                format: Format::Csv,
                ..
            } | ExportCommand::Escalations {
                format: Format::Csv,
                ..
            }
        ),
        out,
    );
    let t = |d: &Option<DateTime<Utc>>| d.map(|d| d.to_rfc3339()).unwrap_or_default();
    let result = match cmd {
        ExportCommand::Answers {
            flow,
            since,
            format,
        } => {
            let format = *format;
            if matches!(format, Format::Csv) {
                out.write_header(&["caregiver", "flow", "step", "answer", "answered_at"])?;
            }
            let mut sink = |r: crate::model::AnswerRow| -> std::io::Result<()> {
                match format {
                    Format::Csv => {
                        // A number the engine read (a score) is data; anything else is what
                        // the caregiver wrote, or JSON of it.
                        let answer = match &r.answer {
                            Value::String(s) => Cell::Text(s.clone()),
                            Value::Number(n) => Cell::Data(n.to_string()),
                            other => Cell::Text(other.to_string()),
                        };
                        out.write_record([
                            Cell::Text(r.caregiver),
                            Cell::Text(r.flow),
                            Cell::Text(r.step),
                            answer,
                            Cell::Data(r.answered_at.to_rfc3339()),
                        ])?;
                    }
                    Format::Jsonl => {
                        let line = serde_json::json!({"caregiver": r.caregiver, "flow": r.flow, "step": r.step, "answer": r.answer, "answered_at": r.answered_at});
                        out.line(&line)?;
                    }
                }
                Ok(())
            };
            store
                .export_answers(flow.as_deref(), *since, &mut sink)
                .await
        }
        ExportCommand::Escalations {
            flow,
            since,
            format,
        } => {
            let format = *format;
            if matches!(format, Format::Csv) {
                out.write_header(&[
                    "id",
                    "caregiver",
                    "supervisor",
                    "priority",
                    "reason",
                    "status",
                    "raised_at",
                    "acknowledged_at",
                    "closed_at",
                ])?;
            }
            let mut sink = |r: crate::model::EscalationRow| -> std::io::Result<()> {
                match format {
                    Format::Csv => out.write_record([
                        Cell::Data(r.id.to_string()),
                        Cell::Text(r.caregiver.clone()),
                        Cell::Text(r.supervisor.clone().unwrap_or_default()),
                        Cell::Text(r.priority.clone()),
                        Cell::Text(r.reason.clone()),
                        Cell::Text(r.status.clone()),
                        Cell::Data(r.raised_at.to_rfc3339()),
                        Cell::Data(t(&r.acknowledged_at)),
                        Cell::Data(t(&r.closed_at)),
                    ])?,
                    Format::Jsonl => {
                        let line = serde_json::json!({
                            "id": r.id, "caregiver": r.caregiver, "supervisor": r.supervisor,
                            "priority": r.priority, "reason": r.reason, "status": r.status,
                            "raised_at": r.raised_at, "acknowledged_at": r.acknowledged_at, "closed_at": r.closed_at,
                        });
                        out.line(&line)?;
                    }
                }
                Ok(())
            };
            store
                .export_escalations(flow.as_deref(), *since, &mut sink)
                .await
        }
    };
    match result.map(|_| ()).and_then(|()| Ok(out.flush()?)) {
        // `carebot export … | head` closes the pipe early: that is the reader's choice.
        Err(crate::store::StoreError::Sink(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(())
        }
        other => Ok(other?),
    }
}

/// One CSV cell of an export. `Text` is anything people wrote or named: an answer, an external
/// id from the roster, a flow's ids and reasons. `Data` is what carebot formats itself: ids,
/// times, and the numbers the engine read, where a minus sign is a negative number, not a
/// formula.
enum Cell {
    Text(String),
    Data(String),
}

impl Cell {
    fn into_csv(self) -> String {
        match self {
            Cell::Text(text) => spreadsheet_safe(text),
            Cell::Data(data) => data,
        }
    }
}

/// Text that a spreadsheet would take for a formula (it begins with `=`, `+`, `-`, `@`, a tab
/// or a carriage return; OWASP "CSV injection") gets a leading `'`, so that
/// `=HYPERLINK("http://evil","x")` typed by anyone shows as text instead of running when staff
/// open an export in Excel or Sheets. JSON lines, read by programs, keep the text as it is.
fn spreadsheet_safe(text: String) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text
    }
}

/// An export's output: CSV records (text cells made safe for spreadsheets, see [`Cell`]), or
/// JSON lines.
enum Rows<W: std::io::Write> {
    Csv(Box<csv::Writer<W>>),
    Lines(W),
}

impl<W: std::io::Write> Rows<W> {
    fn new(csv: bool, w: W) -> Self {
        if csv {
            Rows::Csv(Box::new(csv::Writer::from_writer(w)))
        } else {
            Rows::Lines(w)
        }
    }

    /// The header row: carebot's own column names.
    fn write_header(&mut self, names: &[&str]) -> std::io::Result<()> {
        self.write_record(names.iter().map(|n| Cell::Data((*n).to_owned())))
    }

    fn write_record(&mut self, record: impl IntoIterator<Item = Cell>) -> std::io::Result<()> {
        match self {
            // Keep the I/O error's kind: a closed pipe is the reader's choice, not a failure.
            Rows::Csv(w) => w
                .write_record(record.into_iter().map(Cell::into_csv))
                .map_err(|e| match e.into_kind() {
                    csv::ErrorKind::Io(e) => e,
                    other => std::io::Error::other(format!("{other:?}")),
                }),
            Rows::Lines(_) => Ok(()),
        }
    }

    fn line(&mut self, value: &Value) -> std::io::Result<()> {
        match self {
            Rows::Lines(w) => writeln!(w, "{value}"),
            Rows::Csv(_) => Ok(()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Rows::Csv(w) => w.flush(),
            Rows::Lines(w) => w.flush(),
        }
    }
}

/// Plays a caregiver in the terminal against the real engine, templates and a temporary store.
async fn simulate(cli: &Cli, args: &SimulateArgs) -> anyhow::Result<ExitCode> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_a_spreadsheet_would_run_as_a_formula_gets_a_leading_quote() {
        for risky in [
            "=HYPERLINK(\"http://evil\",\"x\")",
            "+1 call me",
            "-2+3",
            "@SUM(A1:A9)",
            "\t=1+1",
            "\r=1+1",
        ] {
            assert_eq!(
                Cell::Text(risky.into()).into_csv(),
                format!("'{risky}"),
                "{risky:?}"
            );
        }
        for plain in ["More hours please", "1 = very hard", "", "C1", "'quoted"] {
            assert_eq!(Cell::Text(plain.into()).into_csv(), plain);
        }
    }

    #[test]
    fn data_carebot_formats_itself_is_written_as_is() {
        assert_eq!(Cell::Data("-3".into()).into_csv(), "-3");
        assert_eq!(
            Cell::Data("2026-11-17T16:00:00+00:00".into()).into_csv(),
            "2026-11-17T16:00:00+00:00"
        );
    }
}
