//! Shift offers end to end over real HTTP: the real server (webhooks, dispatcher, scheduler),
//! a fake Twilio, signed webhooks, on SQLite and on PostgreSQL. The race test sends 200
//! simultaneous YES to one offer, 100 offers in a row on one server per database, and checks
//! that every one of them had exactly one winner, 199 "already filled" replies and no error.

mod support;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::{Duration, Instant};

use carebot::domain::{Address, Channel};
use carebot::model::ShiftStatus;
use carebot::store::Store;
use sqlx::Connection as _;
use support::app::{TestApp, spawn_app};
use support::shift_race::{DANA, NAMES, RACERS, client, offer_args, phone, post, race, roster};
use support::{TestStore, app_tests};

app_tests!(db:
    an_offer_to_five_with_two_racing_yes,
    an_offer_expires_on_the_scheduler_clock_and_a_late_yes_is_told,
    two_hundred_simultaneous_yes_one_winner_a_hundred_times,
);

/// Waits (bounded) until the outbox holds a message to `to` that contains `needle`.
async fn queued(app: &TestApp, to: &str, needle: &str) -> String {
    for _ in 0..400 {
        let got = app
            .store()
            .outbound_to(&Address::new(Channel::Sms, to))
            .await
            .unwrap();
        if let Some((_, body)) = got.iter().find(|(_, b)| b.contains(needle)) {
            return body.clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no message to {to} containing {needle:?}");
}

async fn an_offer_to_five_with_two_racing_yes(db: TestStore) {
    let app = spawn_app(db).await;
    roster(&app, 5).await;
    let mut transcript: Vec<String> = Vec::new();
    let report = app
        .runner
        .offer_shift(&offer_args(0, None).request().unwrap(), chrono::Utc::now())
        .await
        .unwrap();
    transcript.push(format!(
        "operator$ carebot shifts offer --client CL-2291 --start \"2031-01-01 08:00\" --end 12:00 \
         --where \"Evanston, IL\" --to group:float\n{}",
        carebot::cli::shifts::describe_offer(&report)
    ));
    assert_eq!(report.wave.sent, 5);
    for i in 1..=5 {
        app.twilio.wait_for(&phone(i), 1).await;
    }

    // Lucia passes; then Maria and Rosa answer at the same moment; Carmen is a little late.
    let client = reqwest::Client::new();
    let lucia = phone(4);
    assert_eq!(post(&client, &app.url, &lucia, "no", "SM-lucia").await, 200);
    app.twilio.wait_for(&lucia, 2).await;
    let (p2, p3) = (phone(2), phone(3));
    let (maria, rosa) = tokio::join!(
        post(&client, &app.url, &p2, "YES", "SM-maria"),
        post(&client, &app.url, &p3, "Yes!", "SM-rosa"),
    );
    assert_eq!((maria, rosa), (200, 200));
    let carmen = phone(5);
    assert_eq!(
        post(&client, &app.url, &carmen, "yes", "SM-carmen").await,
        200
    );
    for i in 2..=5 {
        app.twilio.wait_for(&phone(i), 2).await;
    }
    app.twilio.wait_for(DANA, 1).await;

    let listed = app.store().shift_offers(None).await.unwrap();
    let offer = &listed[0].offer;
    assert_eq!(offer.status, ShiftStatus::Filled);
    let winner = offer.filled_by.clone().unwrap();
    assert!(winner == "C2" || winner == "C3", "{winner}");
    let (won, lost) = if winner == "C2" { (2, 3) } else { (3, 2) };
    assert!(app.twilio.delivered_to(&phone(won))[1].starts_with("It's yours"));
    assert!(app.twilio.delivered_to(&phone(lost))[1].contains("was already filled"));
    assert!(app.twilio.delivered_to(&phone(5))[1].contains("was already filled"));
    assert!(app.twilio.delivered_to(&phone(4))[1].starts_with("OK, Lucia"));
    assert_eq!(
        app.twilio.delivered_to(&phone(1)).len(),
        1,
        "Ana said nothing"
    );
    assert!(app.twilio.delivered_to(DANA)[0].starts_with(&format!(
        "Shift filled: {} L. ({winner}) took client CL-2291",
        NAMES[won as usize - 1]
    )));

    // The transcript, in the order Twilio was asked to send.
    let who = |to: &str| {
        (1..=5)
            .find(|i| phone(*i) == to)
            .map_or("Dana (supervisor)".to_owned(), |i| {
                NAMES[i as usize - 1].to_owned()
            })
    };
    let sent = app.twilio.delivered();
    for r in &sent[..5] {
        transcript.push(format!("carebot -> {}: {}", who(&r.to), r.body));
    }
    transcript.push("Lucia -> carebot: no".into());
    transcript.push(format!("carebot -> Lucia: {}", sent[5].body));
    transcript.push("Maria -> carebot: YES   (posted at the same moment as Rosa's)".into());
    transcript.push("Rosa -> carebot: Yes!".into());
    transcript.push("Carmen -> carebot: yes   (after the race)".into());
    for r in &sent[6..] {
        transcript.push(format!("carebot -> {}: {}", who(&r.to), r.body));
    }
    let list = app.store().shift_offers(None).await.unwrap();
    let rows: Vec<carebot::cli::shifts::ListedShift<'_>> = list.iter().map(Into::into).collect();
    transcript.push(format!(
        "operator$ carebot shifts list --json\n{}",
        serde_json::to_string_pretty(&rows).unwrap()
    ));
    let _ = writeln!(
        std::io::stderr(),
        "\n== transcript ({}) ==\n{}\n",
        if app.db.url.starts_with("sqlite") {
            "SQLite"
        } else {
            "PostgreSQL"
        },
        transcript.join("\n")
    );
    app.stop().await;
}

async fn an_offer_expires_on_the_scheduler_clock_and_a_late_yes_is_told(db: TestStore) {
    let app = spawn_app(db).await;
    let clock = app.clock.clone();
    roster(&app, 3).await;
    let report = app
        .runner
        .offer_shift(&offer_args(0, Some("1h")).request().unwrap(), clock.now())
        .await
        .unwrap();
    for i in 1..=3 {
        app.twilio.wait_for(&phone(i), 1).await;
    }
    // An hour and a minute later, on the server's clock: the scheduler expires the offer and
    // queues the supervisor's alert at once.
    clock.advance(chrono::Duration::minutes(61));
    let alert = queued(&app, DANA, "nobody took the shift").await;
    assert_eq!(
        alert,
        format!(
            "ALERT (high): nobody took the shift for client CL-2291, Wed Jan 1, 8:00 AM-12:00 PM, \
             Evanston, IL (offer {}: texted to 3, 0 said no). Please arrange cover.",
            report.offer.id
        )
    );
    let listed = app.store().shift_offers(None).await.unwrap();
    assert_eq!(listed[0].offer.status, ShiftStatus::Expired);
    let client = reqwest::Client::new();
    assert_eq!(
        post(&client, &app.url, &phone(1), "YES", "SM-late").await,
        200
    );
    let got = app.twilio.wait_for(&phone(1), 2).await;
    assert_eq!(
        got[1],
        "Sorry, Ana, the shift Wed Jan 1, 8:00 AM is no longer available. Thank you for answering."
    );
    app.stop().await;
}

/// Counts of one database's race run.
#[derive(Debug, Default)]
struct Tally {
    offers: usize,
    yes_posted: usize,
    http_200: usize,
    other_status: BTreeMap<u16, usize>,
    winners: usize,
    already_filled: usize,
    alerts: usize,
    double_awards: usize,
    race_ms: Vec<u128>,
}

/// Direct reads for the checks: what was queued since `after`, and the recorded outcomes.
enum Db {
    Sqlite(sqlx::SqliteConnection),
    Pg(sqlx::PgConnection),
}

impl Db {
    async fn open(url: &str) -> Db {
        if url.starts_with("sqlite") {
            Db::Sqlite(sqlx::SqliteConnection::connect(url).await.unwrap())
        } else {
            Db::Pg(sqlx::PgConnection::connect(url).await.unwrap())
        }
    }

    async fn max_outbound(&mut self) -> i64 {
        let sql = "SELECT COALESCE(MAX(id), 0) FROM outbound_messages";
        match self {
            Db::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(c).await.unwrap(),
            Db::Pg(c) => sqlx::query_scalar(sql).fetch_one(c).await.unwrap(),
        }
    }

    async fn queued_since(&mut self, after: i64) -> Vec<(String, String)> {
        let sql = "SELECT kind, body FROM outbound_messages WHERE id > $1 AND kind <> 'program' \
                   ORDER BY id";
        match self {
            Db::Sqlite(c) => sqlx::query_as(sql).bind(after).fetch_all(c).await.unwrap(),
            Db::Pg(c) => sqlx::query_as(sql).bind(after).fetch_all(c).await.unwrap(),
        }
    }

    async fn outcomes(&mut self, offer: i64) -> BTreeMap<String, i64> {
        let sql = "SELECT COALESCE(outcome, '-'), COUNT(*) FROM shift_offer_recipients \
                   WHERE offer_id = $1 GROUP BY outcome";
        let rows: Vec<(String, i64)> = match self {
            Db::Sqlite(c) => sqlx::query_as(sql).bind(offer).fetch_all(c).await.unwrap(),
            Db::Pg(c) => sqlx::query_as(sql).bind(offer).fetch_all(c).await.unwrap(),
        };
        rows.into_iter().collect()
    }
}

const ROUNDS: u32 = 100;

async fn two_hundred_simultaneous_yes_one_winner_a_hundred_times(db: TestStore) {
    let name = if db.url.starts_with("sqlite") {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    let app = spawn_app(db).await;
    roster(&app, RACERS).await;
    let mut check = Db::open(&app.db.url).await;
    let client = client();
    let mut t = Tally::default();
    let test_started = Instant::now();
    for round in 0..ROUNDS {
        let before = check.max_outbound().await;
        let r = race(&app, &client, round).await;
        assert_eq!(r.offered, RACERS as usize, "round {round}");
        let offer_id = r.offer_id;
        for status in r.statuses {
            t.yes_posted += 1;
            if status == 200 {
                t.http_200 += 1;
            } else {
                *t.other_status.entry(status).or_default() += 1;
            }
        }
        t.race_ms.push(r.elapsed.as_millis());
        t.offers += 1;

        // Every answer is queued by the time its webhook returned 200.
        let mut won = 0;
        let mut filled = 0;
        for (kind, body) in check.queued_since(before).await {
            match kind.as_str() {
                "reply" if body.starts_with("It's yours") => won += 1,
                "reply" if body.contains("was already filled") => filled += 1,
                "alert" if body.starts_with("Shift filled:") => t.alerts += 1,
                _ => panic!("round {round}: unexpected {kind} {body:?}"),
            }
        }
        let outcomes = check.outcomes(offer_id).await;
        let recorded_wins = outcomes.get("won").copied().unwrap_or(0);
        if won > 1 || recorded_wins > 1 {
            t.double_awards += 1;
        }
        assert_eq!((won, filled), (1, RACERS as usize - 1), "round {round}");
        assert_eq!(recorded_wins, 1, "round {round}: {outcomes:?}");
        assert_eq!(outcomes.get("filled").copied(), Some(i64::from(RACERS) - 1));
        t.winners += won;
        t.already_filled += filled;
    }
    let mut sorted = t.race_ms.clone();
    sorted.sort_unstable();
    let summary = format!(
        "{name}: {} offers x {RACERS} simultaneous YES = {} webhooks: {} answered 200, other \
         statuses {:?}; {} winners, {} \"already filled\", {} supervisor alerts, {} double \
         awards; race (all {RACERS} answers queued) median {} ms, max {} ms (debug build); \
         test {:.1} s",
        t.offers,
        t.yes_posted,
        t.http_200,
        t.other_status,
        t.winners,
        t.already_filled,
        t.alerts,
        t.double_awards,
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
        test_started.elapsed().as_secs_f64(),
    );
    let _ = writeln!(std::io::stderr(), "{summary}");
    assert_eq!(t.http_200, (ROUNDS * RACERS) as usize, "{summary}");
    assert_eq!(t.winners, ROUNDS as usize, "{summary}");
    assert_eq!(t.double_awards, 0, "{summary}");
    app.stop().await;
}
