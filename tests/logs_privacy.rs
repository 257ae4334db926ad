//! No personal data in the logs, end to end: the real server (webhooks, dispatchers, scheduler)
//! with SMS and Telegram on, a fake Twilio and a fake Bot API, and every log line of the process
//! captured at TRACE for every target (carebot's own and its dependencies': sqlx, reqwest,
//! teloxide through `log`). A pulse survey is answered by SMS and by Telegram, a low score
//! raises an escalation that a supervisor acknowledges, Twilio refuses a number with error
//! 21211 (whose message quotes the number) and Telegram refuses a send with a message that
//! names a chat. Then no roster phone number (in any form), chat id, name, message body or
//! credential may appear in any line.
//!
//! One test, which runs the story on SQLite and then on PostgreSQL (when
//! CAREBOT_TEST_POSTGRES_URL is set), one after the other: the capture is process-wide, so the
//! lines of each run are the ones written between its start and its end.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use carebot::domain::{Address, Channel};
use carebot::model::OutboundStatus;
use carebot::store::Store;
use support::app::{TelegramMode, TestApp, spawn_telegram_app};
use support::fake_telegram::{self, Person};
use support::fake_twilio;
use support::roster::{import_caregivers, import_supervisors};

/// Maria answers the pulse by SMS; her low score reaches Dana.
const MARIA: &str = "+13125550123";
/// Rosa's number is the one Twilio refuses.
const ROSA: &str = "+13125550131";
/// Luz answers by Telegram.
const LUZ: &str = "+13125550137";
/// The supervisor.
const DANA: &str = "+13125550142";
/// Luz's Telegram user id, which is also her private chat's id.
const LUZ_CHAT: i64 = 6_150_723_948;
/// The supergroup Telegram says a chat moved to (a chat id too).
const SUPERGROUP: i64 = -1_001_987_654_321;

const ROSTER_NAMES: [&str; 9] = [
    "Maria",
    "Gonzalez",
    "Rosa",
    "Delgado",
    "Luz",
    "Herrera",
    "Dana",
    "Smith",
    "dana.smith",
];

/// What the people wrote that is long enough to be recognised in a log line (the digits and
/// yes/no answers are everywhere: in ids, timestamps and SQL).
const MARIA_HELP: &str = "Mr Alvarez yelled at me again";
const LUZ_HELP: &str = "Need a ride to Hines on Tuesdays";

/// Every log line of this process, as `fmt` writes it (no colours).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn since(&self, offset: usize) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()[offset..]).into_owned()
    }
}

/// The process-wide capture, installed once: the global subscriber, at TRACE for every target,
/// also receives what dependencies log through the `log` crate.
fn capture() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_ansi(false)
            .with_writer(captured.clone())
            .try_init()
            .expect("no other subscriber in this test binary");
        captured
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_phone_number_chat_id_name_or_message_text_reaches_the_logs() {
    let captured = capture();
    for (name, db) in support::stores().await {
        let from = captured.len();
        let seen = run_the_story(spawn_telegram_app(db, TelegramMode::Webhook).await).await;
        let logs = captured.since(from);
        check(name, &logs, &seen);
    }
}

/// What the people wrote and were sent during the story.
struct Seen {
    inbound: Vec<String>,
    outbound: Vec<String>,
}

async fn run_the_story(app: TestApp) -> Seen {
    roster(&app).await;

    // Twilio refuses Rosa's number, quoting it.
    app.twilio.script([fake_twilio::Reply::invalid_to(ROSA)]);
    app.start_all("weekly-pulse", &[ROSA]).await;
    app.settle().await;
    let rosa = Address::new(Channel::Sms, ROSA);
    assert_eq!(
        app.store().outbound_to(&rosa).await.unwrap()[0].0,
        OutboundStatus::Failed
    );

    // Maria answers by SMS; her 2/5 reaches Dana, who acknowledges it.
    app.start_all("weekly-pulse", &[MARIA]).await;
    app.twilio.wait_for(MARIA, 1).await;
    app.post_sms(MARIA, "2", "SM-in-1").await;
    app.twilio.wait_for(MARIA, 2).await;
    let alert = app.twilio.wait_for(DANA, 1).await.remove(0);
    assert!(alert.contains("Maria G."), "{alert}");
    let id: i64 = alert.split_whitespace().nth(1).unwrap().parse().unwrap();
    app.post_sms(MARIA, "yes", "SM-in-2").await;
    app.twilio.wait_for(MARIA, 3).await;
    app.post_sms(MARIA, MARIA_HELP, "SM-in-3").await;
    app.twilio.wait_for(MARIA, 4).await;
    let ack = format!("ACK {id}");
    app.post_sms(DANA, &ack, "SM-in-4").await;
    app.twilio.wait_for(DANA, 2).await;
    app.twilio.wait_for(MARIA, 5).await;

    // Luz links her Telegram by sharing her number and answers there.
    let tg = app.tg();
    let luz = Person::new(LUZ_CHAT, "Luz");
    assert_eq!(tg.say(&luz, "/start").await, 200);
    tg.wait_for(LUZ_CHAT, 1).await;
    let shared = tg
        .share_contact(&luz, LUZ.trim_start_matches('+'), Some(LUZ_CHAT))
        .await;
    assert_eq!(shared, 200);
    tg.wait_for(LUZ_CHAT, 2).await;
    app.start_all("weekly-pulse", &[LUZ]).await;
    tg.wait_for(LUZ_CHAT, 3).await;
    tg.say(&luz, "4").await;
    tg.wait_for(LUZ_CHAT, 4).await;
    tg.say(&luz, "maybe").await;
    tg.wait_for(LUZ_CHAT, 5).await;
    tg.say(&luz, LUZ_HELP).await;
    let chat = tg.wait_for(LUZ_CHAT, 6).await;
    assert!(chat[5].text.starts_with("Thank you, Luz!"), "{chat:?}");

    // Telegram refuses the answer to her HELP, naming the supergroup the chat moved to.
    tg.script([fake_telegram::Reply::Migrated { to: SUPERGROUP }]);
    tg.say(&luz, "HELP").await;
    tg.wait_for_calls("sendMessage", 7).await;
    app.settle().await;
    let luz_chat = Address::new(Channel::Telegram, LUZ_CHAT.to_string());
    let last = app.store().outbound_to(&luz_chat).await.unwrap();
    assert_eq!(last.last().unwrap().0, OutboundStatus::Failed);

    let mut outbound: Vec<String> = app.twilio.received().into_iter().map(|r| r.body).collect();
    outbound.extend(
        tg.calls_to("sendMessage")
            .into_iter()
            .filter_map(|c| c.params["text"].as_str().map(str::to_owned)),
    );
    app.stop().await;
    Seen {
        inbound: vec![MARIA_HELP.into(), ack, LUZ_HELP.into()],
        outbound,
    }
}

