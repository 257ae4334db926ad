//! Long polling (`getUpdates`), for a carebot that Telegram cannot reach (no
//! `CAREBOT_PUBLIC_URL`): one loop that asks for updates and hands each, in order, to
//! [`Telegram::handle`]. An update is confirmed (the next `offset`) only once it is committed,
//! so a crash or a database error means Telegram delivers it again, and the unique key on the
//! update id absorbs any that were committed after all.
//!
//! Only one process may poll a bot at a time (Telegram answers the second with a 409); several
//! instances behind one bot use the webhook instead.

use std::sync::Arc;
use std::time::Duration;

use teloxide::{ApiError, RequestError};
use tokio::sync::watch;

use super::Telegram;
use crate::channel::telegram::TelegramClient;
use crate::domain::phone::{mask_text, masked_error};

/// How long one `getUpdates` waits for something to arrive.
pub const POLL_SECONDS: u32 = 25;

/// Polls until `shutdown` turns true. `client` must allow requests longer than [`POLL_SECONDS`].
pub async fn run(
    telegram: Arc<Telegram>,
    client: TelegramClient,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut offset: Option<i32> = None;
    let mut failures: u32 = 0;
    loop {
        let polled = tokio::select! {
            r = client.updates(offset, POLL_SECONDS) => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let pause = match polled {
            Ok(updates) => {
                failures = 0;
                let mut pause = None;
                for update in updates {
                    match telegram.handle(&update).await {
                        Ok(()) => offset = Some(update.id.0 as i32 + 1),
                        Err(e) => {
                            // Not confirmed: Telegram hands it (and those after it) over again.
                            tracing::error!(update = update.id.0, error = %masked_error(&e), "cannot handle a Telegram update; will retry");
                            pause = Some(Duration::from_secs(2));
                            break;
                        }
                    }
                }
                pause
            }
            Err(RequestError::Api(ApiError::CantGetUpdates)) => {
                tracing::error!(
                    "Telegram has a webhook set, so long polling gets nothing: set CAREBOT_PUBLIC_URL to receive updates by webhook, or run `carebot telegram delete-webhook` to poll"
                );
                Some(Duration::from_secs(30))
            }
            Err(RequestError::Api(ApiError::TerminatedByOtherGetUpdates)) => {
                tracing::warn!(
                    "another process is polling this bot; only one may (use the webhook for several instances)"
                );
                Some(Duration::from_secs(5))
            }
            Err(e) => {
                failures += 1;
                let wait = crate::channel::backoff(failures).min(Duration::from_secs(60));
                tracing::warn!(error = %mask_text(&client.describe(&e)), retry_in_s = wait.as_secs(), "getUpdates failed");
                Some(wait)
            }
        };
        if let Some(wait) = pause {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}
