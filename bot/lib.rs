//! carebot: scripted SMS and Telegram conversations for home-care caregivers.
//!
//! The modules in the order an inbound message flows through them:

/// Text folding shared by every matcher.
pub mod text;
/// Types parsed at the edge: phone numbers, channels, addresses, languages.
pub mod domain;
/// Flow files, reply matching and the pure engine.
pub mod flow;
/// Message templates (minijinja, strict, English fallback).
pub mod render;
/// Quiet-hours windows in each person's own time zone.
pub mod quiet_hours;
/// The store trait and its SQLite and PostgreSQL implementations.
pub mod store;
