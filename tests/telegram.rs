//! Telegram end to end over real HTTP: the real server on port 0, a fake Bot API that keeps the
//! chats as a person would see them (teloxide's real client talks to it through
//! `Bot::set_api_url`), a fake Twilio for the SMS side, and a fresh database per test — SQLite
//! always, PostgreSQL when CAREBOT_TEST_POSTGRES_URL is set. Updates reach carebot by webhook
//! (with the secret header), or by getUpdates in the long-polling test.

mod support;

use std::time::Duration;

use carebot::domain::{Address, Channel};
use carebot::model::{NewOutbound, OutboundKind, OutboundStatus, Plan, Snapshot, Write};
use carebot::store::Store;
use serde_json::Value;
use support::app::TestApp;
use support::app_tests;
use support::fake_telegram::{self, Person, Reply, Sent};
use support::roster::{import_caregivers, import_supervisors};

const MARIA: &str = "+13125550123";
const DANA: &str = "+13125550142";

app_tests!(telegram webhook:
    a_caregiver_links_by_sharing_their_own_contact,
    someone_elses_contact_or_an_unknown_number_links_nothing,
    a_pulse_survey_answered_by_button_taps,
    a_pulse_survey_answered_by_typed_numbers,
    a_tap_on_a_closed_question_says_so,
    a_429_retry_after_is_honoured,
    a_blocked_bot_opts_the_caregiver_out,
    a_redelivered_update_is_processed_once,
    a_wrong_or_missing_webhook_secret_is_refused_and_records_nothing,
    set_webhook_registers_the_url_and_secret_and_stopping_keeps_it,
    an_invite_link_links_once_and_not_after_it_expires,
    stop_on_one_channel_keeps_the_other_and_stop_all_stops_both,
    a_conversation_continues_on_the_channel_the_caregiver_answers_from,
    a_linked_supervisor_gets_alerts_on_telegram,
    an_alert_telegram_refuses_reaches_the_supervisor_by_sms,
    messages_to_one_chat_go_one_a_second_in_order,
    the_language_command_switches_to_spanish,
    a_request_to_stop_is_asked_about_here_or_stops_an_unlinked_chat,
);

app_tests!(telegram polling:
    long_polling_links_and_answers_by_buttons,
);

// ---------------------------------------------------------------------------------------------
// Helpers

fn maria() -> Person {
    Person::new(7_001, "Maria")
}

fn chat(person: &Person) -> Address {
    Address::new(Channel::Telegram, person.id.to_string())
}

/// Imports Dana (supervisor) and Maria (caregiver, written consent on file) as an operator would.
async fn roster(app: &TestApp) {
    let dana = ("S1", "Dana Smith", DANA, "Chicago North");
    import_supervisors(app.store(), &[dana]).await;
    let s = import_caregivers(app.store(), &[("C1", "Maria", "Gonzalez", MARIA)]).await;
    assert_eq!(s.added, 1, "{s}");
}

/// `person` opens the bot and shares their own number (as Telegram sends it: no `+`).
async fn link(app: &TestApp, person: &Person, phone: &str) {
    let tg = app.tg();
    let before = tg.chat(person.id).len();
    assert_eq!(tg.say(person, "/start").await, 200);
    let got = tg.wait_for(person.id, before + 1).await;
    assert!(got[before].asks_for_contact(), "{:?}", got[before]);
    let status = tg
        .share_contact(person, phone.trim_start_matches('+'), Some(person.id))
        .await;
    assert_eq!(status, 200);
    tg.wait_for(person.id, before + 2).await;
}

async fn answers(app: &TestApp) -> Vec<(String, Value)> {
    app.store()
        .answers(Some("weekly-pulse"), None)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.key, a.answer))
        .collect()
}

/// The last consent ledger row of an address: (status, source, detail).
async fn last_consent(app: &TestApp, address: &Address) -> Option<(String, String, String)> {
    app.store()
        .consent_ledger(address)
        .await
        .unwrap()
        .pop()
        .map(|(status, source, detail, _)| (status, source, detail))
}

