//! The engine as a caregiver meets it: start, answers that fit and answers that don't, branches,
//! escalations the moment an answer is recorded, reminders and expiry. Pure: no runtime, no IO.

use std::collections::BTreeMap;

use carebot::domain::{Lang, Priority};
use carebot::flow::Flow;
use carebot::flow::engine::{self, Event, Input, Outcome, Person};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

const PULSE: &str = r#"
id: pulse
name: Pulse
version: 1
steps:
  - id: score
    ask: pulse/score
    expect: { scale: { min: 1, max: 5 } }
    save_as: week_score
    retries: 1
    hint: pulse/score-hint
    fallback: bye
    wait: { remind_after: 24h, expire_after: 72h, on_expire: expired }
    escalate:
      - if: "answer <= 2"
        priority: high
        template: alerts/low
        reason: low week score
    branch:
      - if: "answer <= 2"
        goto: sorry
  - id: help
    ask: pulse/help
    expect: text
    set: { last_help: "answer" }
    tag: [answered]
    escalate:
      - words: worrying
        priority: high
        template: alerts/words
        reason: worrying words
    next: bye
  - id: sorry
    send: pulse/sorry
    next: help
  - id: bye
    send: pulse/bye
    next: end
  - id: expired
    send: pulse/expired
"#;

