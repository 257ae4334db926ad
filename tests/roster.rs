//! The roster at scale, on SQLite always and on PostgreSQL when `CAREBOT_TEST_POSTGRES_URL` is
//! set: durable starts that resume instead of repeating, skips by reason, contact pressure and
//! program priority, training assignments, and the one scheduler on a clock the tests move
//! (recurring starts in each caregiver's time zone, across daylight-saving changes, and `--at`).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use carebot::catalog::Catalog;
use carebot::clock::Clock;
use carebot::config::{Pressure, RunnerSettings};
use carebot::model::{
    Audience, CaregiverRecord, ConsentStatus, StartOrigin, StartSnapshot, StartStatus,
};
use carebot::roster;
use carebot::runner::{Runner, START_LEASE};
use carebot::scheduler::Scheduler;
use carebot::store::{AnyStore, Store};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use support::{at, caregiver, inbound, phone, sms};

support::store_tests! {
    a_start_reaches_each_caregiver_once_when_a_runner_dies_mid_way,
    a_stop_sent_while_a_start_is_under_way_is_honoured,
    a_start_counts_what_it_skipped_by_reason,
    a_rerun_of_the_same_start_resumes_it,
    the_weekly_cap_skips_or_waits_and_priority_goes_first,
    training_import_drives_the_flow_and_done_is_not_nudged_again,
    recurring_starts_run_at_ten_on_each_caregivers_clock_and_never_twice,
    a_0130_schedule_runs_once_when_clocks_go_back,
    a_0230_schedule_still_runs_when_clocks_go_forward,
    a_start_at_a_later_time_runs_when_it_is_due,
    schedule_rows_follow_new_time_zones_and_removed_schedules,
}

