//! The roster at scale, on the default SQLite file (WAL, synchronous=NORMAL):
//!
//! 1. a 100,000-row caregiver CSV imported through `roster::import_caregivers` (validation
//!    included), then imported again unchanged;
//! 2. `weekly-pulse` started for all 100,000 (conversations created, first messages queued);
//! 3. on a second database, the real server (`server::run`: webhooks, dispatcher, scheduler)
//!    answering signed inbound replies from caregivers in a live survey at a steady rate,
//!    first idle, then while a 100,000-caregiver start runs from a separate connection pool (as
//!    `carebot start` would, from its own process): reply latency p50/p99 in both phases.
//!
//! Run with `cargo bench --bench roster`. The load generator shares the 2 cores with carebot.
//! `BENCH_RUST_LOG=carebot=debug` logs, per start batch, where its time went.

#[path = "../tests/support/fake_twilio.rs"]
mod fake_twilio;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use carebot::catalog::Catalog;
use carebot::config::Config;
use carebot::model::Audience;
use carebot::runner::Runner;
use carebot::store::{AnyStore, Store};
use fake_twilio::FakeTwilio;

const CAREGIVERS: usize = 100_000;
/// Caregivers in a live survey whose replies are timed.
const LIVE: usize = 4_000;
/// Replies per second offered to the server.
const REPLY_RATE: u64 = 200;

const ZONES: [&str; 4] = [
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
];

fn phone(n: usize) -> String {
    // 312-200-0000 upwards: valid NANP numbers (exchange 200-209).
    format!("+1312{:07}", 2_000_000 + n)
}

fn roster_csv() -> String {
    let mut csv = String::from(
        "external_id,first_name,last_name,phone,language,timezone,branch,supervisor_id,groups,consent_at\n",
    );
    for n in 0..CAREGIVERS {
        let groups = if n < LIVE { "live;pulse" } else { "pulse" };
        let _ = writeln!(
            csv,
            "CG{n:06},Ana,Lopez,({}) {}-{},{},{},Branch {},,{groups},2025-01-02",
            &phone(n)[2..5],
            &phone(n)[5..8],
            &phone(n)[8..],
            if n % 3 == 0 { "es" } else { "en" },
            ZONES[n % ZONES.len()],
            n % 12,
        );
    }
    csv
}

fn catalog() -> Arc<Catalog> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (catalog, _) =
        Catalog::load(&root.join("flows"), &root.join("templates")).expect("valid catalog");
    Arc::new(catalog)
}

