//! `carebot serve`: the HTTP server, the outbox dispatcher and the scheduler in one process,
//! started together and stopped together. On SIGTERM/SIGINT it stops accepting requests,
//! lets in-flight requests and sends finish, and only then exits, so nothing is lost.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::catalog::Catalog;
use crate::channel::twilio::client::TwilioClient;
use crate::config::Config;
use crate::dispatch::{DispatchSettings, Dispatcher};
use crate::metrics::Metrics;
use crate::runner::Runner;
use crate::scheduler::{Scheduler, SystemClock};
use crate::store::{AnyStore, Store};
use crate::web::{AppState, router};

/// Runs everything on `listener` until `shutdown` turns true.
pub async fn run(
    config: Config,
    catalog: Arc<Catalog>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
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
            );
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
    ));

    let state = Arc::new(AppState {
        runner,
        metrics,
        twilio_auth_token: config.twilio.as_ref().map(|t| t.auth_token.clone()),
        public_url: config.public_url.clone(),
        sms_wake,
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

/// The one scheduler (see [`crate::scheduler`]) on the wall clock, once a second: recurring
/// and one-off starts, training assignments, reminders and expiries. Every piece of due work is
/// claimed in its own transaction (a start by a lease), so several instances can run this loop
/// side by side.
async fn scheduler(
    runner: Arc<Runner<AnyStore>>,
    wake: Option<Arc<tokio::sync::Notify>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let scheduler = Scheduler::new(runner, Arc::new(SystemClock));
    loop {
        match scheduler.tick().await {
            Ok(tick) if tick.is_empty() => {}
            Ok(tick) => {
                tracing::info!(
                    recurring = tick.fired,
                    started = tick.started,
                    timers = tick.timers,
                    "scheduled work done"
                );
                if let Some(w) = &wake {
                    w.notify_one();
                }
            }
            Err(e) => tracing::error!(error = %e, "scheduler tick failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
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
