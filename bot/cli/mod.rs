//! The `carebot` command line: every command an operator or program staff runs, each a thin
//! layer over the library (catalog, runner, store, roster). Exit codes are part of the contract.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::Value;

use crate::catalog::{self, Catalog, Report};
use crate::config::{Config, redact_url};
use crate::flow::Severity;
use crate::store::{AnyStore, Store};

pub mod caregiver;
pub mod export;
mod roster;
pub mod shifts;
pub mod simulate;
pub mod start;
pub mod telegram;

pub use export::results;
pub use start::{At, describe_start, local_instant, parse_at, parse_audience};

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
    Shifts(shifts::ShiftsCommand),
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
        Command::Simulate(args) => simulate::run(&cli, args).await,
        Command::Import(cmd) => roster::run(&cli, cmd).await,
        Command::Start(args) => start::run(&cli, args).await,
        Command::Starts { all } => start::list(&cli, *all).await,
        Command::Export(_) | Command::Report(_) => {
            // Not `stdout().lock()`: the store calls the sink from a future that must be `Send`.
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
            export::results(&cli, &mut out).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Telegram(cmd) => telegram::run(&cli, cmd).await,
        Command::Invite(args) => telegram::run_invite(&cli, args).await,
        Command::Prefer(args) => telegram::run_prefer(&cli, args).await,
        Command::Shifts(cmd) => shifts::run(&cli, cmd).await,
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

/// A progress bar on stderr when it is a terminal, and nothing otherwise (a nightly job's log
/// gets the summary line alone).
pub(super) fn progress_bar(unit: &str) -> indicatif::ProgressBar {
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