/// The message in `chat` with this id, as it shows now.
fn shown(app: &TestApp, chat: i64, message_id: i64) -> Sent {
    app.tg()
        .chat(chat)
        .into_iter()
        .find(|m| m.message_id == message_id)
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Tests

async fn a_caregiver_links_by_sharing_their_own_contact(app: TestApp) {
    roster(&app).await;
    let maria = maria();
    let tg = app.tg();
    assert_eq!(tg.say(&maria, "/start").await, 200);
    let got = tg.wait_for(maria.id, 1).await;
    assert!(
        got[0]
            .text
            .starts_with("Hi! This is Sunrise Home Care, writing to our caregivers."),
        "{got:?}"
    );
    assert!(got[0].asks_for_contact());
    assert!(got[0].text.contains("Share my phone number"));

    // Telegram sends the number without its +.
    let status = tg
        .share_contact(&maria, "13125550123", Some(maria.id))
        .await;
    assert_eq!(status, 200);
    let got = tg.wait_for(maria.id, 2).await;
    assert!(
        got[1].text.starts_with("Thanks, Maria! You are connected"),
        "{got:?}"
    );
    assert_eq!(
        got[1].markup,
        Some(serde_json::json!({"remove_keyboard": true}))
    );
    assert_eq!(
        last_consent(&app, &chat(&maria)).await,
        Some((
            "opted_in".into(),
            "telegram_link".into(),
            "shared their own phone number".into()
        ))
    );

    // She last wrote on Telegram, so the survey goes there, and not by SMS.
    assert_eq!(app.start("weekly-pulse", &[MARIA]).await.started, 1);
    let got = tg.wait_for(maria.id, 3).await;
    assert!(got[2].text.starts_with("Hi Maria, Sunrise Home Care here."));
    assert_eq!(got[2].buttons(), ["1", "2", "3", "4", "5"]);
    app.settle().await;
    assert!(app.twilio.delivered_to(MARIA).is_empty());
    app.stop().await;
}

async fn someone_elses_contact_or_an_unknown_number_links_nothing(app: TestApp) {
    roster(&app).await;
    let stranger = Person::new(7_002, "Pat");
    let tg = app.tg();
    tg.say(&stranger, "/start").await;
    tg.wait_for(stranger.id, 1).await;
    // Pat shares Maria's contact card: a number on the roster, but not Pat's own.
    tg.share_contact(&stranger, "+13125550123", Some(7_001))
        .await;
    let got = tg.wait_for(stranger.id, 2).await;
    assert_eq!(
        got[1].text,
        "Please share your own phone number with the button below, not someone else's contact."
    );
    assert!(got[1].asks_for_contact());
    // A card saved without a Telegram account is not Pat's either.
    tg.share_contact(&stranger, "+13125550123", None).await;
    let got = tg.wait_for(stranger.id, 3).await;
    assert!(
        got[2]
            .text
            .starts_with("Please share your own phone number")
    );
    // Pat's own number is not on the roster.
    tg.share_contact(&stranger, "17735550188", Some(stranger.id))
        .await;
    let got = tg.wait_for(stranger.id, 4).await;
    assert!(
        got[3]
            .text
            .starts_with("Sorry, we could not find this phone number on Sunrise Home Care's list"),
        "{got:?}"
    );

    // Nothing was linked or opted in: Maria's survey goes by SMS, and Pat hears nothing more.
    assert_eq!(last_consent(&app, &chat(&stranger)).await, None);
    assert_eq!(app.start("weekly-pulse", &[MARIA]).await.started, 1);
    app.twilio.wait_for(MARIA, 1).await;
    app.settle().await;
    assert_eq!(tg.chat(stranger.id).len(), 4);
    app.stop().await;
}

async fn a_pulse_survey_answered_by_button_taps(app: TestApp) {
    roster(&app).await;
    let maria = maria();
    let tg = app.tg();
    link(&app, &maria, MARIA).await;
    app.start("weekly-pulse", &[MARIA]).await;
    let question = tg.wait_for(maria.id, 3).await[2].clone();
    assert_eq!(question.buttons(), ["1", "2", "3", "4", "5"]);

    assert_eq!(tg.tap(&maria, &question, "2").await, 200);
    let answered = tg.wait_for_calls("answerCallbackQuery", 1).await;
    assert_eq!(answered[0].params.get("text"), None, "a silent answer");
    tg.wait_for_calls("editMessageText", 1).await;
    let now = shown(&app, maria.id, question.message_id);
    assert!(now.text.ends_with("\n\n✔ 2"), "{}", now.text);
    assert!(now.buttons().is_empty(), "the buttons are gone");

    let stay = tg.wait_for(maria.id, 4).await[3].clone();
    assert!(stay.text.contains("6 months from now"), "{}", stay.text);
    assert_eq!(stay.buttons(), ["1. Yes", "2. Not sure", "3. No"]);
    tg.tap(&maria, &stay, "1. Yes").await;
    tg.wait_for_calls("editMessageText", 2).await;
    assert!(
        shown(&app, maria.id, stay.message_id)
            .text
            .ends_with("\n\n✔ Yes")
    );

    let help = tg.wait_for(maria.id, 5).await[4].clone();
    assert!(
        help.text
            .starts_with("Last one: what would make your work better?")
    );
    assert!(
        help.buttons().is_empty(),
        "a free-text question has no buttons"
    );
    tg.say(&maria, "More hours please").await;
    let got = tg.wait_for(maria.id, 6).await;
    assert!(got[5].text.starts_with("Thank you, Maria!"), "{got:?}");

    assert_eq!(
        answers(&app).await,
        vec![
            ("week_score".into(), Value::from(2)),
            ("stay".into(), Value::from("yes")),
            ("help".into(), Value::from("More hours please")),
        ]
    );
    // The low score reached Dana (not on Telegram) by SMS, at once.
    let alert = app.twilio.wait_for(DANA, 1).await;
    assert!(
        alert[0].starts_with("ALERT 1 (high): Maria G."),
        "{alert:?}"
    );

    // A second tap on the first question (a double tap racing the edit) changes nothing.
    let callback = question.markup.as_ref().unwrap()["inline_keyboard"][0][0]["callback_data"]
        .as_str()
        .unwrap()
        .to_owned();
    tg.tap_data(&maria, &question, &callback).await;
    let calls = tg.wait_for_calls("answerCallbackQuery", 3).await;
    assert_eq!(
        calls[2].params["text"],
        Value::from("This question has closed.")
    );
    app.settle().await;
    assert_eq!(answers(&app).await.len(), 3);
    assert_eq!(tg.chat(maria.id).len(), 6);
    insta::assert_snapshot!("a_pulse_survey_answered_by_button_taps", tg.transcript());
    app.stop().await;
}

async fn a_pulse_survey_answered_by_typed_numbers(app: TestApp) {
    roster(&app).await;
    let maria = maria();
    let tg = app.tg();
    link(&app, &maria, MARIA).await;
    app.start("weekly-pulse", &[MARIA]).await;
    tg.wait_for(maria.id, 3).await;
    tg.say(&maria, "4").await;
    let got = tg.wait_for(maria.id, 4).await;
    assert!(got[3].text.contains("6 months from now"), "{got:?}");
    // A typed word the question knows (a synonym of "Not sure").
    tg.say(&maria, "maybe").await;
    tg.wait_for(maria.id, 5).await;
    tg.say(&maria, "Nothing, all good").await;
    let got = tg.wait_for(maria.id, 6).await;
    assert!(got[5].text.starts_with("Thank you, Maria!"));
    assert_eq!(
        answers(&app).await,
        vec![
            ("week_score".into(), Value::from(4)),
            ("stay".into(), Value::from("unsure")),
            ("help".into(), Value::from("Nothing, all good")),
        ]
    );
    // Typing left the keyboards of the first two questions alone; no edits were made.
    assert!(tg.calls_to("editMessageText").is_empty());
    app.stop().await;
}

async fn a_tap_on_a_closed_question_says_so(app: TestApp) {
    roster(&app).await;
    let maria = maria();
    let tg = app.tg();
    link(&app, &maria, MARIA).await;
    app.start("weekly-pulse", &[MARIA]).await;
    let last_week = tg.wait_for(maria.id, 3).await[2].clone();
    // Maria answers by typing, to the end: the first question's buttons are still on screen.
    tg.say(&maria, "5").await;
    tg.wait_for(maria.id, 4).await;
    tg.say(&maria, "1").await;
    tg.wait_for(maria.id, 5).await;
    tg.say(&maria, "fine").await;
    tg.wait_for(maria.id, 6).await;

    tg.tap(&maria, &last_week, "3").await;
    let calls = tg.wait_for_calls("answerCallbackQuery", 1).await;
    assert_eq!(
        calls[0].params["text"],
        Value::from("This question has closed.")
    );
    tg.wait_for_calls("editMessageReplyMarkup", 1).await;
    let now = shown(&app, maria.id, last_week.message_id);
    assert!(now.buttons().is_empty(), "the dead buttons are taken away");
    assert_eq!(now.text, last_week.text, "the question itself stays");

    // Next week's survey asks the same question; last week's buttons cannot answer it.
    assert_eq!(app.start("weekly-pulse", &[MARIA]).await.started, 1);
    tg.wait_for(maria.id, 7).await;
    let data = last_week.markup.as_ref().unwrap()["inline_keyboard"][0][0]["callback_data"]
        .as_str()
        .unwrap()
        .to_owned();
    tg.tap_data(&maria, &last_week, &data).await;
    let calls = tg.wait_for_calls("answerCallbackQuery", 2).await;
    assert_eq!(
        calls[1].params["text"],
        Value::from("This question has closed.")
    );
    app.settle().await;
    assert_eq!(
        answers(&app).await.len(),
        3,
        "no answer from a closed question"
    );
    assert_eq!(tg.chat(maria.id).len(), 7);
    app.stop().await;
}

async fn a_429_retry_after_is_honoured(app: TestApp) {
    roster(&app).await;
    let maria = maria();
    let tg = app.tg();
    link(&app, &maria, MARIA).await;
    app.settle().await;
    tg.script([Reply::TooManyRequests { retry_after: 1 }]);
    app.start("weekly-pulse", &[MARIA]).await;
    let got = tg.wait_for(maria.id, 3).await;
    assert!(got[2].text.starts_with("Hi Maria"));
    app.settle().await;
    let sends = tg.calls_to("sendMessage");
    let (refused, accepted) = (&sends[sends.len() - 2], &sends[sends.len() - 1]);
    assert_eq!((refused.status, accepted.status), (429, 200));
    let waited = accepted.at - refused.at;
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_millis(1800),
        "waited {waited:?}, asked for exactly 1 s"
    );
    assert_eq!(tg.chat(maria.id).len(), 3, "sent once");
    app.stop().await;
}

