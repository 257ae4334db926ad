//! Twilio's webhooks: inbound SMS and delivery status. Verify the signature over the public
//! URL, normalize, hand to the runner or the dispatcher, answer with empty TwiML.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;

use super::{AppError, AppState};
use crate::channel::twilio::{self as tw, WebhookError};
use crate::dispatch;
use crate::model::InboundOutcome;

const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>";

/// Verifies and parses a Twilio webhook body.
fn verified(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<(String, String)>, AppError> {
    let Some(token) = &state.twilio_auth_token else {
        return Err(AppError::Forbidden(
            "SMS is not configured on this server".into(),
        ));
    };
    let params = tw::parse_form(body).map_err(|e| AppError::BadRequest(e.to_string()))?;
    // Twilio signs the URL it was given; behind a proxy that is CAREBOT_PUBLIC_URL. Without
    // it, fall back to the Host header: a forged Host still cannot forge the HMAC.
    let base = match &state.public_url {
        Some(u) => u.clone(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("https://{host}")
        }
    };
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let url = format!("{base}{path}");
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok());
    tw::verify(token.expose(), &url, &params, signature).map_err(|e| match e {
        WebhookError::BadSignature => AppError::Forbidden(e.to_string()),
        WebhookError::Malformed(m) => AppError::BadRequest(m),
    })?;
    Ok(params)
}

pub async fn inbound_sms(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, AppError> {
    let params = match verified(&state, &uri, &headers, &body) {
        Ok(p) => p,
        Err(e) => {
            state.metrics.count_inbound("sms", "rejected");
            return Err(e);
        }
    };
    let inbound = tw::inbound(&params, state.clock.now()).map_err(|e| {
        state.metrics.count_inbound("sms", "rejected");
        AppError::BadRequest(e.to_string())
    })?;
    match state.runner.handle_inbound(&inbound).await {
        Ok(InboundOutcome::Processed) => {
            state.metrics.count_inbound("sms", "processed");
            if let Some(w) = &state.sms_wake {
                w.notify_one();
            }
        }
        Ok(InboundOutcome::Duplicate) => state.metrics.count_inbound("sms", "duplicate"),
        Err(e) => {
            state.metrics.count_inbound("sms", "error");
            // A 5xx means nothing was recorded: Twilio's retry is safe.
            return Err(AppError::Internal(
                anyhow::Error::new(e).context(format!("inbound from {}", inbound.address.masked())),
            ));
        }
    }
    Ok(([(header::CONTENT_TYPE, "text/xml")], EMPTY_TWIML))
}

pub async fn status_callback(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, AppError> {
    let params = verified(&state, &uri, &headers, &body)?;
    let Some(report) =
        tw::status_report(&params, uri.query()).map_err(|e| AppError::BadRequest(e.to_string()))?
    else {
        return Ok(([(header::CONTENT_TYPE, "text/xml")], EMPTY_TWIML));
    };
    let matched = dispatch::record_status_report(&state.runner.store, &state.clock, &report)
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    if !matched {
        tracing::warn!(sid = %report.message_sid, "status callback for an unknown message");
    }
    Ok(([(header::CONTENT_TYPE, "text/xml")], EMPTY_TWIML))
}
