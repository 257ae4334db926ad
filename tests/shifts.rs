//! Shift offers against a real store (SQLite always, PostgreSQL when configured), through the
//! runner as the server and `carebot shifts` drive it: who is texted, the first YES wins once,
//! everyone after hears "already filled", codes, NO, waves and their ranking, expiry, quiet
//! hours for the supervisor's alerts, cancellation, overlapping shifts, and the CLI contract.

mod support;

use std::path::Path;
use std::sync::Arc;

use carebot::catalog::Catalog;
use carebot::cli::shifts::OfferArgs;
use carebot::config::RunnerSettings;
use carebot::domain::{Address, Channel};
use carebot::model::{Audience, CaregiverRecord, Inbound, OutboundStatus, ShiftStatus};
use carebot::runner::Runner;
use carebot::shifts::OfferReport;
use carebot::store::{AnyStore, Store};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use support::store_tests;

store_tests!(
    an_offer_goes_only_to_eligible_caregivers,
    the_first_yes_wins_and_everyone_after_hears_already_filled,
    a_yes_in_the_middle_of_a_survey_takes_the_shift_and_the_survey_waits,
    two_open_offers_carry_codes_and_a_bare_yes_asks_which,
    no_declines_and_a_change_of_mind_counts_while_open,
    waves_go_to_the_fewest_wins_first_and_the_next_comes_t_minutes_later,
    an_unfilled_offer_expires_the_supervisor_hears_at_once_and_a_late_yes_is_told,
    the_filled_alert_waits_for_the_supervisors_morning,
    cancelling_drops_queued_offer_texts_and_tells_whoever_took_it,
    nobody_takes_two_overlapping_shifts,
    fifty_simultaneous_yes_award_one_shift,
    offer_times_are_read_in_the_branch_time_zone,
);

/// Friday 2026-11-20, 10:00 in Chicago.
fn now() -> DateTime<Utc> {
    utc("2026-11-20T16:00:00Z")
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn catalog() -> Arc<Catalog> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    Arc::new(
        Catalog::load(&root.join("flows"), &root.join("templates"))
            .unwrap()
            .0,
    )
}

/// Supervisor S1 (Dana, branch "north", Chicago) and caregivers C1..Cn in group "float",
/// written consent on file.
async fn roster(store: &AnyStore, n: u32) -> Runner<AnyStore> {
    let mut dana = support::supervisor("S1", 1);
    dana.name = "Dana Smith".into();
    store.upsert_supervisors(&[dana]).await.unwrap();
    let people: Vec<CaregiverRecord> = (1..=n).map(|i| person(i, true)).collect();
    store.upsert_caregivers(&people).await.unwrap();
    Runner::new(store.clone(), catalog(), RunnerSettings::default())
        .await
        .unwrap()
}

fn person(i: u32, consent: bool) -> CaregiverRecord {
    let mut c = support::caregiver(&format!("C{i}"), i);
    c.first_name =
        ["Ana", "Maria", "Rosa", "Lucia", "Carmen", "Elena"][(i as usize - 1) % 6].into();
    c.supervisor_id = Some("S1".into());
    c.groups = vec!["float".into()];
    c.consent_at = consent.then(|| NaiveDate::from_ymd_opt(2026, 1, 15).unwrap());
    c
}

fn shift(start: &str, end: &str) -> OfferArgs {
    OfferArgs {
        client_ref: "CL-2291".into(),
        start: start.into(),
        end: end.into(),
        location: "Evanston, IL".into(),
        to: "group:float".into(),
        wave_minutes: 30,
        ..Default::default()
    }
}

async fn offer(runner: &Runner<AnyStore>, args: OfferArgs, at: DateTime<Utc>) -> OfferReport {
    runner
        .offer_shift(&args.request().unwrap(), at)
        .await
        .unwrap()
}

async fn say(runner: &Runner<AnyStore>, n: u32, text: &str, at: DateTime<Utc>) {
    let sid = format!("SM{}", rand::random::<u64>());
    runner
        .handle_inbound(&Inbound {
            address: support::sms(n),
            text: text.into(),
            external_id: sid,
            received_at: at,
        })
        .await
        .unwrap();
}

async fn texts(store: &AnyStore, n: u32) -> Vec<String> {
    store
        .outbound_to(&support::sms(n))
        .await
        .unwrap()
        .into_iter()
        .map(|(_, b)| b)
        .collect()
}