async fn a_blocked_bot_opts_the_caregiver_out(app: TestApp) {
    roster(&app).await;
    let maria = maria();
    let tg = app.tg();
    link(&app, &maria, MARIA).await;
    app.settle().await;
    tg.script([Reply::Blocked]);
    assert_eq!(app.start("weekly-pulse", &[MARIA]).await.started, 1);
    app.settle().await;
    assert_eq!(
        last_consent(&app, &chat(&maria)).await,
        Some((
            "opted_out".into(),
            "provider_error".into(),
            "telegram: bot was blocked by the user".into()
        ))
    );
    let statuses = app.store().outbound_to(&chat(&maria)).await.unwrap();
    assert_eq!(statuses.last().unwrap().0, OutboundStatus::Failed);
    // Telegram is closed now; her phone is still open, so the next survey goes by SMS.
    assert_eq!(app.start("weekly-pulse", &[MARIA]).await.started, 1);
    let texts = app.twilio.wait_for(MARIA, 1).await;
    assert!(texts[0].starts_with("Hi Maria"));

    // Blocking is also announced as an update; it opts out as well, once, and sends nothing.
    let dana = Person::new(7_042, "Dana");
    link(&app, &dana, DANA).await;
    tg.block(&dana).await;
    for _ in 0..100 {
        if last_consent(&app, &chat(&dana)).await.unwrap().0 == "opted_out" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        last_consent(&app, &chat(&dana)).await,
        Some((
            "opted_out".into(),
            "telegram".into(),
            "blocked the bot".into()
        ))
    );
    app.settle().await;
    assert_eq!(tg.chat(dana.id).len(), 2);
    app.stop().await;
}

