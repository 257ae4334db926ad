//! Consent words, read right after a transport hands over an inbound message and before any
//! flow sees it: an opt-out stops everything on that channel, an opt-in resumes, a help word
//! gets who is texting and how to stop. [`read`] says which, for the runner to act on.
//!
//! Two duties pull against each other here. The FCC asks senders to honour a revocation made
//! by "any reasonable means", so "stop texting me" must stop us as surely as STOP. But STOP's
//! words are everyday words too: "La paga es baja" (the pay is low), "estrés muy alto", "I have
//! to cancel" are answers to "what would help?", and opting out the caregiver who wrote them
//! loses the answer, the escalation it may raise, and every message after. So a message is read
//! in three tiers, from the surest to the least sure:
//!
//! 1. **A keyword**: the whole message is one (case, accents, surrounding spaces and punctuation
//!    aside), as with Twilio's own filter. Acted on at once, whatever else is going on.
//! 2. **A request in plain words**: a phrase of the `REQUESTS` list ("stop texting me",
//!    "unsubscribe me", "no me manden más"), or a stop word with nothing but `FILLER` around
//!    it ("please stop", "PLEASE CANCEL", "alto por favor", which the FCC's reasonable-person
//!    test reads as STOP). With no question waiting, a request said plainly is an opt-out at
//!    once, as STOP: nothing else can be meant. With a question waiting the message is its
//!    answer, as any other reply, and the caregiver is then asked to confirm with STOP. A
//!    request phrase inside a longer message is never an opt-out: it gets the question.
//! 3. **A stop word in a short message** ("La paga es baja", "I have to cancel"): the answer to
//!    the question waiting, and nothing else; with no question waiting, the confirmation
//!    question, never an opt-out. QUIT and END are no stop words here: "I quit" is about the
//!    job, which a supervisor must hear.
//!
//! A wrong guess now costs a caregiver one question, not their messages; a true request is
//! honoured at once when nothing else can be meant, and one "STOP" away otherwise.

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

/// What a message means for consent, given whether a question is waiting for its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reading {
    /// The whole message is a keyword: act on it at once, question or not.
    Keyword(Keyword),
    /// A clear request to stop in plain words, and no question waiting: an opt-out, as STOP.
    StopNow,
    /// Reads like a request to stop, but a question is waiting: the message is its answer, as
    /// any other reply, and then the caregiver is asked whether they want to stop.
    AnswerAndConfirm,
    /// Might mean stop, and no question waiting: ask, and change nothing.
    Confirm,
    /// Nothing for consent: an answer, or a message the runner handles as it always has.
    Ordinary,
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
}

/// What `text` means for consent. `question_waiting`: the sender is in a conversation whose
/// question this message may answer (see the module's doc for the three tiers).
pub fn read(text: &str, question_waiting: bool) -> Reading {
    if let Some(keyword) = classify(text) {
        return Reading::Keyword(keyword);
    }
    let scan = Scan::of(text);
    let asks = scan.request.is_some() || scan.clear;
    match (question_waiting, asks) {
        (false, _) if scan.clear => Reading::StopNow,
        (true, true) => Reading::AnswerAndConfirm,
        (false, true) => Reading::Confirm,
        (false, false) if scan.short && scan.stop_word.is_some() => Reading::Confirm,
        _ => Reading::Ordinary,
    }
}

/// Words that ask us to stop when said with nothing but [`FILLER`] around them ("please
/// stop", "cancel please", "alto por favor"), and that make a short message worth a question
/// ("I have to cancel"). QUIT and END are left out on purpose: "I quit" is a caregiver about to
/// leave the job, which a supervisor must hear, and "the end" is no request. In matching form,
/// with the language to answer in.
const STOP_WORDS: [(&str, &str); 11] = [
    ("stop", "en"),
    ("unsubscribe", "en"),
    ("cancel", "en"),
    ("revoke", "en"),
    ("optout", "en"),
    ("alto", "es"),
    ("parar", "es"),
    ("pare", "es"),
    ("detener", "es"),
    ("cancelar", "es"),
    ("baja", "es"),
];

