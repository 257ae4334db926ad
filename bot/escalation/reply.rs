//! Reading a supervisor's reply to an alert: ACK, CALL, NOTE or DONE (and their Spanish
//! forms), with the alert's number and any words after it.

use crate::domain::Lang;
use crate::model::EscalationAction;

/// What a supervisor can do to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Seen; I am on it.
    Ack,
    /// I will call the caregiver.
    Call,
    /// Add a note.
    Note,
    /// Resolved: close it.
    Done,
}

impl Command {
    pub fn action(self) -> EscalationAction {
        match self {
            Command::Ack => EscalationAction::Ack,
            Command::Call => EscalationAction::Call,
            Command::Note => EscalationAction::Note,
            Command::Done => EscalationAction::Done,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Command::Ack => "ACK",
            Command::Call => "CALL",
            Command::Note => "NOTE",
            Command::Done => "DONE",
        }
    }
}

/// A supervisor's text read as a reply to an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorReply {
    pub command: Command,
    /// The alert's number; `None` when the text gave none.
    pub id: Option<i64>,
    /// What follows the number, as typed (a NOTE's text, or a word on DONE).
    pub text: String,
    /// The language of the command word, which the confirmation is sent in.
    pub lang: Lang,
}

/// Command words in their folded form (lowercase, no accents).
const COMMANDS: &[(&str, Command, Lang)] = &[
    ("ack", Command::Ack, Lang::En),
    ("ok", Command::Ack, Lang::En),
    ("okay", Command::Ack, Lang::En),
    ("seen", Command::Ack, Lang::En),
    ("acknowledged", Command::Ack, Lang::En),
    ("visto", Command::Ack, Lang::Es),
    ("recibido", Command::Ack, Lang::Es),
    ("enterado", Command::Ack, Lang::Es),
    ("enterada", Command::Ack, Lang::Es),
    ("call", Command::Call, Lang::En),
    ("calling", Command::Call, Lang::En),
    ("llamo", Command::Call, Lang::Es),
    ("llamar", Command::Call, Lang::Es),
    ("llamare", Command::Call, Lang::Es),
    ("llamando", Command::Call, Lang::Es),
    ("note", Command::Note, Lang::En),
    ("nota", Command::Note, Lang::Es),
    ("done", Command::Done, Lang::En),
    ("close", Command::Done, Lang::En),
    ("closed", Command::Done, Lang::En),
    ("resolved", Command::Done, Lang::En),
    ("listo", Command::Done, Lang::Es),
    ("lista", Command::Done, Lang::Es),
    ("hecho", Command::Done, Lang::Es),
    ("cerrar", Command::Done, Lang::Es),
    ("cerrado", Command::Done, Lang::Es),
    ("resuelto", Command::Done, Lang::Es),
];

/// Reads `ACK 14`, `ack #14.`, `Call 14`, `NOTE 14 called her, all fine`, `done 14`,
/// `LLAMARÉ 14`, `listo 14 ya hablamos`: a command word (any case, accents ignored), an optional
/// number, and the rest as typed. `None` when the first word is not a command.
pub fn parse_reply(text: &str) -> Option<SupervisorReply> {
    let text = text.trim();
    let word_end = text
        .char_indices()
        .find(|(_, c)| !c.is_alphabetic())
        .map_or(text.len(), |(i, _)| i);
    let word = crate::text::fold(&text[..word_end]);
    let &(_, command, lang) = COMMANDS.iter().find(|(w, _, _)| *w == word)?;
    let rest =
        text[word_end..].trim_start_matches(|c: char| c.is_whitespace() || "#:.,-".contains(c));
    let digits_end = rest
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit())
        .map_or(rest.len(), |(i, _)| i);
    let id = rest[..digits_end].parse::<i64>().ok();
    let rest =
        rest[digits_end..].trim_start_matches(|c: char| c.is_whitespace() || ":.,-".contains(c));
    let text = if rest.chars().any(char::is_alphanumeric) {
        rest.trim().to_owned()
    } else {
        String::new()
    };
    Some(SupervisorReply {
        command,
        id,
        text,
        lang,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(text: &str) -> Option<(Command, Option<i64>, String, Lang)> {
        parse_reply(text).map(|r| (r.command, r.id, r.text, r.lang))
    }

    #[test]
    fn replies_are_read_in_any_case_with_or_without_spaces_and_marks() {
        assert_eq!(
            reply("ACK 14"),
            Some((Command::Ack, Some(14), String::new(), Lang::En))
        );
        assert_eq!(
            reply(" ack #14. "),
            Some((Command::Ack, Some(14), String::new(), Lang::En))
        );
        assert_eq!(
            reply("Ack14"),
            Some((Command::Ack, Some(14), String::new(), Lang::En))
        );
        assert_eq!(
            reply("call 7"),
            Some((Command::Call, Some(7), String::new(), Lang::En))
        );
        assert_eq!(
            reply("NOTE 14 called her, all fine"),
            Some((
                Command::Note,
                Some(14),
                "called her, all fine".into(),
                Lang::En
            ))
        );
        assert_eq!(
            reply("Done 14: resolved with the family"),
            Some((
                Command::Done,
                Some(14),
                "resolved with the family".into(),
                Lang::En
            ))
        );
    }

    #[test]
    fn spanish_replies_are_read_too() {
        assert_eq!(
            reply("VISTO 3"),
            Some((Command::Ack, Some(3), String::new(), Lang::Es))
        );
        assert_eq!(
            reply("Llamaré 3"),
            Some((Command::Call, Some(3), String::new(), Lang::Es))
        );
        assert_eq!(
            reply("nota 3 hablé con ella"),
            Some((Command::Note, Some(3), "hablé con ella".into(), Lang::Es))
        );
        assert_eq!(
            reply("LISTO 3"),
            Some((Command::Done, Some(3), String::new(), Lang::Es))
        );
    }

    #[test]
    fn a_reply_without_a_number_keeps_its_words() {
        assert_eq!(
            reply("ok thanks"),
            Some((Command::Ack, None, "thanks".into(), Lang::En))
        );
        assert_eq!(
            reply("DONE"),
            Some((Command::Done, None, String::new(), Lang::En))
        );
    }

    #[test]
    fn other_texts_are_not_replies() {
        assert_eq!(reply("who is this?"), None);
        assert_eq!(reply("14"), None);
        assert_eq!(reply("acknowledge-ment"), None);
        assert_eq!(reply(""), None);
    }
}
