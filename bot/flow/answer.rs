//! Reply matching: turns what a caregiver typed into the answer a question expects (a choice by
//! number or word in any language, a point on a scale, a number, yes/no, free text, a keyword),
//! or says it does not fit so the engine can re-ask.

use serde_json::Value;

use super::definition::Expect;
use crate::text;

/// Words for yes and no in every language carebot speaks, folded.
const YES: &[&str] = &[
    "yes", "y", "yeah", "yep", "yup", "sure", "ok", "okay", "si", "s", "claro", "sip", "vale",
];
const NO: &[&str] = &["no", "n", "nope", "nah", "not really"];

/// Number words, so "five" or "cinco" answer a 1–5 scale.
const NUMBER_WORDS: &[(&str, i64)] = &[
    ("zero", 0),
    ("one", 1),
    ("two", 2),
    ("three", 3),
    ("four", 4),
    ("five", 5),
    ("six", 6),
    ("seven", 7),
    ("eight", 8),
    ("nine", 9),
    ("ten", 10),
    ("cero", 0),
    ("uno", 1),
    ("una", 1),
    ("dos", 2),
    ("tres", 3),
    ("cuatro", 4),
    ("cinco", 5),
    ("seis", 6),
    ("siete", 7),
    ("ocho", 8),
    ("nueve", 9),
    ("diez", 10),
];

/// Matches a reply against what the question expects. `None` means it does not fit.
pub fn parse(expect: &Expect, reply: &str) -> Option<Value> {
    let squashed = text::squash(reply);
    match expect {
        Expect::Choice(options) => {
            if let Some(n) = leading_integer(&squashed)
                && squashed.len() <= 3
            {
                return usize::try_from(n)
                    .ok()
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|i| options.get(i))
                    .map(|o| Value::from(o.value.clone()));
            }
            options
                .iter()
                .find(|o| o.synonyms.contains(&squashed))
                .map(|o| Value::from(o.value.clone()))
        }
        Expect::Scale { min, max } => integer_answer(&squashed)
            .filter(|n| (*min..=*max).contains(n))
            .map(Value::from),
        Expect::Number { min, max } => {
            let n = decimal_answer(&squashed)?;
            if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                return None;
            }
            if n.fract() == 0.0 && n.abs() < 1e15 {
                Some(Value::from(n as i64))
            } else {
                Some(Value::from(n))
            }
        }
        Expect::YesNo => {
            if YES.contains(&squashed.as_str()) || squashed == "1" {
                Some(Value::Bool(true))
            } else if NO.contains(&squashed.as_str()) || squashed == "2" {
                Some(Value::Bool(false))
            } else {
                None
            }
        }
        Expect::Text => {
            let trimmed = reply.trim();
            (!trimmed.is_empty()).then(|| Value::from(trimmed.to_owned()))
        }
        Expect::Keyword(words) => words
            .iter()
            .find(|w| **w == squashed)
            .map(|w| Value::from(w.to_uppercase())),
    }
}

/// Whether any of `words` (folded) appears as a whole word in the reply.
pub fn contains_any_word(reply: &str, words: &[String]) -> bool {
    let said = text::words(reply);
    words.iter().any(|w| {
        if w.contains(' ') {
            // A phrase: match it on word boundaries.
            let phrase: Vec<&str> = w.split(' ').collect();
            said.windows(phrase.len())
                .any(|win| win.iter().map(String::as_str).eq(phrase.iter().copied()))
        } else {
            said.iter().any(|s| s == w)
        }
    })
}

/// "4", "4/5", "4 - rough week", "four", "cuatro" -> 4.
fn integer_answer(s: &str) -> Option<i64> {
    if let Some(n) = leading_integer(s) {
        return Some(n);
    }
    let first = s.split(|c: char| !c.is_alphanumeric()).next()?;
    NUMBER_WORDS
        .iter()
        .find(|(w, _)| *w == first)
        .map(|(_, n)| *n)
}

fn leading_integer(s: &str) -> Option<i64> {
    let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return None;
    }
    // "4.5" is not an integer answer; "4/5" and "4 of 5" are.
    if s[digits.len()..].starts_with(['.', ','])
        && s[digits.len() + 1..].starts_with(|c: char| c.is_ascii_digit())
    {
        return None;
    }
    digits.parse().ok()
}

