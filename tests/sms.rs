//! SMS end to end over real HTTP: the real server (webhooks, dispatcher, scheduler) on port 0,
//! a fake Twilio that speaks Twilio's wire format, and a fresh database per test — SQLite
//! always, PostgreSQL when CAREBOT_TEST_POSTGRES_URL is set.

mod support;

use std::time::Duration;

use carebot::domain::{Address, Channel};
use carebot::model::OutboundStatus;
use carebot::store::Store;
use serde_json::Value;
use support::app::{TestApp, sms_params};
use support::app_tests;
use support::fake_twilio::Reply;
use support::roster::{import_caregivers, import_supervisors};

const MARIA: &str = "+13125550123";
const DANA: &str = "+13125550142";

app_tests!(app:
    a_pulse_survey_runs_from_start_to_stored_answers,
    a_bad_signature_is_refused_and_records_nothing,
    a_malformed_webhook_is_a_400_and_records_nothing,
    a_retried_message_sid_is_processed_once,
    after_stop_a_new_start_sends_nothing,
    a_429_is_retried_and_the_text_is_sent_once,
    a_crash_mid_send_never_sends_twice,
    twilio_21610_marks_the_caregiver_opted_out,
    a_21610_status_callback_opts_the_caregiver_out_on_the_servers_clock,
    a_stranger_gets_one_polite_reply_a_day,
    health_and_metrics_answer,
);

/// Imports Dana (supervisor) and Maria (caregiver, consent on record) through the real roster
/// import, as an operator would.
async fn roster(app: &TestApp) {
    let dana = ("S1", "Dana Smith", DANA, "Chicago North");
    let s = import_supervisors(app.store(), &[dana]).await;
    assert_eq!(
        s.to_string(),
        "added 1, updated 0, unchanged 0, deactivated 0, rejected 0"
    );
    let s = import_caregivers(app.store(), &[("C1", "Maria", "Gonzalez", MARIA)]).await;
    assert_eq!(s.added, 1, "{s}");
}

fn maria() -> Address {
    Address::new(Channel::Sms, MARIA)
}

async fn a_pulse_survey_runs_from_start_to_stored_answers(app: TestApp) {
    roster(&app).await;
    let report = app.start("weekly-pulse", &[MARIA]).await;
    assert_eq!(report.started, 1);

    let got = app.twilio.wait_for(MARIA, 1).await;
    assert!(
        got[0].starts_with("Hi Maria, Sunrise Home Care here. How was your work week"),
        "{got:?}"
    );
    let first = &app.twilio.delivered()[0];
    assert_eq!(first.from.as_deref(), Some(support::fake_twilio::FROM));
    assert!(
        first
            .status_callback
            .as_deref()
            .unwrap()
            .starts_with(&format!("{}/webhooks/twilio/status?id=", app.url))
    );

    let (status, body) = app.post_sms(MARIA, "2", "SM-in-1").await;
    assert_eq!(status, 200);
    assert!(body.contains("<Response/>"), "{body}");
    let got = app.twilio.wait_for(MARIA, 2).await;
    assert!(got[1].contains("6 months from now"), "{got:?}");
    // The low score reached the supervisor's phone at once.
    let alert = app.twilio.wait_for(DANA, 1).await;
    assert!(
        alert[0].starts_with(
            "ALERT 1 (high): Maria G., Chicago North, rated the work week 2/5. Reply ACK 1,"
        ),
        "{alert:?}"
    );

    app.post_sms(MARIA, "yes", "SM-in-2").await;
    app.twilio.wait_for(MARIA, 3).await;
    app.post_sms(MARIA, "More hours please", "SM-in-3").await;
    let got = app.twilio.wait_for(MARIA, 4).await;
    assert!(got[3].starts_with("Thank you, Maria!"), "{got:?}");

    let answers: Vec<(String, Value)> = app
        .store()
        .answers(Some("weekly-pulse"), None)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.key, a.answer))
        .collect();
    assert_eq!(
        answers,
        vec![
            ("week_score".into(), Value::from(2)),
            ("stay".into(), Value::from("yes")),
            ("help".into(), Value::from("More hours please")),
        ]
    );
    let escalations = app.store().escalations(None).await.unwrap();
    assert_eq!(escalations.len(), 1);
    assert_eq!(escalations[0].priority, "high");

    // Twilio reports delivery; a late "sent" afterwards does not move it back.
    app.settle().await;
    let sid = app.twilio.delivered()[0].sid.clone().unwrap();
    assert_eq!(app.twilio.send_status(&sid, "delivered", None).await, 200);
    assert_eq!(app.twilio.send_status(&sid, "sent", None).await, 200);
    let statuses = app.store().outbound_to(&maria()).await.unwrap();
    assert_eq!(statuses[0].0, OutboundStatus::Delivered);
    insta::assert_snapshot!(
        "a_pulse_survey_by_sms",
        app.transcript(&[("Maria", MARIA), ("Dana", DANA)]).await
    );
    app.stop().await;
}

