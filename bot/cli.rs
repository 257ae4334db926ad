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
use crate::config::Config;
use crate::domain::{Address, Channel, Lang, Phone};
use crate::flow::Severity;
use crate::runner::{Runner, StartReport};
use crate::store::{AnyStore, Audience, CaregiverRecord, Inbound, Store, SupervisorRecord};

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
    /// Talk to a flow in the terminal as a caregiver (replies from stdin; `/wait 25h` moves the clock).
    Simulate(SimulateArgs),
    /// Import the roster from a CSV file.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Start a flow now for an audience: all, group:NAME, branch:NAME or phone:+1…[,+1…].
    Start(StartArgs),
    /// Export stored results to stdout.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Connect the Telegram bot: register or remove its webhook, or show where updates go.
    #[command(subcommand)]
    Telegram(TelegramCommand),
    /// Print a one-time Telegram link that connects a caregiver (or supervisor) to the bot.
    Invite(InviteArgs),
    /// Choose the channel program messages use for a caregiver reachable on SMS and Telegram.
    Prefer(PreferArgs),
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
    /// Run the transcript tests kept with the flows.
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
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// One row per stored answer: caregiver, flow, step, answer, answered_at.
    Answers {
        #[arg(long)]
        flow: Option<String>,
        #[arg(long)]
        since: Option<NaiveDate>,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
    },
    /// One row per escalation.
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

