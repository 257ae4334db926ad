//! The Telegram Bot API client: teloxide's `Bot` pointed at `TELEGRAM_API_URL`, used for every
//! call carebot makes (sendMessage for the dispatcher; answerCallbackQuery and editMessage* after
//! a tap; getUpdates for long polling; setWebhook, getMe for operators), and the classification
//! of every way a send can fail, because "retry", "give up" and "we cannot know" lead to
//! different rows in the outbox.
//!
//! The bot token is part of every request URL, so nothing here prints a request error as is:
//! [`TelegramClient::describe`] keeps the cause and drops the URL.

use std::time::Duration;

use teloxide::payloads::setters::*;
use teloxide::requests::Requester;
use teloxide::types::{
    AllowedUpdate, ButtonRequest, CallbackQueryId, ChatId, InlineKeyboardButton,
    InlineKeyboardMarkup, KeyboardButton, KeyboardMarkup, KeyboardRemove, MessageId, ReplyMarkup,
    Update,
};
use teloxide::{ApiError, Bot, RequestError};

use super::markup::{self, Markup};
use crate::channel::{SendError, Sender};
use crate::config::Secret;
use crate::domain::Channel;
use crate::model::OutboundRow;

/// The code a send fails with when the person blocked the bot: the dispatcher opts them out.
pub const BLOCKED: &str = "telegram:bot_blocked";

/// The updates carebot asks Telegram for: messages, button taps, and being blocked or unblocked.
pub const ALLOWED_UPDATES: [AllowedUpdate; 3] = [
    AllowedUpdate::Message,
    AllowedUpdate::CallbackQuery,
    AllowedUpdate::MyChatMember,
];

#[derive(Clone)]
pub struct TelegramClient {
    bot: Bot,
    token: Secret,
    bot_id: String,
}

impl std::fmt::Debug for TelegramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramClient")
            .field("bot_id", &self.bot_id)
            .finish_non_exhaustive()
    }
}