async fn a_redelivered_update_is_processed_once(app: TestApp) {
    roster(&app).await;
    let maria = maria();
    let tg = app.tg();
    link(&app, &maria, MARIA).await;
    app.start("weekly-pulse", &[MARIA]).await;
    tg.wait_for(maria.id, 3).await;
    let update = tg.text_update(&maria, "4", 900_000_001);
    // Telegram delivers it again when the first answer is slow or lost.
    assert_eq!(tg.send_update(update.clone()).await, 200);
    assert_eq!(tg.send_update(update).await, 200);
    tg.wait_for(maria.id, 4).await;
    app.settle().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        answers(&app).await,
        vec![("week_score".into(), Value::from(4))]
    );
    assert_eq!(tg.chat(maria.id).len(), 4, "one answer, one next question");
    let (_, metrics) = app.get("/metrics").await;
    assert!(
        metrics.contains("carebot_inbound_total{channel=\"telegram\",result=\"duplicate\"} 1"),
        "{metrics}"
    );
    app.stop().await;
}

async fn a_wrong_or_missing_webhook_secret_is_refused_and_records_nothing(app: TestApp) {
    roster(&app).await;
    let maria = maria();
    let tg = app.tg();
    link(&app, &maria, MARIA).await;
    app.start("weekly-pulse", &[MARIA]).await;
    tg.wait_for(maria.id, 3).await;
    let url = format!("{}/webhooks/telegram", app.url);
    let update = tg.text_update(&maria, "1", 900_000_002);
    let forged = fake_telegram::post_update(&url, Some("not-the-secret"), &update).await;
    let unsigned = fake_telegram::post_update(&url, None, &update).await;
    let near_miss =
        fake_telegram::post_update(&url, Some(&format!("{}x", fake_telegram::SECRET)), &update)
            .await;
    assert_eq!((forged, unsigned, near_miss), (401, 401, 401));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(answers(&app).await.is_empty());
    assert_eq!(tg.chat(maria.id).len(), 3, "no reply to a forged update");
    // The same update with the secret is then processed: nothing of it was recorded before.
    let real = fake_telegram::post_update(&url, Some(fake_telegram::SECRET), &update).await;
    assert_eq!(real, 200);
    assert_eq!(
        answers(&app).await,
        vec![("week_score".into(), Value::from(1))]
    );
    app.stop().await;
}