/// A database URL safe to print: no password.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
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
            let results = crate::transcript::run_dir(&catalog, &dir);
            let failed = results.iter().filter(|r| !r.failures.is_empty()).count();
            for r in &results {
                if r.failures.is_empty() {
                    println!("ok    {}", r.file.display());
                } else {
                    println!("FAIL  {}", r.file.display());
                    for f in &r.failures {
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
                    (
                        file,
                        crate::roster::import_caregivers(&store, f, *sync).await,
                    )
                }
                ImportCommand::Supervisors { file } => {
                    let f = std::fs::File::open(file)
                        .with_context(|| format!("cannot open {}", file.display()))?;
                    (file, crate::roster::import_supervisors(&store, f).await)
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
        Command::Start(args) => {
            let config = cli.config()?;
            let catalog = cli.catalog()?;
            let audience = parse_audience(&args.to)?;
            let store = cli.store(&config).await?;
            let runner = Runner::new(store, catalog, config.runner.clone()).await?;
            let vars = args.vars.iter().cloned().collect();
            let report = runner
                .start(&args.flow_id, &audience, vars, Utc::now())
                .await?;
            println!("{}", describe_start(&report));
            Ok(ExitCode::SUCCESS)
        }
        Command::Export(cmd) => {
            let config = cli.config()?;
            let store = cli.store(&config).await?;
            export(&store, cmd).await?;
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
                crate::store::Invitee::Caregiver { external_id, name } => {
                    format!("caregiver {external_id} ({name})")
                }
                crate::store::Invitee::Supervisor { external_id, name } => {
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
    let s = s.trim();
    if s == "all" {
        return Ok(Audience::All);
    }
    match s.split_once(':') {
        Some(("group", name)) if !name.is_empty() => Ok(Audience::Group(name.to_lowercase())),
        Some(("branch", name)) if !name.is_empty() => Ok(Audience::Branch(name.to_owned())),
        Some(("phone", list)) => {
            let phones = list
                .split(',')
                .map(|p| {
                    Phone::parse(p)
                        .map(|p| p.as_str().to_owned())
                        .map_err(|e| anyhow::anyhow!("{p:?}: {e}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(Audience::Phones(phones))
        }
        _ => bail!("audience {s:?} must be all, group:NAME, branch:NAME or phone:+1…[,+1…]"),
    }
}

pub fn describe_start(r: &StartReport) -> String {
    let skipped: usize = r.skipped.values().sum();
    let mut reasons: Vec<String> = [
        "no consent",
        "opted out",
        "already in a conversation",
        "capped",
        "inactive",
    ]
    .iter()
    .map(|k| format!("{k}: {}", r.skipped.get(k).copied().unwrap_or(0)))
    .collect();
    for (k, v) in &r.skipped {
        if ![
            "no consent",
            "opted out",
            "already in a conversation",
            "capped",
            "inactive",
        ]
        .contains(k)
        {
            reasons.push(format!("{k}: {v}"));
        }
    }
    format!(
        "started {}, skipped {skipped} ({})",
        r.started,
        reasons.join(", ")
    )
}

async fn export(store: &AnyStore, cmd: &ExportCommand) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match cmd {
        ExportCommand::Answers {
            flow,
            since,
            format,
        } => {
            let rows = store.answers(flow.as_deref(), *since).await?;
            let mut csv = csv::Writer::from_writer(Vec::new());
            if matches!(format, Format::Csv) {
                csv.write_record(["caregiver", "flow", "step", "answer", "answered_at"])?;
            }
            for r in rows {
                let answer = match &r.answer {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                match format {
                    Format::Csv => csv.write_record([
                        &r.caregiver,
                        &r.flow,
                        &r.step,
                        &answer,
                        &r.answered_at.to_rfc3339(),
                    ])?,
                    Format::Jsonl => writeln!(
                        out,
                        "{}",
                        serde_json::json!({"caregiver": r.caregiver, "flow": r.flow, "step": r.step, "answer": r.answer, "answered_at": r.answered_at})
                    )?,
                }
            }
            out.write_all(&csv.into_inner()?)?;
        }
        ExportCommand::Escalations {
            flow: _,
            since,
            format,
        } => {
            let rows = store.escalations(*since).await?;
            let mut csv = csv::Writer::from_writer(Vec::new());
            if matches!(format, Format::Csv) {
                csv.write_record([
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
            let t = |d: &Option<DateTime<Utc>>| d.map(|d| d.to_rfc3339()).unwrap_or_default();
            for r in rows {
                match format {
                    Format::Csv => csv.write_record([
                        r.id.to_string(),
                        r.caregiver.clone(),
                        r.supervisor.clone().unwrap_or_default(),
                        r.priority.clone(),
                        r.reason.clone(),
                        r.status.clone(),
                        r.raised_at.to_rfc3339(),
                        t(&r.acknowledged_at),
                        t(&r.closed_at),
                    ])?,
                    Format::Jsonl => writeln!(
                        out,
                        "{}",
                        serde_json::json!({
                            "id": r.id, "caregiver": r.caregiver, "supervisor": r.supervisor,
                            "priority": r.priority, "reason": r.reason, "status": r.status,
                            "raised_at": r.raised_at, "acknowledged_at": r.acknowledged_at, "closed_at": r.closed_at,
                        })
                    )?,
                }
            }
            out.write_all(&csv.into_inner()?)?;
        }
    }
    out.flush()?;
    Ok(())
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
        .upsert_supervisors(&[SupervisorRecord {
            external_id: "S1".into(),
            name: "Dana Smith".into(),
            phone: "+13125550100".into(),
            email: "dana@example.org".into(),
            branch: "Chicago North".into(),
            timezone: "America/Chicago".into(),
        }])
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
    let runner = Runner::new(store, catalog, settings).await?;
    let me = Address::new(Channel::Sms, phone);
    let supervisor = Address::new(Channel::Sms, "+13125550100");
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
    let mut shown = (0, 0);
    shown = show_new(&runner.store, &me, &supervisor, shown).await?;
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
        } else if line == "/quit" {
            break;
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
        shown = show_new(&runner.store, &me, &supervisor, shown).await?;
    }
    println!("\n== stored answers ==");
    for a in runner.store.answers(Some(&args.flow_id), None).await? {
        println!("{}: {} = {}", a.step, a.key, a.answer);
    }
    println!("== escalations ==");
    for e in runner.store.escalations(None).await? {
        println!("[{}] {} — {}", e.priority, e.reason, e.message);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ExitCode::SUCCESS)
}

async fn show_new(
    store: &AnyStore,
    me: &Address,
    supervisor: &Address,
    shown: (usize, usize),
) -> anyhow::Result<(usize, usize)> {
    let mine = store.outbound_to(me).await?;
    for (_, body) in mine.iter().skip(shown.0) {
        for (i, line) in body.lines().enumerate() {
            println!("{}{line}", if i == 0 { "bot> " } else { "     " });
        }
    }
    let alerts = store.outbound_to(supervisor).await?;
    for (_, body) in alerts.iter().skip(shown.1) {
        println!("     [alert to supervisor] {body}");
    }
    Ok((mine.len(), alerts.len()))
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("carebot-simulate-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
