//! `spawn_app`: the real `carebot serve` (HTTP, dispatcher, scheduler) on 127.0.0.1:0 against a
//! fresh database and a fake Twilio, with helpers that act as Twilio and as an operator.
//! `spawn_telegram_app` adds a fake Telegram Bot API, reached by webhook or by long polling.
//! [`carebot`] runs an operator's command line against the same database.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use carebot::catalog::Catalog;
use carebot::clock::Clock;
use carebot::config::Config;
use carebot::model::Audience;
use carebot::runner::{Runner, StartReport};
use carebot::store::{AnyStore, Store};
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::TestStore;
use super::conversation::{self, Inbox};
use super::fake_telegram::{self, FakeTelegram};
use super::fake_twilio::{self, FakeTwilio};

/// How the app under test receives Telegram updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TelegramMode {
    /// `CAREBOT_PUBLIC_URL` set: Telegram posts to `/webhooks/telegram` with the secret.
    Webhook,
    /// No `CAREBOT_PUBLIC_URL`: carebot long-polls getUpdates.
    Polling,
}

/// `webhook` or `polling`: the name of the module `app_tests!(telegram MODE: …)` puts its tests
/// in.
impl std::str::FromStr for TelegramMode {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "webhook" => Ok(TelegramMode::Webhook),
            "polling" => Ok(TelegramMode::Polling),
            other => Err(format!("no Telegram mode {other:?}: webhook or polling")),
        }
    }
}

/// Tuesday 2026-11-17, 10:00 in Chicago: a working morning for a test that sets its clock.
pub fn tuesday_morning() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-17T16:00:00Z")
        .unwrap()
        .to_utc()
}

pub struct TestApp {
    /// Where carebot listens, which is also its `CAREBOT_PUBLIC_URL`.
    pub url: String,
    pub twilio: FakeTwilio,
    pub db: TestStore,
    /// An operator's runner on the same database (what `carebot start` uses).
    pub runner: Arc<Runner<AnyStore>>,
    /// The clock the server runs on: `advance` it to make hours pass.
    pub clock: Clock,
    options: AppOptions,
    /// The fake Bot API, when the app runs with Telegram.
    pub telegram: Option<FakeTelegram>,
    /// The texts sent through [`TestApp::post_sms`], for [`TestApp::transcript`].
    inbox: Inbox,
    telegram_mode: Option<TelegramMode>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<anyhow::Result<()>>,
    port: u16,
}

/// What a test changes about the app it spawns.
#[derive(Debug, Clone, Default)]
pub struct AppOptions {
    /// Settings over the test defaults, as (variable, value).
    pub settings: Vec<(&'static str, String)>,
    /// Flow files served besides the shipped ones.
    pub extra_flows: Vec<PathBuf>,
    /// The time the app's clock starts at, from where it runs on (`None`: the system's). Set
    /// before the server starts: a clock set afterwards races the scheduler's first tick, which
    /// could run a start at the real time of day, inside quiet hours.
    pub starts_at: Option<DateTime<Utc>>,
}

fn catalog(options: &AppOptions) -> Arc<Catalog> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let flows = if options.extra_flows.is_empty() {
        root.join("flows")
    } else {
        // The shipped flows and the extra ones, side by side in a directory of their own.
        let dir =
            std::env::temp_dir().join(format!("carebot-flows-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(root.join("flows")).unwrap().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "yaml") {
                std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
            }
        }
        for path in &options.extra_flows {
            std::fs::copy(path, dir.join(path.file_name().unwrap())).unwrap();
        }
        dir
    };
    let (catalog, _) = Catalog::load(&flows, &root.join("templates"))
        .unwrap_or_else(|r| panic!("test flows are valid: {:?}", r.problems));
    if !options.extra_flows.is_empty() {
        // Loaded: the catalog keeps the flows' text, not the files.
        let _ = std::fs::remove_dir_all(&flows);
    }
    Arc::new(catalog)
}