async fn set_webhook_registers_the_url_and_secret_and_stopping_keeps_it(app: TestApp) {
    let url = carebot::cli::telegram::set_webhook(&app.config())
        .await
        .unwrap();
    assert_eq!(url, format!("{}/webhooks/telegram", app.url));
    let tg = app.tg().clone();
    assert_eq!(
        tg.webhook(),
        Some((url.clone(), fake_telegram::SECRET.to_owned()))
    );
    let call = &tg.calls_to("setWebhook")[0];
    assert_eq!(
        call.params["allowed_updates"],
        serde_json::json!(["message", "callback_query", "my_chat_member"])
    );
    let status = carebot::cli::telegram::status(&app.config()).await.unwrap();
    assert!(status.contains("@sunrise_care_bot"), "{status}");
    assert!(status.contains(&url), "{status}");
    // One instance stopping must not cut the others off.
    app.stop().await;
    assert!(tg.calls_to("deleteWebhook").is_empty());
    assert_eq!(tg.webhook().map(|w| w.0), Some(url));
}

async fn an_invite_link_links_once_and_not_after_it_expires(app: TestApp) {
    roster(&app).await;
    let client = carebot::cli::telegram::client(&app.config()).unwrap();
    let now = chrono::Utc::now();
    let week = Duration::from_secs(7 * 24 * 3600);
    let invite = carebot::cli::telegram::invite(app.store(), &client, MARIA, week, now)
        .await
        .unwrap();
    let code = invite
        .url
        .strip_prefix("https://t.me/sunrise_care_bot?start=")
        .unwrap()
        .to_owned();
    assert!(
        code.len() >= 20
            && code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    );

    // Maria opens the link: Telegram sends /start with the code.
    let maria = maria();
    let tg = app.tg();
    tg.say(&maria, &format!("/start {code}")).await;
    let got = tg.wait_for(maria.id, 1).await;
    assert!(
        got[0].text.starts_with("Thanks, Maria! You are connected"),
        "{got:?}"
    );
    assert_eq!(
        last_consent(&app, &chat(&maria)).await.unwrap().2,
        "opened a one-time invite link"
    );
    // Someone she forwarded it to cannot use it again.
    let other = Person::new(7_003, "Lee");
    tg.say(&other, &format!("/start {code}")).await;
    let got = tg.wait_for(other.id, 1).await;
    assert!(
        got[0]
            .text
            .starts_with("This invite link has expired or was already used."),
        "{got:?}"
    );
    assert!(got[0].asks_for_contact());
    // An invite made eight days ago for a week has expired.
    let old = carebot::cli::telegram::invite(
        app.store(),
        &client,
        MARIA,
        week,
        now - chrono::Duration::days(8),
    )
    .await
    .unwrap();
    let old_code = old.url.rsplit('=').next().unwrap();
    tg.say(&other, &format!("/start {old_code}")).await;
    let got = tg.wait_for(other.id, 2).await;
    assert!(got[1].text.starts_with("This invite link has expired"));
    assert_eq!(last_consent(&app, &chat(&other)).await, None);
    // The code is stored only as a hash, and the inbound message does not keep it.
    assert!(
        carebot::cli::telegram::invite(app.store(), &client, "+17735550188", week, now)
            .await
            .is_err(),
        "a number on no roster gets no invite"
    );
    app.stop().await;
}

