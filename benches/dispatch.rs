//! The outbox dispatcher's drain rate against a local fake Twilio (real HTTP, Twilio's wire
//! format), on the default SQLite file: program messages queued by a real start are claimed,
//! sent and marked accepted. Pacing off (no per-sender limit) shows what the dispatcher itself
//! can do; pacing on (a short code's 225 segments/s) shows it holding the pace.
//!
//! Run with `cargo bench --bench dispatch`.

#[path = "../tests/support/fake_twilio.rs"]
mod fake_twilio;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use carebot::catalog::Catalog;
use carebot::channel::twilio::client::TwilioClient;
use carebot::config::Config;
use carebot::dispatch::{DispatchSettings, Dispatcher};
use carebot::metrics::Metrics;
use carebot::model::{Audience, CaregiverRecord};
use carebot::runner::Runner;
use carebot::store::{AnyStore, Store};
use fake_twilio::FakeTwilio;

fn config(twilio_url: &str) -> Config {
    let flags = [
        ("TWILIO_ACCOUNT_SID", fake_twilio::ACCOUNT_SID),
        ("TWILIO_AUTH_TOKEN", fake_twilio::AUTH_TOKEN),
        ("TWILIO_FROM", fake_twilio::FROM),
        ("TWILIO_API_URL", twilio_url),
        ("CAREBOT_SEND_WINDOW", "00:00-24:00"),
        ("CAREBOT_WEEKLY_CAP", "0"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec();
    Config::load(None, flags).expect("bench config")
}

/// Queues one program message to each of `n` caregivers, drains them at `mps`, and returns
/// messages per second.
async fn drain(n: u32, mps: f64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("carebot.db").display());
    let store = AnyStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let rows: Vec<CaregiverRecord> = (0..n)
        .map(|i| CaregiverRecord {
            external_id: format!("CG{i:06}"),
            first_name: "Ana".into(),
            last_name: "Lopez".into(),
            phone: format!("+1312{:07}", 2_000_000 + i),
            language: carebot::domain::Lang::En,
            timezone: "America/Chicago".into(),
            branch: "north".into(),
            supervisor_id: None,
            groups: vec![],
            consent_at: Some(chrono::NaiveDate::from_ymd_opt(2025, 1, 2).unwrap()),
        })
        .collect();
    for chunk in rows.chunks(5000) {
        store.upsert_caregivers(chunk).await.unwrap();
    }
    let twilio = FakeTwilio::start().await;
    let config = config(&twilio.url);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (catalog, _) = Catalog::load(&root.join("flows"), &root.join("templates")).unwrap();
    let runner = Runner::new(store.clone(), Arc::new(catalog), config.runner.clone())
        .await
        .unwrap();
    let report = runner
        .start(
            "weekly-pulse",
            &Audience::All,
            BTreeMap::new(),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(report.started, n as usize);

    let client = TwilioClient::new(config.twilio.clone().unwrap(), None);
    let dispatcher = Dispatcher::new(
        store.clone(),
        client,
        DispatchSettings {
            mps,
            max_attempts: 6,
            caregiver_window: config.runner.caregiver_window,
            concurrency: 16,
            per_address_mps: None,
        },
        Arc::new(Metrics::default()),
    );
    let (shutdown, rx) = tokio::sync::watch::channel(false);
    let t0 = Instant::now();
    let task = tokio::spawn(dispatcher.run(rx));
    loop {
        let counts = store.outbound_counts().await.unwrap();
        let accepted: i64 = counts
            .iter()
            .filter(|(s, _)| s == "accepted")
            .map(|(_, c)| c)
            .sum();
        if accepted >= i64::from(n) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(600), "{counts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = t0.elapsed();
    let _ = shutdown.send(true);
    let _ = task.await;
    assert_eq!(
        twilio.delivered().len(),
        n as usize,
        "each message sent once"
    );
    f64::from(n) / took.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("dispatcher drain rate against the fake Twilio (claim, POST, mark accepted):");
    let off = drain(20_000, 1_000_000.0).await;
    println!("  pacing off (no sender limit), 20,000 messages: {off:>7.0} messages/s");
    let on = drain(2_000, 225.0).await;
    println!("  pacing on (225 segments/s, a short code), 2,000 messages: {on:>7.0} messages/s");
}
