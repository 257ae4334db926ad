//! Issue 16, "a caregiver's words are never mistaken for STOP": how [`consent::read`] takes
//! real-looking messages, English and Spanish, with and without a question waiting for an
//! answer. Each row is what the caregiver would live through: an opt-out at once, the answer
//! kept (and a question "do you want to stop?" or not), or only that question. Then the same
//! through the runner and a real store (SQLite always, PostgreSQL when configured): what is
//! stored, what consent is on record, and what the caregiver is sent.

mod support;

use std::path::Path;
use std::sync::Arc;

use carebot::catalog::Catalog;
use carebot::config::RunnerSettings;
use carebot::consent::{self, Keyword, Reading};
use carebot::domain::{Address, Channel, Lang};
use carebot::model::{Audience, CaregiverRecord, ConsentStatus};
use carebot::runner::Runner;
use carebot::store::{AnyStore, Store};
use chrono::{DateTime, Utc};
use serde_json::Value;
use support::store_tests;

store_tests!(
    answers_that_hold_a_stop_word_are_stored_and_nobody_is_opted_out,
    a_request_to_stop_that_answers_a_question_is_stored_then_asked_about,
    an_answer_that_asks_to_stop_still_raises_its_escalation,
    a_plain_spanish_request_with_nothing_waiting_opts_out_at_once_in_spanish,
    a_stop_word_with_nothing_waiting_gets_the_question_and_no_opt_out,
);

/// A question is waiting (the caregiver is in a conversation) or not.
const ASKED: bool = true;
const IDLE: bool = false;

use Reading::{AnswerAndConfirm, Confirm, Ordinary, StopNow};
const STOP: Reading = Reading::Keyword(Keyword::OptOut);
const START: Reading = Reading::Keyword(Keyword::OptIn);
const HELP: Reading = Reading::Keyword(Keyword::Help);

