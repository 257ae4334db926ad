//! Consent keywords, read right after a transport hands over an inbound message and before any
//! flow sees it: an opt-out word stops everything on that channel, an opt-in word resumes, a
//! help word gets who is texting and how to stop.
//!
//! A keyword counts when it is the whole message (case, accents, surrounding spaces and
//! punctuation aside), as with Twilio's own filter. The FCC also asks senders to honour any
//! wording a reasonable person would read as revoking consent, so a short message that starts
//! or ends with a stop word ("STOP PLEASE", "please cancel", "stop texting me") is an opt-out
//! too; a longer sentence that merely contains one ("I want to stop by tomorrow") is an answer.
//! Erring this way costs a caregiver one "reply START to resume"; erring the other way keeps
//! texting someone who asked us to stop.

use crate::text;

/// What a consent keyword asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyword {
    /// Stop every message on this channel (STOP, ALTO, …).
    OptOut,
    /// Resume messages after an opt-out (START, COMENZAR, …).
    OptIn,
    /// Say who is texting and how to stop (HELP, AYUDA, …).
    Help,
}

/// Every keyword in its matching form (folded, without inner spaces or hyphens), with the
/// language its confirmation should be sent in. Twilio's defaults and the FCC's list in English;
/// the common Spanish words, since many caregivers write in Spanish.
const KEYWORDS: [(&str, Keyword, &str); 23] = [
    ("stop", Keyword::OptOut, "en"),
    ("stopall", Keyword::OptOut, "en"),
    ("unsubscribe", Keyword::OptOut, "en"),
    ("cancel", Keyword::OptOut, "en"),
    ("end", Keyword::OptOut, "en"),
    ("quit", Keyword::OptOut, "en"),
    ("revoke", Keyword::OptOut, "en"),
    ("optout", Keyword::OptOut, "en"),
    ("alto", Keyword::OptOut, "es"),
    ("parar", Keyword::OptOut, "es"),
    ("pare", Keyword::OptOut, "es"),
    ("detener", Keyword::OptOut, "es"),
    ("cancelar", Keyword::OptOut, "es"),
    ("baja", Keyword::OptOut, "es"),
    // French, from Twilio's Proxy list; confirmed in English, the closest language we speak.
    ("arret", Keyword::OptOut, "en"),
    ("start", Keyword::OptIn, "en"),
    ("unstop", Keyword::OptIn, "en"),
    ("comenzar", Keyword::OptIn, "es"),
    ("iniciar", Keyword::OptIn, "es"),
    ("reanudar", Keyword::OptIn, "es"),
    ("help", Keyword::Help, "en"),
    ("info", Keyword::Help, "en"),
    ("ayuda", Keyword::Help, "es"),
];

/// Yes in its matching form, with its language. Kept apart from [`KEYWORDS`]: see [`is_yes`].
const YES: [(&str, &str); 3] = [("yes", "en"), ("y", "en"), ("si", "es")];

/// The consent keyword a message is, if the whole message is one.
///
/// YES is deliberately not an opt-in here, although Twilio treats it as one: it is also the
/// answer to survey questions and shift offers, and a consent step that took it first would
/// swallow those answers. The runner asks [`is_yes`] instead, and only for someone who is
/// currently opted out.
pub fn classify(text: &str) -> Option<Keyword> {
    let key = matching_form(text);
    KEYWORDS
        .iter()
        .find(|(word, _, _)| *word == key)
        .map(|&(_, keyword, _)| keyword)
        .or_else(|| is_revocation(text).then_some(Keyword::OptOut))
}

/// Words that, opening or closing a short message, ask us to stop. QUIT and END are left out
/// on purpose: "I quit" is a caregiver about to leave the job, which a supervisor must hear.
const STOP_WORDS: [&str; 11] = [
    "stop",
    "unsubscribe",
    "cancel",
    "revoke",
    "optout",
    "alto",
    "parar",
    "pare",
    "detener",
    "cancelar",
    "baja",
];

