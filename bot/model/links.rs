//! Linking a chat (Telegram) to a caregiver or supervisor: claims, invites, candidates.

use super::{Caregiver, Supervisor};

/// What a person offers to prove who they are when linking a chat (see
/// [`crate::store::Store::handle_link`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkClaim {
    /// Their own phone number, shared as a Telegram contact (E.164).
    Phone(String),
    /// An invite code from `carebot invite`, as its SHA-256 in lowercase hex.
    Invite { code_sha256: String },
}

/// What an invite code came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteState {
    /// Unused and unexpired: linking uses it up ([`Write::UseInvite`]).
    Valid(i64),
    Expired,
    Used,
    /// No such code.
    Unknown,
}

/// Who a [`LinkClaim`] names, found in the transaction that will link them.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkCandidate {
    /// The active caregiver with that phone number (or the invite's caregiver).
    pub caregiver: Option<Caregiver>,
    /// The supervisor with that phone number (or the invite's supervisor).
    pub supervisor: Option<Supervisor>,
    /// For an invite claim, what the code came to.
    pub invite: Option<InviteState>,
}

/// Who an invite was made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invitee {
    /// A caregiver's external id and first name.
    Caregiver { external_id: String, name: String },
    /// A supervisor's external id and name.
    Supervisor { external_id: String, name: String },
}
