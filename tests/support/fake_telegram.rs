//! A fake Telegram Bot API for tests, over real HTTP on 127.0.0.1: it speaks
//! `POST /bot<token>/<method>` (JSON, and multipart for setWebhook) with Telegram's envelope
//! (`{"ok":true,"result":…}` or `{"ok":false,"error_code":…,"description":…,"parameters":…}`),
//! keeps the messages the bot sent as a chat would show them (edits and keyboards included),
//! records every call, fails sendMessage on demand (429 with `retry_after`, 403 "bot was blocked
//! by the user", 500, 400 with `migrate_to_chat_id`), and plays the people: their updates reach
//! carebot by its webhook (with the secret header) or by getUpdates. Shapes follow
//! ../shared/conformance/telegram/.
//!
//! [`FakeTelegram::transcript`] is the conversation as a person would have seen it.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;

pub const TOKEN: &str = "123456789:AAE_fake-token-for-tests";
pub const BOT_ID: i64 = 123456789;
pub const BOT_USERNAME: &str = "sunrise_care_bot";
pub const SECRET: &str = "webhook-secret_for-tests";

/// One Bot API call as the fake received it.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub params: Value,
    /// The HTTP status the fake answered.
    pub status: u16,
    pub at: Instant,
}

/// A message the bot sent, as the chat shows it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub chat: i64,
    pub message_id: i64,
    pub text: String,
    /// The keyboard: an inline keyboard, a reply keyboard, a removal, or none.
    pub markup: Option<Value>,
}