fn config(db_url: &str, public_url: &str, twilio_url: &str, options: &AppOptions) -> Config {
    config_with(db_url, public_url, twilio_url, options, None)
}

fn config_with(
    db_url: &str,
    public_url: &str,
    twilio_url: &str,
    options: &AppOptions,
    telegram: Option<(&str, TelegramMode)>,
) -> Config {
    let mut flags = vec![("DATABASE_URL", db_url)];
    if telegram.is_none_or(|(_, mode)| mode == TelegramMode::Webhook) {
        flags.push(("CAREBOT_PUBLIC_URL", public_url));
    }
    if let Some((api_url, _)) = telegram {
        flags.extend([
            ("TELEGRAM_BOT_TOKEN", fake_telegram::TOKEN),
            ("TELEGRAM_WEBHOOK_SECRET", fake_telegram::SECRET),
            ("TELEGRAM_API_URL", api_url),
        ]);
    }
    flags.extend([
        ("TWILIO_ACCOUNT_SID", fake_twilio::ACCOUNT_SID),
        ("TWILIO_AUTH_TOKEN", fake_twilio::AUTH_TOKEN),
        ("TWILIO_FROM", fake_twilio::FROM),
        ("TWILIO_API_URL", twilio_url),
        ("CAREBOT_SMS_MPS", "50"),
        ("CAREBOT_AGENCY_NAME", "Sunrise Home Care"),
        ("CAREBOT_AGENCY_PHONE", "(312) 555-0100"),
        // Tests run at any hour; quiet hours have their own unit tests.
        ("CAREBOT_SEND_WINDOW", "00:00-24:00"),
        ("CAREBOT_SUPERVISOR_WINDOW", "00:00-24:00"),
    ]);
    // The test's own settings first: the first of two flags with one name wins, so a test can
    // override a default above (the send windows, for one).
    let mut settings: Vec<(String, String)> = options
        .settings
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    settings.extend(flags.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())));
    Config::load(None, settings).expect("test config")
}

async fn serve(
    db_url: &str,
    port: u16,
    twilio: &FakeTwilio,
    clock: &Clock,
    options: &AppOptions,
) -> (watch::Sender<bool>, JoinHandle<anyhow::Result<()>>, u16) {
    serve_with(db_url, port, twilio, clock, options, None).await
}

async fn serve_with(
    db_url: &str,
    port: u16,
    twilio: &FakeTwilio,
    clock: &Clock,
    options: &AppOptions,
    telegram: Option<(&FakeTelegram, TelegramMode)>,
) -> (watch::Sender<bool>, JoinHandle<anyhow::Result<()>>, u16) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    let port = listener.local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let (tx, rx) = watch::channel(false);
    let telegram_config = telegram.map(|(t, mode)| (t.url.as_str(), mode));
    let server = tokio::spawn(carebot::server::run_with_clock(
        config_with(db_url, &url, &twilio.url, options, telegram_config),
        catalog(options),
        listener,
        rx,
        clock.clone(),
    ));
    (tx, server, port)
}

pub async fn spawn_app(db: TestStore) -> TestApp {
    spawn_app_with(db, AppOptions::default()).await
}

/// [`spawn_app`] with other settings or extra flows. Its clock is the system clock until the
/// test sets or advances it.
pub async fn spawn_app_with(db: TestStore, options: AppOptions) -> TestApp {
    let twilio = FakeTwilio::start().await;
    let clock = Clock::system();
    if let Some(at) = options.starts_at {
        clock.set(at);
    }
    let (shutdown, server, port) = serve(&db.url, 0, &twilio, &clock, &options).await;
    let url = format!("http://127.0.0.1:{port}");
    let settings = config(&db.url, &url, &twilio.url, &options).runner;
    let runner = Arc::new(
        Runner::new(db.store.clone(), catalog(&options), settings)
            .await
            .expect("runner"),
    );
    let app = TestApp {
        url,
        twilio,
        db,
        runner,
        clock,
        options,
        telegram: None,
        inbox: Inbox::default(),
        telegram_mode: None,
        shutdown,
        server,
        port,
    };
    app.wait_healthy().await;
    app
}

