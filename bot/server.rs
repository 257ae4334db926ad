//! `carebot serve`: the HTTP server, the outbox dispatcher and the scheduler in one process,
//! started together and stopped together. On SIGTERM/SIGINT it stops accepting requests,
//! lets in-flight requests and sends finish, and only then exits, so nothing is lost.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::catalog::Catalog;
use crate::channel::twilio::client::TwilioClient;
use crate::clock::Clock;
use crate::config::Config;
use crate::dispatch::{DispatchSettings, Dispatcher};
use crate::metrics::Metrics;
use crate::runner::Runner;
use crate::scheduler::Scheduler;
use crate::store::{AnyStore, Store};
use crate::web::{AppState, router};

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
                crate::cli::redact_url(&config.database_url)
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
    tasks.spawn(scheduler(
        runner.clone(),
        sms_wake.clone(),
        shutdown.clone(),
        clock.clone(),
    ));

    let state = Arc::new(AppState {
        runner,
        metrics,
        twilio_auth_token: config.twilio.as_ref().map(|t| t.auth_token.clone()),
        public_url: config.public_url.clone(),
        sms_wake,
        clock,
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

/// The one scheduler, once a second: shift offers (waves, deadlines), then
/// [`crate::scheduler`]'s conversation timers, recurring and one-off starts and training
/// assignments, then the follow-up clock of escalations, and once a minute the supervisors'
/// daily digests. Every piece of due work is claimed in its own transaction (a start by a
/// lease), so several instances can run this loop side by side.
async fn scheduler(
    runner: Arc<Runner<AnyStore>>,
    wake: Option<Arc<tokio::sync::Notify>>,
    mut shutdown: watch::Receiver<bool>,
    clock: Clock,
) {
    let mut last_digests: Option<DateTime<Utc>> = None;
    let scheduler = Scheduler::new(runner.clone(), Arc::new(clock.clone()));
    loop {
        let now = clock.now();
        let mut queued = false;
        match runner.run_due_shifts(now).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(offers = n, "shift offers sent a wave or expired");
                queued = true;
            }
            Err(e) => tracing::error!(error = %e, "shift offer tick failed"),
        }
        match scheduler.tick().await {
            Ok(tick) if tick.is_empty() => {}
            Ok(tick) => {
                tracing::info!(
                    recurring = tick.fired,
                    started = tick.started,
                    timers = tick.timers,
                    "scheduled work done"
                );
                queued = true;
            }
            Err(e) => tracing::error!(error = %e, "scheduler tick failed"),
        }
        match runner.run_due_escalations(now).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(escalations = n, "escalations routed or raised");
                queued = true;
            }
            Err(e) => tracing::error!(error = %e, "escalation follow-up failed"),
        }
        // Once a minute (either way: a clock set back must not stop the digests).
        if last_digests.is_none_or(|t| (now - t).abs() >= chrono::Duration::minutes(1)) {
            last_digests = Some(now);
            if let Err(e) = runner.send_digests(now).await {
                tracing::error!(error = %e, "daily digests failed");
            }
            queued = true;
        }
        if queued && let Some(w) = &wake {
            w.notify_one();
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
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
        Err(e) => tracing::warn!(error = %e, "cannot check the escalation contacts"),
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