/// Phrases that ask us to stop wherever they appear in a short message.
const STOP_PHRASES: [&[&str]; 8] = [
    &["opt", "out"],
    &["stop", "texting"],
    &["stop", "messaging"],
    &["no", "more", "texts"],
    &["no", "more", "messages"],
    &["dont", "text"],
    &["no", "mas", "mensajes"],
    &["no", "me", "escriban"],
];

/// A revocation in a few words of a sentence ("STOP PLEASE", "please cancel", "no more texts").
fn is_revocation(text: &str) -> bool {
    let words: Vec<String> = text::words(&text.replace(['\'', '’'], ""));
    if !(2..=5).contains(&words.len()) {
        return false;
    }
    let first = words.first().map(String::as_str).unwrap_or_default();
    let last = words.last().map(String::as_str).unwrap_or_default();
    // CANCEL opens many ordinary requests ("cancel my shift tomorrow"); it asks us to stop
    // only when it closes the message ("please cancel").
    (STOP_WORDS.contains(&first) && !first.starts_with("cancel"))
        || STOP_WORDS.contains(&last)
        || STOP_PHRASES.iter().any(|phrase| {
            words
                .windows(phrase.len())
                .any(|w| w.iter().map(String::as_str).eq(phrase.iter().copied()))
        })
}

/// Whether the whole message is a yes (YES, Y, SÍ, SI in any case). The runner takes it as an
/// opt-in only from someone currently opted out; from anyone else it is an ordinary answer.
pub fn is_yes(text: &str) -> bool {
    let key = matching_form(text);
    YES.iter().any(|(word, _)| *word == key)
}

/// Words that stop every channel at once (SMS and Telegram), not only the one they arrive on:
/// STOP ALL (also STOPALL, Twilio's own word) and ALTO TODO / PARAR TODO, in their matching form.
const STOP_EVERYTHING: [&str; 4] = ["stopall", "altotodo", "parartodo", "stopeverything"];

/// Whether the message asks to stop every channel (STOP ALL). A caregiver reachable on one
/// channel only is simply opted out there, as by STOP.
pub fn stops_everything(text: &str) -> bool {
    let key = matching_form(text.trim_start_matches('/'));
    STOP_EVERYTHING.contains(&key.as_str())
}

/// The language a keyword (or a yes) was written in, `"es"` or `"en"`, so that the confirmation
/// answers in the language the person used; `None` when the message is not a keyword.
pub fn keyword_language(text: &str) -> Option<&'static str> {
    let key = matching_form(text);
    KEYWORDS
        .iter()
        .map(|&(word, _, lang)| (word, lang))
        .chain(YES)
        .find(|(word, _)| *word == key)
        .map(|(_, lang)| lang)
}

