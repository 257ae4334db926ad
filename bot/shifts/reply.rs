//! Reading a caregiver's answer to a shift offer: YES or NO, in English or Spanish, with the
//! offer's code when they gave one. The runner asks this right after consent keywords and
//! before any flow; anything longer than a yes or no is left to the flows.

use crate::model::ShiftAnswer;
use crate::text;

/// A caregiver's answer to an offer: YES or NO, with the offer's code when they gave one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShiftReply {
    pub answer: ShiftAnswer,
    pub code: Option<u32>,
}

const YES_WORDS: &[&str] = &["yes", "y", "yeah", "yep", "si", "claro", "acepto"];
const NO_WORDS: &[&str] = &["no", "n", "nope", "pass", "paso"];
/// Words that may surround a YES or NO without changing it ("yes please", "no gracias").
const FILLER: &[&str] = &[
    "please", "pls", "thanks", "thank", "you", "por", "favor", "gracias",
];

/// Reads YES, NO, "YES 12", "12 yes", "yes12", "Sí, por favor", "no gracias". Anything else
/// is not a shift answer (and goes on to the flow the caregiver is in, if any).
pub fn parse_reply(message: &str) -> Option<ShiftReply> {
    let mut words: Vec<String> = text::words(message)
        .into_iter()
        .filter(|w| !FILLER.contains(&w.as_str()))
        .collect();
    // "YES12" is "YES 12".
    if let [w] = words.as_slice()
        && let Some(at) = w.find(|c: char| c.is_ascii_digit())
        && at > 0
        && w[at..].chars().all(|c| c.is_ascii_digit())
    {
        let (word, code) = w.split_at(at);
        words = vec![word.to_owned(), code.to_owned()];
    }
    let answer = |w: &str| {
        if YES_WORDS.contains(&w) {
            Some(ShiftAnswer::Yes)
        } else if NO_WORDS.contains(&w) {
            Some(ShiftAnswer::No)
        } else {
            None
        }
    };
    let code = |w: &str| {
        (w.len() <= 4 && w.chars().all(|c| c.is_ascii_digit()))
            .then(|| w.parse().ok())
            .flatten()
    };
    match words.as_slice() {
        [w] => answer(w).map(|answer| ShiftReply { answer, code: None }),
        [a, b] => match (answer(a), code(b), code(a), answer(b)) {
            (Some(answer), Some(code), _, _) | (_, _, Some(code), Some(answer)) => {
                Some(ShiftReply {
                    answer,
                    code: Some(code),
                })
            }
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(text: &str) -> Option<(ShiftAnswer, Option<u32>)> {
        parse_reply(text).map(|r| (r.answer, r.code))
    }

    #[test]
    fn yes_and_no_with_or_without_a_code() {
        assert_eq!(reply("YES"), Some((ShiftAnswer::Yes, None)));
        assert_eq!(reply(" yes! "), Some((ShiftAnswer::Yes, None)));
        assert_eq!(reply("Sí"), Some((ShiftAnswer::Yes, None)));
        assert_eq!(reply("si por favor"), Some((ShiftAnswer::Yes, None)));
        assert_eq!(reply("YES 12"), Some((ShiftAnswer::Yes, Some(12))));
        assert_eq!(reply("yes12"), Some((ShiftAnswer::Yes, Some(12))));
        assert_eq!(reply("12 yes"), Some((ShiftAnswer::Yes, Some(12))));
        assert_eq!(reply("Yes, #14"), Some((ShiftAnswer::Yes, Some(14))));
        assert_eq!(reply("no"), Some((ShiftAnswer::No, None)));
        assert_eq!(reply("No gracias"), Some((ShiftAnswer::No, None)));
        assert_eq!(reply("NO 14"), Some((ShiftAnswer::No, Some(14))));
    }

    #[test]
    fn anything_longer_is_left_to_the_flows() {
        for text in [
            "12",
            "yes I quit",
            "no, I feel unsafe",
            "maybe",
            "",
            "yes 12 14",
        ] {
            assert_eq!(reply(text), None, "{text:?}");
        }
    }
}
