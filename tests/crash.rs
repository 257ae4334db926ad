//! kill -9 in the middle of a start: the real `carebot` binary starts the weekly survey for
//! 10,000 caregivers, is killed with SIGKILL once some (not all) of them have their first
//! message queued, and is run again with the same command. Every caregiver must end up with
//! exactly one conversation and one first message. SQLite always; PostgreSQL when
//! `CAREBOT_TEST_POSTGRES_URL` is set.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use carebot::model::{Audience, CaregiverRecord};
use carebot::store::{AnyStore, Store};
use chrono::NaiveDate;
use support::{caregiver, sms};

const CAREGIVERS: u32 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_kill_9_mid_start_then_restart_sends_each_first_message_once() {
    let db = support::sqlite().await;
    kill_9_mid_start_then_restart(&db.store, &db.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_kill_9_mid_start_then_restart_sends_each_first_message_once() {
    let Some(db) = support::postgres().await else {
        return;
    };
    kill_9_mid_start_then_restart(&db.store, &db.url).await;
}

fn carebot(db_url: &str, dir: &Path) -> Command {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_carebot"));
    cmd.current_dir(dir)
        .arg("--flows")
        .arg(root.join("flows"))
        .arg("--templates")
        .arg(root.join("templates"))
        .args(["start", "weekly-pulse", "--to", "all"])
        .env("DATABASE_URL", db_url)
        .env("CAREBOT_WEEKLY_CAP", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

async fn queued(store: &AnyStore) -> i64 {
    store
        .outbound_counts()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, n)| n)
        .sum()
}

async fn kill_9_mid_start_then_restart(store: &AnyStore, url: &str) {
    let rows: Vec<CaregiverRecord> = (0..CAREGIVERS)
        .map(|n| {
            let mut c = caregiver(&format!("cg{n:05}"), n);
            c.consent_at = Some(NaiveDate::from_ymd_opt(2025, 1, 2).unwrap());
            c
        })
        .collect();
    for chunk in rows.chunks(5000) {
        store.upsert_caregivers(chunk).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();

    // Run, and SIGKILL the process once a fifth of the caregivers are started: it is then
    // (almost always) inside the transaction of the next batch.
    let mut child = carebot(url, dir.path()).spawn().expect("run carebot");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if queued(store).await >= i64::from(CAREGIVERS / 5) {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "carebot exited before it was killed: {:?}",
            child.wait_with_output().unwrap()
        );
        assert!(Instant::now() < deadline, "carebot queued nothing in 120 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().expect("SIGKILL"); // kill -9
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed, not finished: {status:?}");
    let at_kill = queued(store).await;
    assert!(
        at_kill > 0 && at_kill < i64::from(CAREGIVERS),
        "the kill must land mid-start: {at_kill} of {CAREGIVERS} queued"
    );

    // The same command again resumes the start (once the dead runner's lease lapses).
    let out = carebot(url, dir.path())
        .output()
        .expect("run carebot again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("resuming start #1"), "{stderr}");
    assert_eq!(
        stdout.trim(),
        "started 10000, skipped 0 (no consent: 0, opted out: 0, already in a conversation: 0, \
         capped: 0, inactive: 0)"
    );

    // Exactly one conversation and one first message per caregiver.
    assert_eq!(queued(store).await, i64::from(CAREGIVERS));
    assert_eq!(store.audience(&Audience::All).await.unwrap().len(), 10_000);
    for n in 0..CAREGIVERS {
        let got = store.outbound_to(&sms(n)).await.unwrap();
        assert_eq!(got.len(), 1, "caregiver {n}: {got:?}");
        assert!(got[0].1.contains("How was your work week"), "{got:?}");
    }
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!(
            "kill -9 after {at_kill} of {CAREGIVERS} first messages were queued; the re-run \
             queued the other {} and none twice\n",
            i64::from(CAREGIVERS) - at_kill
        )
        .as_bytes(),
    );
}
