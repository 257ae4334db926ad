//! `carebot serve`: the HTTP server, the outbox dispatcher and the scheduler in one process,
//! started together and stopped together. On SIGTERM/SIGINT it stops accepting requests,
//! lets in-flight requests and sends finish, and only then exits, so nothing is lost.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::catalog::Catalog;
use crate::channel::telegram::TelegramClient;
use crate::channel::twilio::client::TwilioClient;
use crate::clock::Clock;
use crate::config::Config;
use crate::dispatch::{DispatchSettings, Dispatcher};
use crate::domain::phone::masked_error;
use crate::metrics::Metrics;
use crate::privacy::Retention;
use crate::runner::Runner;
use crate::scheduler::{Scheduler, Tick};
use crate::store::{AnyStore, Store};
use crate::web::telegram::{self, Telegram};
use crate::web::{AppState, TelegramWebhook, router};

/// Runs everything on `listener` until `shutdown` turns true.
pub async fn run(
    config: Config,
    catalog: Arc<Catalog>,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    run_with_clock(config, catalog, listener, shutdown, Clock::system()).await
}

/// [`run`] on `clock`: tests move it forward to make hours pass at once.
pub async fn run_with_clock(
    config: Config,
    catalog: Arc<Catalog>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    clock: Clock,
) -> anyhow::Result<()> {
    let store = AnyStore::connect(&config.database_url)
        .await
        .with_context(|| {
            format!(
                "cannot open the database {}",
                crate::config::redact_url(&config.database_url)
            )
        })?;
    store
        .migrate()
        .await
        .context("cannot migrate the database")?;
    let runner = Arc::new(Runner::new(store.clone(), catalog, config.runner.clone()).await?);
    let metrics = Arc::new(Metrics::default());
    warn_about_unknown_contacts(&store, &config).await;

    let mut tasks = tokio::task::JoinSet::new();
    let sms_wake = match &config.twilio {
        None => {
            tracing::warn!(
                "SMS is off: set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM (or TWILIO_MESSAGING_SERVICE_SID) to turn it on"
            );
            None
        }
        Some(tw) => {
            if config.public_url.is_none() {
                tracing::warn!(
                    "CAREBOT_PUBLIC_URL is not set: Twilio signatures are checked against the Host header and no delivery status callbacks are requested"
                );
            }
            let client = TwilioClient::new(tw.clone(), config.public_url.clone());
            let dispatcher = Dispatcher::new(
                store.clone(),
                client,
                DispatchSettings {
                    mps: config.sms_mps,
                    max_attempts: 6,
                    caregiver_window: config.runner.caregiver_window,
                    concurrency: 16,
                    per_address_mps: None,
                },
                metrics.clone(),
            )
            .with_clock(clock.clone());
            let wake = dispatcher.wake.clone();
            tasks.spawn(dispatcher.run(shutdown.clone()));
            tracing::info!(mps = config.sms_mps, "SMS is on");
            Some(wake)
        }
    };
    let (telegram_wake, telegram_webhook) = match &config.telegram_bot_token {
        None => {
            tracing::info!("Telegram is off: set TELEGRAM_BOT_TOKEN to turn it on");
            (None, None)
        }
        Some(token) => {
            let (wake, webhook) = start_telegram(
                &config, token, &store, &runner, &metrics, &shutdown, &mut tasks, &clock,
            )?;
            (Some(wake), webhook)
        }
    };
    let wakes = sms_wake.iter().chain(&telegram_wake).cloned().collect();
    tasks.spawn(scheduler(
        runner.clone(),
        wakes,
        shutdown.clone(),
        clock.clone(),
        config.retention,
    ));

    let state = Arc::new(AppState {
        runner,
        metrics,
        twilio_auth_token: config.twilio.as_ref().map(|t| t.auth_token.clone()),
        public_url: config.public_url.clone(),
        sms_wake,
        clock,
        telegram: telegram_webhook,
    });
    tracing::info!(addr = %listener.local_addr()?, "carebot is listening");
    let mut stop = shutdown.clone();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
        .context("HTTP server failed")?;
    // The server has drained; make sure the workers heard too, then wait for them.
    let _ = shutdown.wait_for(|s| *s).await;
    while tasks.join_next().await.is_some() {}
    tracing::info!("carebot stopped cleanly");
    Ok(())
}