impl TelegramClient {
    /// A client for the bot with `token`, at `api_url` (`https://api.telegram.org` or a fake),
    /// whose requests give up after `timeout` (long polls add their own wait to it).
    pub fn new(token: &Secret, api_url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let bot_id = token
            .expose()
            .split_once(':')
            .map(|(id, _)| id)
            .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "TELEGRAM_BOT_TOKEN does not look like a bot token (<digits>:<secret>, as BotFather gives it)"
                )
            })?
            .to_owned();
        let url = reqwest::Url::parse(api_url.trim_end_matches('/'))
            .map_err(|e| anyhow::anyhow!("TELEGRAM_API_URL {api_url:?} is not a URL: {e}"))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("a TLS-capable HTTP client builds");
        Ok(TelegramClient {
            bot: Bot::with_client(token.expose(), http).set_api_url(url),
            token: token.clone(),
            bot_id,
        })
    }

    /// The bot's numeric id (the token's first part): it makes update ids unique across bots.
    pub fn bot_id(&self) -> &str {
        &self.bot_id
    }

    /// An error as it may be logged or stored: the cause, never the token-bearing URL.
    pub fn describe(&self, e: &RequestError) -> String {
        let text = match e {
            RequestError::Network(n) => {
                let mut cause = String::new();
                let mut source = std::error::Error::source(&**n);
                while let Some(s) = source {
                    cause = s.to_string();
                    source = s.source();
                }
                if n.is_timeout() {
                    "network error: timed out".to_owned()
                } else if n.is_connect() {
                    format!("network error: cannot connect: {cause}")
                } else {
                    format!("network error: {cause}")
                }
            }
            RequestError::InvalidJson { .. } => {
                "Telegram's answer was not the JSON expected".into()
            }
            other => other.to_string(),
        };
        text.replace(self.token.expose(), "<token>")
    }

    /// Sends one outbound row; returns Telegram's message id.
    pub async fn send(&self, row: &OutboundRow) -> Result<String, SendError> {
        let chat: i64 = row
            .address
            .value
            .parse()
            .map_err(|_| SendError::Permanent {
                code: None,
                message: "not a Telegram chat id".into(),
            })?;
        let mut request = self.bot.send_message(ChatId(chat), row.body.clone());
        match markup::markup(&row.buttons, row.conversation_id) {
            Markup::None => {}
            Markup::Inline(rows) => {
                request =
                    request.reply_markup(InlineKeyboardMarkup::new(rows.into_iter().map(|r| {
                        r.into_iter()
                            .map(|(label, data)| InlineKeyboardButton::callback(label, data))
                    })));
            }
            Markup::ShareContact(label) => {
                request = request.reply_markup(ReplyMarkup::Keyboard(
                    KeyboardMarkup::new([[
                        KeyboardButton::new(label).request(ButtonRequest::Contact)
                    ]])
                    .resize_keyboard()
                    .one_time_keyboard(),
                ));
            }
            Markup::Remove => {
                request = request.reply_markup(ReplyMarkup::KeyboardRemove(KeyboardRemove::new()));
            }
        }
        match request.await {
            Ok(message) => Ok(message.id.0.to_string()),
            Err(e) => Err(self.classify(&e)),
        }
    }

    /// What a failed request means for the outbox.
    pub fn classify(&self, e: &RequestError) -> SendError {
        let message = self.describe(e);
        match e {
            // Flood control: Telegram says exactly when to try again.
            RequestError::RetryAfter(wait) => SendError::Transient {
                message,
                retry_after: Some(wait.duration()),
            },
            RequestError::Api(ApiError::BotBlocked) => SendError::Permanent {
                code: Some(BLOCKED.into()),
                message,
            },
            RequestError::Api(ApiError::Unknown(description)) if !is_client_error(description) => {
                // "Internal Server Error", "Bad Gateway"...: Telegram did not take it.
                SendError::Transient {
                    message,
                    retry_after: None,
                }
            }
            // Every other description is a 4xx: the chat is gone, the text is refused...
            RequestError::Api(_) | RequestError::MigrateToChatId(_) => SendError::Permanent {
                code: None,
                message,
            },
            RequestError::Network(n) if n.is_connect() || n.is_builder() => SendError::Transient {
                message,
                retry_after: None,
            },
            // Sent, maybe: a timeout mid-request or an answer we cannot read. Sending again could
            // show the caregiver the message twice, so it is left `unknown` for a person.
            RequestError::Network(_) | RequestError::InvalidJson { .. } => {
                SendError::Unknown { message }
            }
            RequestError::Io(_) => SendError::Transient {
                message,
                retry_after: None,
            },
        }
    }

    /// Answers a tap (stops the client's spinner), with a short notice when given.
    pub async fn answer_tap(&self, id: &str, notice: Option<&str>) -> Result<(), String> {
        let mut request = self
            .bot
            .answer_callback_query(CallbackQueryId(id.to_owned()));
        if let Some(text) = notice {
            request = request.text(text);
        }
        request.await.map(|_| ()).map_err(|e| self.describe(&e))
    }

    /// Replaces a message's text (and so removes its buttons).
    pub async fn edit_text(&self, chat: i64, message: i32, text: &str) -> Result<(), String> {
        self.bot
            .edit_message_text(ChatId(chat), MessageId(message), text)
            .await
            .map(|_| ())
            .map_err(|e| self.describe(&e))
    }

    /// Removes a message's buttons, keeping its text.
    pub async fn remove_buttons(&self, chat: i64, message: i32) -> Result<(), String> {
        self.bot
            .edit_message_reply_markup(ChatId(chat), MessageId(message))
            .await
            .map(|_| ())
            .map_err(|e| self.describe(&e))
    }

    /// Registers `url` as the webhook, with the secret Telegram sends back in every request.
    pub async fn set_webhook(&self, url: &str, secret: &str) -> Result<(), String> {
        let url = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        self.bot
            .set_webhook(url)
            .secret_token(secret)
            .allowed_updates(ALLOWED_UPDATES)
            .await
            .map(|_| ())
            .map_err(|e| self.describe(&e))
    }

    /// Removes the webhook (pending updates are kept), so long polling can take over.
    pub async fn delete_webhook(&self) -> Result<(), String> {
        self.bot
            .delete_webhook()
            .await
            .map(|_| ())
            .map_err(|e| self.describe(&e))
    }

    /// The webhook URL Telegram has on file; empty when there is none (polling).
    pub async fn webhook_url(&self) -> Result<String, String> {
        self.bot
            .get_webhook_info()
            .await
            .map(|info| info.url.map(|u| u.to_string()).unwrap_or_default())
            .map_err(|e| self.describe(&e))
    }

    /// The bot's username, as in `t.me/<username>`.
    pub async fn username(&self) -> Result<String, String> {
        self.bot
            .get_me()
            .await
            .map(|me| me.username().to_owned())
            .map_err(|e| self.describe(&e))
    }

    /// One long poll: the updates after `offset`, waiting up to `timeout` seconds for some.
    pub async fn updates(
        &self,
        offset: Option<i32>,
        timeout: u32,
    ) -> Result<Vec<Update>, RequestError> {
        let mut request = self
            .bot
            .get_updates()
            .timeout(timeout)
            .allowed_updates(ALLOWED_UPDATES);
        if let Some(offset) = offset {
            request = request.offset(offset);
        }
        request.await
    }
}

