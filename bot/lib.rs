//! carebot: scripted SMS and Telegram conversations for home-care caregivers.

pub mod domain;
pub mod flow;
pub mod store;
pub mod text;