/// A message of at most this many words that holds a stop word gets the confirmation question
/// when no question is waiting (the length of the short-message rule this replaced): in a short
/// message the word may carry the meaning, in a longer one it is part of a story ("I have to
/// cancel my shift tomorrow because my daughter is sick" gets the usual help).
const SHORT: usize = 5;

/// Requests to stop in plain words, by the language to answer them in. Each is a sequence of
/// words in matching form ([`words`]: folded, apostrophes dropped, "do not" as "dont", "opt
/// out" as "optout"); `a/b` is either word, and a word ending in `?` may be left out. Found
/// anywhere in a message: with only [`FILLER`] (or stop words) around it the request is clear;
/// inside a longer message it still reads like one (see [`read`]).
///
/// Indicative forms are left out on purpose: "no me mandan el horario" (they don't send me the
/// schedule) is a complaint, "no me manden" (don't send me) a request.
const REQUESTS: &[(&str, &[&str])] = &[
    (
        "en",
        &[
            "stop/quit texting/messaging/txting/contacting/bothering/spamming me",
            "stop texting/messaging/txting/contacting",
            "stop/quit sending me? these/the/your/any/all? texts/messages/text/msgs/sms/txts",
            "stop the/these/your/all? texts/messages/msgs/sms/txts/notifications",
            "no more texts/messages/text/msgs/sms/txts",
            "dont text/message/txt/msg/sms/contact me",
            "dont send me? any? more? texts/messages/text/msgs/sms/txts",
            "i? dont want/need any/these/your/the? more? texts/messages/text/msgs/sms/txts",
            "unsubscribe me",
            "opt me out",
            "i? want/wanna/need to? unsubscribe/optout",
            "remove/take/delete me from/off the/this/your/ur/that? list/texts/messages/contacts",
            "remove/delete my number/phone",
            "cancel my/the? subscription",
            "cancel/end these/the/my/all? texts/messages/msgs/sms",
            "i? said stop",
        ],
    ),
    (
        "es",
        &[
            "no me manden/mandes/mande/envien/envies/envie/escriban/escribas/escriba/texteen/textees mas mensajes/textos/msjs/sms?",
            "no me manden/mandes/mande/envien/envies/envie/escriban/escribas/escriba/texteen/textees mensajes/textos/msjs/sms",
            "no mas mensajes/textos/msjs/sms",
            "no quiero/deseo recibir? mas? mensajes/textos/msjs/sms",
            "no quiero/deseo que me manden/envien/escriban/texteen mas? mensajes/textos/msjs/sms?",
            "no me molesten/molestes/moleste mas",
            "quiero/quisiera/deseo? darme de baja",
            "me quiero/quisiera dar de baja",
            "denme/dame de baja",
            "dejen/deje/deja/paren/pare/para de mandarme/enviarme/escribirme/textearme/molestarme mensajes/textos?",
            "dejen/deje/deja/paren/pare/para de mandar/enviar mensajes/textos",
            "borrenme/borreme/borrame/sacame/saquenme/saqueme/quitenme/quiteme/quitame de la/su/esta/sus? lista/listas/mensajes",
            "borren/quiten/eliminen/borra/elimina mi numero",
            "cancelar/cancelen/cancela/cancele mi? suscripcion",
            "alto/basta a/de los? mensajes/textos",
        ],
    ),
];

/// Words that may surround a request without making it less clear ("can you please stop
/// texting me, thanks", "ya no me manden más, por favor"). Never "no" or "i": "no alto" and
/// "I quit" mean something else.
#[rustfmt::skip]
const FILLER: &[&str] = &[
    "please", "pls", "plz", "plse", "kindly", "thanks", "thank", "you", "thx", "ty", "ok", "okay",
    "hi", "hey", "hello", "just", "now", "right", "already", "anymore", "again", "asap", "sorry",
    "seriously", "can", "could", "would", "will",
    "por", "favor", "porfa", "porfavor", "gracias", "ya", "ahora", "mismo", "hola", "oye",
    "disculpe", "disculpa", "perdon", "puede", "pueden", "podria", "podrian",
];