/// The real server with Telegram on, against a fake Bot API that delivers updates by `mode`.
pub async fn spawn_telegram_app(db: TestStore, mode: TelegramMode) -> TestApp {
    let twilio = FakeTwilio::start().await;
    let telegram = FakeTelegram::start().await;
    let options = AppOptions::default();
    let clock = Clock::system();
    let (shutdown, server, port) = serve_with(
        &db.url,
        0,
        &twilio,
        &clock,
        &options,
        Some((&telegram, mode)),
    )
    .await;
    let url = format!("http://127.0.0.1:{port}");
    if mode == TelegramMode::Webhook {
        telegram.deliver_to_webhook(&format!("{url}/webhooks/telegram"), fake_telegram::SECRET);
    }
    let settings = config(&db.url, &url, &twilio.url, &options).runner;
    let runner = Arc::new(
        Runner::new(db.store.clone(), catalog(&options), settings)
            .await
            .expect("runner"),
    );
    let app = TestApp {
        url,
        twilio,
        db,
        runner,
        clock,
        options,
        telegram: Some(telegram),
        inbox: Inbox::default(),
        telegram_mode: Some(mode),
        shutdown,
        server,
        port,
    };
    app.wait_healthy().await;
    app
}

impl TestApp {
    pub fn store(&self) -> &AnyStore {
        &self.db.store
    }

    /// The fake Bot API of an app started by [`spawn_telegram_app`].
    pub fn tg(&self) -> &FakeTelegram {
        self.telegram.as_ref().expect("the app runs with Telegram")
    }

    /// The configuration this app runs with, as an operator's command would read it.
    pub fn config(&self) -> Config {
        let telegram = self
            .telegram
            .as_ref()
            .zip(self.telegram_mode)
            .map(|(t, mode)| (t.url.as_str(), mode));
        config_with(
            &self.db.url,
            &self.url,
            &self.twilio.url,
            &self.options,
            telegram,
        )
    }

