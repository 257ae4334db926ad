//! Text folding shared by every place that reads what a caregiver typed: consent keywords,
//! answer matching and worrying-word detection all compare folded words, so "Sí", "SI" and
//! " si! " mean the same thing everywhere.

use unicode_normalization::UnicodeNormalization;

/// Lowercases and strips diacritics ("Sí" -> "si", "LASTIMADA" -> "lastimada").
pub fn fold(s: &str) -> String {
    s.nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The folded words of a message, split on anything that is not a letter or a digit.
pub fn words(s: &str) -> Vec<String> {
    fold(s)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The whole message folded, with surrounding whitespace and punctuation removed and inner
/// runs of whitespace collapsed: the form keyword and choice matching compare against.
pub fn squash(s: &str) -> String {
    let folded = fold(s);
    let trimmed = folded.trim_matches(|c: char| !c.is_alphanumeric());
    trimmed.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_removes_case_and_accents() {
        assert_eq!(fold("Sí, LASTIMADA"), "si, lastimada");
    }

    #[test]
    fn words_split_on_punctuation() {
        assert_eq!(words("I quit!! (really)"), vec!["i", "quit", "really"]);
    }

    #[test]
    fn squash_trims_punctuation_and_spaces() {
        assert_eq!(squash("  Stop.  "), "stop");
        assert_eq!(squash("¡ALTO!"), "alto");
        assert_eq!(squash("opt   out"), "opt out");
    }
}