#[rustfmt::skip]
const CASES: &[(&str, bool, Reading)] = &[
    // Survey answers that hold a stop word as an ordinary word: the answer, never an opt-out.
    ("La paga es baja", ASKED, Ordinary),
    ("la paga es muy baja", ASKED, Ordinary),
    ("estrés muy alto", ASKED, Ordinary),
    ("El estrés está alto", ASKED, Ordinary),
    ("mi supervisora es muy alta", ASKED, Ordinary),
    ("la baja por maternidad", ASKED, Ordinary),
    ("Necesito la baja médica", ASKED, Ordinary),
    ("el precio de la gasolina está alto y la paga baja", ASKED, Ordinary),
    ("tuve que cancelar dos visitas", ASKED, Ordinary),
    ("no puedo parar de pensar en mi cliente", ASKED, Ordinary),
    ("I have to cancel", ASKED, Ordinary),
    ("need to cancel Friday", ASKED, Ordinary),
    ("Cancel my shift tomorrow", ASKED, Ordinary),
    ("at the end of the day it's fine", ASKED, Ordinary),
    ("I quit", ASKED, Ordinary),
    ("I might quit soon", ASKED, Ordinary),
    ("the stress never stops", ASKED, Ordinary),
    ("I can't stop worrying about my client", ASKED, Ordinary),
    ("stop by the office more often", ASKED, Ordinary),
    ("more hours please", ASKED, Ordinary),
    ("my client won't stop yelling at me", ASKED, Ordinary),
    ("4", ASKED, Ordinary),
    // The same words with no question waiting: a short message is asked about, never stopped.
    ("La paga es baja", IDLE, Confirm),
    ("estrés muy alto", IDLE, Confirm),
    ("I have to cancel", IDLE, Confirm),
    ("need to cancel Friday", IDLE, Confirm),
    ("la baja por maternidad", IDLE, Confirm),
    ("stop it", IDLE, Confirm),
    ("I want to stop", IDLE, Confirm),
    // ...QUIT and END are about the job, a long story is not a request: as before.
    ("I quit", IDLE, Ordinary),
    ("at the end of the day it's fine", IDLE, Ordinary),
    ("I have to cancel my shift tomorrow because my daughter is sick", IDLE, Ordinary),
    ("the stress never stops", IDLE, Ordinary),
    ("hello, is this the agency?", IDLE, Ordinary),
    // Whole-message keywords: at once, question or not.
    ("STOP", ASKED, STOP),
    ("stop.", IDLE, STOP),
    ("Baja", ASKED, STOP),
    ("¡ALTO!", ASKED, STOP),
    ("cancel", ASKED, STOP),
    ("End", ASKED, STOP),
    ("Quit", IDLE, STOP),
    ("opt-out", ASKED, STOP),
    ("Unsubscribe", IDLE, STOP),
    ("START", IDLE, START),
    ("ayuda", ASKED, HELP),
    // Clear requests in plain words, nothing waiting: an opt-out at once (the FCC's
    // "any reasonable means").
    ("stop texting me", IDLE, StopNow),
    ("Stop texting me please", IDLE, StopNow),
    ("please stop", IDLE, StopNow),
    ("STOP PLEASE", IDLE, StopNow),
    ("Please cancel", IDLE, StopNow),
    ("Can you please stop sending me these messages? Thanks", IDLE, StopNow),
    ("unsubscribe me", IDLE, StopNow),
    ("I want to opt out", IDLE, StopNow),
    ("remove me from this list", IDLE, StopNow),
    ("Take me off your list", IDLE, StopNow),
    ("don't text me", IDLE, StopNow),
    ("Do not text me anymore", IDLE, StopNow),
    ("no more texts", IDLE, StopNow),
    ("I don't want these messages anymore", IDLE, StopNow),
    ("no me manden más mensajes", IDLE, StopNow),
    ("No me manden más, por favor", IDLE, StopNow),
    ("no me envíen más mensajes", IDLE, StopNow),
    ("no me escriban más", IDLE, StopNow),
    ("No más mensajes", IDLE, StopNow),
    ("ya no quiero recibir mensajes", IDLE, StopNow),
    ("Quiero darme de baja", IDLE, StopNow),
    ("dejen de mandarme mensajes", IDLE, StopNow),
    ("alto por favor", IDLE, StopNow),
    ("Bórrenme de la lista", IDLE, StopNow),
    ("sáquenme de su lista por favor", IDLE, StopNow),
    ("no quiero que me manden más mensajes", IDLE, StopNow),
    // The same requests while a question waits: the answer, and the question to confirm.
    ("stop texting me please", ASKED, AnswerAndConfirm),
    ("please stop", ASKED, AnswerAndConfirm),
    ("no más mensajes", ASKED, AnswerAndConfirm),
    ("no me manden más mensajes", ASKED, AnswerAndConfirm),
    ("ya no quiero recibir mensajes", ASKED, AnswerAndConfirm),
    ("unsubscribe me", ASKED, AnswerAndConfirm),
    ("Do not text me anymore", ASKED, AnswerAndConfirm),
    ("alto por favor", ASKED, AnswerAndConfirm),
    ("More pay. And stop texting me on Sundays", ASKED, AnswerAndConfirm),
    ("la paga es baja y no me manden más mensajes", ASKED, AnswerAndConfirm),
    // A request inside a longer message, nothing waiting: asked about, never stopped.
    ("I told you last week to stop texting me, I found another job", IDLE, Confirm),
    ("estoy cansada, no me manden más mensajes de la agencia", IDLE, Confirm),
    // Indicative, not a request: "they don't send me the schedule" is a complaint.
    ("no me mandan el horario", IDLE, Ordinary),
    ("no me mandan el horario", ASKED, Ordinary),
];

