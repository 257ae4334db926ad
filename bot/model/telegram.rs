//! A Telegram update as its transport normalized it, and what became of a tap: what the
//! channel hands the runner and the runner hands back.

use chrono::{DateTime, Utc};

use super::InboundOutcome;
use crate::domain::{Address, Lang, Phone};

/// A Telegram update as its transport normalized it.
#[derive(Debug, Clone, PartialEq)]
pub struct TelegramInbound {
    /// The private chat it came from (`telegram:<chat id>`).
    pub chat: Address,
    /// Unique per update (the bot's id and the `update_id`): a redelivery is a duplicate.
    pub external_id: String,
    pub received_at: DateTime<Utc>,
    /// The language of the person's Telegram app, for someone not on the roster yet.
    pub language: Option<Lang>,
    pub input: TelegramInput,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TelegramInput {
    /// Typed text, commands included (`/start CODE`, `/stop`, `/language es`).
    Text(String),
    /// A shared contact: its phone number (when it parses) and whether it is the sender's own.
    Contact { phone: Option<Phone>, own: bool },
    /// A tap on an inline button: its `callback_data`.
    Tap(String),
    /// The person blocked the bot.
    Blocked,
    /// A photo, a sticker, a voice note...: kept, and answered with a request for text.
    Unsupported(String),
}

/// What became of a tap, for the transport to show (answer the callback, edit the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TapVerdict {
    /// Taken as the answer (or the language chosen): the message shows it and loses its buttons.
    Accepted,
    /// The question is no longer open: this short notice, and the buttons go.
    Closed { notice: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelegramOutcome {
    pub outcome: InboundOutcome,
    /// For a tap that was processed.
    pub tap: Option<TapVerdict>,
}
