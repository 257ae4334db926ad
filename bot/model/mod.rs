//! The vocabulary: the types every layer above it speaks (people, consent, conversations,
//! the outbox, plans of writes, escalations, starts, links, shift offers and what reports
//! read). Nothing here does I/O or imports from above; the store, the channels, the
//! runner and the programs all sit on it.

/// `FromStr` for the store's enums: the inverse of `as_str`, for reading them back.
macro_rules! from_as_str {
    ($($ty:ident: $($variant:ident),+;)+) => {$(
        impl std::str::FromStr for $ty {
            type Err = String;
            fn from_str(text: &str) -> std::result::Result<Self, String> {
                [$($ty::$variant),+]
                    .into_iter()
                    .find(|v| v.as_str() == text)
                    .ok_or_else(|| format!(concat!("unknown ", stringify!($ty), " {:?}"), text))
            }
        }
    )+};
}

pub mod consent;
pub mod conversation;
pub mod decide;
pub mod escalation;
pub mod links;
pub mod outbox;
pub mod people;
pub mod plan;
pub mod results;
pub mod shifts;
pub mod starts;
pub mod telegram;

pub use consent::*;
pub use conversation::*;
pub use decide::*;
pub use escalation::*;
pub use links::*;
pub use outbox::*;
pub use people::*;
pub use plan::*;
pub use results::*;
pub use shifts::*;
pub use starts::*;
pub use telegram::*;

from_as_str! {
    ConsentStatus: Unknown, OptedIn, OptedOut;
    EscalationStatus: Open, Acknowledged, Calling, Done;
    EscalationAction: Raised, Alerted, Reescalated, Resent, Unrouted, Ack, Call, Note, Done,
        CaregiverTold;
    ConversationStatus: Active, Completed, Expired, Interrupted;
    OutboundKind: Reply, Program, Consent, Alert;
    OutboundStatus: Queued, Sending, Accepted, Sent, Delivered, Undelivered, Failed, Suppressed,
        Unknown;
}

from_as_str! {
    StartOrigin: Cli, Schedule;
    StartStatus: Pending, Running, Waiting, Done;
}