/// Turns Telegram on: its dispatcher, and updates by webhook (when `CAREBOT_PUBLIC_URL` is
/// set, so Telegram can reach us) or by long polling. Returns the dispatcher's wake and, in
/// webhook mode, what `POST /webhooks/telegram` needs.
///
/// The webhook is registered by `carebot telegram set-webhook`, never here, and never removed on
/// shutdown: several instances share one webhook, and one stopping must not cut off the rest.
#[allow(clippy::too_many_arguments)]
fn start_telegram(
    config: &Config,
    token: &crate::config::Secret,
    store: &AnyStore,
    runner: &Arc<Runner<AnyStore>>,
    metrics: &Arc<Metrics>,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut tokio::task::JoinSet<()>,
    clock: &Clock,
) -> anyhow::Result<(Arc<tokio::sync::Notify>, Option<TelegramWebhook>)> {
    let client = TelegramClient::new(token, &config.telegram_api_url, Duration::from_secs(15))?;
    let webhook_secret = match (&config.public_url, &config.telegram_webhook_secret) {
        (None, _) => None,
        (Some(_), Some(secret)) => Some(secret.clone()),
        (Some(_), None) => anyhow::bail!(
            "TELEGRAM_WEBHOOK_SECRET is required to receive Telegram updates by webhook (CAREBOT_PUBLIC_URL is set): choose one (A-Z, a-z, 0-9, _ and -) and run `carebot telegram set-webhook`"
        ),
    };
    let dispatcher = Dispatcher::new(
        store.clone(),
        client.clone(),
        DispatchSettings {
            mps: config.telegram_mps,
            max_attempts: 6,
            caregiver_window: config.runner.caregiver_window,
            concurrency: 16,
            per_address_mps: Some(config.telegram_chat_mps),
        },
        metrics.clone(),
    )
    .with_clock(clock.clone());
    let wake = dispatcher.wake.clone();
    tasks.spawn(dispatcher.run(shutdown.clone()));
    let handler = Arc::new(Telegram {
        runner: runner.clone(),
        client: client.clone(),
        metrics: metrics.clone(),
        wake: wake.clone(),
        clock: clock.clone(),
    });
    let (Some(public_url), Some(secret)) = (config.public_url.clone(), webhook_secret) else {
        let poller = TelegramClient::new(
            token,
            &config.telegram_api_url,
            Duration::from_secs(u64::from(telegram::polling::POLL_SECONDS) + 15),
        )?;
        tasks.spawn(telegram::polling::run(handler, poller, shutdown.clone()));
        tracing::info!(
            mps = config.telegram_mps,
            "Telegram is on: long polling (CAREBOT_PUBLIC_URL is not set)"
        );
        return Ok((wake, None));
    };
    let expected = format!("{public_url}/webhooks/telegram");
    tokio::spawn(async move {
        match client.webhook_url().await {
            Ok(url) if url == expected => {}
            Ok(url) => tracing::warn!(
                registered = %url,
                expected = %expected,
                "Telegram's webhook is not this server's: run `carebot telegram set-webhook`"
            ),
            Err(e) => tracing::warn!(error = %masked_error(&e), "cannot check Telegram's webhook"),
        }
    });
    tracing::info!(
        mps = config.telegram_mps,
        "Telegram is on: webhook at /webhooks/telegram"
    );
    Ok((wake, Some(TelegramWebhook { secret, handler })))
}

/// The scheduler's loop: one [`Scheduler::tick`] a second (everything due, see
/// [`crate::scheduler`]), then the dispatchers are woken if the tick queued anything.
async fn scheduler(
    runner: Arc<Runner<AnyStore>>,
    wakes: Vec<Arc<tokio::sync::Notify>>,
    mut shutdown: watch::Receiver<bool>,
    clock: Clock,
    retention: Retention,
) {
    let scheduler = Scheduler::new(runner, clock).with_retention(retention);
    loop {
        let tick = match scheduler.tick().await {
            Ok(tick) => tick,
            Err(failed) => {
                for job in &failed.failed {
                    tracing::error!(job = job.job, error = %masked_error(&job.error), "scheduled job failed; will retry");
                }
                failed.done
            }
        };
        log_tick(&tick, retention);
        if tick.queued() > 0 {
            for w in &wakes {
                w.notify_one();
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// One line for what a tick did, when it did anything, and one for what the sweep removed.
fn log_tick(tick: &Tick, retention: Retention) {
    if tick.queued() > 0 {
        tracing::info!(
            shifts = tick.shifts,
            recurring = tick.fired,
            started = tick.started,
            timers = tick.timers,
            escalations = tick.escalations,
            digests = tick.digests,
            "scheduled work done"
        );
    }
    let Some(swept) = tick.swept else { return };
    if swept.total() > 0 {
        tracing::info!(
            inbound = swept.inbound,
            outbound = swept.outbound,
            answers = swept.answers,
            conversations = swept.conversations,
            escalations = swept.escalations,
            notes = swept.notes,
            ledger = swept.ledger,
            other = swept.other,
            anonymous = swept.anonymous,
            days = retention.days,
            "retention: removed text past its time"
        );
    }
    if swept.mixed > 0 {
        tracing::info!(
            answers = swept.mixed,
            "anonymous answers of past days joined the others"
        );
    }
}

/// Says at start-up when the settings name a branch contact or program staff who is not on
/// the supervisors roster (they would be skipped when alerts are routed).
async fn warn_about_unknown_contacts(store: &AnyStore, config: &Config) {
    let named = config.runner.escalation.named();
    if named.is_empty() {
        return;
    }
    match store.supervisor_ids().await {
        Ok(known) => {
            for id in named.iter().filter(|id| !known.contains(id)) {
                tracing::warn!(
                    supervisor = %id,
                    "CAREBOT_BRANCH_CONTACTS or CAREBOT_PROGRAM_STAFF names a supervisor who is not on the roster; import them with `carebot import supervisors`"
                );
            }
        }
        Err(e) => tracing::warn!(error = %masked_error(&e), "cannot check the escalation contacts"),
    }
}

/// Turns SIGTERM or SIGINT into a shutdown signal.
pub fn shutdown_on_signals() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("can listen for SIGTERM");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down: finishing in-flight work");
        let _ = tx.send(true);
    });
    rx
}
