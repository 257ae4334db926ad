//! An anonymous answer that would raise an alert first asks the caregiver whether their
//! supervisor may know, and alerts only on a yes. Pure engine: no runtime, no IO.

use std::collections::BTreeMap;

use carebot::domain::{Lang, Priority};
use carebot::flow::Flow;
use carebot::flow::engine::{self, Event, Input, Outcome, Person, State, Transition};
use chrono::{DateTime, Duration, Utc};

const FEEDBACK: &str = r#"
id: feedback
name: Feedback
version: 1
steps:
  - id: mood
    ask: feedback/mood
    expect: { scale: { min: 1, max: 5 } }
    anonymous: true
    wait: { expire_after: 48h }
    escalate:
      - if: "answer == 1"
        priority: high
        template: alerts/low
        reason: very low mood
        when_taken_up: feedback/taken_up
      - if: "answer <= 2"
        priority: normal
        template: alerts/low
        reason: low mood
    branch:
      - if: "answer <= 2"
        goto: sorry
  - id: more
    ask: feedback/more
    expect: text
    anonymous: true
    escalate:
      - words: worrying
        priority: high
        template: alerts/words
        reason: worrying words
        ask_first: feedback/may_we_tell
    next: end
  - id: sorry
    send: feedback/sorry
    next: more
"#;

fn flow() -> Flow {
    Flow::parse("feedback.yaml", FEEDBACK).unwrap().0
}

fn person() -> Person {
    Person {
        first_name: "Maria".into(),
        language: Lang::En,
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
        .to_utc()
}

fn sent(t: &Transition) -> Vec<&str> {
    t.events
        .iter()
        .filter_map(|e| match e {
            Event::Send { template, .. } => Some(template.as_str()),
            _ => None,
        })
        .collect()
}

fn alerts(t: &Transition) -> Vec<(Priority, &str, bool, Option<&str>)> {
    t.events
        .iter()
        .filter_map(|e| match e {
            Event::Escalate {
                priority,
                reason,
                consented,
                when_taken_up,
                ..
            } => Some((
                *priority,
                reason.as_str(),
                *consented,
                when_taken_up.as_deref(),
            )),
            _ => None,
        })
        .collect()
}

fn reply(flow: &Flow, state: &State, text: &str, at: DateTime<Utc>) -> Transition {
    engine::resume(flow, state, &person(), Input::Reply(text), at).unwrap()
}

/// Starts the flow and answers the mood question with 1.
fn answered_one(flow: &Flow) -> Transition {
    let t = engine::start(flow, &person(), BTreeMap::new(), t0()).unwrap();
    reply(flow, t.state.as_ref().unwrap(), "1", t0())
}

#[test]
fn an_anonymous_answer_that_would_alert_asks_first_and_raises_nothing_yet() {
    let flow = flow();
    let t = answered_one(&flow);
    assert!(alerts(&t).is_empty(), "{:?}", t.events);
    assert_eq!(sent(&t), ["system/escalation_consent"]);
    // The answer itself is recorded, anonymously.
    assert!(t.events.iter().any(|e| matches!(
        e,
        Event::Answer {
            anonymous: true,
            ..
        }
    )));
    let state = t.state.unwrap();
    assert_eq!(state.step, "mood");
    assert_eq!(state.consent.as_ref().unwrap().escalations.len(), 2);
    // The question waits as long as the one it follows (48h), and reminds no one.
    assert_eq!(state.expire_at, Some(t0() + Duration::hours(48)));
    assert_eq!(state.remind_at, None);
}

#[test]
fn a_yes_raises_every_waiting_alert_then_the_flow_goes_on_where_the_answer_led() {
    let flow = flow();
    let t = answered_one(&flow);
    let t = reply(&flow, t.state.as_ref().unwrap(), "Sí", t0());
    assert_eq!(
        alerts(&t),
        [
            (
                Priority::High,
                "very low mood",
                true,
                Some("feedback/taken_up")
            ),
            (Priority::Normal, "low mood", true, None)
        ]
    );
    // Branched to `sorry` by the answer, then on to the next question.
    assert_eq!(sent(&t), ["feedback/sorry", "feedback/more"]);
    assert_eq!(t.state.unwrap().consent, None);
}

#[test]
fn a_no_raises_nothing_and_the_flow_goes_on() {
    let flow = flow();
    let t = answered_one(&flow);
    let t = reply(&flow, t.state.as_ref().unwrap(), "no", t0());
    assert!(alerts(&t).is_empty());
    assert_eq!(sent(&t), ["feedback/sorry", "feedback/more"]);
}

#[test]
fn a_reply_that_is_neither_gets_the_yes_no_hint_twice_then_counts_as_no() {
    let flow = flow();
    let mut t = answered_one(&flow);
    for _ in 0..2 {
        t = reply(&flow, t.state.as_ref().unwrap(), "what?", t0());
        assert_eq!(sent(&t), ["system/hint_yes_no"]);
        assert!(t.state.as_ref().unwrap().consent.is_some());
    }
    t = reply(&flow, t.state.as_ref().unwrap(), "hmm", t0());
    assert!(alerts(&t).is_empty());
    assert_eq!(sent(&t), ["feedback/sorry", "feedback/more"]);
}

#[test]
fn silence_is_a_no_and_the_conversation_ends() {
    let flow = flow();
    let t = answered_one(&flow);
    let state = t.state.unwrap();
    let at = state.wake_at().unwrap();
    assert_eq!(state.due(at), Some(Input::Expiry));
    let t = engine::resume(&flow, &state, &person(), Input::Expiry, at).unwrap();
    assert!(alerts(&t).is_empty());
    assert!(sent(&t).is_empty());
    assert!(t.events.contains(&Event::End {
        outcome: Outcome::Expired
    }));
    assert_eq!(t.state, None);
}

#[test]
fn a_rule_may_name_its_own_question_and_an_answer_with_no_alert_asks_nothing() {
    let flow = flow();
    let t = engine::start(&flow, &person(), BTreeMap::new(), t0()).unwrap();
    let t = reply(&flow, t.state.as_ref().unwrap(), "4", t0());
    assert_eq!(
        sent(&t),
        ["feedback/more"],
        "a good mood raises nothing to ask about"
    );
    let t = reply(
        &flow,
        t.state.as_ref().unwrap(),
        "I was hurt lifting him",
        t0(),
    );
    assert_eq!(sent(&t), ["feedback/may_we_tell"]);
    let t = reply(&flow, t.state.as_ref().unwrap(), "yes", t0());
    assert_eq!(alerts(&t), [(Priority::High, "worrying words", true, None)]);
    assert!(t.events.contains(&Event::End {
        outcome: Outcome::Completed
    }));
}

#[test]
fn a_state_saved_before_consent_existed_still_loads() {
    let old = serde_json::json!({
        "step": "mood", "attempts": 0, "reminders": 0, "answers": {}, "vars": {},
        "lang": "en", "remind_at": null, "expire_at": null
    });
    let state: State = serde_json::from_value(old).unwrap();
    assert_eq!(state.consent, None);
    assert!(!serde_json::to_string(&state).unwrap().contains("consent"));
}
