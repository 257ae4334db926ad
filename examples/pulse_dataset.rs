//! Writes a realistic data set for `carebot report pulse`: N caregivers (default 5,000) in ten
//! branches of three states, their supervisors, branch contacts and program staff, and W weeks
//! (default 8) of the shipped weekly pulse survey, run through the real runner on a clock this
//! program moves: Friday starts, replies over the weekend (some never answer), reminders and
//! expiries, alerts raised and routed, supervisors replying ACK/CALL/DONE after a while (some
//! never, so the follow-up clock raises them), and daily digests.
//!
//! ```sh
//! cargo run --release --example pulse_dataset -- sqlite:///tmp/pulse.db
//! carebot --database-url sqlite:///tmp/pulse.db report pulse --by branch --until 2026-11-20
//! ```
//!
//! With `--bulk-answers N` it instead adds N synthetic answers straight into the database (to
//! check that `carebot export answers` streams a million rows in flat memory).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use carebot::catalog::Catalog;
use carebot::config::RunnerSettings;
use carebot::domain::{Address, Channel, Lang};
use carebot::model::{Audience, CaregiverRecord, Inbound, Plan, SupervisorRecord, Write};
use carebot::runner::Runner;
use carebot::store::{AnyStore, Store};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// (branch, state, how likely its caregivers answer, their mean week score)
const BRANCHES: [(&str, &str, f64, f64); 10] = [
    ("Chicago North", "IL", 0.78, 3.9),
    ("Chicago South", "IL", 0.66, 3.4),
    ("Peoria", "IL", 0.71, 3.7),
    ("Springfield", "IL", 0.59, 3.2),
    ("New Orleans", "LA", 0.64, 3.3),
    ("Baton Rouge", "LA", 0.69, 3.6),
    ("Shreveport", "LA", 0.52, 2.9),
    ("Charlotte", "NC", 0.74, 3.8),
    ("Raleigh", "NC", 0.70, 3.5),
    ("Asheville", "NC", 0.61, 3.1),
];