async fn a_bad_signature_is_refused_and_records_nothing(app: TestApp) {
    roster(&app).await;
    app.start("weekly-pulse", &[MARIA]).await;
    app.twilio.wait_for(MARIA, 1).await;
    let params = sms_params(MARIA, "4", "SM-forged");
    let (status, _) = app
        .post_twilio("/webhooks/twilio/sms", &params, false)
        .await;
    assert_eq!(status, 403);
    // No signature at all.
    let r = reqwest::Client::new()
        .post(format!("{}/webhooks/twilio/sms", app.url))
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.store().answers(None, None).await.unwrap().is_empty());
    assert_eq!(
        app.twilio.delivered_to(MARIA).len(),
        1,
        "no reply to a forged message"
    );
    // The same message, properly signed, is then processed (it was not recorded before).
    let (status, _) = app.post_sms(MARIA, "4", "SM-forged").await;
    assert_eq!(status, 200);
    assert_eq!(app.store().answers(None, None).await.unwrap().len(), 1);
    app.stop().await;
}

async fn a_malformed_webhook_is_a_400_and_records_nothing(app: TestApp) {
    roster(&app).await;
    app.start("weekly-pulse", &[MARIA]).await;
    app.twilio.wait_for(MARIA, 1).await;
    let no_sid: Vec<(String, String)> = sms_params(MARIA, "4", "x")
        .into_iter()
        .filter(|(k, _)| !k.ends_with("Sid") || k == "AccountSid")
        .collect();
    assert_eq!(
        app.post_twilio("/webhooks/twilio/sms", &no_sid, true)
            .await
            .0,
        400
    );
    let no_from: Vec<(String, String)> = sms_params(MARIA, "4", "SM-x")
        .into_iter()
        .filter(|(k, _)| k != "From")
        .collect();
    assert_eq!(
        app.post_twilio("/webhooks/twilio/sms", &no_from, true)
            .await
            .0,
        400
    );
    assert!(app.store().answers(None, None).await.unwrap().is_empty());
    app.stop().await;
}

async fn a_retried_message_sid_is_processed_once(app: TestApp) {
    roster(&app).await;
    app.start("weekly-pulse", &[MARIA]).await;
    app.twilio.wait_for(MARIA, 1).await;
    assert_eq!(app.post_sms(MARIA, "4", "SM-dup").await.0, 200);
    assert_eq!(app.post_sms(MARIA, "4", "SM-dup").await.0, 200);
    app.twilio.wait_for(MARIA, 2).await;
    app.settle().await;
    assert_eq!(
        app.twilio.delivered_to(MARIA).len(),
        2,
        "one question, one reply"
    );
    assert_eq!(app.store().answers(None, None).await.unwrap().len(), 1);
    app.stop().await;
}

async fn after_stop_a_new_start_sends_nothing(app: TestApp) {
    roster(&app).await;
    assert_eq!(app.post_sms(MARIA, "  Stop. ", "SM-stop").await.0, 200);
    let got = app.twilio.wait_for(MARIA, 1).await;
    assert!(
        got[0].starts_with("You will get no more messages"),
        "{got:?}"
    );
    let report = app.start("weekly-pulse", &[MARIA]).await;
    assert_eq!(report.started, 0);
    assert_eq!(report.skipped.get("opted out"), Some(&1));
    // A second STOP gets no second confirmation; a question reply gets nothing.
    app.post_sms(MARIA, "STOP", "SM-stop2").await;
    app.post_sms(MARIA, "4", "SM-after").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.twilio.delivered_to(MARIA).len(), 1);
    let ledger = app.store().consent_ledger(&maria()).await.unwrap();
    let last = ledger.last().unwrap();
    assert_eq!(
        (last.0.as_str(), last.1.as_str(), last.2.as_str()),
        ("opted_out", "keyword", "Stop.")
    );
    // START resumes, with its confirmation.
    app.post_sms(MARIA, "start", "SM-start").await;
    let got = app.twilio.wait_for(MARIA, 2).await;
    assert!(got[1].starts_with("Welcome back!"), "{got:?}");
    assert_eq!(app.start("weekly-pulse", &[MARIA]).await.started, 1);
    insta::assert_snapshot!(
        "stop_then_start_by_sms",
        app.transcript(&[("Maria", MARIA)]).await
    );
    app.stop().await;
}