fn last(texts: &[String]) -> &str {
    texts.last().map(String::as_str).unwrap_or("")
}

fn dana() -> Address {
    Address::new(Channel::Sms, support::phone(9001))
}

async fn status(store: &AnyStore, id: i64) -> (ShiftStatus, Option<String>, u32, u32, u32) {
    let l = store
        .shift_offers(None)
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.offer.id == id)
        .unwrap();
    (l.offer.status, l.offer.filled_by, l.sent, l.yes, l.no)
}

async fn an_offer_goes_only_to_eligible_caregivers(store: AnyStore) {
    let runner = roster(&store, 3).await;
    // C4 has no written consent; C5 said STOP; C6 left the agency; C7 is in another group.
    let mut others = vec![
        person(4, false),
        person(5, true),
        person(6, true),
        person(7, true),
    ];
    others[3].groups = vec!["days".into()];
    store.upsert_caregivers(&others).await.unwrap();
    say(&runner, 5, "STOP", now()).await;
    store
        .deactivate_caregivers_except(&["C1", "C2", "C3", "C4", "C5", "C7"].map(String::from))
        .await
        .unwrap();
    // C3 already took a shift that overlaps.
    let early = offer(
        &runner,
        shift("2026-12-01 07:00", "2026-12-01 09:00"),
        now(),
    )
    .await;
    say(&runner, 3, "yes", now()).await;
    assert_eq!(
        status(&store, early.offer.id).await.1.as_deref(),
        Some("C3")
    );

    let r = offer(
        &runner,
        shift("2026-12-01 08:00", "2026-12-01 12:00"),
        now(),
    )
    .await;
    assert_eq!(r.wave.sent, 2, "{r:?}");
    assert_eq!(r.wave.skipped.get("no consent"), Some(&1));
    assert_eq!(r.wave.skipped.get("opted out"), Some(&1));
    assert_eq!(r.wave.skipped.get("overlapping shift"), Some(&1));
    assert_eq!(
        r.wave.skipped.values().sum::<usize>(),
        3,
        "C6 inactive, C7 not in the group"
    );
    for n in [1, 2] {
        assert_eq!(
            last(&texts(&store, n).await),
            "your agency: open shift Tue Dec 1, 8:00 AM-12:00 PM, Evanston, IL. \
             First to reply YES gets it. Reply NO to pass."
        );
    }
    assert_eq!(texts(&store, 4).await.len(), 0);
    assert_eq!(texts(&store, 6).await.len(), 0);
    assert_eq!(texts(&store, 7).await.len(), 0);
    assert_eq!(r.offer.status, ShiftStatus::Open);
    assert_eq!(r.offer.supervisor.as_ref().unwrap().external_id, "S1");
}

async fn the_first_yes_wins_and_everyone_after_hears_already_filled(store: AnyStore) {
    let runner = roster(&store, 3).await;
    let r = offer(
        &runner,
        shift("2026-12-01 08:00", "2026-12-01 12:00"),
        now(),
    )
    .await;
    say(&runner, 2, "Yes!", now() + Duration::seconds(5)).await;
    say(&runner, 1, "YES", now() + Duration::seconds(6)).await;
    say(&runner, 3, "sí", now() + Duration::seconds(7)).await;

    assert_eq!(
        last(&texts(&store, 2).await),
        "It's yours, Maria! Confirmed: Tue Dec 1, 8:00 AM-12:00 PM, Evanston, IL, client \
         CL-2291. Questions? Call the office."
    );
    for n in [1, 3] {
        assert!(
            last(&texts(&store, n).await)
                .contains("The shift Tue Dec 1, 8:00 AM was already filled"),
            "{:?}",
            texts(&store, n).await
        );
    }
    assert_eq!(
        status(&store, r.offer.id).await,
        (ShiftStatus::Filled, Some("C2".into()), 3, 3, 0)
    );
    assert_eq!(
        texts(&store, 9001).await,
        vec![format!(
            "Shift filled: Maria L. (C2) took client CL-2291, Tue Dec 1, 8:00 AM-12:00 PM, \
             Evanston, IL (offer {}).",
            r.offer.id
        )]
    );
    let listed = store.shift_offers(None).await.unwrap();
    assert_eq!(
        listed[0].offer.filled_at,
        Some(now() + Duration::seconds(5))
    );
}