/// Pairs of words read as one, so the lists above need one spelling ("do not" and "don't" are
/// "dont"; "opt out", "opt-out" and "optout" are one word, as the keyword is).
const JOINED: [(&str, &str, &str); 2] = [("do", "not", "dont"), ("opt", "out", "optout")];

/// The words of a message as [`REQUESTS`], [`STOP_WORDS`] and [`FILLER`] are written.
fn words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in text::words(&text.replace(['\'', '’'], "")) {
        let joined = out.last().and_then(|last| {
            JOINED
                .iter()
                .find(|(a, b, _)| last == a && word == *b)
                .map(|(_, _, one)| *one)
        });
        match joined {
            Some(one) => *out.last_mut().expect("joined to a word") = one.to_owned(),
            None => out.push(word),
        }
    }
    out
}

/// What a message holds, for [`read`] and [`language`].
struct Scan {
    /// The language of the first request phrase, if the message holds one.
    request: Option<&'static str>,
    /// The language of the first stop word, if the message holds one.
    stop_word: Option<&'static str>,
    /// A request said plainly: there is a request phrase or a stop word, and every other word
    /// is filler (or another stop word).
    clear: bool,
    /// At most [`SHORT`] words.
    short: bool,
}

impl Scan {
    fn of(text: &str) -> Scan {
        let words = words(text);
        let mut covered = vec![false; words.len()];
        let mut request = None;
        for start in 0..words.len() {
            for (lang, phrases) in REQUESTS {
                for phrase in *phrases {
                    let pattern: Vec<&str> = phrase.split_whitespace().collect();
                    if let Some(len) = match_at(&pattern, &words[start..]).filter(|n| *n > 0) {
                        covered[start..start + len].fill(true);
                        request.get_or_insert(*lang);
                    }
                }
            }
        }
        let stop_word = |w: &str| STOP_WORDS.iter().find(|(s, _)| *s == w).map(|(_, l)| *l);
        let first_stop_word = words.iter().find_map(|w| stop_word(w));
        let clear = (request.is_some() || first_stop_word.is_some())
            && words.iter().zip(&covered).all(|(w, covered)| {
                *covered || stop_word(w).is_some() || FILLER.contains(&w.as_str())
            });
        Scan {
            request,
            stop_word: first_stop_word,
            clear,
            short: words.len() <= SHORT,
        }
    }
}