async fn stop_on_one_channel_keeps_the_other_and_stop_all_stops_both(app: TestApp) {
    roster(&app).await;
    let maria = maria();
    let tg = app.tg();
    link(&app, &maria, MARIA).await;
    tg.say(&maria, "/stop").await;
    let got = tg.wait_for(maria.id, 3).await;
    assert!(
        got[2]
            .text
            .starts_with("You will get no more messages from Sunrise Home Care here on Telegram."),
        "{got:?}"
    );
    assert!(
        got[2].text.contains("STOP ALL"),
        "it says how to stop everything"
    );
    let sms = Address::new(Channel::Sms, MARIA);
    assert_eq!(
        last_consent(&app, &chat(&maria)).await.unwrap().0,
        "opted_out"
    );
    assert_eq!(last_consent(&app, &sms).await.unwrap().0, "opted_in");
    // Not silently stopped: the survey still reaches her, by SMS.
    assert_eq!(app.start("weekly-pulse", &[MARIA]).await.started, 1);
    app.twilio.wait_for(MARIA, 1).await;
    app.post_sms(MARIA, "4", "SM-a1").await;
    app.twilio.wait_for(MARIA, 2).await;

    // START on Telegram opens it again; then STOP ALL by SMS closes both.
    tg.say(&maria, "START").await;
    let got = tg.wait_for(maria.id, 4).await;
    assert!(got[3].text.starts_with("Welcome back!"), "{got:?}");
    app.post_sms(MARIA, "Stop all", "SM-a2").await;
    let texts = app.twilio.wait_for(MARIA, 3).await;
    assert_eq!(
        texts[2],
        "You will get no more messages from Sunrise Home Care, by text or on Telegram. Reply START to get them here again."
    );
    assert_eq!(
        last_consent(&app, &chat(&maria)).await,
        Some((
            "opted_out".into(),
            "keyword".into(),
            "Stop all (on sms)".into()
        ))
    );
    assert_eq!(last_consent(&app, &sms).await.unwrap().0, "opted_out");
    let report = app.start("weekly-pulse", &[MARIA]).await;
    assert_eq!(report.started, 0);
    app.settle().await;
    assert_eq!(tg.chat(maria.id).len(), 4, "nothing after STOP ALL");
    app.stop().await;
}

async fn a_conversation_continues_on_the_channel_the_caregiver_answers_from(app: TestApp) {
    roster(&app).await;
    let maria = maria();
    let tg = app.tg();
    link(&app, &maria, MARIA).await;
    app.start("weekly-pulse", &[MARIA]).await;
    tg.wait_for(maria.id, 3).await;
    // She answers the Telegram question by SMS: the next question comes by SMS.
    app.post_sms(MARIA, "4", "SM-c1").await;
    let texts = app.twilio.wait_for(MARIA, 1).await;
    assert!(texts[0].contains("6 months from now"), "{texts:?}");
    // And back on Telegram for the next one.
    tg.say(&maria, "1").await;
    let got = tg.wait_for(maria.id, 4).await;
    assert!(got[3].text.starts_with("Last one"), "{got:?}");
    app.settle().await;
    assert_eq!(app.twilio.delivered_to(MARIA).len(), 1);
    assert_eq!(
        answers(&app).await,
        vec![
            ("week_score".into(), Value::from(4)),
            ("stay".into(), Value::from("yes"))
        ]
    );
    app.stop().await;
}