fn config(db_url: &str, public_url: &str, twilio_url: &str) -> Config {
    let flags = [
        ("DATABASE_URL", db_url),
        ("CAREBOT_PUBLIC_URL", public_url),
        ("TWILIO_ACCOUNT_SID", fake_twilio::ACCOUNT_SID),
        ("TWILIO_AUTH_TOKEN", fake_twilio::AUTH_TOKEN),
        ("TWILIO_FROM", fake_twilio::FROM),
        ("TWILIO_API_URL", twilio_url),
        // A long code's pace: the dispatcher hands Twilio a few messages a second and the
        // outbox keeps the rest, as in production; it does not compete for the database.
        ("CAREBOT_SMS_MPS", "1"),
        ("CAREBOT_SEND_WINDOW", "00:00-24:00"),
        ("CAREBOT_WEEKLY_CAP", "0"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec();
    Config::load(None, flags).expect("bench config")
}

async fn fresh_store(dir: &Path, name: &str) -> (AnyStore, String) {
    let url = format!("sqlite://{}", dir.join(name).display());
    let store = AnyStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    (store, url)
}

async fn start_all(store: AnyStore, audience: Audience) -> (Duration, usize) {
    let settings = config("sqlite://unused", "http://unused", "http://unused").runner;
    let runner = Runner::new(store, catalog(), settings).await.unwrap();
    let t0 = Instant::now();
    let report = runner
        .start(
            "weekly-pulse",
            &audience,
            BTreeMap::new(),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    (t0.elapsed(), report.started)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn sms_params(from: &str, body: &str, sid: &str) -> Vec<(String, String)> {
    [
        ("MessageSid", sid),
        ("SmsSid", sid),
        ("AccountSid", fake_twilio::ACCOUNT_SID),
        ("From", from),
        ("To", fake_twilio::FROM),
        ("Body", body),
        ("NumSegments", "1"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec()
}

/// Offers replies from caregivers `from..` at `REPLY_RATE` per second until `stop` says so
/// (or `max` were sent); returns each reply's latency, sorted.
async fn replies(
    base: String,
    from: usize,
    max: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<Duration> {
    let client = reqwest::Client::new();
    let url = format!("{base}/webhooks/twilio/sms");
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / REPLY_RATE));
    for i in 0..max {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        tick.tick().await;
        let params = sms_params(&phone(from + i), "4", &format!("SMbench{:08}", from + i));
        let sig = carebot::channel::twilio::signature::sign(fake_twilio::AUTH_TOKEN, &url, &params);
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move {
            let t0 = Instant::now();
            let r = client
                .post(&url)
                .header("X-Twilio-Signature", sig)
                .form(&params)
                .send()
                .await
                .expect("carebot answers");
            assert!(r.status().is_success(), "{}", r.status());
            t0.elapsed()
        });
    }
    let mut out = Vec::new();
    while let Some(latency) = tasks.join_next().await {
        out.push(latency.unwrap());
    }
    out.sort();
    out
}

fn report_latency(label: &str, latencies: &[Duration]) {
    println!(
        "  inbound reply latency, {label:<28} n={:<5} p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms",
        latencies.len(),
        percentile(latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `BENCH_RUST_LOG=carebot=debug` logs where each start batch's time went (stderr).
    if let Ok(filter) = std::env::var("BENCH_RUST_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let dir = tempfile::tempdir().unwrap();
    let csv = roster_csv();

    // 1. Import.
    let (store, _) = fresh_store(dir.path(), "import.db").await;
    let t0 = Instant::now();
    let first = carebot::roster::import_caregivers(&store, csv.as_bytes(), false)
        .await
        .unwrap();
    let first_time = t0.elapsed();
    let t0 = Instant::now();
    let again = carebot::roster::import_caregivers(&store, csv.as_bytes(), true)
        .await
        .unwrap();
    let again_time = t0.elapsed();
    println!("roster import, {CAREGIVERS} rows (CSV parse, validation, upsert):");
    println!(
        "  first import       {:>6.2} s  ({first})",
        first_time.as_secs_f64()
    );
    println!(
        "  unchanged, --sync  {:>6.2} s  ({again})",
        again_time.as_secs_f64()
    );

    // 2. Start for everyone, nothing else running.
    let (took, started) = start_all(store.clone(), Audience::All).await;
    println!("start weekly-pulse for all ({CAREGIVERS} caregivers), quiet database:");
    println!(
        "  {started} conversations created and first messages queued in {:.2} s ({:.0}/s)",
        took.as_secs_f64(),
        started as f64 / took.as_secs_f64()
    );
    drop(store);

    // 3. The same start while the server answers replies.
    let (store, url) = fresh_store(dir.path(), "live.db").await;
    carebot::roster::import_caregivers(&store, csv.as_bytes(), false)
        .await
        .unwrap();
    let (_, live) = start_all(store.clone(), Audience::Group("live".into())).await;
    assert_eq!(live, LIVE);
    let twilio = FakeTwilio::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (shutdown, rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(carebot::server::run(
        config(&url, &base, &twilio.url),
        catalog(),
        listener,
        rx,
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let never = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let idle = replies(base.clone(), 0, LIVE / 4, never).await;

    // A separate pool, as `carebot start` in its own process would have.
    let other = AnyStore::connect(&url).await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(replies(
        base.clone(),
        LIVE / 4,
        LIVE - LIVE / 4,
        stop.clone(),
    ));
    let (took, started) = start_all(other, Audience::All).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let busy = load.await.unwrap();
    println!(
        "start weekly-pulse for all ({CAREGIVERS} caregivers, {LIVE} of them busy in a survey) \
         while the server answers {REPLY_RATE} replies/s:"
    );
    println!(
        "  {started} conversations created and first messages queued in {:.2} s ({:.0}/s)",
        took.as_secs_f64(),
        started as f64 / took.as_secs_f64()
    );
    report_latency("idle", &idle);
    report_latency("during the 100,000 start", &busy);

    let _ = shutdown.send(true);
    let _ = server.await;
}