/// "$1,200", "1200.50", "3" -> the number; thousands separators and a currency sign allowed.
fn decimal_answer(s: &str) -> Option<f64> {
    let s = s.trim_start_matches('$').trim();
    let token: String = s
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',' || *c == '.' || *c == '-')
        .filter(|c| *c != ',')
        .collect();
    if token.is_empty() {
        return integer_answer(s).map(|n| n as f64);
    }
    token.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Lang;
    use crate::flow::definition::Choice;
    use std::collections::BTreeMap;

    fn stay_choices() -> Expect {
        let opt = |value: &str, syn: &[&str]| Choice {
            value: value.into(),
            label: BTreeMap::from([(Lang::En, value.into())]),
            synonyms: syn.iter().map(|s| text::squash(s)).collect(),
        };
        Expect::Choice(vec![
            opt("yes", &["yes", "y", "sí", "si"]),
            opt("unsure", &["not sure", "maybe", "no sé"]),
            opt("no", &["no", "n"]),
        ])
    }

    #[test]
    fn choices_match_by_number_word_or_synonym_in_any_language() {
        let e = stay_choices();
        assert_eq!(parse(&e, "1"), Some(Value::from("yes")));
        assert_eq!(parse(&e, " 2. "), Some(Value::from("unsure")));
        assert_eq!(parse(&e, "SÍ!"), Some(Value::from("yes")));
        assert_eq!(parse(&e, "No se"), Some(Value::from("unsure")));
        assert_eq!(parse(&e, "Not sure"), Some(Value::from("unsure")));
        assert_eq!(parse(&e, "4"), None);
        assert_eq!(parse(&e, "purple"), None);
    }

    #[test]
    fn scales_accept_digits_fractions_and_number_words() {
        let e = Expect::Scale { min: 1, max: 5 };
        assert_eq!(parse(&e, "4"), Some(Value::from(4)));
        assert_eq!(parse(&e, "2/5 rough week"), Some(Value::from(2)));
        assert_eq!(parse(&e, "Cinco"), Some(Value::from(5)));
        assert_eq!(parse(&e, "6"), None);
        assert_eq!(parse(&e, "0"), None);
        assert_eq!(parse(&e, "3.5"), None);
        assert_eq!(parse(&e, "great"), None);
    }

    #[test]
    fn numbers_respect_bounds_and_read_money() {
        let e = Expect::Number {
            min: Some(1.0),
            max: Some(12.0),
        };
        assert_eq!(parse(&e, "4"), Some(Value::from(4)));
        assert_eq!(parse(&e, "13"), None);
        let money = Expect::Number {
            min: None,
            max: None,
        };
        assert_eq!(parse(&money, "$1,250"), Some(Value::from(1250)));
    }

    #[test]
    fn yes_no_in_english_and_spanish() {
        assert_eq!(parse(&Expect::YesNo, "Yes!"), Some(Value::Bool(true)));
        assert_eq!(parse(&Expect::YesNo, "sí"), Some(Value::Bool(true)));
        assert_eq!(parse(&Expect::YesNo, "NO"), Some(Value::Bool(false)));
        assert_eq!(parse(&Expect::YesNo, "maybe"), None);
    }

    #[test]
    fn keywords_match_the_whole_message() {
        let e = Expect::Keyword(vec!["done".into(), "listo".into()]);
        assert_eq!(parse(&e, "done."), Some(Value::from("DONE")));
        assert_eq!(parse(&e, "Listo"), Some(Value::from("LISTO")));
        assert_eq!(parse(&e, "not done"), None);
    }

    #[test]
    fn free_text_must_not_be_empty() {
        assert_eq!(parse(&Expect::Text, "  "), None);
        assert_eq!(
            parse(&Expect::Text, " more hours "),
            Some(Value::from("more hours"))
        );
    }

    #[test]
    fn worrying_words_match_whole_words_without_case_or_accents() {
        let words: Vec<String> = ["quit", "lastimada", "unsafe"].map(String::from).to_vec();
        assert!(contains_any_word("I QUIT.", &words));
        assert!(contains_any_word("me siento LASTIMÁDA hoy", &words));
        assert!(!contains_any_word("it was quite a week", &words));
        assert!(!contains_any_word("safe and sound", &words));
    }
}