async fn a_yes_in_the_middle_of_a_survey_takes_the_shift_and_the_survey_waits(store: AnyStore) {
    let runner = roster(&store, 1).await;
    let started = runner
        .start(
            "weekly-pulse",
            &Audience::Phones(vec![support::phone(1)]),
            Default::default(),
            now(),
        )
        .await
        .unwrap();
    assert_eq!(started.started, 1);
    offer(
        &runner,
        shift("2026-12-01 08:00", "2026-12-01 12:00"),
        now(),
    )
    .await;
    say(&runner, 1, "yes", now() + Duration::minutes(1)).await;
    assert!(last(&texts(&store, 1).await).starts_with("It's yours, Ana!"));
    // The survey still waits for its score, and takes the next answer.
    say(&runner, 1, "4", now() + Duration::minutes(2)).await;
    assert!(
        last(&texts(&store, 1).await).contains("6 months from now"),
        "{:?}",
        texts(&store, 1).await
    );
    let answers = store.answers(Some("weekly-pulse"), None).await.unwrap();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].answer, serde_json::json!(4));
}

async fn two_open_offers_carry_codes_and_a_bare_yes_asks_which(store: AnyStore) {
    let runner = roster(&store, 2).await;
    let a = offer(
        &runner,
        shift("2026-12-01 08:00", "2026-12-01 12:00"),
        now(),
    )
    .await;
    let mut second = shift("2026-12-02 14:00", "18:00");
    second.location = "Skokie, IL".into();
    let b = offer(&runner, second, now()).await;
    assert_ne!(a.offer.code, b.offer.code);
    let got = texts(&store, 1).await;
    assert!(
        !got[0].contains(&format!("YES {}", a.offer.code)),
        "one open offer: no code needed: {got:?}"
    );
    assert!(
        got[1].contains(&format!("First to reply YES {} gets it", b.offer.code)),
        "{got:?}"
    );
    say(&runner, 1, "YES", now()).await;
    assert_eq!(
        last(&texts(&store, 1).await),
        format!(
            "You have 2 open shifts. Reply YES and the number of the one you want: {} = Wed Dec \
             2, 2:00 PM, Skokie, IL; {} = Tue Dec 1, 8:00 AM, Evanston, IL",
            b.offer.code, a.offer.code
        )
    );
    assert_eq!(status(&store, a.offer.id).await.0, ShiftStatus::Open);
    say(&runner, 1, &format!("yes {}", b.offer.code), now()).await;
    assert!(last(&texts(&store, 1).await).contains("Wed Dec 2, 2:00 PM-6:00 PM, Skokie"));
    assert_eq!(status(&store, b.offer.id).await.1.as_deref(), Some("C1"));
    // Now only one is open for C1: a bare YES takes it.
    say(&runner, 1, "Y", now()).await;
    assert_eq!(status(&store, a.offer.id).await.1.as_deref(), Some("C1"));
    // A code nobody holds, from someone with nothing open, is not a shift answer.
    say(&runner, 2, "YES 77", now()).await;
    assert!(!last(&texts(&store, 2).await).starts_with("You have"));
}

async fn no_declines_and_a_change_of_mind_counts_while_open(store: AnyStore) {
    let runner = roster(&store, 2).await;
    let r = offer(
        &runner,
        shift("2026-12-01 08:00", "2026-12-01 12:00"),
        now(),
    )
    .await;
    say(&runner, 1, "No gracias", now()).await;
    assert_eq!(
        last(&texts(&store, 1).await),
        "OK, Ana, thanks for letting us know."
    );
    assert_eq!(status(&store, r.offer.id).await.4, 1);
    say(&runner, 1, "yes", now() + Duration::minutes(5)).await;
    assert!(last(&texts(&store, 1).await).starts_with("It's yours, Ana!"));
    let (st, by, _, yes, no) = status(&store, r.offer.id).await;
    assert_eq!(
        (st, by.as_deref(), yes, no),
        (ShiftStatus::Filled, Some("C1"), 1, 0)
    );
    // A NO from the winner is not a way to give the shift back.
    say(&runner, 1, "no", now() + Duration::minutes(6)).await;
    assert!(last(&texts(&store, 1).await).contains("is yours. If you can't make it, please call"));
    assert_eq!(status(&store, r.offer.id).await.1.as_deref(), Some("C1"));
}

