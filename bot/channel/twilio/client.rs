//! The Twilio REST client the dispatcher sends SMS through: one form-encoded POST to
//! `Messages.json` with Basic auth, and a classification of every way it can fail, because
//! "retry", "give up" and "we cannot know" lead to different rows in the outbox.

use std::time::Duration;

use serde::Deserialize;

use crate::channel::{SendError, Sender};
use crate::config::TwilioConfig;
use crate::domain::Channel;
use crate::model::OutboundRow;

#[derive(Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    config: TwilioConfig,
    /// Base for `StatusCallback` (`CAREBOT_PUBLIC_URL`); without it Twilio is not asked to call back.
    public_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MessageResource {
    sid: String,
}

#[derive(Debug, Deserialize)]
struct TwilioErrorBody {
    code: Option<serde_json::Value>,
    message: Option<String>,
}

impl TwilioClient {
    pub fn new(config: TwilioConfig, public_url: Option<String>) -> TwilioClient {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("a TLS-capable HTTP client builds");
        TwilioClient {
            http,
            config,
            public_url,
        }
    }

    pub fn messages_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.config.api_url, self.config.account_sid
        )
    }

    /// Sends one SMS; returns Twilio's message sid. `id` is carebot's outbound id, carried in
    /// the status callback URL so a message can be matched even if its sid was never stored.
    pub async fn send(&self, id: i64, to: &str, body: &str) -> Result<String, SendError> {
        let mut form: Vec<(&str, String)> = vec![("To", to.to_owned()), ("Body", body.to_owned())];
        match (&self.config.messaging_service_sid, &self.config.from) {
            (Some(mss), _) => form.push(("MessagingServiceSid", mss.clone())),
            (None, Some(from)) => form.push(("From", from.clone())),
            (None, None) => {
                unreachable!("config requires TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID")
            }
        }
        if let Some(base) = &self.public_url {
            form.push((
                "StatusCallback",
                format!("{base}/webhooks/twilio/status?id={id}"),
            ));
        }
        let response = self
            .http
            .post(self.messages_url())
            .basic_auth(
                &self.config.account_sid,
                Some(self.config.auth_token.expose()),
            )
            .form(&form)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            // A request that never connected cannot have been delivered.
            Err(e) if e.is_connect() => {
                return Err(SendError::Transient {
                    message: format!("cannot connect to Twilio: {}", without_url(&e)),
                    retry_after: None,
                });
            }
            Err(e) => {
                return Err(SendError::Unknown {
                    message: format!("no answer from Twilio: {}", without_url(&e)),
                });
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) if status.is_success() => {
                return Err(SendError::Unknown {
                    message: format!(
                        "Twilio accepted but the answer was cut: {}",
                        without_url(&e)
                    ),
                });
            }
            Err(_) => Default::default(),
        };
        if status.is_success() {
            return serde_json::from_slice::<MessageResource>(&bytes)
                .map(|m| m.sid)
                .map_err(|e| SendError::Unknown {
                    message: format!("Twilio answered {status} without a message sid: {e}"),
                });
        }
        let err: Option<TwilioErrorBody> = serde_json::from_slice(&bytes).ok();
        let code = err.as_ref().and_then(|e| e.code.as_ref()).map(|c| match c {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let message = err
            .and_then(|e| e.message)
            .unwrap_or_else(|| format!("HTTP {status}"));
        if status.as_u16() == 429 || status.is_server_error() {
            Err(SendError::Transient {
                message: format!("Twilio {status}: {message}"),
                retry_after,
            })
        } else {
            Err(SendError::Permanent { code, message })
        }
    }
}

/// reqwest errors print the URL, which carries the account sid; keep logs to the cause.
fn without_url(e: &reqwest::Error) -> String {
    let mut e2 = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        e2 = s.to_string();
        source = s.source();
    }
    if e.is_timeout() {
        "timed out".into()
    } else if e2.is_empty() {
        "request failed".into()
    } else {
        e2
    }
}

impl Sender for TwilioClient {
    fn channel(&self) -> Channel {
        Channel::Sms
    }
    async fn send(&self, row: &OutboundRow) -> Result<String, SendError> {
        TwilioClient::send(self, row.id, &row.address.value, &row.body).await
    }
}