const HELP: [&str; 6] = [
    "More hours please",
    "Better pay for travel time",
    "A schedule I know a week ahead",
    "Nothing, all good",
    "Training on lifting",
    "My client's son yells at me and I feel unsafe",
];

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// A scheduler tick (hourly): timers, the follow-up clock, digests.
    Tick,
    /// Someone texts in.
    Text { from: String, body: String },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let url = args
        .iter()
        .find(|a| a.starts_with("sqlite:") || a.starts_with("postgres"))
        .cloned()
        .unwrap_or_else(|| "sqlite:///tmp/carebot-pulse.db".into());
    let store = AnyStore::connect(&url).await?;
    store.migrate().await?;
    if let Some(n) = flag("--bulk-answers") {
        return bulk_answers(&url, n.parse()?).await;
    }
    let caregivers: usize = flag("--caregivers").map_or(Ok(5000), |n| n.parse())?;
    let weeks: i64 = flag("--weeks").map_or(Ok(8), |n| n.parse())?;
    let seed: u64 = flag("--seed").map_or(Ok(7), |n| n.parse())?;
    // The last Friday before today, 10:00 in Chicago.
    let last_friday: NaiveDate = flag("--last-friday")
        .map_or(Ok(NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()), |d| {
            d.parse()
        })?;
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();

    // The roster: a supervisor per 125 caregivers, a contact per branch, two program staff.
    let mut supervisors = Vec::new();
    let mut phone_of: HashMap<String, String> = HashMap::new();
    let sup_count = caregivers.div_ceil(125).max(BRANCHES.len());
    for n in 0..sup_count + BRANCHES.len() + 2 {
        let (id, branch) = if n < sup_count {
            (
                format!("S{n:03}"),
                BRANCHES[n % BRANCHES.len()].0.to_owned(),
            )
        } else if n < sup_count + BRANCHES.len() {
            (
                format!("B{:02}", n - sup_count),
                BRANCHES[n - sup_count].0.to_owned(),
            )
        } else {
            (
                format!("P{}", n - sup_count - BRANCHES.len()),
                "Program".to_owned(),
            )
        };
        let phone = format!("+1{:03}{:07}", 201 + (n % 700), 2_000_000 + n);
        phone_of.insert(id.clone(), phone.clone());
        supervisors.push(SupervisorRecord {
            external_id: id,
            name: format!("Supervisor {n}"),
            phone,
            email: format!("s{n}@agency.example"),
            branch,
            timezone: "America/Chicago".into(),
        });
    }
    store.upsert_supervisors(&supervisors).await?;
    let mut records = Vec::with_capacity(caregivers);
    for n in 0..caregivers {
        let b = n % BRANCHES.len();
        let sup = (n / BRANCHES.len()) % (sup_count / BRANCHES.len()).max(1) * BRANCHES.len() + b;
        records.push(CaregiverRecord {
            external_id: format!("C{n:06}"),
            first_name: [
                "Maria",
                "Ana",
                "Rosa",
                "Keisha",
                "Linda",
                "Tamika",
                "Guadalupe",
                "Brenda",
            ][n % 8]
                .into(),
            last_name: ["Gonzalez", "Lopez", "Smith", "Johnson", "Williams", "Brown"][n % 6].into(),
            phone: format!("+1{:03}{:07}", 302 + (n % 600), 3_000_000 + n),
            language: if n % 3 == 0 { Lang::Es } else { Lang::En },
            timezone: "America/Chicago".into(),
            branch: BRANCHES[b].0.into(),
            supervisor_id: Some(format!("S{:03}", sup.min(sup_count - 1))),
            groups: vec!["pulse".into()],
            consent_at: Some(NaiveDate::from_ymd_opt(2026, 1, 15).unwrap()),
        });
    }
    for chunk in records.chunks(5000) {
        store.upsert_caregivers(chunk).await?;
    }
    // Each caregiver's state, as the benefits screener would have set it.
    let by_phone: HashMap<String, usize> = records
        .iter()
        .enumerate()
        .map(|(n, r)| (r.phone.clone(), n % BRANCHES.len()))
        .collect();
    let addresses: Vec<Address> = records
        .iter()
        .map(|r| Address::new(Channel::Sms, r.phone.clone()))
        .collect();
    for chunk in addresses.chunks(1000) {
        store
            .handle_addresses(chunk, Utc::now(), &|snap| {
                let b = by_phone[&snap.address.value];
                Ok(Plan {
                    writes: vec![Write::CaregiverFields {
                        fields: [("state".to_owned(), json!(BRANCHES[b].1))].into(),
                        tags: vec![],
                    }],
                })
            })
            .await?;
    }
    eprintln!(
        "roster: {caregivers} caregivers, {} supervisors and contacts ({:.1}s)",
        supervisors.len(),
        started.elapsed().as_secs_f64()
    );

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (catalog, _) = Catalog::load(&root.join("flows"), &root.join("templates"))
        .map_err(|r| anyhow::anyhow!("catalog: {} errors", r.errors()))?;
    let mut settings = RunnerSettings::default();
    settings.escalation.branch_contacts = BRANCHES
        .iter()
        .enumerate()
        .map(|(i, (b, ..))| ((*b).to_owned(), format!("B{i:02}")))
        .collect();
    settings.escalation.program_staff = vec!["P0".into(), "P1".into()];
    let runner = Runner::new(store.clone(), Arc::new(catalog), settings).await?;
    let sup_phones: BTreeMap<String, String> = phone_of.clone().into_iter().collect();

    let mut seen_escalation = 0i64;
    let mut inbound_n = 0u64;
    for week in (0..weeks).rev() {
        let friday = last_friday - Duration::weeks(week);
        let start: DateTime<Utc> = friday.and_hms_opt(16, 0, 0).unwrap().and_utc();
        let report = runner
            .start("weekly-pulse", &Audience::All, BTreeMap::new(), start)
            .await?;
        // This week's texts and ticks, in time order.
        let mut queue: BinaryHeap<Reverse<(DateTime<Utc>, Event)>> = BinaryHeap::new();
        let week_drift = rng.random_range(-0.06..0.06);
        for (n, r) in records.iter().enumerate() {
            let (_, _, rate, mean) = BRANCHES[n % BRANCHES.len()];
            if !rng.random_bool((rate + week_drift).clamp(0.05, 0.95)) {
                continue;
            }
            let score = (mean + week_drift * 4.0 + rng.random_range(-1.6..1.6))
                .round()
                .clamp(1.0, 5.0) as i64;
            // Most answer within hours; some the next day, after the reminder.
            let delay = if rng.random_bool(0.8) {
                Duration::minutes(rng.random_range(1..600))
            } else {
                Duration::minutes(rng.random_range(1500..4000))
            };
            let at = start + delay;
            let mut push = |at: DateTime<Utc>, body: String| {
                queue.push(Reverse((
                    at,
                    Event::Text {
                        from: r.phone.clone(),
                        body,
                    },
                )));
            };
            push(at, score.to_string());
            if rng.random_bool(0.9) {
                let stay = ["1", "1", "1", "2", "3"][rng.random_range(0..5)];
                push(at + Duration::minutes(2), stay.into());
                if rng.random_bool(0.8) {
                    let help = if rng.random_bool(0.03) {
                        5
                    } else {
                        rng.random_range(0..5)
                    };
                    push(at + Duration::minutes(5), HELP[help].into());
                }
            }
        }
        let mut t = start;
        while t <= start + Duration::days(7) - Duration::hours(1) {
            t += Duration::hours(1);
            queue.push(Reverse((t, Event::Tick)));
        }
        while let Some(Reverse((at, event))) = queue.pop() {
            match event {
                Event::Text { from, body } => {
                    inbound_n += 1;
                    runner
                        .handle_inbound(&Inbound {
                            address: Address::new(Channel::Sms, from),
                            text: body,
                            external_id: format!("SM{inbound_n:030}"),
                            received_at: at,
                        })
                        .await?;
                }
                Event::Tick => {
                    runner.run_due(at).await?;
                    runner.run_due_escalations(at).await?;
                    runner.send_digests(at).await?;
                    // Supervisors answer the alerts routed since the last tick: most within
                    // hours, some only the next day, one in ten never (the clock raises it).
                    let mut fresh = Vec::new();
                    store
                        .export_escalations(
                            None,
                            Some(at.date_naive() - Duration::days(1)),
                            &mut |e| {
                                if e.id > seen_escalation {
                                    fresh.push(e);
                                }
                                Ok(())
                            },
                        )
                        .await?;
                    for e in fresh {
                        seen_escalation = seen_escalation.max(e.id);
                        let Some(sup) = e.supervisor.as_ref().and_then(|s| sup_phones.get(s))
                        else {
                            continue;
                        };
                        let roll: f64 = rng.random();
                        let (who, after) = if roll < 0.55 {
                            (sup.clone(), Duration::minutes(rng.random_range(5..110)))
                        } else if roll < 0.8 {
                            (sup.clone(), Duration::minutes(rng.random_range(120..1800)))
                        } else if roll < 0.9 {
                            // Re-escalated to the branch contact, who takes it.
                            let branch = BRANCHES
                                .iter()
                                .position(|(b, ..)| e.message.contains(b))
                                .unwrap_or(0);
                            (
                                sup_phones[&format!("B{branch:02}")].clone(),
                                Duration::minutes(rng.random_range(130..300)),
                            )
                        } else {
                            continue;
                        };
                        let command = if rng.random_bool(0.3) { "CALL" } else { "ACK" };
                        queue.push(Reverse((
                            at + after,
                            Event::Text {
                                from: who.clone(),
                                body: format!("{command} {}", e.id),
                            },
                        )));
                        if rng.random_bool(0.75) {
                            let done = at + after + Duration::minutes(rng.random_range(30..2880));
                            queue.push(Reverse((
                                done,
                                Event::Text {
                                    from: who,
                                    body: format!("DONE {} talked it through", e.id),
                                },
                            )));
                        }
                    }
                }
            }
        }
        eprintln!(
            "week of {friday}: started {}, {} inbound so far, {} escalations so far ({:.1}s)",
            report.started,
            inbound_n,
            seen_escalation,
            started.elapsed().as_secs_f64()
        );
    }
    eprintln!(
        "done in {:.1}s: carebot --database-url {url} report pulse --by branch --until {last_friday}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Adds `n` synthetic named answers in one statement, for the export's memory check.
async fn bulk_answers(url: &str, n: u64) -> anyhow::Result<()> {
    use sqlx::Connection;
    let started = Instant::now();
    let sqlite = "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < $1) \
                  INSERT INTO answers (conversation_id, caregiver_id, flow_id, step, key, value, raw, \
                  anonymous, answered_at) \
                  SELECT NULL, NULL, 'bulk', 'score', 'score', CAST(i % 5 + 1 AS TEXT), \
                  'my answer number ' || i, 0, '2026-11-20T16:00:00.000000Z' FROM seq";
    let postgres = "INSERT INTO answers (conversation_id, caregiver_id, flow_id, step, key, value, \
                    raw, anonymous, answered_at) \
                    SELECT NULL, NULL, 'bulk', 'score', 'score', (i % 5 + 1)::text, \
                    'my answer number ' || i, FALSE, TIMESTAMPTZ '2026-11-20 16:00:00Z' \
                    FROM generate_series(1, $1) AS i";
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        sqlx::query(sqlite)
            .bind(n as i64)
            .execute(&mut conn)
            .await?;
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::query(postgres)
            .bind(n as i64)
            .execute(&mut conn)
            .await?;
    }
    eprintln!(
        "added {n} answers in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