async fn waves_go_to_the_fewest_wins_first_and_the_next_comes_t_minutes_later(store: AnyStore) {
    let runner = roster(&store, 4).await;
    // C1 won a shift this week, so goes last.
    offer(
        &runner,
        shift("2026-11-28 08:00", "2026-11-28 12:00"),
        now(),
    )
    .await;
    say(&runner, 1, "yes", now()).await;

    let mut args = shift("2026-12-01 08:00", "2026-12-01 12:00");
    args.wave_size = 1;
    args.wave_minutes = 30;
    let r = offer(&runner, args, now()).await;
    assert_eq!((r.wave.sent, r.wave.later), (1, 3));
    let offered = |n: u32| {
        let store = store.clone();
        async move {
            texts(&store, n)
                .await
                .iter()
                .any(|t| t.contains("open shift Tue Dec 1"))
        }
    };
    assert!(offered(2).await);
    assert_eq!(
        runner
            .run_due_shifts(now() + Duration::minutes(29))
            .await
            .unwrap(),
        0
    );
    assert!(!offered(3).await);
    assert_eq!(
        runner
            .run_due_shifts(now() + Duration::minutes(30))
            .await
            .unwrap(),
        1
    );
    assert!(offered(3).await && !offered(4).await);
    runner
        .run_due_shifts(now() + Duration::minutes(60))
        .await
        .unwrap();
    assert!(offered(4).await && !offered(1).await);
    runner
        .run_due_shifts(now() + Duration::minutes(90))
        .await
        .unwrap();
    assert!(offered(1).await);
    // Nobody left: no more waves.
    assert_eq!(
        runner
            .run_due_shifts(now() + Duration::minutes(200))
            .await
            .unwrap(),
        0
    );
    // A YES from the third wave wins; waves stop.
    say(&runner, 4, "yes", now() + Duration::minutes(95)).await;
    assert_eq!(status(&store, r.offer.id).await.1.as_deref(), Some("C4"));
}

async fn an_unfilled_offer_expires_the_supervisor_hears_at_once_and_a_late_yes_is_told(
    store: AnyStore,
) {
    let runner = roster(&store, 3).await;
    // 19:00 in Chicago; the deadline is 21:00, when Dana's window is closed.
    let evening = utc("2026-11-21T01:00:00Z");
    let mut args = shift("2026-12-01 08:00", "2026-12-01 12:00");
    args.expires = Some("2h".into());
    let r = offer(&runner, args, evening).await;
    assert_eq!(r.wave.sent, 3);
    say(&runner, 2, "no", evening + Duration::minutes(10)).await;
    assert_eq!(
        runner
            .run_due_shifts(evening + Duration::minutes(119))
            .await
            .unwrap(),
        0
    );
    let deadline = evening + Duration::hours(2);
    assert_eq!(runner.run_due_shifts(deadline).await.unwrap(), 1);
    assert_eq!(status(&store, r.offer.id).await.0, ShiftStatus::Expired);
    // Expiring twice (a second instance) does nothing.
    assert_eq!(runner.run_due_shifts(deadline).await.unwrap(), 0);
    let alert = format!(
        "ALERT (high): nobody took the shift for client CL-2291, Tue Dec 1, 8:00 AM-12:00 PM, \
         Evanston, IL (offer {}: texted to 3, 1 said no). Please arrange cover.",
        r.offer.id
    );
    assert_eq!(texts(&store, 9001).await, vec![alert.clone()]);
    // High priority: it is due now, at 21:00, not at 08:00 tomorrow.
    let due = store
        .claim_outbound(Channel::Sms, deadline, 500)
        .await
        .unwrap();
    assert!(due.iter().any(|m| m.body == alert), "{due:?}");

    say(&runner, 1, "YES", deadline + Duration::minutes(5)).await;
    assert_eq!(
        last(&texts(&store, 1).await),
        "Sorry, Ana, the shift Tue Dec 1, 8:00 AM is no longer available. Thank you for answering."
    );
    assert_eq!(status(&store, r.offer.id).await.0, ShiftStatus::Expired);
}

async fn the_filled_alert_waits_for_the_supervisors_morning(store: AnyStore) {
    let runner = roster(&store, 1).await;
    // 19:00 in Chicago: the offer goes out; the YES comes at 20:30, after Dana's window.
    let evening = utc("2026-11-21T01:00:00Z");
    offer(
        &runner,
        shift("2026-12-01 08:00", "2026-12-01 12:00"),
        evening,
    )
    .await;
    say(&runner, 1, "yes", evening + Duration::minutes(90)).await;
    assert!(last(&texts(&store, 1).await).starts_with("It's yours"));
    let tonight = store
        .claim_outbound(Channel::Sms, evening + Duration::minutes(91), 500)
        .await
        .unwrap();
    assert!(
        tonight.iter().all(|m| m.address != dana()),
        "good news waits for the morning"
    );
    let morning = store
        .claim_outbound(Channel::Sms, utc("2026-11-21T14:00:00Z"), 500)
        .await
        .unwrap();
    assert_eq!(morning.iter().filter(|m| m.address == dana()).count(), 1);
}