/// Whether an error description Telegram sent (and teloxide did not recognise) is the caller's
/// fault, which no retry fixes. Telegram prefixes those with the HTTP reason of the 4xx.
fn is_client_error(description: &str) -> bool {
    [
        "Bad Request",
        "Unauthorized",
        "Forbidden",
        "Not Found",
        "Conflict",
        "Request Entity Too Large",
    ]
    .iter()
    .any(|prefix| description.starts_with(prefix))
}

impl Sender for TelegramClient {
    fn channel(&self) -> Channel {
        Channel::Telegram
    }
    async fn send(&self, row: &OutboundRow) -> Result<String, SendError> {
        TelegramClient::send(self, row).await
    }
    /// A Telegram message is one message, however long.
    fn cost(&self, _row: &OutboundRow) -> u32 {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use teloxide::types::Seconds;

    const TOKEN: &str = "123456:ABC-secret_token";

    fn client() -> TelegramClient {
        TelegramClient::new(
            &Secret(TOKEN.into()),
            "http://127.0.0.1:9",
            Duration::from_secs(1),
        )
        .unwrap()
    }

    #[test]
    fn the_bot_id_is_the_first_part_of_the_token_and_a_bad_token_is_refused() {
        assert_eq!(client().bot_id(), "123456");
        for bad in ["", "nocolon", ":abc", "12a:abc"] {
            assert!(
                TelegramClient::new(&Secret(bad.into()), "http://x", Duration::from_secs(1))
                    .is_err()
            );
        }
    }

    #[test]
    fn the_debug_form_never_shows_the_token() {
        assert!(!format!("{:?}", client()).contains("secret_token"));
    }

    /// Every description teloxide knows, from the conformance file, classified: only the blocked
    /// bot opts out, and every one of them is a refusal no retry fixes.
    #[test]
    fn every_known_api_error_is_permanent_and_only_a_block_opts_out() {
        let doc: serde_json::Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/telegram/teloxide_api_error_descriptions.json"
        )))
        .unwrap();
        let c = client();
        let mut blocked = 0;
        for e in doc["api_errors"].as_array().unwrap() {
            let description = e["description"].as_str().unwrap();
            let sent = match e["variant"].as_str().unwrap() {
                // Matched by what Telegram sends, not by the text teloxide shows.
                "InvalidToken" => "Unauthorized",
                // Patterns, not literals.
                "CantParseEntities" | "Unknown" => continue,
                _ => description,
            };
            let body = serde_json::json!({ "data": sent });
            #[derive(serde::Deserialize)]
            struct W {
                data: ApiError,
            }
            let api: ApiError = serde_json::from_value::<W>(body).unwrap().data;
            match c.classify(&RequestError::Api(api)) {
                SendError::Permanent { code, message } => {
                    assert!(message.contains(description), "{message}");
                    if code.as_deref() == Some(BLOCKED) {
                        blocked += 1;
                        assert_eq!(description, "Forbidden: bot was blocked by the user");
                    }
                }
                other => panic!("{description}: {other:?}"),
            }
        }
        assert_eq!(blocked, 1);
    }

    #[test]
    fn flood_control_waits_exactly_and_server_errors_are_retried() {
        let c = client();
        assert_eq!(
            c.classify(&RequestError::RetryAfter(Seconds::from_seconds(7))),
            SendError::Transient {
                message: "Retry after 7s".into(),
                retry_after: Some(Duration::from_secs(7)),
            }
        );
        assert!(matches!(
            c.classify(&RequestError::Api(ApiError::Unknown(
                "Internal Server Error".into()
            ))),
            SendError::Transient {
                retry_after: None,
                ..
            }
        ));
        assert!(matches!(
            c.classify(&RequestError::Api(ApiError::Unknown(
                "Bad Request: something new".into()
            ))),
            SendError::Permanent { .. }
        ));
    }

    #[tokio::test]
    async fn a_network_error_is_described_without_the_token() {
        let c = client();
        // Nothing listens on port 9: the request fails to connect, which is safe to retry.
        let err = c.bot.get_me().await.unwrap_err();
        let text = c.describe(&err);
        assert!(
            !text.contains(TOKEN) && !text.contains("secret_token"),
            "{text}"
        );
        assert!(matches!(c.classify(&err), SendError::Transient { .. }));
    }
}