#[test]
fn every_message_gets_the_reading_its_row_expects() {
    assert!(CASES.len() >= 60, "{} rows", CASES.len());
    let wrong: Vec<String> = CASES
        .iter()
        .filter_map(|&(text, asked, expected)| {
            let got = consent::read(text, asked);
            (got != expected).then(|| {
                let when = if asked { "asked" } else { "idle" };
                format!("{text:?} ({when}): expected {expected:?}, got {got:?}")
            })
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_table_covers_both_languages_and_every_everyday_stop_word() {
    let folded: Vec<String> = CASES
        .iter()
        .map(|(text, _, _)| carebot::text::fold(text))
        .collect();
    let holds = |word: &str| {
        folded
            .iter()
            .filter(|t| carebot::text::words(t).iter().any(|w| w == word) && t.as_str() != word)
            .count()
    };
    for word in [
        "baja", "alto", "cancel", "end", "quit", "stop", "parar", "cancelar",
    ] {
        assert!(holds(word) > 0, "no sentence with {word:?}");
    }
    let spanish = CASES
        .iter()
        .filter(|(text, _, _)| consent::language(text) == Some("es"))
        .count();
    assert!(spanish >= 20, "{spanish} Spanish rows");
}

// ---------------------------------------------------------------------------------------------
// Through the runner

/// Ten in the morning in Chicago: nothing is held for quiet hours.
fn morning() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T16:00:00Z")
        .unwrap()
        .to_utc()
}

const ASKED_EN: &str = "Do you want to stop all messages from your agency? Reply STOP to confirm.";
const STOPPED_EN: &str =
    "You will get no more messages from your agency. Reply START to get them again.";
const STOPPED_ES: &str =
    "Ya no te enviaremos mensajes de your agency. Responde COMENZAR para recibirlos de nuevo.";

/// A caregiver with written consent on file, texting from `+1312555010n`.
async fn caregiver(store: &AnyStore, n: u32, language: Lang) -> Address {
    let phone = format!("+1312555010{n}");
    let rec = CaregiverRecord {
        external_id: format!("C{n}"),
        first_name: "Maria".into(),
        last_name: "Gonzalez".into(),
        phone: phone.clone(),
        language,
        timezone: "America/Chicago".into(),
        branch: "Chicago North".into(),
        supervisor_id: None,
        groups: vec!["pulse".into()],
        consent_at: chrono::NaiveDate::from_ymd_opt(2026, 1, 15),
    };
    store.upsert_caregivers(&[rec]).await.unwrap();
    Address::new(Channel::Sms, phone)
}

async fn runner(store: &AnyStore) -> Runner<AnyStore> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let catalog = Catalog::load(&root.join("flows"), &root.join("templates"))
        .unwrap()
        .0;
    Runner::new(store.clone(), Arc::new(catalog), RunnerSettings::default())
        .await
        .unwrap()
}

/// Starts the weekly pulse for the caregiver at `to`.
async fn start_pulse(runner: &Runner<AnyStore>, to: &Address) {
    let report = runner
        .start(
            "weekly-pulse",
            &Audience::Phones(vec![to.value.clone()]),
            Default::default(),
            morning(),
        )
        .await
        .unwrap();
    assert_eq!(report.started, 1, "{report:?}");
}

async fn say(runner: &Runner<AnyStore>, from: &Address, texts: &[&str]) {
    for text in texts {
        let id = format!("SM-{}-{}", from.value, rand::random::<u64>());
        runner
            .handle_inbound(&support::inbound(from, text, &id, morning()))
            .await
            .unwrap();
    }
}

async fn sent(store: &AnyStore, to: &Address) -> Vec<String> {
    store
        .outbound_to(to)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, body)| body)
        .collect()
}

/// The pulse answers stored for the caregiver `C{n}`: (key, answer).
async fn answers_of(store: &AnyStore, n: u32) -> Vec<(String, Value)> {
    store
        .answers(Some("weekly-pulse"), None)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.caregiver == format!("C{n}"))
        .map(|a| (a.key, a.answer))
        .collect()
}

async fn consent_of(store: &AnyStore, n: u32) -> ConsentStatus {
    store
        .caregiver_by_external_id(&format!("C{n}"))
        .await
        .unwrap()
        .unwrap()
        .reach
        .sms
}

/// The consent ledger of an address: (status, source, message).
async fn ledger(store: &AnyStore, of: &Address) -> Vec<(String, String, String)> {
    store
        .consent_ledger(of)
        .await
        .unwrap()
        .into_iter()
        .map(|(status, source, detail, _)| (status, source, detail))
        .collect()
}