async fn a_linked_supervisor_gets_alerts_on_telegram(app: TestApp) {
    roster(&app).await;
    let dana = Person::new(7_042, "Dana");
    let tg = app.tg();
    link(&app, &dana, DANA).await;
    let got = tg.chat(dana.id);
    assert!(
        got[1]
            .text
            .starts_with("Thanks, Dana Smith! You are connected as a supervisor"),
        "{got:?}"
    );
    // Maria is on SMS only; her low score alerts Dana on Telegram, not by SMS.
    app.start("weekly-pulse", &[MARIA]).await;
    app.twilio.wait_for(MARIA, 1).await;
    app.post_sms(MARIA, "1", "SM-s1").await;
    let got = tg.wait_for(dana.id, 3).await;
    assert!(
        got[2].text.starts_with("ALERT 1 (high): Maria G."),
        "{got:?}"
    );
    app.settle().await;
    assert!(app.twilio.delivered_to(DANA).is_empty());
    // A supervisor writing something else is told what the chat is for, once a day.
    tg.say(&dana, "thanks").await;
    let got = tg.wait_for(dana.id, 4).await;
    assert!(got[3].text.contains("connected as a supervisor"));
    app.stop().await;
}

async fn an_alert_telegram_refuses_reaches_the_supervisor_by_sms(app: TestApp) {
    roster(&app).await;
    let dana = Person::new(7_042, "Dana");
    let tg = app.tg();
    link(&app, &dana, DANA).await;
    app.settle().await;
    // Dana blocked the bot since; the next Telegram send says so.
    tg.script([Reply::Blocked]);
    app.start("weekly-pulse", &[MARIA]).await;
    app.twilio.wait_for(MARIA, 1).await;
    app.post_sms(MARIA, "1", "SM-b1").await;
    let alert = app.twilio.wait_for(DANA, 1).await;
    assert!(
        alert[0].starts_with("ALERT 1 (high): Maria G."),
        "{alert:?}"
    );
    assert_eq!(
        tg.chat(dana.id).len(),
        2,
        "only the linking messages reached Telegram"
    );
    assert_eq!(
        last_consent(&app, &chat(&dana)).await.unwrap().0,
        "opted_out"
    );
    app.stop().await;
}

async fn messages_to_one_chat_go_one_a_second_in_order(app: TestApp) {
    roster(&app).await;
    let maria = maria();
    let tg = app.tg();
    link(&app, &maria, MARIA).await;
    app.settle().await;
    // Seven messages queued at once for one chat: more than a lane holds, so some wait in the
    // outbox, and still none overtakes another.
    let address = chat(&maria);
    let writes: Vec<Write> = (1..=7)
        .map(|n| {
            Write::Outbound(NewOutbound {
                address: address.clone(),
                caregiver_id: None,
                conversation: None,
                kind: OutboundKind::Reply,
                body: format!("message {n}"),
                encoding: "gsm7".into(),
                segments: 1,
                not_before: chrono::Utc::now(),
                buttons: Vec::new(),
            })
        })
        .collect();
    app.store()
        .handle_addresses(&[address], chrono::Utc::now(), &|_: &Snapshot| {
            Ok(Plan {
                writes: writes.clone(),
            })
        })
        .await
        .unwrap();
    let got = tg.wait_for(maria.id, 9).await;
    let texts: Vec<&str> = got[2..].iter().map(|m| m.text.as_str()).collect();
    let expected: Vec<String> = (1..=7).map(|n| format!("message {n}")).collect();
    assert_eq!(texts, expected);
    let sends: Vec<_> = tg
        .calls_to("sendMessage")
        .into_iter()
        .rev()
        .take(7)
        .collect();
    for pair in sends.windows(2) {
        let gap = pair[0].at - pair[1].at;
        assert!(
            gap >= Duration::from_millis(950),
            "{gap:?} between two messages to one chat"
        );
    }
    app.stop().await;
}