async fn a_429_is_retried_and_the_text_is_sent_once(app: TestApp) {
    roster(&app).await;
    app.twilio.script([Reply::Error {
        status: 429,
        code: 20429,
        message: "Too Many Requests".into(),
    }]);
    app.start("weekly-pulse", &[MARIA]).await;
    // The retry waits out its backoff (about 2 s) before the second attempt.
    let mut delivered = Vec::new();
    for _ in 0..400 {
        delivered = app.twilio.delivered_to(MARIA);
        if !delivered.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(delivered.len(), 1);
    let attempts: Vec<u16> = app
        .twilio
        .received()
        .iter()
        .map(|r| r.http_status)
        .collect();
    assert_eq!(attempts, vec![429, 201]);
    app.stop().await;
}

async fn a_crash_mid_send_never_sends_twice(mut app: TestApp) {
    roster(&app).await;
    // Twilio takes the message, then carebot dies before Twilio's answer arrives.
    app.twilio.script([Reply::Slow(Duration::from_secs(5))]);
    app.start("weekly-pulse", &[MARIA]).await;
    for _ in 0..200 {
        if !app.twilio.delivered().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(app.twilio.delivered_to(MARIA).len(), 1);
    app.crash_and_restart().await;
    // The restarted dispatcher runs; the message it cannot account for is not sent again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.twilio.received().len(), 1, "sent once, never twice");
    let status = app.store().outbound_to(&maria()).await.unwrap()[0].0;
    assert!(
        matches!(status, OutboundStatus::Sending | OutboundStatus::Unknown),
        "{status:?}"
    );
    // Twilio's status callback carries carebot's id and reconciles it.
    let sid = app.twilio.delivered()[0].sid.clone().unwrap();
    assert_eq!(app.twilio.send_status(&sid, "delivered", None).await, 200);
    assert_eq!(
        app.store().outbound_to(&maria()).await.unwrap()[0].0,
        OutboundStatus::Delivered
    );
    app.stop().await;
}

async fn twilio_21610_marks_the_caregiver_opted_out(app: TestApp) {
    roster(&app).await;
    app.twilio.script([Reply::Error {
        status: 400,
        code: 21610,
        message: "Attempt to send to unsubscribed recipient".into(),
    }]);
    app.start("weekly-pulse", &[MARIA]).await;
    app.settle().await;
    assert_eq!(
        app.store().outbound_to(&maria()).await.unwrap()[0].0,
        OutboundStatus::Failed
    );
    let ledger = app.store().consent_ledger(&maria()).await.unwrap();
    assert_eq!(ledger.last().unwrap().0, "opted_out");
    assert_eq!(ledger.last().unwrap().1, "provider_error");
    app.stop().await;
}

/// A STOP sent to Twilio rather than to carebot shows up as a later 21610 on a status callback:
/// the opt-out is recorded like one learnt from a send, at the server's time (tests move that
/// clock; the ledger must follow it, not the machine's).
async fn a_21610_status_callback_opts_the_caregiver_out_on_the_servers_clock(app: TestApp) {
    roster(&app).await;
    app.start("weekly-pulse", &[MARIA]).await;
    app.settle().await;
    app.clock.advance(chrono::Duration::hours(2));
    let sid = app.twilio.delivered()[0].sid.clone().unwrap();
    assert_eq!(
        app.twilio.send_status(&sid, "failed", Some("21610")).await,
        200
    );
    assert_eq!(
        app.store().outbound_to(&maria()).await.unwrap()[0].0,
        OutboundStatus::Failed
    );
    let ledger = app.store().consent_ledger(&maria()).await.unwrap();
    let (status, source, detail, at) = ledger.last().unwrap().clone();
    assert_eq!(
        (status.as_str(), source.as_str(), detail.as_str()),
        (
            "opted_out",
            "provider_error",
            "twilio 21610: unsubscribed recipient"
        )
    );
    let drift = (app.clock.now() - at).num_seconds();
    assert!(
        (0..60).contains(&drift),
        "recorded at {at}, server clock {}",
        app.clock.now()
    );
    app.stop().await;
}

async fn a_stranger_gets_one_polite_reply_a_day(app: TestApp) {
    roster(&app).await;
    let stranger = "+17735550188";
    app.post_sms(stranger, "hello?", "SM-s1").await;
    let got = app.twilio.wait_for(stranger, 1).await;
    assert!(
        got[0].starts_with("This number is for Sunrise Home Care caregivers"),
        "{got:?}"
    );
    app.post_sms(stranger, "hello??", "SM-s2").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.twilio.delivered_to(stranger).len(), 1);
    insta::assert_snapshot!(
        "a_stranger_by_sms",
        app.transcript(&[("A stranger", stranger)]).await
    );
    app.stop().await;
}

async fn health_and_metrics_answer(app: TestApp) {
    assert_eq!(app.get("/healthz").await, (200, "ok".into()));
    app.post_sms("+17735550188", "hi", "SM-m1").await;
    let (status, text) = app.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        text.contains("carebot_inbound_total{channel=\"sms\",result=\"processed\"} 1"),
        "{text}"
    );
    assert!(text.contains("carebot_outbox_queue_depth"), "{text}");
    assert!(
        text.contains("carebot_send_latency_seconds_bucket"),
        "{text}"
    );
    app.stop().await;
}