/// The reproductions: the last pulse question ("what would help?") answered with
/// everyday words that hold BAJA, CANCEL, ALTO.
async fn answers_that_hold_a_stop_word_are_stored_and_nobody_is_opted_out(store: AnyStore) {
    let runner = runner(&store).await;
    let cases = [
        (1, Lang::Es, "La paga es baja", "¡Gracias, Maria!"),
        (2, Lang::En, "I have to cancel", "Thank you, Maria!"),
        (3, Lang::Es, "estrés muy alto", "¡Gracias, Maria!"),
    ];
    for (n, lang, answer, thanks) in cases {
        let phone = caregiver(&store, n, lang).await;
        start_pulse(&runner, &phone).await;
        say(&runner, &phone, &["4", "1", answer]).await;
        assert_eq!(
            answers_of(&store, n).await,
            vec![
                ("week_score".into(), Value::from(4)),
                ("stay".into(), Value::from("yes")),
                ("help".into(), Value::from(answer)),
            ],
            "{answer:?}"
        );
        assert_eq!(
            consent_of(&store, n).await,
            ConsentStatus::OptedIn,
            "{answer:?}"
        );
        let texts = sent(&store, &phone).await;
        // The three questions and the flow's thanks: no opt-out, no question about stopping.
        assert_eq!(texts.len(), 4, "{answer:?}: {texts:?}");
        assert!(texts[3].starts_with(thanks), "{answer:?}: {texts:?}");
        assert_eq!(ledger(&store, &phone).await.len(), 1, "only the import");
    }
}

async fn a_request_to_stop_that_answers_a_question_is_stored_then_asked_about(store: AnyStore) {
    let runner = runner(&store).await;
    let phone = caregiver(&store, 1, Lang::En).await;
    start_pulse(&runner, &phone).await;
    say(&runner, &phone, &["4", "1", "stop texting me please"]).await;
    // The answer is an answer: stored, and the flow goes on to its thanks.
    assert_eq!(
        answers_of(&store, 1).await.last(),
        Some(&("help".into(), Value::from("stop texting me please")))
    );
    assert_eq!(consent_of(&store, 1).await, ConsentStatus::OptedIn);
    let texts = sent(&store, &phone).await;
    assert!(texts[3].starts_with("Thank you, Maria!"), "{texts:?}");
    assert_eq!(texts[4..], [ASKED_EN]);
    // She confirms.
    say(&runner, &phone, &["STOP"]).await;
    assert_eq!(consent_of(&store, 1).await, ConsentStatus::OptedOut);
    assert_eq!(sent(&store, &phone).await[5..], [STOPPED_EN]);
}

async fn an_answer_that_asks_to_stop_still_raises_its_escalation(store: AnyStore) {
    let runner = runner(&store).await;
    let phone = caregiver(&store, 1, Lang::En).await;
    start_pulse(&runner, &phone).await;
    say(&runner, &phone, &["4", "1", "I quit. Stop texting me"]).await;
    let raised: Vec<(String, String, String)> = store
        .escalations(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.caregiver, e.reason, e.answer))
        .collect();
    assert_eq!(
        raised,
        [(
            "C1".into(),
            "worrying words in reply".into(),
            "I quit. Stop texting me".into()
        )]
    );
    assert_eq!(consent_of(&store, 1).await, ConsentStatus::OptedIn);
    assert_eq!(sent(&store, &phone).await.last().unwrap(), ASKED_EN);
}

async fn a_plain_spanish_request_with_nothing_waiting_opts_out_at_once_in_spanish(store: AnyStore) {
    let runner = runner(&store).await;
    // Her roster language is English: the confirmation follows the words she wrote.
    let phone = caregiver(&store, 1, Lang::En).await;
    say(&runner, &phone, &["no me manden más mensajes"]).await;
    assert_eq!(consent_of(&store, 1).await, ConsentStatus::OptedOut);
    assert_eq!(sent(&store, &phone).await, [STOPPED_ES]);
    assert_eq!(
        ledger(&store, &phone).await.last(),
        Some(&(
            "opted_out".into(),
            "request".into(),
            "no me manden más mensajes".into()
        ))
    );
    // And no program message reaches her afterwards.
    let report = runner
        .start(
            "weekly-pulse",
            &Audience::Phones(vec![phone.value.clone()]),
            Default::default(),
            morning(),
        )
        .await
        .unwrap();
    assert_eq!(report.skipped.get("opted out"), Some(&1));
}

async fn a_stop_word_with_nothing_waiting_gets_the_question_and_no_opt_out(store: AnyStore) {
    let runner = runner(&store).await;
    let phone = caregiver(&store, 1, Lang::En).await;
    say(&runner, &phone, &["I have to cancel"]).await;
    assert_eq!(consent_of(&store, 1).await, ConsentStatus::OptedIn);
    assert_eq!(sent(&store, &phone).await, [ASKED_EN]);
    assert_eq!(ledger(&store, &phone).await.len(), 1, "only the import");
    // A survey still starts for her.
    start_pulse(&runner, &phone).await;
}