impl Sent {
    /// The labels of its inline buttons, row by row flattened.
    pub fn buttons(&self) -> Vec<String> {
        self.markup
            .as_ref()
            .and_then(|m| m["inline_keyboard"].as_array())
            .map(|rows| {
                rows.iter()
                    .flat_map(|r| r.as_array().cloned().unwrap_or_default())
                    .map(|b| b["text"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether it asks for the person's phone number with a reply keyboard.
    pub fn asks_for_contact(&self) -> bool {
        self.markup
            .as_ref()
            .and_then(|m| m["keyboard"].as_array())
            .is_some_and(|rows| {
                rows.iter()
                    .flat_map(|r| r.as_array().cloned().unwrap_or_default())
                    .any(|b| b["request_contact"] == json!(true))
            })
    }

    fn callback_data(&self, label: &str) -> Option<String> {
        let rows = self.markup.as_ref()?["inline_keyboard"].as_array()?.clone();
        rows.iter()
            .flat_map(|r| r.as_array().cloned().unwrap_or_default())
            .find(|b| b["text"] == json!(label))
            .and_then(|b| b["callback_data"].as_str().map(str::to_owned))
    }
}

/// What the next sendMessage gets.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 429 with `parameters.retry_after`.
    TooManyRequests { retry_after: u32 },
    /// 403 "Forbidden: bot was blocked by the user".
    Blocked,
    /// 500.
    ServerError,
    /// 400 "group chat was upgraded to a supergroup chat", with `parameters.migrate_to_chat_id`:
    /// the one refusal whose parameters name a chat (teloxide: `RequestError::MigrateToChatId`).
    Migrated { to: i64 },
}

/// A person on Telegram; their private chat with the bot has their id.
#[derive(Debug, Clone)]
pub struct Person {
    pub id: i64,
    pub first_name: String,
    pub language_code: String,
}

impl Person {
    pub fn new(id: i64, first_name: &str) -> Person {
        Person {
            id,
            first_name: first_name.to_owned(),
            language_code: "en".to_owned(),
        }
    }

    fn user(&self) -> Value {
        json!({"id": self.id, "is_bot": false, "first_name": self.first_name,
               "language_code": self.language_code})
    }

    fn chat(&self) -> Value {
        json!({"id": self.id, "first_name": self.first_name, "type": "private"})
    }
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    sent: Vec<Sent>,
    script: VecDeque<Reply>,
    /// Updates waiting for getUpdates.
    pending: Vec<Value>,
    next_update_id: i64,
    next_message_id: i64,
    webhook: Option<(String, String)>,
    /// Where to post updates when the test runs carebot with a webhook: its URL and secret.
    deliver_to: Option<(String, String)>,
    names: BTreeMap<i64, String>,
    log: Vec<String>,
}

#[derive(Clone)]
pub struct FakeTelegram {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    arrived: Arc<Notify>,
}

impl FakeTelegram {
    pub async fn start() -> FakeTelegram {
        let inner = Arc::new(Mutex::new(Inner {
            next_update_id: 500_000_001,
            next_message_id: 1,
            ..Inner::default()
        }));
        let arrived = Arc::new(Notify::new());
        let app = Router::new()
            .route("/{bot}/{method}", post(method))
            .with_state((inner.clone(), arrived.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeTelegram {
            url,
            inner,
            arrived,
        }
    }

    /// Updates go to carebot's webhook at `url` with `secret`, as Telegram would post them.
    pub fn deliver_to_webhook(&self, url: &str, secret: &str) {
        self.inner.lock().unwrap().deliver_to = Some((url.to_owned(), secret.to_owned()));
    }

    /// Queues what the next sendMessage calls get, in order; afterwards every one succeeds.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().unwrap().script.extend(replies);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    pub fn calls_to(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }

    /// The registered webhook: URL and secret.
    pub fn webhook(&self) -> Option<(String, String)> {
        self.inner.lock().unwrap().webhook.clone()
    }

    /// Every message the bot sent to `chat`, as the chat shows it now.
    pub fn chat(&self, chat: i64) -> Vec<Sent> {
        self.inner
            .lock()
            .unwrap()
            .sent
            .iter()
            .filter(|s| s.chat == chat)
            .cloned()
            .collect()
    }

    pub fn texts(&self, chat: i64) -> Vec<String> {
        self.chat(chat).into_iter().map(|s| s.text).collect()
    }

    /// Waits (bounded) until the bot has sent `n` messages to `chat`; returns them.
    pub async fn wait_for(&self, chat: i64, n: usize) -> Vec<Sent> {
        // 20 s: a chat gets at most one message a second.
        for _ in 0..800 {
            let got = self.chat(chat);
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let got = self.texts(chat);
        panic!(
            "expected {n} message(s) in chat {chat}, got {}: {got:?}",
            got.len()
        );
    }

    /// Waits (bounded) until `method` has been called `n` times; returns the calls.
    pub async fn wait_for_calls(&self, method: &str, n: usize) -> Vec<Call> {
        for _ in 0..400 {
            let got = self.calls_to(method);
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "expected {n} call(s) to {method}, got {:?}",
            self.calls_to(method)
        );
    }

    /// The conversation as the people saw it, one line per event.
    pub fn transcript(&self) -> String {
        self.inner.lock().unwrap().log.join("\n")
    }

    // -----------------------------------------------------------------------------------------
    // The people

    /// `person` types `text`. Returns the HTTP status carebot answered (200 when polled).
    pub async fn say(&self, person: &Person, text: &str) -> u16 {
        self.note(person, format!("{}: {text}", person.first_name));
        let message = self.message(person, json!({"text": text}));
        self.send_update(json!({ "message": message })).await
    }

    /// `person` shares a contact: their own (`owner` = their id) or someone else's.
    pub async fn share_contact(&self, person: &Person, phone: &str, owner: Option<i64>) -> u16 {
        let whose = if owner == Some(person.id) {
            "their own phone number"
        } else {
            "someone else's contact"
        };
        self.note(person, format!("{} shares {whose}", person.first_name));
        let mut contact = json!({"phone_number": phone, "first_name": person.first_name});
        if let Some(owner) = owner {
            contact["user_id"] = owner.into();
        }
        let message = self.message(person, json!({ "contact": contact }));
        self.send_update(json!({ "message": message })).await
    }

    /// `person` taps the button labelled `label` under `message`, as a Telegram app would: only
    /// a button still on screen can be tapped.
    pub async fn tap(&self, person: &Person, message: &Sent, label: &str) -> u16 {
        let now = self
            .chat(message.chat)
            .into_iter()
            .find(|s| s.message_id == message.message_id)
            .expect("the message exists");
        let data = now.callback_data(label).unwrap_or_else(|| {
            panic!(
                "no button {label:?} under message {}: {:?}",
                now.message_id,
                now.buttons()
            )
        });
        self.note(person, format!("{} taps [{label}]", person.first_name));
        self.deliver_tap(person, &now, &data).await
    }

    /// A tap carrying `data`, on screen or not: a second tap racing the first one's edit, or a
    /// button left on an old message.
    pub async fn tap_data(&self, person: &Person, message: &Sent, data: &str) -> u16 {
        self.note(
            person,
            format!(
                "{} taps an old button under #{}",
                person.first_name, message.message_id
            ),
        );
        self.deliver_tap(person, message, data).await
    }

    /// The callback query a tap sends.
    async fn deliver_tap(&self, person: &Person, message: &Sent, data: &str) -> u16 {
        let id = format!("cb{}", rand::random::<u32>());
        let mut shown = json!({"message_id": message.message_id, "from": bot_user(),
            "chat": person.chat(), "date": 1_760_000_000, "text": message.text});
        if let Some(m) = &message.markup
            && m.get("inline_keyboard").is_some()
        {
            shown["reply_markup"] = m.clone();
        }
        let query = json!({"id": id, "from": person.user(), "message": shown,
            "chat_instance": format!("ci{}", person.id), "data": data});
        self.send_update(json!({ "callback_query": query })).await
    }

    /// `person` blocks the bot.
    pub async fn block(&self, person: &Person) -> u16 {
        self.note(person, format!("{} blocks the bot", person.first_name));
        let bot = json!({"id": BOT_ID, "is_bot": true, "first_name": "Sunrise Care"});
        let change = json!({"chat": person.chat(), "from": person.user(), "date": 1_760_000_000,
            "old_chat_member": {"user": bot, "status": "member"},
            "new_chat_member": {"user": bot, "status": "kicked", "until_date": 0}});
        self.send_update(json!({ "my_chat_member": change })).await
    }

    /// Posts a raw update (with a fresh `update_id` unless it has one) and returns carebot's
    /// HTTP status; by getUpdates it is queued and 200 is returned.
    pub async fn send_update(&self, mut update: Value) -> u16 {
        let target = {
            let mut inner = self.inner.lock().unwrap();
            if update.get("update_id").is_none() {
                update["update_id"] = inner.next_update_id.into();
                inner.next_update_id += 1;
            }
            if inner.deliver_to.is_none() {
                inner.pending.push(update.clone());
            }
            inner.deliver_to.clone()
        };
        match target {
            Some((url, secret)) => post_update(&url, Some(&secret), &update).await,
            None => {
                self.arrived.notify_waiters();
                200
            }
        }
    }

    /// A text message update (without sending it), for tests that post it themselves.
    pub fn text_update(&self, person: &Person, text: &str, update_id: i64) -> Value {
        json!({"update_id": update_id, "message": self.message(person, json!({"text": text}))})
    }

    fn message(&self, person: &Person, content: Value) -> Value {
        let id = {
            let mut inner = self.inner.lock().unwrap();
            inner.names.insert(person.id, person.first_name.clone());
            inner.next_message_id += 1;
            inner.next_message_id - 1
        };
        let mut message = json!({"message_id": id, "from": person.user(),
            "chat": person.chat(), "date": 1_760_000_000});
        for (k, v) in content.as_object().unwrap() {
            message[k] = v.clone();
        }
        message
    }

    fn note(&self, person: &Person, line: String) {
        let mut inner = self.inner.lock().unwrap();
        inner.names.insert(person.id, person.first_name.clone());
        inner.log.push(format!("  {line}"));
    }
}

/// Posts `update` to carebot's webhook as Telegram does, with the secret header when given.
pub async fn post_update(url: &str, secret: Option<&str>, update: &Value) -> u16 {
    let mut request = reqwest::Client::new().post(url).json(update);
    if let Some(secret) = secret {
        request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
    }
    request.send().await.unwrap().status().as_u16()
}

fn bot_user() -> Value {
    json!({"id": BOT_ID, "is_bot": true, "first_name": "Sunrise Care", "username": BOT_USERNAME})
}

fn ok(result: Value) -> Response {
    axum::Json(json!({"ok": true, "result": result})).into_response()
}

fn error(status: u16, description: &str, parameters: Option<Value>) -> Response {
    let mut body = json!({"ok": false, "error_code": status, "description": description});
    if let Some(p) = parameters {
        body["parameters"] = p;
    }
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

/// The fields of a multipart/form-data body (teloxide sends setWebhook that way).
fn multipart_fields(headers: &HeaderMap, body: &[u8]) -> Value {
    let boundary = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("boundary=").nth(1))
        .map(|b| b.trim_matches('"').to_owned())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(body);
    let mut fields = serde_json::Map::new();
    for part in text.split(&format!("--{boundary}")) {
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let Some(name) = head
            .split("name=\"")
            .nth(1)
            .and_then(|n| n.split('"').next())
        else {
            continue;
        };
        let value = value.trim_end_matches("\r\n");
        fields.insert(
            name.to_owned(),
            serde_json::from_str(value).unwrap_or_else(|_| Value::from(value)),
        );
    }
    Value::Object(fields)
}

type Shared = (Arc<Mutex<Inner>>, Arc<Notify>);

async fn method(
    State((inner, arrived)): State<Shared>,
    Path((bot, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_multipart = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/"));
    let params = if is_multipart {
        multipart_fields(&headers, &body)
    } else if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body).unwrap_or(json!({}))
    };
    // teloxide names methods by their payload type (`SendMessage`); Telegram ignores case.
    let method = {
        let mut c = method.chars();
        c.next()
            .map(|f| f.to_lowercase().chain(c).collect::<String>())
            .unwrap_or_default()
    };
    let response = if bot != format!("bot{TOKEN}") {
        error(401, "Unauthorized", None)
    } else if method == "getUpdates" {
        get_updates(&inner, &arrived, &params).await
    } else {
        answer(&mut inner.lock().unwrap(), &method, &params)
    };
    inner.lock().unwrap().calls.push(Call {
        method,
        params,
        status: response.status().as_u16(),
        at: Instant::now(),
    });
    response
}

fn message_json(sent: &Sent) -> Value {
    let mut m = json!({"message_id": sent.message_id, "from": bot_user(),
        "chat": {"id": sent.chat, "first_name": "Someone", "type": "private"},
        "date": 1_760_000_000, "text": sent.text});
    // Telegram echoes only an inline keyboard in a Message.
    if let Some(markup) = &sent.markup
        && markup.get("inline_keyboard").is_some()
    {
        m["reply_markup"] = markup.clone();
    }
    m
}

fn describe_markup(markup: &Option<Value>) -> String {
    let Some(m) = markup else {
        return String::new();
    };
    if let Some(rows) = m["inline_keyboard"].as_array() {
        let labels: Vec<String> = rows
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|b| format!("[{}]", b["text"].as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        return format!("\n      buttons: {}", labels.join(" / "));
    }
    if m.get("keyboard").is_some() {
        let label = m["keyboard"][0][0]["text"].as_str().unwrap_or_default();
        return format!("\n      keyboard: [{label}] (shares the phone number)");
    }
    if m.get("remove_keyboard").is_some() {
        return "\n      (keyboard removed)".into();
    }
    String::new()
}

fn answer(inner: &mut Inner, method: &str, params: &Value) -> Response {
    match method {
        "getMe" => ok(
            json!({"id": BOT_ID, "is_bot": true, "first_name": "Sunrise Care",
            "username": BOT_USERNAME, "can_join_groups": false,
            "can_read_all_group_messages": false, "supports_inline_queries": false,
            "has_main_web_app": false}),
        ),
        "sendMessage" => {
            let chat = params["chat_id"].as_i64().unwrap_or_default();
            match inner.script.pop_front() {
                Some(Reply::TooManyRequests { retry_after }) => {
                    return error(
                        429,
                        &format!("Too Many Requests: retry after {retry_after}"),
                        Some(json!({ "retry_after": retry_after })),
                    );
                }
                Some(Reply::Blocked) => {
                    return error(403, "Forbidden: bot was blocked by the user", None);
                }
                Some(Reply::ServerError) => return error(500, "Internal Server Error", None),
                Some(Reply::Migrated { to }) => {
                    return error(
                        400,
                        "Bad Request: group chat was upgraded to a supergroup chat",
                        Some(json!({ "migrate_to_chat_id": to })),
                    );
                }
                None => {}
            }
            let sent = Sent {
                chat,
                message_id: inner.next_message_id,
                text: params["text"].as_str().unwrap_or_default().to_owned(),
                markup: params.get("reply_markup").cloned(),
            };
            inner.next_message_id += 1;
            let name = inner.names.get(&chat).cloned().unwrap_or(chat.to_string());
            inner.log.push(format!(
                "bot -> {name} (#{}): {}{}",
                sent.message_id,
                sent.text,
                describe_markup(&sent.markup)
            ));
            inner.sent.push(sent.clone());
            ok(message_json(&sent))
        }
        "answerCallbackQuery" => {
            let line = match params["text"].as_str() {
                Some(notice) => format!("bot answers the tap with a notice: \"{notice}\""),
                None => "bot answers the tap".to_owned(),
            };
            inner.log.push(line);
            ok(json!(true))
        }
        "editMessageText" | "editMessageReplyMarkup" => {
            let chat = params["chat_id"].as_i64().unwrap_or_default();
            let id = params["message_id"].as_i64().unwrap_or_default();
            let Some(sent) = inner
                .sent
                .iter_mut()
                .find(|s| s.chat == chat && s.message_id == id)
            else {
                return error(400, "Bad Request: message to edit not found", None);
            };
            if let Some(text) = params["text"].as_str() {
                sent.text = text.to_owned();
            }
            // An edit without reply_markup removes the inline keyboard.
            sent.markup = params.get("reply_markup").cloned();
            let shown = message_json(sent);
            let line = match params["text"].as_str() {
                Some(text) => format!(
                    "bot edits #{id}: ...{}{}",
                    text.lines().last().unwrap_or_default(),
                    if params.get("reply_markup").is_none() {
                        " (buttons removed)"
                    } else {
                        ""
                    }
                ),
                None => format!("bot removes the buttons of #{id}"),
            };
            inner.log.push(line);
            ok(shown)
        }
        "setWebhook" => {
            let url = params["url"].as_str().unwrap_or_default().to_owned();
            let secret = params["secret_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            inner.webhook = (!url.is_empty()).then_some((url, secret));
            ok(json!(true))
        }
        "deleteWebhook" => {
            inner.webhook = None;
            ok(json!(true))
        }
        "getWebhookInfo" => ok(json!({
            "url": inner.webhook.as_ref().map(|w| w.0.clone()).unwrap_or_default(),
            "has_custom_certificate": false,
            "pending_update_count": inner.pending.len(),
        })),
        other => error(
            404,
            &format!("Not Found: method {other} is not faked"),
            None,
        ),
    }
}

async fn get_updates(inner: &Arc<Mutex<Inner>>, arrived: &Notify, params: &Value) -> Response {
    if inner.lock().unwrap().webhook.is_some() {
        return error(
            409,
            "can't use getUpdates method while webhook is active",
            None,
        );
    }
    let offset = params["offset"].as_i64().unwrap_or(0);
    let timeout = params["timeout"].as_u64().unwrap_or(0).min(25);
    let deadline = Instant::now() + Duration::from_secs(timeout);
    loop {
        let waiting = arrived.notified();
        {
            let mut inner = inner.lock().unwrap();
            // An offset confirms every update before it.
            inner
                .pending
                .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            if !inner.pending.is_empty() {
                return ok(Value::Array(inner.pending.clone()));
            }
        }
        if tokio::time::timeout_at(deadline, waiting).await.is_err() {
            return ok(json!([]));
        }
    }
}
