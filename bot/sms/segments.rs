//! How many SMS segments a rendered message costs, between templates and the dispatcher:
//! `flows check` warns about long or UCS-2 messages (and suggests GSM look-alikes), and the
//! dispatcher's per-sender rate limit counts segments, not messages.
//!
//! The rules are the carriers' (3GPP TS 23.038 and 23.040) as Twilio's segment calculator
//! applies them: one character outside GSM-7 switches the whole message to UCS-2, which more
//! than halves what fits in a segment.

mod tables;

use std::fmt;

use serde::{Deserialize, Serialize};

use tables::{BASIC, ESCAPE, EXTENSION, SMART};

/// Septets in a lone GSM-7 segment, and in each part of a longer message (the 6-octet
/// concatenation header takes the other 7).
const GSM7_SINGLE: u32 = 160;
const GSM7_PART: u32 = 153;
/// UTF-16 code units in a lone UCS-2 segment, and in each part of a longer message.
const UCS2_SINGLE: u32 = 70;
const UCS2_PART: u32 = 67;

/// The alphabet a message is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// The GSM 03.38 default alphabet (and its extension table), 7 bits a character.
    Gsm7,
    /// UTF-16, 16 bits a code unit; needed as soon as one character is outside GSM-7.
    Ucs2,
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        })
    }
}

/// What a message costs to send as SMS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segments {
    pub encoding: Encoding,
    /// Segments billed and rate-limited; 0 for an empty message.
    pub segments: u32,
    /// Septets (GSM-7, extension characters counting two) or UTF-16 code units (UCS-2).
    pub units: u32,
    /// The distinct characters that forced UCS-2, in order of appearance; empty for GSM-7.
    pub ucs2_chars: Vec<char>,
}

/// Works out the encoding and segment count of `text` as a carrier would.
pub fn analyze(text: &str) -> Segments {
    let mut ucs2_chars = Vec::new();
    for c in text.chars() {
        if gsm7_septets(c).is_none() && !ucs2_chars.contains(&c) {
            ucs2_chars.push(c);
        }
    }
    let (encoding, costs, single, part): (_, Vec<u32>, _, _) = if ucs2_chars.is_empty() {
        let costs = text.chars().filter_map(gsm7_septets).collect();
        (Encoding::Gsm7, costs, GSM7_SINGLE, GSM7_PART)
    } else {
        // In UCS-2 every character is its UTF-16 length, GSM escape characters included.
        let costs = text.chars().map(|c| c.len_utf16() as u32).collect();
        (Encoding::Ucs2, costs, UCS2_SINGLE, UCS2_PART)
    };
    let units = costs.iter().sum();
    Segments {
        encoding,
        segments: count_segments(&costs, units, single, part),
        units,
        ucs2_chars,
    }
}

/// A GSM-7 look-alike for a character that would force UCS-2 (`’` -> `'`, `“` -> `"`, `…` ->
/// `...`), as Twilio's Smart Encoding substitutes it; `Some("")` means the character can simply
/// be dropped (zero-width spaces). `None` when there is no look-alike, or `c` is already GSM-7.
pub fn smart_replacement(c: char) -> Option<&'static str> {
    SMART
        .binary_search_by_key(&c, |&(from, _)| from)
        .ok()
        .map(|i| SMART[i].1)
}

/// [`gsm7_septets`] for every ASCII character (0: none), worked out once at compile time from
/// the same tables. Every queued message is measured, and most are ASCII: a lookup instead of
/// a scan of 128 + 10 entries per character (the scan dominated a 200-YES shift race).
const ASCII_SEPTETS: [u8; 128] = {
    let mut table = [0u8; 128];
    let mut i = 0;
    while i < BASIC.len() {
        let c = BASIC[i] as u32;
        if BASIC[i] != ESCAPE && c < 128 {
            table[c as usize] = 1;
        }
        i += 1;
    }
    let mut j = 0;
    while j < EXTENSION.len() {
        let c = EXTENSION[j].1 as u32;
        if c < 128 && table[c as usize] == 0 {
            table[c as usize] = 2;
        }
        j += 1;
    }
    table
};