fn person() -> Person {
    Person {
        first_name: "Maria".into(),
        language: Lang::Es,
        branch: "North".into(),
        timezone: "America/Chicago".into(),
        groups: vec![],
        fields: BTreeMap::new(),
        tags: vec![],
    }
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T16:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn flow() -> Flow {
    Flow::parse("pulse.yaml", PULSE).expect("valid flow").0
}

fn sent(events: &[Event]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Send { template, .. } => Some(template.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn starting_asks_the_first_question_with_buttons_and_timers() {
    let f = flow();
    let t = engine::start(&f, &person(), BTreeMap::new(), t0()).unwrap();
    assert_eq!(sent(&t.events), vec!["pulse/score"]);
    let Event::Send { buttons, .. } = &t.events[0] else {
        panic!()
    };
    assert_eq!(buttons.len(), 5);
    let state = t.state.unwrap();
    assert_eq!(state.step, "score");
    assert_eq!(state.lang, Lang::Es);
    assert_eq!(state.remind_at, Some(t0() + Duration::hours(24)));
    assert_eq!(state.expire_at, Some(t0() + Duration::hours(72)));
}

#[test]
fn an_answer_that_does_not_fit_is_re_asked_then_falls_back() {
    let f = flow();
    let s = engine::start(&f, &person(), BTreeMap::new(), t0())
        .unwrap()
        .state
        .unwrap();
    let t = engine::resume(&f, &s, &person(), Input::Reply("seven"), t0()).unwrap();
    assert_eq!(sent(&t.events), vec!["pulse/score-hint"]);
    let s = t.state.unwrap();
    assert_eq!(s.attempts, 1);
    let t = engine::resume(&f, &s, &person(), Input::Reply("purple"), t0()).unwrap();
    assert_eq!(sent(&t.events), vec!["pulse/bye"]);
    assert!(t.state.is_none());
    assert!(t.events.contains(&Event::End {
        outcome: Outcome::Completed
    }));
}

#[test]
fn a_low_score_escalates_at_once_and_branches() {
    let f = flow();
    let s = engine::start(&f, &person(), BTreeMap::new(), t0())
        .unwrap()
        .state
        .unwrap();
    let t = engine::resume(&f, &s, &person(), Input::Reply("2"), t0()).unwrap();
    let kinds: Vec<String> = t
        .events
        .iter()
        .map(|e| {
            serde_json::to_value(e).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    // The escalation comes right after the answer, before anything else is sent.
    assert_eq!(kinds[..2], ["answer".to_owned(), "escalate".to_owned()]);
    assert!(
        matches!(&t.events[1], Event::Escalate { priority: Priority::High, answer, .. } if answer == "2")
    );
    assert_eq!(sent(&t.events), vec!["pulse/sorry", "pulse/help"]);
    assert_eq!(t.state.unwrap().answers["week_score"], Value::from(2));
}

#[test]
fn a_good_score_goes_straight_on_without_an_alert() {
    let f = flow();
    let s = engine::start(&f, &person(), BTreeMap::new(), t0())
        .unwrap()
        .state
        .unwrap();
    let t = engine::resume(&f, &s, &person(), Input::Reply("4"), t0()).unwrap();
    assert!(!t.events.iter().any(|e| matches!(e, Event::Escalate { .. })));
    assert_eq!(sent(&t.events), vec!["pulse/help"]);
}

#[test]
fn worrying_words_in_free_text_escalate_and_fields_are_set() {
    let f = flow();
    let s = engine::start(&f, &person(), BTreeMap::new(), t0())
        .unwrap()
        .state
        .unwrap();
    let s = engine::resume(&f, &s, &person(), Input::Reply("4"), t0())
        .unwrap()
        .state
        .unwrap();
    let t = engine::resume(
        &f,
        &s,
        &person(),
        Input::Reply("Me siento insegura en esa casa"),
        t0(),
    )
    .unwrap();
    assert!(
        t.events
            .iter()
            .any(|e| matches!(e, Event::Escalate { reason, .. } if reason == "worrying words"))
    );
    assert!(t.events.contains(&Event::SetField {
        name: "last_help".into(),
        value: Value::from("Me siento insegura en esa casa")
    }));
    let s2 = engine::start(&f, &person(), BTreeMap::new(), t0())
        .unwrap()
        .state
        .unwrap();
    let s2 = engine::resume(&f, &s2, &person(), Input::Reply("4"), t0())
        .unwrap()
        .state
        .unwrap();
    let calm = engine::resume(&f, &s2, &person(), Input::Reply("quite a good week"), t0()).unwrap();
    assert!(
        !calm
            .events
            .iter()
            .any(|e| matches!(e, Event::Escalate { .. }))
    );
}

#[test]
fn a_reminder_then_expiry_lead_to_the_declared_step() {
    let f = flow();
    let s = engine::start(&f, &person(), BTreeMap::new(), t0())
        .unwrap()
        .state
        .unwrap();
    let at = s.remind_at.unwrap();
    assert_eq!(s.due(at), Some(Input::Reminder));
    let t = engine::resume(&f, &s, &person(), Input::Reminder, at).unwrap();
    assert_eq!(sent(&t.events), vec!["pulse/score"]);
    assert!(matches!(
        t.events[0],
        Event::Send {
            unprompted: true,
            ..
        }
    ));
    let s = t.state.unwrap();
    assert_eq!(s.remind_at, None, "one reminder was declared");
    let at = s.expire_at.unwrap();
    assert_eq!(s.due(at), Some(Input::Expiry));
    let t = engine::resume(&f, &s, &person(), Input::Expiry, at).unwrap();
    assert_eq!(sent(&t.events), vec!["pulse/expired"]);
    assert!(t.events.contains(&Event::End {
        outcome: Outcome::Expired
    }));
}

#[test]
fn a_loop_without_a_question_is_an_error_not_a_hang() {
    let src = "id: l\nname: L\nversion: 1\nsteps:\n  - id: a\n    send: x/a\n    next: b\n  - id: b\n    send: x/b\n    next: a\n";
    let f = Flow::parse("l.yaml", src).unwrap().0;
    assert!(matches!(
        engine::start(&f, &person(), BTreeMap::new(), t0()),
        Err(engine::EngineError::Loop(_))
    ));
}

#[test]
fn expire_at_a_date_means_the_end_of_that_day_where_the_caregiver_lives() {
    let src = "id: t\nname: T\nversion: 1\nvars: { due_date: \"2026-12-01\" }\nsteps:\n  - id: done\n    ask: t/done\n    expect: { keyword: { en: [done] } }\n    wait: { expire_at: \"vars.due_date\" }\n";
    let f = Flow::parse("t.yaml", src).unwrap().0;
    let t = engine::start(&f, &person(), f.vars.clone(), t0()).unwrap();
    // 23:59:59 in Chicago on Dec 1 is 05:59:59 UTC on Dec 2.
    assert_eq!(
        t.state.unwrap().expire_at.unwrap().to_rfc3339(),
        "2026-12-02T05:59:59+00:00"
    );
}
