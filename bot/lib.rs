//! carebot runs scripted SMS and Telegram conversations for home-care workers. The modules below
//! are listed in the order an inbound message meets them: in at the web edge, verified by its
//! channel, read for consent words, decided by the runner over the engine, written by the store
//! in one transaction, sent by the dispatcher. The programs on the runner, the scheduler and
//! the process follow, then what every one of them stands on. `tests/layers.rs` holds the layers
//! (which may use which).

/// mimalloc instead of the system allocator, for the server, the CLI, the benches and the
/// tests alike. A batch of a start or a group of inbound messages allocates and frees many small
/// values on several threads (tokio's, and sqlx's one per SQLite connection); glibc's malloc
/// spent a fifth of a 100,000-caregiver start in its own locks and free lists.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Updates in: HTTP webhooks, health and metrics; Telegram's webhook and long polling.
pub mod web;
/// Transports: verify a provider's request (Twilio signatures, Telegram's webhook secret) and
/// normalize it; the provider clients and the `Sender` contract the dispatcher sends through.
pub mod channel;
/// Consent words, read before any flow: keywords (STOP, START, HELP, and Spanish forms) and
/// requests to stop in plain words, told apart from answers that merely contain a stop word.
pub mod consent;
/// The orchestrator: inbound -> consent -> engine -> one transaction -> outbox.
pub mod runner;
/// Flow files, reply matching and the pure engine.
pub mod flow;
/// Message templates (minijinja, strict, English fallback).
pub mod render;
/// Every flow and template, loaded and checked together (`flows check`).
pub mod catalog;
/// The store trait and its SQLite and PostgreSQL implementations.
pub mod store;
/// The outbox worker: pacing, quiet hours, retries, never twice.
pub mod dispatch;
/// What an outbound SMS costs: GSM-7 or UCS-2, and how many segments.
pub mod sms;
/// Quiet-hours windows in each person's own time zone.
pub mod quiet_hours;

/// Escalations after they are raised: routing, supervisor replies, follow-up clock, digests.
pub mod escalation;
/// Shift offers: waves of texts, the first YES wins (once), expiry, the supervisor told.
pub mod shifts;
/// The one scheduler tick, on a clock: shift waves, timers, recurring and one-off starts,
/// training, escalation follow-ups, digests and the retention sweep.
pub mod scheduler;
/// Roster CSV import, validated row by row.
pub mod roster;
/// `report pulse`: response rates, scores and escalation follow-up, week by week.
pub mod report;
/// Personal data over time: retention periods, a caregiver's export and erasure.
pub mod privacy;
/// Transcript tests kept with the flows (`flows test`), played through the real runner.
pub mod transcript;
/// `carebot serve`: server, dispatcher and scheduler, stopped together.
pub mod server;
/// The command line: serve, migrate, flows, simulate, import, start, export, report, shifts.
pub mod cli;

/// The vocabulary every layer above speaks: people, consent, conversations, the outbox, plans
/// of writes, escalations, starts, links, shift offers, Telegram updates, what reports read.
pub mod model;
/// Typed settings: defaults < carebot.toml < environment < flags; what the runner and the
/// programs are configured with.
pub mod config;
/// Types parsed at the edge and valid by construction: E.164 phones, channels, addresses.
pub mod domain;
/// Case and accent folding shared by every matcher of caregiver text.
pub mod text;
/// The clock `serve` runs on: the system's, which tests move forward.
pub mod clock;
/// Counters for /metrics.
pub mod metrics;
