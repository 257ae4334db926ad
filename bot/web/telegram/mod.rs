//! Telegram updates in, by webhook or by long polling ([`polling`]); both hand each update to
//! [`Telegram::handle`]: normalized by the channel, decided by the runner, and the tapped message
//! updated after the commit. The webhook checks the secret Telegram was given with `setWebhook`
//! (constant time; wrong or missing is a 401 and nothing is recorded), and answers 200 once the
//! update is committed; a 5xx means nothing was recorded, and Telegram delivers it again.

pub mod polling;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use teloxide::types::Update;
use tokio::sync::Notify;

use super::{AppError, AppState};
use crate::channel::telegram::markup;
use crate::channel::telegram::{Normalized, TapScreen, TelegramClient, normalize, secret_matches};
use crate::domain::phone::masked_error;
use crate::metrics::Metrics;
use crate::model::{InboundOutcome, TapVerdict};
use crate::runner::{RunError, Runner};
use crate::store::AnyStore;

pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

pub async fn webhook(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, AppError> {
    let Some(telegram) = &state.telegram else {
        state.metrics.count_inbound("telegram", "rejected");
        return Err(AppError::Unauthorized(
            "this server does not take Telegram updates by webhook".into(),
        ));
    };
    let given = headers.get(SECRET_HEADER).map(|v| v.as_bytes());
    if !secret_matches(telegram.secret.expose(), given) {
        state.metrics.count_inbound("telegram", "rejected");
        return Err(AppError::Unauthorized(
            "missing or wrong X-Telegram-Bot-Api-Secret-Token".into(),
        ));
    }
    let update: teloxide::types::Update = serde_json::from_slice(&body).map_err(|e| {
        state.metrics.count_inbound("telegram", "rejected");
        AppError::BadRequest(format!("not a Telegram update: {e}"))
    })?;
    telegram
        .handler
        .handle(&update)
        .await
        .map_err(|e| AppError::Internal(anyhow::Error::new(e).context("Telegram update")))?;
    Ok(StatusCode::OK)
}

/// Telegram as `serve` runs it: updates in (webhook or polling), the runner, the screen after.
pub struct Telegram {
    pub runner: Arc<Runner<AnyStore>>,
    pub client: TelegramClient,
    pub metrics: Arc<Metrics>,
    /// Pokes the Telegram dispatcher when a reply is queued.
    pub wake: Arc<Notify>,
    /// What time updates are received at (the system clock, which tests move).
    pub clock: crate::clock::Clock,
}

impl Telegram {
    /// Handles one update. `Ok` means it is committed (or was not for carebot); `Err` means
    /// nothing was recorded and it must be delivered again.
    pub async fn handle(&self, update: &Update) -> Result<(), RunError> {
        let (inbound, screen) = match normalize(update, self.client.bot_id(), self.clock.now()) {
            Normalized::Ignored(why) => {
                self.metrics.count_inbound("telegram", "ignored");
                tracing::debug!(update = update.id.0, why, "Telegram update ignored");
                return Ok(());
            }
            Normalized::Inbound(inbound, screen) => (inbound, screen),
        };
        let outcome = match self.runner.handle_telegram(&inbound).await {
            Ok(outcome) => outcome,
            Err(e) => {
                self.metrics.count_inbound("telegram", "error");
                return Err(e);
            }
        };
        match outcome.outcome {
            InboundOutcome::Processed => {
                self.metrics.count_inbound("telegram", "processed");
                self.wake.notify_one();
            }
            InboundOutcome::Duplicate => self.metrics.count_inbound("telegram", "duplicate"),
        }
        if let Some(screen) = screen {
            // After the commit and off the request: the webhook's 200 does not wait for it.
            let client = self.client.clone();
            let chat = inbound.chat.masked();
            tokio::spawn(async move {
                if let Err(e) = show_tap(&client, &screen, outcome.tap.as_ref()).await {
                    tracing::warn!(%chat, error = %masked_error(&e), "could not update the tapped message");
                }
            });
        }
        Ok(())
    }
}

/// Answers a tap and updates its message: an accepted answer shows under the question and the
/// buttons go, so a second tap does nothing; a closed question says so and loses its buttons.
async fn show_tap(
    client: &TelegramClient,
    screen: &TapScreen,
    verdict: Option<&TapVerdict>,
) -> Result<(), String> {
    match verdict {
        // A redelivered update: its first delivery answered already; just stop any spinner.
        None => {
            let _ = client.answer_tap(&screen.callback_id, None).await;
            Ok(())
        }
        Some(TapVerdict::Accepted) => {
            client.answer_tap(&screen.callback_id, None).await?;
            match (&screen.message, &screen.label) {
                (Some((chat, id, text)), Some(label)) => {
                    let shown = format!("{text}\n\n✔ {}", markup::chosen_label(label));
                    client.edit_text(*chat, *id, &shown).await
                }
                (Some((chat, id, _)), None) => client.remove_buttons(*chat, *id).await,
                (None, _) => Ok(()),
            }
        }
        Some(TapVerdict::Closed { notice }) => {
            client.answer_tap(&screen.callback_id, Some(notice)).await?;
            match &screen.message {
                Some((chat, id, _)) => client.remove_buttons(*chat, *id).await,
                None => Ok(()),
            }
        }
    }
}