async fn cancelling_drops_queued_offer_texts_and_tells_whoever_took_it(store: AnyStore) {
    let runner = roster(&store, 2).await;
    // 21:00 in Chicago: the texts wait for 08:00.
    let night = utc("2026-11-21T03:00:00Z");
    let r = offer(
        &runner,
        shift("2026-12-01 08:00", "2026-12-01 12:00"),
        night,
    )
    .await;
    assert_eq!(r.wave.sent, 2);
    assert_eq!(
        runner.cancel_shift(r.offer.id, night).await.unwrap(),
        ShiftStatus::Open
    );
    for n in [1, 2] {
        let queued = store.outbound_to(&support::sms(n)).await.unwrap();
        assert_eq!(queued[0].0, OutboundStatus::Suppressed, "{queued:?}");
    }
    assert!(runner.cancel_shift(r.offer.id, night).await.is_err());

    let taken = offer(
        &runner,
        shift("2026-12-02 08:00", "2026-12-02 12:00"),
        now(),
    )
    .await;
    say(&runner, 2, "yes", now()).await;
    assert_eq!(
        runner.cancel_shift(taken.offer.id, now()).await.unwrap(),
        ShiftStatus::Filled
    );
    let (st, by, ..) = status(&store, taken.offer.id).await;
    assert_eq!((st, by.as_deref()), (ShiftStatus::Cancelled, Some("C2")));
    assert_eq!(
        last(&texts(&store, 2).await),
        "Sorry, Maria: the shift Wed Dec 2, 8:00 AM-12:00 PM, Evanston, IL was cancelled. You \
         don't need to go. Questions? Call the office."
    );
}

async fn nobody_takes_two_overlapping_shifts(store: AnyStore) {
    let runner = roster(&store, 1).await;
    let a = offer(
        &runner,
        shift("2026-12-01 08:00", "2026-12-01 12:00"),
        now(),
    )
    .await;
    let b = offer(
        &runner,
        shift("2026-12-01 11:00", "2026-12-01 15:00"),
        now(),
    )
    .await;
    say(&runner, 1, &format!("YES {}", a.offer.code), now()).await;
    say(&runner, 1, &format!("YES {}", b.offer.code), now()).await;
    assert_eq!(
        last(&texts(&store, 1).await),
        "Thanks, Ana, but you already have a shift that overlaps Tue Dec 1, 11:00 AM-3:00 PM, so \
         this one can't be yours."
    );
    assert_eq!(status(&store, b.offer.id).await.0, ShiftStatus::Open);
    // And a new overlapping offer does not go to her at all.
    let c = offer(
        &runner,
        shift("2026-12-01 09:00", "2026-12-01 10:00"),
        now(),
    )
    .await;
    assert_eq!(c.wave.skipped.get("overlapping shift"), Some(&1));
}