/// The message as keywords are compared: folded and squashed (so " Stop! " and "¡ALTO!" match),
/// then without inner spaces or hyphens, so that OPT OUT, OPT-OUT and OPTOUT (and STOP ALL) are
/// one keyword each.
fn matching_form(text: &str) -> String {
    text::squash(text)
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYWORD_CASES: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sms_keywords/sms_optout_keywords.json"
    ));

    #[test]
    fn every_classification_case_gets_the_recommended_action_or_a_documented_exception() {
        let doc: serde_json::Value = serde_json::from_str(KEYWORD_CASES).unwrap();
        let cases = doc["classification_cases"].as_array().unwrap();
        assert_eq!(cases.len(), 27);
        for case in cases {
            let body = case["body"].as_str().unwrap();
            let action = case["recommended_bot_action"].as_str().unwrap();
            let expected = if action.starts_with("opt_out") {
                Some(Keyword::OptOut)
            } else if action.starts_with("opt_in") {
                Some(Keyword::OptIn)
            } else if action.starts_with("help") {
                Some(Keyword::Help)
            } else {
                None
            };
            if matching_form(body) == "yes" {
                // The case expects an opt-in "only if previously opted out": that context is
                // the runner's, which asks is_yes for opted-out people only.
                assert_eq!(expected, Some(Keyword::OptIn), "{body:?}");
                assert_eq!(classify(body), None, "{body:?}");
                assert!(is_yes(body), "{body:?}");
            } else {
                assert_eq!(classify(body), expected, "{body:?}");
            }
        }
    }

    #[test]
    fn keywords_ignore_case_accents_spaces_and_punctuation() {
        for text in ["STOP", "stop", " Stop. ", "STOP!!", "\"stop\"", "Stop\n"] {
            assert_eq!(classify(text), Some(Keyword::OptOut), "{text:?}");
        }
        assert_eq!(classify("¡ALTO!"), Some(Keyword::OptOut));
        assert_eq!(classify("Cancelár"), Some(Keyword::OptOut));
        assert_eq!(classify("ayuda?"), Some(Keyword::Help));
    }

    #[test]
    fn multi_word_opt_outs_match_with_or_without_space_or_hyphen() {
        for text in [
            "OPT OUT", "opt-out", "Optout", "STOP ALL", "stopall", "opt  out",
        ] {
            assert_eq!(classify(text), Some(Keyword::OptOut), "{text:?}");
        }
    }

    #[test]
    fn every_listed_word_is_recognised() {
        let words = [
            (
                Keyword::OptOut,
                "STOP STOPALL UNSUBSCRIBE CANCEL END QUIT REVOKE OPTOUT",
            ),
            (Keyword::OptOut, "ALTO PARAR PARE DETENER CANCELAR BAJA"),
            (Keyword::OptIn, "START UNSTOP COMENZAR INICIAR REANUDAR"),
            (Keyword::Help, "HELP INFO AYUDA"),
        ];
        for (keyword, list) in words {
            for word in list.split(' ') {
                assert_eq!(classify(word), Some(keyword), "{word}");
            }
        }
    }

    #[test]
    fn a_keyword_inside_a_sentence_is_an_ordinary_answer() {
        assert_eq!(classify("I want to stop by tomorrow"), None);
        assert_eq!(classify("help me with my schedule"), None);
        assert_eq!(classify("STOPP"), None);
        // "I quit" is about the job: an escalation for a supervisor, not an opt-out.
        assert_eq!(classify("I quit"), None);
        assert_eq!(classify("Cancel my shift tomorrow"), None);
        assert_eq!(classify("I'm going to end it with this client"), None);
    }

    #[test]
    fn a_short_request_to_stop_is_an_opt_out() {
        for text in [
            "STOP PLEASE",
            "please cancel",
            "Stop texting me",
            "no more texts!",
            "Don't text me",
            "No más mensajes",
            "alto por favor",
        ] {
            assert_eq!(classify(text), Some(Keyword::OptOut), "{text:?}");
        }
    }

    #[test]
    fn yes_is_not_an_opt_in_keyword_but_is_yes_sees_it() {
        for text in ["YES", "yes!", "Y", "Sí", "si", " SI. "] {
            assert_eq!(classify(text), None, "{text:?}");
            assert!(is_yes(text), "{text:?}");
        }
        assert!(!is_yes("yes please"));
        assert!(!is_yes("no"));
    }

    #[test]
    fn stop_all_stops_everything_and_stop_alone_does_not() {
        for text in [
            "STOP ALL",
            "stopall",
            "Stop-All!",
            "alto todo",
            "PARAR TODO",
            "/stopall",
        ] {
            assert!(stops_everything(text), "{text:?}");
        }
        for text in ["STOP", "alto", "stop all of it"] {
            assert!(!stops_everything(text), "{text:?}");
        }
    }

    #[test]
    fn confirmations_follow_the_language_of_the_keyword() {
        assert_eq!(keyword_language("ALTO"), Some("es"));
        assert_eq!(keyword_language("reanudar"), Some("es"));
        assert_eq!(keyword_language("Ayuda"), Some("es"));
        assert_eq!(keyword_language("Sí"), Some("es"));
        assert_eq!(keyword_language("STOP"), Some("en"));
        assert_eq!(keyword_language("yes"), Some("en"));
        assert_eq!(keyword_language("hello"), None);
    }
}