/// Dana supervises Maria, Rosa and Luz, all with written consent on file: imported through the
/// real roster import, as an operator would.
async fn roster(app: &TestApp) {
    let dana = ("S1", "Dana Smith", DANA, "Chicago North");
    import_supervisors(app.store(), &[dana]).await;
    let caregivers = [
        ("C1", "Maria", "Gonzalez", MARIA),
        ("C2", "Rosa", "Delgado", ROSA),
        ("C3", "Luz", "Herrera", LUZ),
    ];
    let s = import_caregivers(app.store(), &caregivers).await;
    assert_eq!(s.added, 3, "{s}");
}

/// Every form a roster number is written in: E.164, without `+`, national, and the usual
/// US punctuations.
fn forms(e164: &str) -> Vec<String> {
    let national = &e164[2..];
    let (area, exchange, line) = (&national[..3], &national[3..6], &national[6..]);
    vec![
        e164.to_owned(),
        e164[1..].to_owned(),
        national.to_owned(),
        format!("{area}-{exchange}-{line}"),
        format!("({area}) {exchange}-{line}"),
        format!("{area}.{exchange}.{line}"),
    ]
}

/// Pieces of a message body to look for: every 20 characters, overlapping, so that a line
/// carrying part of a message is found too.
fn pieces(body: &str) -> Vec<String> {
    let chars: Vec<char> = body.chars().collect();
    if chars.len() <= 20 {
        return vec![body.to_owned()];
    }
    (0..=chars.len() - 20)
        .step_by(10)
        .map(|i| chars[i..i + 20].iter().collect())
        .collect()
}

fn check(store: &str, logs: &str, seen: &Seen) {
    let lines: Vec<&str> = logs.lines().collect();
    eprintln!("{store}: {} log lines captured", lines.len());

    // The capture worked, and holds what the story must have logged: this test cannot pass on
    // empty or filtered-out logs.
    let with = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    assert!(with(" DEBUG ") > 0, "{store}: no DEBUG line captured");
    assert!(
        with("carebot::dispatch: sent ") >= 12,
        "{store}: too few `sent` lines:\n{logs}"
    );
    assert!(
        with("sent id=") > 0 && with("to=sms:+1********42") > 0,
        "{store}: no `sent` line for the alert to the supervisor:\n{logs}"
    );
    assert!(
        with("to=telegram:********48") > 0,
        "{store}: no line for Luz's chat, masked:\n{logs}"
    );
    let refused: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("provider refused the message"))
        .collect();
    assert!(
        refused.iter().any(|l| l.contains("code=\"21211\"")
            && l.contains("to=sms:+1********31")
            && l.contains("The 'To' number +1********31 is not a valid phone number.")),
        "{store}: no masked 21211 refusal: {refused:#?}"
    );
    assert!(
        refused
            .iter()
            .any(|l| l.contains("supergroup") && l.contains("************21")),
        "{store}: no masked Telegram refusal: {refused:#?}"
    );

    // Then nothing personal, in any line.
    let mut needles: Vec<(String, String)> = Vec::new();
    for phone in [MARIA, ROSA, LUZ, DANA] {
        for form in forms(phone) {
            needles.push((format!("phone number {phone}"), form));
        }
    }
    for chat in [LUZ_CHAT, SUPERGROUP] {
        needles.push(("chat id".into(), chat.abs().to_string()));
    }
    for name in ROSTER_NAMES {
        needles.push(("name".into(), name.to_owned()));
    }
    // Nor a credential: the bot token rides in every Bot API URL, and request errors print
    // their URL.
    let (_, bot_secret) = fake_telegram::TOKEN.split_once(':').unwrap();
    for (what, secret) in [
        ("the Telegram bot token", bot_secret),
        ("the Telegram webhook secret", fake_telegram::SECRET),
        ("the Twilio auth token", fake_twilio::AUTH_TOKEN),
    ] {
        needles.push((what.into(), secret.into()));
    }
    for text in &seen.inbound {
        needles.push(("inbound text".into(), text.clone()));
    }
    assert!(seen.outbound.len() >= 15, "{:?}", seen.outbound);
    for body in &seen.outbound {
        for piece in pieces(body) {
            needles.push((format!("outbound message {body:?}"), piece));
        }
    }
    let mut leaks = Vec::new();
    for (what, needle) in &needles {
        for line in lines.iter().filter(|l| l.contains(needle.as_str())) {
            leaks.push(format!("{what} ({needle:?}) in:\n    {line}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "{store}: {} personal data in the logs:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}
