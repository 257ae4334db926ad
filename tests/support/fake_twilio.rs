//! A fake Twilio for tests, over real HTTP on 127.0.0.1: it checks Basic auth, takes the
//! form-encoded `Messages.json` create request, answers 201 with a Message resource shaped like
//! Twilio's, or with Twilio's error body on demand, and posts status callbacks signed the way
//! Twilio signs them. Shapes follow ../shared/conformance/twilio_api/.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;

pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const AUTH_TOKEN: &str = "fake-auth-token-for-tests";
pub const FROM: &str = "+13125550199";

/// One create request as the fake received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub sid: Option<String>,
    pub to: String,
    pub from: Option<String>,
    pub body: String,
    pub status_callback: Option<String>,
    pub params: Vec<(String, String)>,
    pub http_status: u16,
}

/// What the fake does with the next create request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 201 with a Message resource.
    Accept,
    /// Twilio's error body with this HTTP status and error code.
    Error {
        status: u16,
        code: u32,
        message: String,
    },
    /// Accept, but answer only after this long (to provoke client timeouts).
    Slow(Duration),
}

impl Reply {
    /// Twilio's refusal of a `To` it cannot text (error 21211), worded as Twilio words it: the
    /// message quotes the number.
    pub fn invalid_to(to: &str) -> Reply {
        Reply::Error {
            status: 400,
            code: 21211,
            message: format!("The 'To' number {to} is not a valid phone number."),
        }
    }
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    script: VecDeque<Reply>,
    next_sid: u64,
}

#[derive(Clone)]
pub struct FakeTwilio {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeTwilio {
    pub async fn start() -> FakeTwilio {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/2010-04-01/Accounts/{account}/Messages.json", post(create))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeTwilio { url, inner }
    }

    /// Queues what the next create requests get, in order; afterwards every request is accepted.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().unwrap().script.extend(replies);
    }

    /// Every create request received, accepted or not.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// The messages Twilio accepted (what a phone would receive).
    pub fn delivered(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.sid.is_some())
            .collect()
    }

    pub fn delivered_to(&self, to: &str) -> Vec<String> {
        self.delivered()
            .into_iter()
            .filter(|r| r.to == to)
            .map(|r| r.body)
            .collect()
    }

    /// Waits (bounded) until `n` messages have been accepted for `to`.
    pub async fn wait_for(&self, to: &str, n: usize) -> Vec<String> {
        for _ in 0..200 {
            let got = self.delivered_to(to);
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let got = self.delivered_to(to);
        panic!(
            "expected {n} message(s) to {to}, got {}: {got:?}",
            got.len()
        );
    }

    /// Posts a status callback for an accepted message to the URL it asked for, signed like
    /// Twilio signs it. Returns the HTTP status carebot answered.
    pub async fn send_status(&self, sid: &str, status: &str, error_code: Option<&str>) -> u16 {
        let r = self
            .received()
            .into_iter()
            .find(|r| r.sid.as_deref() == Some(sid))
            .expect("a message with this sid");
        let url = r
            .status_callback
            .clone()
            .expect("the message asked for a status callback");
        let mut params = vec![
            ("AccountSid".to_owned(), ACCOUNT_SID.to_owned()),
            ("MessageSid".to_owned(), sid.to_owned()),
            ("MessageStatus".to_owned(), status.to_owned()),
            ("To".to_owned(), r.to.clone()),
            ("From".to_owned(), r.from.clone().unwrap_or_default()),
        ];
        if let Some(code) = error_code {
            params.push(("ErrorCode".to_owned(), code.to_owned()));
        }
        post_signed(&url, &url, &params).await
    }
}

/// Posts a form to `target`, signed for `signed_url` (the public URL Twilio would have used).
pub async fn post_signed(target: &str, signed_url: &str, params: &[(String, String)]) -> u16 {
    let sig = carebot::channel::twilio::signature::sign(AUTH_TOKEN, signed_url, params);
    reqwest::Client::new()
        .post(target)
        .header("X-Twilio-Signature", sig)
        .form(params)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn authorized(headers: &HeaderMap) -> bool {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}"))
    );
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected)
}

fn error(status: u16, code: u32, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(serde_json::json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status,
        })),
    )
        .into_response()
}

async fn create(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut received = Received {
        sid: None,
        to: get("To").unwrap_or_default(),
        from: get("From"),
        body: get("Body").unwrap_or_default(),
        status_callback: get("StatusCallback"),
        params: params.clone(),
        http_status: 0,
    };
    let reply = if account != ACCOUNT_SID || !authorized(&headers) {
        Reply::Error {
            status: 401,
            code: 20003,
            message: "Authenticate".into(),
        }
    } else if received.to.is_empty() {
        Reply::Error {
            status: 400,
            code: 21604,
            message: "A 'To' phone number is required.".into(),
        }
    } else if received.from.is_none() && get("MessagingServiceSid").is_none() {
        Reply::Error {
            status: 400,
            code: 21603,
            message: "A 'From' phone number is required.".into(),
        }
    } else {
        inner
            .lock()
            .unwrap()
            .script
            .pop_front()
            .unwrap_or(Reply::Accept)
    };
    match reply {
        Reply::Error {
            status,
            code,
            message,
        } => {
            received.http_status = status;
            inner.lock().unwrap().received.push(received);
            error(status, code, &message)
        }
        Reply::Accept | Reply::Slow(_) => {
            let sid = {
                let mut i = inner.lock().unwrap();
                i.next_sid += 1;
                format!("SM{:032x}", i.next_sid)
            };
            received.sid = Some(sid.clone());
            received.http_status = 201;
            if let Reply::Slow(d) = reply {
                // Twilio has the message (a phone will get it) before it answers: record it
                // first, so a client that dies while waiting still "sent" it.
                inner.lock().unwrap().received.push(received.clone());
                tokio::time::sleep(d).await;
                received.http_status = 0;
            }
            let now = chrono::Utc::now().to_rfc2822();
            let resource = serde_json::json!({
                "account_sid": ACCOUNT_SID,
                "api_version": "2010-04-01",
                "body": received.body,
                "date_created": now,
                "date_sent": null,
                "date_updated": now,
                "direction": "outbound-api",
                "error_code": null,
                "error_message": null,
                "from": received.from,
                "messaging_service_sid": get("MessagingServiceSid"),
                "num_media": "0",
                "num_segments": "1",
                "price": null,
                "price_unit": "USD",
                "sid": sid,
                "status": "queued",
                "subresource_uris": { "media": format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}/Media.json") },
                "to": received.to,
                "uri": format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json"),
            });
            if received.http_status == 201 {
                inner.lock().unwrap().received.push(received);
            }
            (StatusCode::CREATED, axum::Json(resource)).into_response()
        }
    }
}
