//! Personal data over time, beside the data path: how long message text is kept
//! (`CAREBOT_RETENTION_DAYS`) and the consent ledger (`CAREBOT_CONSENT_RETENTION_DAYS`), what
//! the scheduler's retention sweep removed, and what `carebot caregiver export` and
//! `carebot caregiver erase` hand over or remove for one caregiver. The SQL is in
//! `store/sql/privacy.rs`; this module holds the vocabulary both sides share.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How long personal data is kept. Message bodies, free-text answers and supervisors' notes
/// are replaced by [`Retention::marker`] `days` after they were written; structured answers
/// (scores, choices) stay, since reports are built from them and they say nothing in the
/// caregiver's words. The consent ledger is a legal record (the FCC expects a sender to be able
/// to show consent and its revocation for four years), so it has a longer period of its own;
/// the consent in force (`subscriptions`) is never removed, or an old STOP would be forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub days: u32,
    pub consent_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            days: 365,
            consent_days: 1461,
        }
    }
}

impl Retention {
    /// Checks the two settings together: each a positive number of days, and the ledger kept
    /// at least as long as the messages it points to. The error names the setting to fix.
    pub fn new(days: u32, consent_days: u32) -> Result<Retention, (&'static str, String)> {
        if days == 0 {
            return Err((
                "CAREBOT_RETENTION_DAYS",
                "must be a positive number of days".into(),
            ));
        }
        if consent_days == 0 {
            return Err((
                "CAREBOT_CONSENT_RETENTION_DAYS",
                "must be a positive number of days".into(),
            ));
        }
        if consent_days < days {
            return Err((
                "CAREBOT_CONSENT_RETENTION_DAYS",
                format!(
                    "{consent_days} days is shorter than CAREBOT_RETENTION_DAYS ({days}): the \
                     consent ledger must outlive the messages it records"
                ),
            ));
        }
        Ok(Retention { days, consent_days })
    }

    /// What removed text is replaced with, so a reader sees that something was there.
    pub fn marker(&self) -> String {
        format!("[removed after {} days]", self.days)
    }

    /// Text written before this instant is removed.
    pub fn cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - chrono::Duration::days(i64::from(self.days))
    }

    /// Ledger rows written before this instant are removed.
    pub fn consent_cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - chrono::Duration::days(i64::from(self.consent_days))
    }
}

/// What one retention sweep changed, by kind of row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Swept {
    /// Inbound message bodies.
    pub inbound: u64,
    /// Outbound message bodies (and provider error texts, which quote the number).
    pub outbound: u64,
    /// Answers that lost their words as typed (and their value, when it was free text).
    pub answers: u64,
    /// Ended conversations that lost their state (answers so far, variables).
    pub conversations: u64,
    /// Closed escalations that lost the answer, the alert text and its context.
    pub escalations: u64,
    /// Supervisors' replies to alerts (ACK, CALL, NOTE, DONE texts).
    pub notes: u64,
    /// Consent ledger rows past their own retention, deleted.
    pub ledger: u64,
    /// Other rows deleted: once-a-day stranger replies and expired invites (they keep a number).
    pub other: u64,
    /// Anonymous free-text answers that lost their words.
    pub anonymous: u64,
    /// Anonymous answers of days now over that joined the others in random order (not a
    /// removal: see migration 0011).
    pub mixed: u64,
    /// True when some kind filled its batch: more is due at once.
    pub more: bool,
}

impl Swept {
    pub fn total(&self) -> u64 {
        self.inbound
            + self.outbound
            + self.answers
            + self.conversations
            + self.escalations
            + self.notes
            + self.ledger
            + self.other
            + self.anonymous
    }
}

/// Who `carebot caregiver export|erase` is about: an E.164 phone number or an external id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Person {
    Phone(String),
    ExternalId(String),
}

impl Person {
    /// `+1…` (or anything that parses as a phone number) is a phone; anything else an external id.
    pub fn parse(arg: &str) -> Person {
        let arg = arg.trim();
        match crate::domain::Phone::parse(arg) {
            Ok(phone) if arg.starts_with('+') || arg.chars().all(|c| !c.is_alphabetic()) => {
                Person::Phone(phone.as_str().to_owned())
            }
            _ => Person::ExternalId(arg.to_owned()),
        }
    }

    pub fn key(&self) -> &str {
        match self {
            Person::Phone(p) | Person::ExternalId(p) => p,
        }
    }

    /// The hash an erasure keeps of this key (see [`erasure_hash`]).
    pub fn hash(&self) -> String {
        match self {
            Person::Phone(p) => erasure_hash("phone", p),
            Person::ExternalId(id) => erasure_hash("external_id", id),
        }
    }
}