// ---------------------------------------------------------------------------------------------
// Set-up

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped flows plus `extra` flow files, with the shipped templates. The directory lives
/// as long as the returned guard.
fn catalog(extra: &[(&str, &str)]) -> (Arc<Catalog>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(root().join("flows")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    for (name, text) in extra {
        std::fs::write(dir.path().join(format!("{name}.yaml")), text).unwrap();
    }
    let (catalog, _) = Catalog::load(dir.path(), &root().join("templates"))
        .unwrap_or_else(|r| panic!("test flows are valid: {:?}", r.problems));
    (Arc::new(catalog), dir)
}

/// A one-step flow that sends a thank-you and ends: a program conversation that is over at
/// once, so the weekly cap and schedules can be tested without replies.
fn quick_flow(id: &str, program: &str, extra: &str) -> String {
    format!(
        "id: {id}\nname: {id}\nversion: 1\nprogram: {program}\n{extra}\n\
         steps:\n  - id: thanks\n    send: pulse/thanks\n"
    )
}

fn settings(weekly_cap: u32) -> RunnerSettings {
    RunnerSettings {
        pressure: Pressure {
            weekly_cap,
            ..Pressure::default()
        },
        ..RunnerSettings::default()
    }
}

async fn runner(
    store: &AnyStore,
    catalog: &Arc<Catalog>,
    weekly_cap: u32,
) -> Arc<Runner<AnyStore>> {
    Arc::new(
        Runner::new(store.clone(), catalog.clone(), settings(weekly_cap))
            .await
            .unwrap(),
    )
}

/// `n` caregivers `cg0…`, phones `phone(0…)`, with written consent, in `timezone`.
fn consenting(n: u32, timezone: &str) -> Vec<CaregiverRecord> {
    (0..n)
        .map(|i| {
            let mut c = caregiver(&format!("cg{i:05}"), i);
            c.consent_at = Some(NaiveDate::from_ymd_opt(2025, 1, 2).unwrap());
            c.timezone = timezone.to_owned();
            c
        })
        .collect()
}

async fn import(store: &AnyStore, rows: &[CaregiverRecord]) {
    for chunk in rows.chunks(5000) {
        store.upsert_caregivers(chunk).await.unwrap();
    }
}

/// How many messages were ever queued to caregiver `n`.
async fn messages_to(store: &AnyStore, n: u32) -> Vec<String> {
    store
        .outbound_to(&sms(n))
        .await
        .unwrap()
        .into_iter()
        .map(|(_, body)| body)
        .collect()
}

/// `weekly-pulse` for everyone, created at `now` as `carebot start` creates it.
async fn pulse_start(runner: &Runner<AnyStore>, now: DateTime<Utc>) -> i64 {
    runner
        .create_start(
            "weekly-pulse",
            &Audience::All,
            None,
            BTreeMap::new(),
            now,
            StartOrigin::Cli,
            None,
        )
        .await
        .unwrap()
}

/// `weekly-pulse` for everyone, created at `now` and claimed by runner "A", for tests that run
/// it batch by batch.
async fn pulse_start_claimed_by_a(
    store: &AnyStore,
    runner: &Runner<AnyStore>,
    now: DateTime<Utc>,
) -> i64 {
    let id = pulse_start(runner, now).await;
    assert!(
        store
            .claim_start(id, "A", now, now + START_LEASE)
            .await
            .unwrap()
    );
    id
}

/// `weekly-pulse` and its registered revision, for tests that run a start batch by batch.
async fn pulse_revision(store: &AnyStore, catalog: &Catalog) -> (Arc<carebot::flow::Flow>, i64) {
    let entry = catalog.get("weekly-pulse").unwrap();
    let rev = store
        .register_flow_revision("weekly-pulse", entry.flow.version, &entry.source)
        .await
        .unwrap();
    (entry.flow.clone(), rev)
}

fn skipped(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

// ---------------------------------------------------------------------------------------------
// Durable starts

async fn a_start_reaches_each_caregiver_once_when_a_runner_dies_mid_way(store: AnyStore) {
    import(&store, &consenting(1200, "America/Chicago")).await;
    let (catalog, _dir) = catalog(&[]);
    let runner = runner(&store, &catalog, 0).await;
    let now = at(15);
    // Runner A takes the start and commits one batch of 500, then dies.
    let id = pulse_start_claimed_by_a(&store, &runner, now).await;
    let (flow, rev) = pulse_revision(&store, &catalog).await;
    let vars = BTreeMap::new();
    let decide = |s: &StartSnapshot| {
        runner.decide_start_target(&flow, rev, &vars, s, now, now + Duration::days(7))
    };
    let batch = store
        .run_start_batch(id, "A", now, now + START_LEASE, 500, &decide)
        .await
        .unwrap();
    assert_eq!(batch.handled, 500);
    let row = store.start_row(id).await.unwrap().unwrap();
    assert_eq!((row.total, row.processed, row.started), (1200, 500, 500));

    // While A's lease lasts nobody else takes the start; once it lapses, B does and finishes.
    assert!(
        !store
            .claim_start(id, "B", now, now + START_LEASE)
            .await
            .unwrap()
    );
    let later = now + START_LEASE + Duration::seconds(1);
    let row = runner
        .run_start(id, &|| later, true, &|_| {})
        .await
        .unwrap();
    assert_eq!(row.status, StartStatus::Done);
    assert_eq!((row.processed, row.started), (1200, 1200));

    // A, back from the dead, finds its lease gone and writes nothing.
    let stale = store
        .run_start_batch(id, "A", now, now + START_LEASE, 500, &decide)
        .await
        .unwrap();
    assert!(stale.lease_lost);

    for n in 0..1200 {
        let got = messages_to(&store, n).await;
        assert_eq!(got.len(), 1, "caregiver {n}: {got:?}");
        assert!(got[0].contains("How was your work week"), "{got:?}");
    }
}

async fn a_stop_sent_while_a_start_is_under_way_is_honoured(store: AnyStore) {
    import(&store, &consenting(6, "America/Chicago")).await;
    let (catalog, _dir) = catalog(&[]);
    let runner = runner(&store, &catalog, 0).await;
    let now = at(15);
    let id = pulse_start_claimed_by_a(&store, &runner, now).await;
    let (flow, rev) = pulse_revision(&store, &catalog).await;
    let vars = BTreeMap::new();
    let decide = |s: &StartSnapshot| {
        runner.decide_start_target(&flow, rev, &vars, s, now, now + Duration::days(7))
    };
    // Batches of three: the second (caregivers 3 to 5) is read and decided while the first is
    // written, before caregiver 4 texts STOP.
    let first = store
        .run_start_batch(id, "A", now, now + START_LEASE, 3, &decide)
        .await
        .unwrap();
    assert_eq!(first.handled, 3);
    store
        .set_consent(&sms(4), ConsentStatus::OptedOut, "keyword", "STOP", now)
        .await
        .unwrap();
    let second = store
        .run_start_batch(id, "A", now, now + START_LEASE, 3, &decide)
        .await
        .unwrap();
    assert_eq!(second.handled, 3);

    assert!(messages_to(&store, 4).await.is_empty());
    for n in [0, 1, 2, 3, 5] {
        assert_eq!(messages_to(&store, n).await.len(), 1, "caregiver {n}");
    }
    let row = store.start_row(id).await.unwrap().unwrap();
    assert_eq!((row.processed, row.started), (6, 5));
    assert_eq!(row.skipped, BTreeMap::from([("opted out".to_owned(), 1)]));
}

async fn a_start_counts_what_it_skipped_by_reason(store: AnyStore) {
    let mut rows = consenting(6, "America/Chicago");
    rows[1].consent_at = None; // no consent
    import(&store, &rows).await;
    store
        .set_consent(&sms(2), ConsentStatus::OptedOut, "keyword", "STOP", at(9))
        .await
        .unwrap();
    store
        .deactivate_caregivers_except(
            &rows[..5]
                .iter()
                .map(|r| r.external_id.clone())
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let (catalog, _dir) = catalog(&[]);
    let runner = runner(&store, &catalog, 0).await;
    let busy = runner
        .start(
            "training-nudge",
            &Audience::Phones(vec![phone(3)]),
            BTreeMap::new(),
            at(10),
        )
        .await
        .unwrap();
    assert_eq!(busy.started, 1);

    let report = runner
        .start("weekly-pulse", &Audience::All, BTreeMap::new(), at(15))
        .await
        .unwrap();
    assert_eq!(report.started, 2, "{report:?}"); // caregivers 0 and 4; 5 is inactive
    assert_eq!(
        report.skipped,
        skipped(&[
            ("no consent", 1),
            ("opted out", 1),
            ("already in a conversation", 1)
        ])
    );
    assert!(messages_to(&store, 5).await.is_empty());
    assert!(messages_to(&store, 1).await.is_empty());
}

async fn a_rerun_of_the_same_start_resumes_it(store: AnyStore) {
    import(&store, &consenting(30, "America/Chicago")).await;
    let (catalog, _dir) = catalog(&[]);
    let runner = runner(&store, &catalog, 0).await;
    let now = at(15);
    let first = pulse_start(&runner, now).await;
    // What `carebot start` does on a re-run: the unfinished start is found, not a new one.
    let found = store
        .unfinished_start("weekly-pulse", &Audience::All, &BTreeMap::new(), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, first);
    let other_vars = BTreeMap::from([("x".to_owned(), serde_json::json!("y"))]);
    assert!(
        store
            .unfinished_start("weekly-pulse", &Audience::All, &other_vars, now)
            .await
            .unwrap()
            .is_none()
    );
    let row = runner
        .run_start(first, &|| now, true, &|_| {})
        .await
        .unwrap();
    assert_eq!(row.started, 30);
    assert!(
        store
            .unfinished_start("weekly-pulse", &Audience::All, &BTreeMap::new(), now)
            .await
            .unwrap()
            .is_none()
    );
}

// ---------------------------------------------------------------------------------------------
// Contact pressure

async fn the_weekly_cap_skips_or_waits_and_priority_goes_first(store: AnyStore) {
    import(&store, &consenting(1, "America/Chicago")).await;
    let survey = quick_flow("quick-survey", "survey", "");
    let shift = quick_flow("quick-shift", "shift", "");
    let training = quick_flow("quick-training", "training", "when_capped: wait");
    let (catalog, _dir) = catalog(&[
        ("quick-survey", &survey),
        ("quick-shift", &shift),
        ("quick-training", &training),
    ]);
    let runner = runner(&store, &catalog, 2).await;
    let me = Audience::Phones(vec![phone(0)]);
    let t0 = at(15);

    // Slot 1 of 2.
    let r = runner
        .start("quick-survey", &me, BTreeMap::new(), t0)
        .await
        .unwrap();
    assert_eq!(r.started, 1);
    // The opt-in request is never counted nor capped.
    let welcome = runner
        .start("welcome", &me, BTreeMap::new(), t0 + Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(welcome.started, 1);
    // STOP ends the opt-in conversation; START brings consent back.
    runner
        .handle_inbound(&inbound(
            &sms(0),
            "STOP",
            "stop-1",
            t0 + Duration::minutes(2),
        ))
        .await
        .unwrap();
    store
        .set_consent(&sms(0), ConsentStatus::OptedIn, "keyword", "START", t0)
        .await
        .unwrap();

    // One slot left, two starts due at once: the shift offer (higher priority) takes it,
    // though the survey was asked for first.
    let t1 = t0 + Duration::hours(1);
    for flow in ["quick-survey", "quick-shift"] {
        runner
            .create_start(flow, &me, None, BTreeMap::new(), t1, StartOrigin::Cli, None)
            .await
            .unwrap();
    }
    runner.run_due_starts(t1).await.unwrap();
    let starts = store.list_starts(true).await.unwrap();
    let by_flow = |flow: &str| {
        starts
            .iter()
            .filter(|s| s.flow_id == flow)
            .max_by_key(|s| s.id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_flow("quick-shift").started, 1);
    assert_eq!(by_flow("quick-survey").started, 0);
    assert_eq!(
        by_flow("quick-survey").skipped,
        BTreeMap::from([("capped".to_owned(), 1)])
    );

    // A flow that waits: capped now, started when the first survey leaves the week.
    let t2 = t0 + Duration::days(2);
    let report = runner
        .start("quick-training", &me, BTreeMap::new(), t2)
        .await
        .unwrap();
    assert_eq!((report.started, report.waiting), (0, 1), "{report:?}");
    assert_eq!(
        carebot::cli::describe_start(&report),
        "started 0, skipped 1 (no consent: 0, opted out: 0, already in a conversation: 0, \
         capped: 1, inactive: 0)"
    );
    let before = messages_to(&store, 0).await.len();
    runner.run_due_starts(t0 + Duration::days(6)).await.unwrap();
    assert_eq!(messages_to(&store, 0).await.len(), before);
    let free = t0 + Duration::days(7) + Duration::minutes(1);
    runner.run_due_starts(free).await.unwrap();
    assert_eq!(messages_to(&store, 0).await.len(), before + 1);
    let row = store.start_row(report.id.unwrap()).await.unwrap().unwrap();
    assert_eq!(
        (row.started, row.waiting, row.status),
        (1, 0, StartStatus::Done)
    );
}

// ---------------------------------------------------------------------------------------------
// Training assignments

async fn training_import_drives_the_flow_and_done_is_not_nudged_again(store: AnyStore) {
    import(&store, &consenting(2, "America/Chicago")).await;
    let (catalog, _dir) = catalog(&[]);
    let runner = runner(&store, &catalog, 0).await;
    let csv = "external_id,module,link,due_date\n\
               cg00000,Infection control,https://learn.example.org/ic,2025-03-20\n\
               cg00001,Infection control,https://learn.example.org/ic,2025-03-20\n\
               nobody,Infection control,https://learn.example.org/ic,2025-03-20\n\
               cg00000,Lifting,learn.example.org/lift,2025-03-20\n\
               cg00001,Lifting,https://learn.example.org/lift,next week\n\
               cg00000,Infection control,https://learn.example.org/ic2,2025-03-21\n";
    let summary = roster::import_training(&store, csv.as_bytes(), "training-nudge", at(14))
        .await
        .unwrap();
    assert_eq!(
        summary.to_string(),
        "added 2, updated 0, unchanged 0, deactivated 0, rejected 4"
    );
    let lines: Vec<u64> = summary.rejected.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [4, 5, 6, 7], "{:?}", summary.rejected);
    assert!(
        summary.rejected[0]
            .1
            .contains("not a caregiver on the roster")
    );
    assert!(summary.rejected[1].1.contains("not a web address"));
    assert!(summary.rejected[2].1.contains("not a date"));
    assert!(summary.rejected[3].1.contains("already on line 2"));

    let now = at(15);
    assert_eq!(runner.run_training(now).await.unwrap(), 2);
    let first = messages_to(&store, 0).await;
    assert_eq!(first.len(), 1);
    assert!(
        first[0].contains("Infection control")
            && first[0].contains("https://learn.example.org/ic")
            && first[0].contains("2025-03-20"),
        "{first:?}"
    );
    // Nothing more to start: both are running.
    assert_eq!(runner.run_training(now).await.unwrap(), 0);

    // Caregiver 0 finishes; a re-import of the same file changes nothing.
    runner
        .handle_inbound(&inbound(&sms(0), "done", "in-1", now + Duration::hours(1)))
        .await
        .unwrap();
    let again = roster::import_training(&store, csv.as_bytes(), "training-nudge", at(16))
        .await
        .unwrap();
    assert_eq!((again.added, again.unchanged), (0, 2));
    runner.run_training(now + Duration::hours(2)).await.unwrap();
    let rows = store.training_assignments().await.unwrap();
    let status: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.caregiver.as_str(), r.status.as_str()))
        .collect();
    assert_eq!(status, [("cg00000", "done"), ("cg00001", "started")]);

    // A new due date for a module already done updates the record and nudges nobody.
    let moved = "external_id,module,link,due_date\n\
                 cg00000,Infection control,https://learn.example.org/ic,2025-04-30\n";
    let s = roster::import_training(&store, moved.as_bytes(), "training-nudge", at(17))
        .await
        .unwrap();
    assert_eq!(s.updated, 1);
    let sent = messages_to(&store, 0).await.len();
    runner.run_training(now + Duration::days(1)).await.unwrap();
    assert_eq!(messages_to(&store, 0).await.len(), sent);
    assert_eq!(
        store.training_assignments().await.unwrap()[0].status,
        "done"
    );
}

// ---------------------------------------------------------------------------------------------
// The scheduler on a clock the test moves

/// Ticks the scheduler every `step` from `from` to `to` (inclusive).
async fn tick_through(
    scheduler: &Scheduler<AnyStore>,
    clock: &Clock,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    step: Duration,
) {
    let mut t = from;
    while t <= to {
        clock.set(t);
        scheduler.tick().await.unwrap();
        t += step;
    }
}

async fn recurring_starts_run_at_ten_on_each_caregivers_clock_and_never_twice(store: AnyStore) {
    let mut rows = consenting(2, "America/Chicago");
    rows[1].timezone = "America/New_York".into();
    import(&store, &rows).await;
    let (catalog, _dir) = catalog(&[]); // weekly-pulse: "0 10 * * 5", all
    let runner = runner(&store, &catalog, 0).await;
    let clock = Clock::frozen(Utc.with_ymd_and_hms(2025, 3, 5, 12, 0, 0).unwrap());
    let scheduler = Scheduler::new(runner.clone(), clock.clone());
    scheduler.tick().await.unwrap();

    // Friday 2025-03-07, standard time: 10:00 in New York is 15:00 UTC, in Chicago 16:00.
    let friday = |h, m| Utc.with_ymd_and_hms(2025, 3, 7, h, m, 0).unwrap();
    tick_through(
        &scheduler,
        &clock,
        friday(14, 0),
        friday(14, 59),
        Duration::minutes(1),
    )
    .await;
    assert!(messages_to(&store, 0).await.is_empty());
    assert!(messages_to(&store, 1).await.is_empty());
    tick_through(
        &scheduler,
        &clock,
        friday(15, 0),
        friday(15, 59),
        Duration::minutes(1),
    )
    .await;
    assert!(
        messages_to(&store, 0).await.is_empty(),
        "Chicago is at 9:00"
    );
    assert_eq!(
        messages_to(&store, 1).await.len(),
        1,
        "New York is at 10:00"
    );
    tick_through(
        &scheduler,
        &clock,
        friday(16, 0),
        friday(18, 0),
        Duration::minutes(1),
    )
    .await;
    assert_eq!(messages_to(&store, 0).await.len(), 1);
    assert_eq!(messages_to(&store, 1).await.len(), 1);

    // A restart (a new scheduler on the same database) repeats nothing.
    let restarted = Scheduler::new(runner.clone(), clock.clone());
    tick_through(
        &restarted,
        &clock,
        friday(18, 0),
        friday(20, 0),
        Duration::minutes(10),
    )
    .await;
    assert_eq!(messages_to(&store, 0).await.len(), 1);

    // Down over the next Friday 10:00 and back on Friday afternoon: the missed run happens
    // once; the week after runs as usual. Last week's conversations expired meanwhile.
    let next_friday = friday(20, 0) + Duration::days(7);
    tick_through(
        &restarted,
        &clock,
        next_friday,
        next_friday,
        Duration::minutes(1),
    )
    .await;
    assert_eq!(
        messages_to(&store, 0).await.len(),
        3,
        "score + no-answer note + new score"
    );
    let starts = store.list_starts(true).await.unwrap();
    assert_eq!(
        starts
            .iter()
            .filter(|s| s.origin == StartOrigin::Schedule)
            .count(),
        4,
        "{starts:?}"
    );
}

fn chicago(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    chrono_tz::America::Chicago
        .with_ymd_and_hms(y, m, d, h, min, 0)
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

/// The instants a scheduled flow's runs were recorded for.
async fn runs_of(store: &AnyStore, flow: &str) -> Vec<DateTime<Utc>> {
    let mut runs: Vec<_> = store
        .list_starts(true)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.flow_id == flow)
        .map(|s| s.run_at)
        .collect();
    runs.sort();
    runs
}

async fn a_0130_schedule_runs_once_when_clocks_go_back(store: AnyStore) {
    import(&store, &consenting(1, "America/Chicago")).await;
    let nightly = quick_flow(
        "nightly",
        "survey",
        "schedule: { cron: \"30 1 * * *\", to: all }",
    );
    let (catalog, _dir) = catalog(&[("nightly", &nightly)]);
    let runner = runner(&store, &catalog, 0).await;
    let clock = Clock::frozen(chicago(2025, 11, 1, 12, 0));
    let scheduler = Scheduler::new(runner, clock.clone());
    // Sunday 2025-11-02: at 02:00 CDT clocks go back to 01:00 CST; 01:30 happens twice.
    tick_through(
        &scheduler,
        &clock,
        chicago(2025, 11, 1, 12, 0),
        chicago(2025, 11, 3, 12, 0),
        Duration::minutes(10),
    )
    .await;
    assert_eq!(
        runs_of(&store, "nightly").await,
        [
            Utc.with_ymd_and_hms(2025, 11, 2, 6, 30, 0).unwrap(), // 01:30 CDT, the first
            Utc.with_ymd_and_hms(2025, 11, 3, 7, 30, 0).unwrap(), // 01:30 CST
        ]
    );
    assert_eq!(messages_to(&store, 0).await.len(), 2);
}

async fn a_0230_schedule_still_runs_when_clocks_go_forward(store: AnyStore) {
    import(&store, &consenting(1, "America/Chicago")).await;
    let early = quick_flow(
        "early",
        "survey",
        "schedule: { cron: \"30 2 * * *\", to: all }",
    );
    let (catalog, _dir) = catalog(&[("early", &early)]);
    let runner = runner(&store, &catalog, 0).await;
    let clock = Clock::frozen(chicago(2025, 3, 8, 12, 0));
    let scheduler = Scheduler::new(runner, clock.clone());
    // Sunday 2025-03-09: at 02:00 CST clocks go forward to 03:00 CDT; 02:30 never happens.
    tick_through(
        &scheduler,
        &clock,
        chicago(2025, 3, 8, 12, 0),
        chicago(2025, 3, 10, 12, 0),
        Duration::minutes(10),
    )
    .await;
    assert_eq!(
        runs_of(&store, "early").await,
        [
            Utc.with_ymd_and_hms(2025, 3, 9, 8, 0, 0).unwrap(), // 03:00 CDT, end of the gap
            Utc.with_ymd_and_hms(2025, 3, 10, 7, 30, 0).unwrap(), // 02:30 CDT
        ]
    );
    assert_eq!(messages_to(&store, 0).await.len(), 2);
}

async fn a_start_at_a_later_time_runs_when_it_is_due(store: AnyStore) {
    let mut rows = consenting(2, "America/Chicago");
    rows[1].timezone = "America/New_York".into();
    import(&store, &rows).await;
    let (catalog, _dir) = catalog(&[]);
    let runner = runner(&store, &catalog, 0).await;
    // `--at "2025-03-04 09:00"`: nine o'clock on each caregiver's clock, one start per zone.
    let local = NaiveDate::from_ymd_opt(2025, 3, 4)
        .unwrap()
        .and_hms_opt(9, 0, 0)
        .unwrap();
    for zone in store.caregiver_timezones().await.unwrap() {
        let run_at = carebot::cli::local_instant(local, zone.parse().unwrap());
        runner
            .create_start(
                "weekly-pulse",
                &Audience::All,
                Some(zone),
                BTreeMap::new(),
                run_at,
                StartOrigin::Cli,
                None,
            )
            .await
            .unwrap();
    }
    let clock = Clock::frozen(Utc.with_ymd_and_hms(2025, 3, 4, 13, 59, 0).unwrap());
    let scheduler = Scheduler::new(runner, clock.clone());
    scheduler.tick().await.unwrap();
    assert!(messages_to(&store, 1).await.is_empty());
    clock.set(Utc.with_ymd_and_hms(2025, 3, 4, 14, 0, 0).unwrap()); // 09:00 EST
    scheduler.tick().await.unwrap();
    assert_eq!(messages_to(&store, 1).await.len(), 1);
    assert!(messages_to(&store, 0).await.is_empty());
    clock.set(Utc.with_ymd_and_hms(2025, 3, 4, 15, 0, 0).unwrap()); // 09:00 CST
    scheduler.tick().await.unwrap();
    scheduler.tick().await.unwrap();
    assert_eq!(messages_to(&store, 0).await.len(), 1);
    assert_eq!(messages_to(&store, 1).await.len(), 1);
    assert!(store.list_starts(false).await.unwrap().is_empty());
}

async fn schedule_rows_follow_new_time_zones_and_removed_schedules(store: AnyStore) {
    import(&store, &consenting(1, "America/Chicago")).await;
    let (catalog, _dir) = catalog(&[]);
    let runner = runner(&store, &catalog, 0).await;
    let clock = Clock::frozen(at(12));
    let scheduler = Scheduler::new(runner, clock.clone());
    scheduler.tick().await.unwrap();
    let zones = |rows: Vec<carebot::model::ScheduleRow>| {
        rows.into_iter()
            .map(|r| (r.flow_id, r.timezone))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        zones(store.schedules().await.unwrap()),
        [("weekly-pulse".to_owned(), "America/Chicago".to_owned())]
    );
    let mut la = caregiver("la", 77);
    la.timezone = "America/Los_Angeles".into();
    store.upsert_caregivers(&[la]).await.unwrap();
    clock.advance(Duration::minutes(2));
    scheduler.tick().await.unwrap();
    assert_eq!(store.schedules().await.unwrap().len(), 2);

    // A catalog without the schedule drops its rows.
    let unscheduled = std::fs::read_to_string(root().join("flows/weekly-pulse.yaml"))
        .unwrap()
        .replace("schedule:\n  cron: \"0 10 * * 5\"             # Fridays 10:00, caregiver's local time\n  to: all\n", "");
    let (without, _dir2) = self::catalog(&[("weekly-pulse", &unscheduled)]);
    assert!(without.get("weekly-pulse").unwrap().flow.schedule.is_none());
    let runner = Arc::new(
        Runner::new(store.clone(), without, RunnerSettings::default())
            .await
            .unwrap(),
    );
    Scheduler::new(runner, clock.clone()).tick().await.unwrap();
    assert!(store.schedules().await.unwrap().is_empty());
}