async fn the_language_command_switches_to_spanish(app: TestApp) {
    roster(&app).await;
    let maria = maria();
    let tg = app.tg();
    link(&app, &maria, MARIA).await;
    tg.say(&maria, "/language").await;
    let prompt = tg.wait_for(maria.id, 3).await[2].clone();
    assert_eq!(
        prompt.text,
        "Which language would you like your messages in?"
    );
    assert_eq!(prompt.buttons(), ["English", "Español"]);
    tg.tap(&maria, &prompt, "Español").await;
    let got = tg.wait_for(maria.id, 4).await;
    assert_eq!(got[3].text, "Listo, te escribiré en español.");
    tg.wait_for_calls("editMessageText", 1).await;
    assert!(
        shown(&app, maria.id, prompt.message_id)
            .text
            .ends_with("✔ Español")
    );
    // Her next survey is in Spanish; a re-import of the roster (which says English) keeps it.
    let s = import_caregivers(app.store(), &[("C1", "Maria", "Gonzalez", MARIA)]).await;
    assert_eq!(s.unchanged, 1, "{s}");
    app.start("weekly-pulse", &[MARIA]).await;
    let got = tg.wait_for(maria.id, 5).await;
    assert!(got[4].text.starts_with("Hola Maria"), "{got:?}");
    app.stop().await;
}

async fn long_polling_links_and_answers_by_buttons(app: TestApp) {
    roster(&app).await;
    let maria = maria();
    let tg = app.tg();
    link(&app, &maria, MARIA).await;
    app.start("weekly-pulse", &[MARIA]).await;
    let question = tg.wait_for(maria.id, 3).await[2].clone();
    tg.tap(&maria, &question, "4").await;
    tg.wait_for(maria.id, 4).await;
    tg.wait_for_calls("editMessageText", 1).await;
    assert_eq!(
        answers(&app).await,
        vec![("week_score".into(), Value::from(4))]
    );
    // Updates came by getUpdates, each confirmed by the next offset; no webhook was touched.
    let polls = tg.calls_to("getUpdates");
    assert!(polls.len() >= 3, "{}", polls.len());
    assert!(polls.iter().all(|c| c.params["timeout"] == 25));
    assert!(tg.calls_to("setWebhook").is_empty() && tg.calls_to("deleteWebhook").is_empty());
    app.stop().await;
}

async fn a_request_to_stop_is_asked_about_here_or_stops_an_unlinked_chat(app: TestApp) {
    roster(&app).await;
    let maria = maria();
    let tg = app.tg();
    link(&app, &maria, MARIA).await;
    app.start("weekly-pulse", &[MARIA]).await;
    tg.wait_for(maria.id, 3).await;
    tg.say(&maria, "4").await;
    tg.wait_for(maria.id, 4).await;
    tg.say(&maria, "maybe").await;
    tg.wait_for(maria.id, 5).await;
    // The answer to "what would help?", which also asks to stop: kept, then asked about.
    tg.say(&maria, "please stop texting me").await;
    let got = tg.wait_for(maria.id, 7).await;
    assert!(got[5].text.starts_with("Thank you, Maria!"), "{got:?}");
    assert_eq!(
        got[6].text,
        "Do you want to stop all messages from Sunrise Home Care here? Send STOP to confirm."
    );
    assert_eq!(
        answers(&app).await.last(),
        Some(&("help".into(), Value::from("please stop texting me")))
    );
    assert_eq!(
        last_consent(&app, &chat(&maria)).await.unwrap().0,
        "opted_in"
    );
    // A chat linked to no one has no question waiting: a plain request stops it at once.
    let ana = Person::new(7_002, "Ana");
    tg.say(&ana, "Stop messaging me").await;
    let got = tg.wait_for(ana.id, 1).await;
    assert!(
        got[0]
            .text
            .starts_with("You will get no more messages from Sunrise Home Care here."),
        "{got:?}"
    );
    assert_eq!(
        last_consent(&app, &chat(&ana)).await,
        Some((
            "opted_out".into(),
            "request".into(),
            "Stop messaging me".into()
        ))
    );
    app.stop().await;
}