impl std::fmt::Display for Person {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Person::Phone(p) => write!(f, "phone {}", crate::domain::phone::mask_address(p)),
            Person::ExternalId(id) => write!(f, "external id {id}"),
        }
    }
}

/// SHA-256 of what an erasure keeps (a number that had opted out, the erased person's ids),
/// labelled so that one kind of key never matches another. A hash of a phone number can be
/// reversed by trying every number, so this protects against a casual reader of the database,
/// not a determined one; it is kept because the alternative is keeping the number itself.
pub fn erasure_hash(kind: &str, value: &str) -> String {
    let digest = Sha256::digest(format!("carebot-erasure\0{kind}\0{value}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// `audience` as an erasure leaves it: a phone list (`phone:+1…,+1…`, as `carebot start` and
/// `carebot shifts offer` store what the operator typed) without `phones`, the other numbers
/// kept in their order. `None` when nothing changes, which is always the case for `all`,
/// `group:…` and `branch:…`: they name nobody. A list left empty stays `phone:` (a start or an
/// offer for nobody), which the stored form reads back as no one (`Audience::parse_stored`).
pub fn audience_without(audience: &str, phones: &[&str]) -> Option<String> {
    let list = audience.strip_prefix("phone:")?;
    let items: Vec<&str> = list.split(',').collect();
    let kept: Vec<&str> = items
        .iter()
        .copied()
        .filter(|p| !phones.contains(&p.trim()))
        .collect();
    (kept.len() != items.len()).then(|| format!("phone:{}", kept.join(",")))
}

/// Takes a person out of a start's variables, in place, and says whether anything changed. A
/// list loses the elements that are one of `keys` (their phone numbers, their external id), and
/// so does a comma-separated string ("C1,C7" becomes "C7"). A string that is one of `alone`
/// (their phone numbers: nobody else's) becomes `marker` rather than disappearing, because a
/// template that reads the variable must still render for the rest of the audience; an
/// external id standing alone is left, since "C1" on its own may as well be a module's code.
/// Objects and lists are walked to any depth.
pub fn vars_without(vars: &mut Value, keys: &[&str], alone: &[&str], marker: &str) -> bool {
    match vars {
        Value::String(s) if alone.contains(&s.trim()) => {
            *s = marker.to_owned();
            true
        }
        Value::String(s) if s.contains(',') => {
            let items: Vec<&str> = s.split(',').collect();
            let kept: Vec<&str> = items
                .iter()
                .copied()
                .filter(|i| !keys.contains(&i.trim()))
                .collect();
            if kept.len() == items.len() {
                return false;
            }
            *s = kept.join(",");
            true
        }
        Value::Array(items) => {
            let before = items.len();
            items.retain(|v| !v.as_str().is_some_and(|s| keys.contains(&s.trim())));
            let mut changed = items.len() != before;
            for v in items.iter_mut() {
                changed |= vars_without(v, keys, alone, marker);
            }
            changed
        }
        Value::Object(map) => {
            let mut changed = false;
            for v in map.values_mut() {
                changed |= vars_without(v, keys, alone, marker);
            }
            changed
        }
        _ => false,
    }
}

/// Everything carebot holds about one caregiver, as `carebot caregiver export` prints it.
/// Answers to anonymous questions are not here: nothing links them to anyone, which is the
/// point of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaregiverExport {
    pub exported_at: DateTime<Utc>,
    pub profile: Value,
    /// The consent in force on each channel address.
    pub consent: Vec<Value>,
    /// Every change of consent, with what caused it.
    pub consent_history: Vec<Value>,
    pub messages: Vec<Value>,
    pub conversations: Vec<Value>,
    pub answers: Vec<Value>,
    pub escalations: Vec<Value>,
    pub shift_offers: Vec<Value>,
    pub training: Vec<Value>,
    pub note: &'static str,
}

/// The `note` of every export.
pub const EXPORT_NOTE: &str = "Answers to questions marked anonymous are stored without any \
    link to the person who gave them, so they cannot be found or included here.";

/// What `carebot caregiver erase` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Erasure {
    /// Nobody on the roster, and nobody erased, has this phone or external id.
    NoMatch,
    /// Erased before, on this day; nothing more to do.
    AlreadyErased(NaiveDate),
    Erased(Erased),
}

/// The rows one erasure changed, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Erased {
    pub external_id: String,
    /// Waiting conversations ended before anything else, so nothing more is sent.
    pub conversations_ended: u64,
    /// Queued messages to them that will now never be sent.
    pub messages_cancelled: u64,
    /// Inbound and outbound messages that lost their text and address.
    pub messages_scrubbed: u64,
    /// Answers that lost the words as typed (scores and choices stay, for the totals).
    pub answers_scrubbed: u64,
    /// Escalations about them that lost their text (open ones closed).
    pub escalations_scrubbed: u64,
    pub escalations_closed: u64,
    /// Texts to supervisors about them (alerts, reminders and re-escalations, confirmations,
    /// "taken up" notices, shift-filled alerts, digests that name them; those still queued are
    /// cancelled), and supervisors' replies, that lost their text.
    pub alerts_scrubbed: u64,
    /// Start and shift-offer audiences (and start variables) that listed their number or
    /// external id, which now list the others only.
    pub audiences_edited: u64,
    /// Consent ledger rows whose address is now a hash and whose detail is gone.
    pub ledger_rows_anonymised: u64,
    /// Channel addresses that had opted out: kept as hashes, so a later import of the number
    /// is opted out again rather than texted.
    pub opt_outs_kept: u64,
    /// Links, groups, invites and waits deleted.
    pub rows_deleted: u64,
}