async fn fifty_simultaneous_yes_award_one_shift(store: AnyStore) {
    let runner = Arc::new(roster(&store, 50).await);
    let r = offer(
        &runner,
        shift("2026-12-01 08:00", "2026-12-01 12:00"),
        now(),
    )
    .await;
    assert_eq!(r.wave.sent, 50);
    let tasks: Vec<_> = (1..=50)
        .map(|n| {
            let runner = runner.clone();
            tokio::spawn(async move { say(&runner, n, "YES", now()).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (st, by, sent, yes, _) = status(&store, r.offer.id).await;
    assert_eq!((st, sent, yes), (ShiftStatus::Filled, 50, 50));
    let mut won = 0;
    let mut filled = 0;
    for n in 1..=50 {
        let t = last(&texts(&store, n).await).to_owned();
        if t.starts_with("It's yours") {
            won += 1;
            assert_eq!(by.as_deref(), Some(format!("C{n}").as_str()));
        } else if t.contains("was already filled") {
            filled += 1;
        }
    }
    assert_eq!((won, filled), (1, 49));
    assert_eq!(
        texts(&store, 9001).await.len(),
        1,
        "one alert to the supervisor"
    );
}

async fn offer_times_are_read_in_the_branch_time_zone(store: AnyStore) {
    // The branch's supervisor is in Denver; a caregiver lives in Chicago.
    let mut sup = support::supervisor("S1", 1);
    sup.timezone = "America/Denver".into();
    store.upsert_supervisors(&[sup]).await.unwrap();
    store.upsert_caregivers(&[person(1, true)]).await.unwrap();
    let runner = Runner::new(store.clone(), catalog(), RunnerSettings::default())
        .await
        .unwrap();
    let mut args = shift("2026-12-01 08:00", "12:00");
    args.to = "branch:north".into();
    let r = offer(&runner, args, now()).await;
    assert_eq!(r.offer.timezone, "America/Denver");
    assert_eq!(r.offer.starts_at, utc("2026-12-01T15:00:00Z"));
    assert_eq!(r.offer.ends_at, utc("2026-12-01T19:00:00Z"));
    assert_eq!(r.offer.expires_at, r.offer.starts_at);
    assert!(
        last(&texts(&store, 1).await).contains("Tue Dec 1, 8:00 AM-12:00 PM (MST)"),
        "{:?}",
        texts(&store, 1).await
    );
    // Mistakes are refused with a reason.
    for (start, end, why) in [
        ("2026-11-01 08:00", "12:00", "already passed"),
        ("2026-12-01 08:00", "2026-12-01 07:00", "after --start"),
        ("tomorrow", "12:00", "must look like"),
    ] {
        let mut bad = shift(start, end);
        bad.to = "branch:north".into();
        // What is wrong with the words is found at the edge; the rest by the runner.
        let err = match bad.request() {
            Err(e) => e,
            Ok(request) => runner
                .offer_shift(&request, now())
                .await
                .unwrap_err()
                .to_string(),
        };
        assert!(err.contains(why), "{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// The command line: what operators and scripts rely on.

fn carebot(args: &[&str], db: &str) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_carebot"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATABASE_URL", db)
        .env("CAREBOT_SEND_WINDOW", "00:00-24:00")
        .output()
        .expect("run carebot");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_prints_the_offer_id_last_and_lists_json() {
    let db = support::sqlite().await;
    roster(&db.store, 2).await;
    let (ok, out, err) = carebot(
        &[
            "shifts",
            "offer",
            "--client",
            "CL-9",
            "--start",
            "2031-06-02 08:00",
            "--end",
            "12:00",
            "--where",
            "Evanston, IL",
            "--to",
            "group:float",
            "--notes",
            "Hoyer lift",
        ],
        &db.url,
    );
    assert!(ok, "{out}{err}");
    let id: i64 = out
        .trim_end()
        .lines()
        .last()
        .unwrap()
        .parse()
        .expect("the id alone");
    assert!(out.contains("wave 1: texted 2"), "{out}");

    let (ok, out, _) = carebot(&["shifts", "list", "--json"], &db.url);
    assert!(ok);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["status"], "open");
    assert_eq!(list[0]["filled_by"], serde_json::Value::Null);
    assert_eq!(list[0]["filled_at"], serde_json::Value::Null);
    assert_eq!(list[0]["sent"], 2);

    // C1 takes it (as the server would), then the list says so.
    let runner = Runner::new(db.store.clone(), catalog(), RunnerSettings::default())
        .await
        .unwrap();
    say(&runner, 1, "yes", Utc::now()).await;
    let (_, out, _) = carebot(&["shifts", "list", "--json"], &db.url);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["status"], "filled");
    assert_eq!(list[0]["filled_by"], "C1");
    assert!(list[0]["filled_at"].is_string());

    let (ok, out, _) = carebot(&["shifts", "list"], &db.url);
    assert!(
        ok && out.contains("0 open, 1 filled, 0 expired, 0 cancelled"),
        "{out}"
    );
    let (ok, out, _) = carebot(&["shifts", "cancel", &id.to_string()], &db.url);
    assert!(ok && out.contains("cancelled (it was filled)"), "{out}");
    let (ok, _, err) = carebot(&["shifts", "cancel", &id.to_string()], &db.url);
    assert!(!ok && err.contains("cannot be cancelled"), "{err}");
    let (ok, _, err) = carebot(
        &[
            "shifts",
            "offer",
            "--client",
            "X",
            "--start",
            "2031-06-02 08:00",
            "--end",
            "12:00",
            "--where",
            "X",
            "--to",
            "nobody",
        ],
        &db.url,
    );
    assert!(!ok && err.contains("audience"), "{err}");
}