/// How many of `words`, from the first, `pattern` matches (see [`REQUESTS`] for its notation).
fn match_at(pattern: &[&str], words: &[String]) -> Option<usize> {
    let Some((token, rest)) = pattern.split_first() else {
        return Some(0);
    };
    let (alternatives, optional) = match token.strip_suffix('?') {
        Some(t) => (t, true),
        None => (*token, false),
    };
    let taken = words
        .first()
        .filter(|w| alternatives.split('/').any(|a| a == w.as_str()))
        .and_then(|_| match_at(rest, &words[1..]))
        .map(|n| n + 1);
    taken.or_else(|| optional.then(|| match_at(rest, words)).flatten())
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

/// The language the consent words of a message were written in, `"es"` or `"en"`, so that a
/// confirmation (or the question) answers in the language the person used: a keyword's or a
/// yes's, else the first request phrase's, else that of a stop word in a short message. `None`
/// when the message has no consent words, and the runner falls back on the caregiver's.
pub fn language(text: &str) -> Option<&'static str> {
    let key = matching_form(text);
    let keyword = KEYWORDS
        .iter()
        .map(|&(word, _, lang)| (word, lang))
        .chain(YES)
        .find(|(word, _)| *word == key)
        .map(|(_, lang)| lang);
    keyword.or_else(|| {
        let scan = Scan::of(text);
        let said = scan.clear || scan.short;
        scan.request.or(scan.stop_word.filter(|_| said))
    })
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
                assert_eq!(read(body, false), Reading::Ordinary, "{body:?}");
                assert!(is_yes(body), "{body:?}");
                continue;
            }
            // With no question waiting, what the caregiver sees: an opt-out at once for the
            // keywords and for the plain requests the FCC's reasonable-person test covers.
            let acted_on = match read(body, false) {
                Reading::Keyword(keyword) => Some(keyword),
                Reading::StopNow => Some(Keyword::OptOut),
                _ => None,
            };
            assert_eq!(acted_on, expected, "{body:?}");
            // The documented exception: those plain requests, sent while a question waits,
            // answer it and are asked to confirm with STOP (issue 16: "I have to cancel").
            if action.contains("reasonable-person") {
                assert_eq!(read(body, true), Reading::AnswerAndConfirm, "{body:?}");
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
        for text in [
            "I want to stop by tomorrow",
            "help me with my schedule",
            "STOPP",
            // "I quit" is about the job: an escalation for a supervisor, not an opt-out.
            "I quit",
            "Cancel my shift tomorrow",
            "I'm going to end it with this client",
        ] {
            assert_eq!(classify(text), None, "{text:?}");
            assert_eq!(read(text, true), Reading::Ordinary, "{text:?}");
        }
    }

    #[test]
    fn a_plain_request_stops_at_once_only_when_no_question_waits() {
        // These were opt-outs whatever was going on; a question waiting now gets its answer
        // and the caregiver is asked to confirm, since "please cancel" may be about a shift.
        for text in [
            "STOP PLEASE",
            "please cancel",
            "Stop texting me",
            "no more texts!",
            "Don't text me",
            "No más mensajes",
            "alto por favor",
        ] {
            assert_eq!(classify(text), None, "{text:?}");
            assert_eq!(read(text, false), Reading::StopNow, "{text:?}");
            assert_eq!(read(text, true), Reading::AnswerAndConfirm, "{text:?}");
        }
    }

    #[test]
    fn every_request_phrase_is_written_as_messages_are_matched() {
        for (lang, phrase) in REQUESTS
            .iter()
            .flat_map(|(lang, phrases)| phrases.iter().map(move |p| (lang, p)))
        {
            assert!(["en", "es"].contains(lang), "{phrase:?}");
            let tokens: Vec<&str> = phrase.split_whitespace().collect();
            assert!(
                tokens.iter().any(|t| !t.ends_with('?')),
                "{phrase:?} could match nothing"
            );
            for word in tokens
                .iter()
                .flat_map(|t| t.trim_end_matches('?').split('/'))
            {
                assert_eq!(words(word), vec![word.to_owned()], "{phrase:?}: {word:?}");
            }
        }
        for word in FILLER {
            assert_eq!(words(word), vec![word.to_string()], "{word:?}");
            assert!(STOP_WORDS.iter().all(|(s, _)| s != word), "{word:?}");
        }
    }

    #[test]
    fn do_not_and_opt_out_are_read_as_one_word() {
        assert_eq!(words("Do NOT text me"), ["dont", "text", "me"]);
        assert_eq!(words("don’t text me"), ["dont", "text", "me"]);
        assert_eq!(words("I want to opt-out"), ["i", "want", "to", "optout"]);
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
    fn confirmations_follow_the_language_of_the_words() {
        assert_eq!(language("ALTO"), Some("es"));
        assert_eq!(language("reanudar"), Some("es"));
        assert_eq!(language("Ayuda"), Some("es"));
        assert_eq!(language("Sí"), Some("es"));
        assert_eq!(language("STOP"), Some("en"));
        assert_eq!(language("yes"), Some("en"));
        assert_eq!(language("no me manden más mensajes"), Some("es"));
        assert_eq!(language("please stop texting me"), Some("en"));
        assert_eq!(language("La paga es baja"), Some("es"));
        assert_eq!(language("I have to cancel"), Some("en"));
        assert_eq!(language("hello"), None);
        // A stop word in a long message is no consent word: the caregiver's language is used.
        assert_eq!(
            language("tengo que cancel mi turno de mañana porque mi hija está enferma"),
            None
        );
    }
}
