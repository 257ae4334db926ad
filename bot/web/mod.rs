//! Updates in: the HTTP router (webhooks, health, metrics), Telegram long polling, and the one
//! error type every handler returns. Handlers only verify, normalize and hand over to the runner;
//! `router()` needs no socket, so tests can call it with `oneshot`.

pub mod telegram;
mod twilio;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Notify;

use crate::domain::phone::mask_text;
use crate::metrics::Metrics;
use crate::runner::Runner;
use crate::store::{AnyStore, Store};

/// What the handlers share.
pub struct AppState {
    pub runner: Arc<Runner<AnyStore>>,
    pub metrics: Arc<Metrics>,
    /// Twilio's auth token, to verify webhook signatures; `None` when SMS is off.
    pub twilio_auth_token: Option<crate::config::Secret>,
    /// `CAREBOT_PUBLIC_URL`: the base URL Twilio signs.
    pub public_url: Option<String>,
    /// Pokes the SMS dispatcher when a reply is queued.
    pub sms_wake: Option<Arc<Notify>>,
    /// What time inbound messages are received at (the system clock, which tests move).
    pub clock: crate::clock::Clock,
    /// Telegram's webhook: its secret and the update handler; `None` when Telegram is off.
    pub telegram: Option<TelegramWebhook>,
}

/// What `POST /webhooks/telegram` needs.
pub struct TelegramWebhook {
    /// `TELEGRAM_WEBHOOK_SECRET`, which Telegram sends back in every request.
    pub secret: crate::config::Secret,
    pub handler: Arc<telegram::Telegram>,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/webhooks/twilio/sms", post(twilio::inbound_sms))
        .route("/webhooks/twilio/status", post(twilio::status_callback))
        .route("/webhooks/telegram", post(telegram::webhook))
        .with_state(state)
}

/// The one error type handlers return: 4xx say what was wrong; 5xx say nothing and log.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, text) = match &self {
            AppError::Forbidden(m) => (StatusCode::FORBIDDEN, m.clone()),
            AppError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m.clone()),
            AppError::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            AppError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m.clone()),
            AppError::Internal(e) => {
                tracing::error!(error = %mask_text(&format!("{e:#}")), "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_owned(),
                )
            }
        };
        (status, text).into_response()
    }
}

async fn healthz(State(state): State<Arc<AppState>>) -> Result<&'static str, AppError> {
    // Healthy means the database answers, not just that the process is up.
    state
        .runner
        .store
        .outbound_counts()
        .await
        .map_err(|e| AppError::Unavailable(format!("database: {e}")))?;
    Ok("ok")
}

async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, AppError> {
    let counts = state
        .runner
        .store
        .outbound_counts()
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&counts),
    )
        .into_response())
}