impl std::fmt::Display for Erased {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "erased caregiver {}:", self.external_id)?;
        writeln!(
            f,
            "  conversations ended: {}, queued messages cancelled: {}",
            self.conversations_ended, self.messages_cancelled
        )?;
        writeln!(
            f,
            "  messages emptied: {}, answers emptied: {} (scores and choices kept, unnamed, for totals)",
            self.messages_scrubbed, self.answers_scrubbed
        )?;
        writeln!(
            f,
            "  escalations emptied: {} (closed: {}), texts to and from supervisors about them emptied: {}",
            self.escalations_scrubbed, self.escalations_closed, self.alerts_scrubbed
        )?;
        writeln!(
            f,
            "  start and shift-offer audiences that listed them: {}",
            self.audiences_edited
        )?;
        writeln!(
            f,
            "  consent ledger rows anonymised: {}, opt-outs kept as hashes: {}",
            self.ledger_rows_anonymised, self.opt_outs_kept
        )?;
        write!(
            f,
            "  links, groups, invites and waits deleted: {}; the roster row is now an unnamed placeholder",
            self.rows_deleted
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_settings_are_checked_together() {
        assert!(Retention::new(365, 1461).is_ok());
        assert_eq!(
            Retention::new(0, 1461).unwrap_err().0,
            "CAREBOT_RETENTION_DAYS"
        );
        assert_eq!(
            Retention::new(30, 0).unwrap_err().0,
            "CAREBOT_CONSENT_RETENTION_DAYS"
        );
        let (key, message) = Retention::new(400, 365).unwrap_err();
        assert_eq!(key, "CAREBOT_CONSENT_RETENTION_DAYS");
        assert!(
            message.contains("shorter than CAREBOT_RETENTION_DAYS"),
            "{message}"
        );
        assert_eq!(Retention::default().marker(), "[removed after 365 days]");
    }

    #[test]
    fn an_erased_number_leaves_a_phone_list_and_nothing_else() {
        let maria = ["+13125550123"];
        assert_eq!(
            audience_without("phone:+13125550124,+13125550123,+13125550125", &maria),
            Some("phone:+13125550124,+13125550125".into())
        );
        assert_eq!(
            audience_without("phone:+13125550123", &maria),
            Some("phone:".into())
        );
        assert_eq!(audience_without("phone:+13125550124", &maria), None);
        assert_eq!(audience_without("group:pulse", &maria), None);
        assert_eq!(audience_without("all", &maria), None);
        // Another number that merely starts the same way is someone else.
        assert_eq!(audience_without("phone:+131255501234", &maria), None);
    }

    #[test]
    fn an_erased_key_leaves_start_variables_and_the_rest_stays() {
        let mut vars = serde_json::json!({
            "buddies": ["C1", "C10", "C2"],
            "cc": "C2,C1",
            "callback": "+13125550123",
            "module": "C1",
            "nested": { "who": ["+13125550123"] },
        });
        let (keys, alone) = (["C1", "+13125550123"], ["+13125550123"]);
        assert!(vars_without(&mut vars, &keys, &alone, "[erased]"));
        assert_eq!(
            vars,
            serde_json::json!({
                "buddies": ["C10", "C2"],
                "cc": "C2",
                "callback": "[erased]",
                "module": "C1",
                "nested": { "who": [] },
            })
        );
        assert!(
            !vars_without(&mut vars, &keys, &alone, "[erased]"),
            "idempotent"
        );
    }

    #[test]
    fn a_person_is_a_phone_or_an_external_id() {
        assert_eq!(
            Person::parse("+1 312 555 0123"),
            Person::Phone("+13125550123".into())
        );
        assert_eq!(Person::parse("C17"), Person::ExternalId("C17".into()));
        // Hashes differ by kind, so an external id that looks like a number is not a phone.
        assert_ne!(
            erasure_hash("phone", "+13125550123"),
            erasure_hash("external_id", "+13125550123")
        );
        assert_eq!(erasure_hash("phone", "+13125550123").len(), 64);
    }
}
