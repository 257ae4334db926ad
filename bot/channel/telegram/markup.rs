//! The wire format of Telegram buttons: what the runner stores in an outbound row's `buttons`
//! and what comes back in a tap's `callback_data`. Kept in one place so the runner (which
//! writes payloads) and the sender (which turns them into keyboards) agree.
//!
//! A question's buttons carry `q:<step tag>:<reply>`, where the reply is exactly what typing
//! would send; the sender adds the conversation (`q:<conversation>:<step tag>:<reply>`, at most
//! 64 bytes as Telegram requires), so a tap on last week's keyboard, or on a question already
//! answered, is recognised as stale instead of answering whatever is asked now.

use sha2::{Digest, Sha256};

use crate::domain::Lang;

/// A button that asks Telegram to share the person's own phone number (a reply keyboard).
pub const SHARE_CONTACT: &str = "@share_contact";
/// Not a button: removes the reply keyboard (the contact request) once it has served.
pub const REMOVE_KEYBOARD: &str = "@remove_keyboard";
const LANGUAGE: &str = "@lang:";
const QUESTION: &str = "q:";

/// Telegram's limit on `callback_data`.
pub const MAX_CALLBACK_DATA: usize = 64;

/// A short, stable tag for a flow step: 8 hex digits of its id's SHA-256.
pub fn step_tag(step: &str) -> String {
    Sha256::digest(step.as_bytes())
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The payload of a question's button.
pub fn question(step: &str, reply: &str) -> String {
    format!("{QUESTION}{}:{reply}", step_tag(step))
}

/// The payload of a language button.
pub fn language(lang: Lang) -> String {
    format!("{LANGUAGE}{}", lang.code())
}

/// The `callback_data` of a button with `payload`, in a message of `conversation`.
pub fn callback_data(conversation: Option<i64>, payload: &str) -> String {
    match payload.strip_prefix(QUESTION) {
        Some(rest) => format!("{QUESTION}{}:{rest}", conversation.unwrap_or(0)),
        None => payload.to_owned(),
    }
}

/// What a tap means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tap {
    /// An answer to the question at step `step_tag` of `conversation`.
    Answer {
        conversation: i64,
        step_tag: String,
        reply: String,
    },
    /// Write to me in this language.
    Language(Lang),
    /// Any other button: the same as typing its payload.
    Text(String),
}

pub fn parse_callback(data: &str) -> Tap {
    if let Some(code) = data.strip_prefix(LANGUAGE)
        && let Ok(lang) = code.parse()
    {
        return Tap::Language(lang);
    }
    if let Some(rest) = data.strip_prefix(QUESTION) {
        let mut parts = rest.splitn(3, ':');
        if let (Some(conversation), Some(tag), Some(reply)) =
            (parts.next(), parts.next(), parts.next())
            && let Ok(conversation) = conversation.parse()
        {
            return Tap::Answer {
                conversation,
                step_tag: tag.to_owned(),
                reply: reply.to_owned(),
            };
        }
    }
    Tap::Text(data.to_owned())
}

/// The keyboard an outbound row asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Markup {
    None,
    /// Inline buttons, in rows of `(label, callback_data)`.
    Inline(Vec<Vec<(String, String)>>),
    /// A reply keyboard with one button that shares the person's phone number.
    ShareContact(String),
    /// Take away the reply keyboard.
    Remove,
}

/// The keyboard for a row's buttons. Short labels (a 1–5 scale, yes/no) share a row; longer
/// ones (numbered choices) get a row each, so they stay readable on a phone.
pub fn markup(buttons: &[(String, String)], conversation: Option<i64>) -> Markup {
    match buttons {
        [] => Markup::None,
        [(_, payload)] if payload == REMOVE_KEYBOARD => Markup::Remove,
        [(label, payload)] if payload == SHARE_CONTACT => Markup::ShareContact(label.clone()),
        _ => {
            let keys: Vec<(String, String)> = buttons
                .iter()
                .map(|(label, payload)| (label.clone(), callback_data(conversation, payload)))
                .filter(|(_, data)| data.len() <= MAX_CALLBACK_DATA)
                .collect();
            let short = keys.iter().all(|(label, _)| label.chars().count() <= 4);
            let rows = if short {
                keys.chunks(5).map(<[_]>::to_vec).collect()
            } else {
                keys.into_iter().map(|k| vec![k]).collect()
            };
            Markup::Inline(rows)
        }
    }
}

/// What the caregiver's chosen button said, for the edited message: "1. Yes" reads "Yes".
pub fn chosen_label(label: &str) -> &str {
    match label.split_once(". ") {
        Some((n, rest)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => rest,
        _ => label,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_question_button_round_trips_through_callback_data() {
        let payload = question("week_score", "2");
        let data = callback_data(Some(41), &payload);
        assert!(data.len() <= MAX_CALLBACK_DATA);
        assert_eq!(
            parse_callback(&data),
            Tap::Answer {
                conversation: 41,
                step_tag: step_tag("week_score"),
                reply: "2".into()
            }
        );
    }

    #[test]
    fn the_longest_question_payload_fits_telegrams_limit() {
        let payload = question(&"x".repeat(200), "12");
        assert!(callback_data(Some(i64::MAX), &payload).len() <= MAX_CALLBACK_DATA);
    }

    #[test]
    fn language_and_other_taps_are_told_apart() {
        assert_eq!(parse_callback(&language(Lang::Es)), Tap::Language(Lang::Es));
        assert_eq!(parse_callback("DONE"), Tap::Text("DONE".into()));
        assert_eq!(parse_callback("q:nope"), Tap::Text("q:nope".into()));
    }

    #[test]
    fn scales_share_a_row_and_choices_get_one_each() {
        let scale: Vec<(String, String)> = (1..=5)
            .map(|n| (n.to_string(), question("s", &n.to_string())))
            .collect();
        let Markup::Inline(rows) = markup(&scale, Some(1)) else {
            panic!()
        };
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].len(), 5);
        let choices = vec![
            ("1. Yes".to_owned(), question("c", "1")),
            ("2. Not sure".to_owned(), question("c", "2")),
        ];
        let Markup::Inline(rows) = markup(&choices, Some(1)) else {
            panic!()
        };
        assert_eq!(rows.len(), 2);
        assert_eq!(
            markup(&[("Share".into(), SHARE_CONTACT.into())], None),
            Markup::ShareContact("Share".into())
        );
        assert_eq!(markup(&[], None), Markup::None);
    }

    #[test]
    fn the_chosen_label_drops_its_number() {
        assert_eq!(chosen_label("1. Yes"), "Yes");
        assert_eq!(chosen_label("5"), "5");
        assert_eq!(chosen_label("Sí"), "Sí");
    }
}