/// Septets `c` takes in GSM-7: 1 in the basic table, 2 in the extension table (ESC + code),
/// `None` when it has no GSM-7 form at all.
fn gsm7_septets(c: char) -> Option<u32> {
    if c.is_ascii() {
        return match ASCII_SEPTETS[c as usize] {
            0 => None,
            n => Some(u32::from(n)),
        };
    }
    gsm7_septets_by_scan(c)
}

/// The definition [`ASCII_SEPTETS`] must agree with.
fn gsm7_septets_by_scan(c: char) -> Option<u32> {
    if c != ESCAPE && BASIC.contains(&c) {
        Some(1)
    } else if EXTENSION.iter().any(|&(_, ext)| ext == c) {
        Some(2)
    } else {
        None
    }
}

/// Fills segments in order. A character never straddles two segments (a carrier would split an
/// ESC pair or a surrogate pair into garbage), so one that does not fit in what is left of a
/// segment starts the next, leaving that slot empty.
fn count_segments(costs: &[u32], units: u32, single: u32, part: u32) -> u32 {
    if units == 0 {
        return 0;
    }
    if units <= single {
        return 1;
    }
    let mut segments = 1;
    let mut used = 0;
    for &cost in costs {
        if used + cost > part {
            segments += 1;
            used = 0;
        }
        used += cost;
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    const CASES: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sms_segments/segment_cases.json"
    ));
    const CHARSET: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sms_segments/gsm7_charset.json"
    ));
    const SMART_MAP: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sms_segments/smart_encoding_map.json"
    ));

    fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn every_calculator_case_gets_the_same_encoding_segments_and_size() {
        let doc = json(CASES);
        let cases = doc["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 54);
        for case in cases {
            let id = case["id"].as_str().unwrap();
            let body = case["body"].as_str().unwrap();
            // `computed_by_library` is the calculator's full answer; `expected` is the subset
            // its own tests assert, so check it too in case the two were ever to disagree.
            let library = &case["computed_by_library"];
            let got = analyze(body);
            assert_eq!(got.encoding.to_string(), library["encoding"], "{id}");
            assert_eq!(got.segments, library["segments"], "{id}");
            let bits_per_unit = match got.encoding {
                Encoding::Gsm7 => 7,
                Encoding::Ucs2 => 16,
            };
            assert_eq!(
                got.units * bits_per_unit,
                library["messageSize_bits"],
                "{id}"
            );
            let expected = &case["expected"];
            if let Some(encoding) = expected.get("encoding") {
                assert_eq!(got.encoding.to_string(), *encoding, "{id}");
            }
            if let Some(segments) = expected.get("segments") {
                assert_eq!(got.segments, *segments, "{id}");
            }
            if let Some(chars) = expected.get("non_gsm_characters") {
                let chars: Vec<char> = chars
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_str().unwrap().chars().next().unwrap())
                    .collect();
                assert_eq!(got.ucs2_chars, chars, "{id}");
            }
        }
    }

    #[test]
    fn the_ascii_lookup_agrees_with_the_tables() {
        for b in 0u8..128 {
            let c = char::from(b);
            assert_eq!(gsm7_septets(c), gsm7_septets_by_scan(c), "{c:?}");
        }
    }

    #[test]
    fn tables_match_the_conformance_files() {
        let charset = json(CHARSET);
        let mut basic = 0;
        let mut extension = 0;
        for entry in charset["chars"].as_array().unwrap() {
            let c = entry["char"].as_str().unwrap().chars().next().unwrap();
            let codes: Vec<u8> = entry["gsm7"]
                .as_array()
                .unwrap()
                .iter()
                .map(|code| u8::from_str_radix(&code.as_str().unwrap()[2..], 16).unwrap())
                .collect();
            match codes[..] {
                [code] => {
                    assert_eq!(BASIC[usize::from(code)], c);
                    basic += 1;
                }
                [0x1B, code] => {
                    assert!(EXTENSION.contains(&(code, c)), "{c:?}");
                    extension += 1;
                }
                _ => panic!("unexpected GSM-7 code for {c:?}"),
            }
        }
        assert_eq!((basic, extension), (BASIC.len() - 1, EXTENSION.len()));

        let smart = json(SMART_MAP);
        let map = smart["map"].as_array().unwrap();
        assert_eq!(map.len(), SMART.len());
        for entry in map {
            let from = entry["from"].as_str().unwrap().chars().next().unwrap();
            assert_eq!(smart_replacement(from), entry["to"].as_str(), "{from:?}");
        }
    }

    #[test]
    fn plain_english_fits_one_gsm7_segment_up_to_160_characters() {
        let text = "a".repeat(160);
        assert_eq!(
            analyze(&text),
            Segments {
                encoding: Encoding::Gsm7,
                segments: 1,
                units: 160,
                ucs2_chars: vec![]
            }
        );
        assert_eq!(analyze(&"a".repeat(161)).segments, 2);
        assert_eq!(analyze(&"a".repeat(306)).segments, 2);
        assert_eq!(analyze(&"a".repeat(307)).segments, 3);
    }

    #[test]
    fn an_escape_pair_moves_whole_to_the_next_segment() {
        // 152 septets then '€' (2): 154 does not fit in 153, so '€' opens segment 2.
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(10));
        let got = analyze(&text);
        assert_eq!(
            (got.encoding, got.units, got.segments),
            (Encoding::Gsm7, 164, 2)
        );
        // 305 septets: 152 + 1 slot left empty + 153 would need a third segment.
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(analyze(&text).segments, 3);
    }

    #[test]
    fn one_smart_quote_turns_the_whole_message_into_ucs2() {
        let got = analyze("Don’t forget: it’s due “today”");
        assert_eq!(got.encoding, Encoding::Ucs2);
        assert_eq!(got.ucs2_chars, vec!['’', '“', '”']);
        assert_eq!(got.units, 30);
    }

    #[test]
    fn spanish_accents_outside_gsm7_force_ucs2_but_enye_does_not() {
        assert_eq!(analyze("¿Cómo está?").ucs2_chars, vec!['ó', 'á']);
        assert_eq!(analyze("¡Mañana!").encoding, Encoding::Gsm7);
    }

    #[test]
    fn a_surrogate_pair_is_never_split_across_segments() {
        // 66 units, then an emoji (2): it cannot take the 67th unit alone.
        let text = format!("{}😀{}", "a".repeat(66), "a".repeat(10));
        let got = analyze(&text);
        assert_eq!((got.units, got.segments), (78, 2));
        let text = format!("{}😀{}", "a".repeat(66), "a".repeat(66));
        assert_eq!(analyze(&text).segments, 3);
    }

    #[test]
    fn an_empty_message_costs_nothing() {
        assert_eq!(analyze("").segments, 0);
        assert_eq!(analyze("").encoding, Encoding::Gsm7);
    }

    #[test]
    fn smart_replacement_suggests_gsm_look_alikes() {
        assert_eq!(smart_replacement('’'), Some("'"));
        assert_eq!(smart_replacement('“'), Some("\""));
        assert_eq!(smart_replacement('…'), Some("..."));
        assert_eq!(smart_replacement('\u{200B}'), Some(""));
        assert_eq!(smart_replacement('a'), None);
        assert_eq!(smart_replacement('😀'), None);
    }

    #[test]
    fn encoding_names_read_well_in_reports_and_in_json() {
        assert_eq!(Encoding::Gsm7.to_string(), "GSM-7");
        assert_eq!(Encoding::Ucs2.to_string(), "UCS-2");
        assert_eq!(serde_json::to_string(&Encoding::Gsm7).unwrap(), r#""gsm7""#);
        assert_eq!(
            serde_json::from_str::<Encoding>(r#""ucs2""#).unwrap(),
            Encoding::Ucs2
        );
    }
}
