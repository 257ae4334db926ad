//! Small types parsed at the edge (phone numbers, channels, addresses, languages) so that the
//! runner, the engine and the store never re-check what a transport or an import already did.

pub mod phone;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use phone::{Phone, PhoneError};

/// A way of reaching a person. Every channel takes the same path through the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sms,
    Telegram,
    /// The terminal simulator: a real conversation that never leaves the machine.
    Console,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Telegram => "telegram",
            Channel::Console => "console",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sms" => Ok(Channel::Sms),
            "telegram" => Ok(Channel::Telegram),
            "console" => Ok(Channel::Console),
            other => Err(format!("unknown channel {other:?}")),
        }
    }
}

/// Where a message comes from or goes to: an E.164 number on SMS, a chat id on Telegram.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Address {
    pub channel: Channel,
    pub value: String,
}

impl Address {
    pub fn sms(phone: &Phone) -> Self {
        Address {
            channel: Channel::Sms,
            value: phone.as_str().to_owned(),
        }
    }

    pub fn new(channel: Channel, value: impl Into<String>) -> Self {
        Address {
            channel,
            value: value.into(),
        }
    }

    /// The form safe for logs: the channel and a masked value.
    pub fn masked(&self) -> String {
        format!("{}:{}", self.channel, phone::mask_address(&self.value))
    }
}

/// The languages carebot speaks. Templates live in `templates/<code>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    En,
    Es,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Es];

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Es => "es",
        }
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Lang {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match crate::text::fold(s.trim()).as_str() {
            "en" | "english" | "ingles" => Ok(Lang::En),
            "es" | "spanish" | "espanol" => Ok(Lang::Es),
            other => Err(format!(
                "unsupported language {other:?} (supported: en, es)"
            )),
        }
    }
}

/// How urgent an escalation is. High alerts reach a supervisor at any hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Normal,
    High,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }
}

impl FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "low" => Ok(Priority::Low),
            "normal" => Ok(Priority::Normal),
            "high" => Ok(Priority::High),
            other => Err(format!("unknown priority {other:?}")),
        }
    }
}