    async fn wait_healthy(&self) {
        for _ in 0..200 {
            if let Ok(r) = reqwest::get(format!("{}/healthz", self.url)).await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("carebot did not become healthy");
    }

    /// Starts `flow` now (on the app's clock) for these caregivers, as `carebot start --to
    /// phone:…` would.
    pub async fn start(&self, flow: &str, phones: &[&str]) -> StartReport {
        self.runner
            .start(
                flow,
                &Audience::Phones(phones.iter().map(|p| (*p).to_owned()).collect()),
                Default::default(),
                self.clock.now(),
            )
            .await
            .unwrap()
    }

    /// [`TestApp::start`], for a test that needs every one of them started.
    pub async fn start_all(&self, flow: &str, phones: &[&str]) -> StartReport {
        let report = self.start(flow, phones).await;
        assert_eq!(report.started, phones.len(), "{report:?}");
        report
    }

    /// Texts `body` from `from` and waits for the `n`th message to `to`; returns it.
    pub async fn text_and_wait(&self, from: &str, body: &str, to: &str, n: usize) -> String {
        let sid = format!("SM{:032x}", rand::random::<u128>());
        let (status, _) = self.post_sms(from, body, &sid).await;
        assert_eq!(status, 200);
        self.twilio.wait_for(to, n).await[n - 1].clone()
    }

    /// Waits (bounded) until the outbox holds no queued or sending message.
    pub async fn settle(&self) {
        for _ in 0..400 {
            let counts = self.store().outbound_counts().await.unwrap();
            if !counts
                .iter()
                .any(|(s, n)| (s == "queued" || s == "sending") && *n > 0)
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!(
            "the outbox did not drain: {:?}",
            self.store().outbound_counts().await.unwrap()
        );
    }

    /// Posts an inbound SMS as Twilio would, signed. Returns (status, body).
    pub async fn post_sms(&self, from: &str, body: &str, sid: &str) -> (u16, String) {
        let after = conversation::last_outbound_id(&self.db).await;
        let params = sms_params(from, body, sid);
        let answered = self
            .post_twilio("/webhooks/twilio/sms", &params, true)
            .await;
        if answered.0 == 200 {
            self.inbox.note(after, sid, from, body);
        }
        answered
    }

    /// The SMS conversation between carebot and `people` (name, number) so far, as they saw
    /// it: one line per text, `Maria → carebot: 4` or `carebot → Dana: ALERT 1 …`.
    pub async fn transcript(&self, people: &[(&str, &str)]) -> String {
        conversation::transcript(&self.db, &self.inbox, people).await
    }

    /// Posts a form to a Twilio webhook, signed correctly or not.
    pub async fn post_twilio(
        &self,
        path: &str,
        params: &[(String, String)],
        signed: bool,
    ) -> (u16, String) {
        let url = format!("{}{path}", self.url);
        let token = if signed {
            fake_twilio::AUTH_TOKEN
        } else {
            "not-the-token"
        };
        let sig = carebot::channel::twilio::signature::sign(token, &url, params);
        let r = reqwest::Client::new()
            .post(&url)
            .header("X-Twilio-Signature", sig)
            .form(params)
            .send()
            .await
            .expect("carebot answers");
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = reqwest::get(format!("{}{path}", self.url))
            .await
            .expect("carebot answers");
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    /// Stops carebot gracefully (as on SIGTERM) and waits for it.
    pub async fn stop(self) -> TestStore {
        let _ = self.shutdown.send(true);
        self.server
            .await
            .expect("server task")
            .expect("clean shutdown");
        self.db
    }

    /// Kills carebot at once, mid-work, like `kill -9`, then starts a new one on the same
    /// database, port and fake Twilio.
    pub async fn crash_and_restart(&mut self) {
        self.server.abort();
        let _ = (&mut self.server).await;
        let telegram = self.telegram.as_ref().zip(self.telegram_mode);
        let (shutdown, server, _) = serve_with(
            &self.db.url,
            self.port,
            &self.twilio,
            &self.clock,
            &self.options,
            telegram,
        )
        .await;
        self.shutdown = shutdown;
        self.server = server;
        self.wait_healthy().await;
    }
}

pub fn sms_params(from: &str, body: &str, sid: &str) -> Vec<(String, String)> {
    [
        ("ToCountry", "US"),
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("SmsSid", sid),
        ("SmsStatus", "received"),
        ("Body", body),
        ("To", fake_twilio::FROM),
        ("NumSegments", "1"),
        ("MessageSid", sid),
        ("AccountSid", fake_twilio::ACCOUNT_SID),
        ("From", from),
        ("ApiVersion", "2010-04-01"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec()
}

/// What `carebot ARGS` prints (an export, a report) on the database at `db_url`: the command
/// line parsed as the binary parses it, written to a buffer instead of stdout. Not the binary
/// itself: in a target directory shared between branches, `CARGO_BIN_EXE_carebot` may be
/// another branch's build.
pub async fn carebot(db_url: &str, args: &[&str]) -> String {
    use clap::Parser;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let flows = root.join("flows");
    let templates = root.join("templates");
    let mut argv = vec![
        "carebot",
        "--flows",
        flows.to_str().unwrap(),
        "--templates",
        templates.to_str().unwrap(),
        "--database-url",
        db_url,
    ];
    argv.extend(args);
    let cli = carebot::cli::Cli::try_parse_from(argv).expect("a valid command line");
    let mut out = Vec::new();
    carebot::cli::results(&cli, &mut out)
        .await
        .unwrap_or_else(|e| panic!("carebot {args:?} failed: {e:#}"));
    String::from_utf8(out).unwrap()
}
