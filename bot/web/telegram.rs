//! Telegram's webhook: check the secret Telegram was given with `setWebhook` (constant time;
//! wrong or missing is a 401 and nothing is recorded), read the update, hand it over, and answer
//! 200 once it is committed. A 5xx means nothing was recorded, and Telegram delivers it again.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::{AppError, AppState};
use crate::channel::telegram::secret_matches;

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
