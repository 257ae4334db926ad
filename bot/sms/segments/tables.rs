//! Character tables for GSM-7 and Twilio's Smart Encoding, embedded so that segment counting
//! never reads a file at run time.
//!
//! Generated once by a short script from tests/fixtures/sms_segments/gsm7_charset.json and
//! smart_encoding_map.json (TwilioDevEd/message-segment-calculator, MIT). The test
//! `tables_match_the_conformance_files` in `segments.rs` fails if the two ever drift apart.

/// The one slot of the basic table that is not a character: septet 0x1B escapes into
/// [`EXTENSION`].
pub(super) const ESCAPE: char = '\u{1B}';

/// The GSM 03.38 basic table in code order: `BASIC[septet]` is the character that septet
/// encodes. Each costs one septet.
#[rustfmt::skip]
pub(super) const BASIC: [char; 128] = [
    /* 0x00 */ '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì',
    /* 0x08 */ 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å',
    /* 0x10 */ 'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ',
    /* 0x18 */ 'Σ', 'Θ', 'Ξ', ESCAPE, 'Æ', 'æ', 'ß', 'É',
    /* 0x20 */ ' ', '!', '"', '#', '¤', '%', '&', '\'',
    /* 0x28 */ '(', ')', '*', '+', ',', '-', '.', '/',
    /* 0x30 */ '0', '1', '2', '3', '4', '5', '6', '7',
    /* 0x38 */ '8', '9', ':', ';', '<', '=', '>', '?',
    /* 0x40 */ '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G',
    /* 0x48 */ 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O',
    /* 0x50 */ 'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W',
    /* 0x58 */ 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§',
    /* 0x60 */ '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g',
    /* 0x68 */ 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
    /* 0x70 */ 'p', 'q', 'r', 's', 't', 'u', 'v', 'w',
    /* 0x78 */ 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à',
];

/// The extension table, as (code after ESC, character). Each costs two septets.
#[rustfmt::skip]
pub(super) const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{000C}'), // FORM FEED
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// GSM-7 look-alikes for characters that would otherwise force UCS-2 (what Twilio's Smart
/// Encoding substitutes), sorted by character for binary search. An empty replacement means the
/// character is dropped (zero-width and control characters). The odd-looking ones (a no-break
/// space becoming two spaces, a tab seven) are copied as the calculator has them.
#[rustfmt::skip]
pub(super) const SMART: [(char, &str); 270] = [
    ('\u{0000}', ""), // U+0000 NULL
    ('\u{0003}', ""), // U+0003 END OF TEXT
    ('\u{0004}', ""), // U+0004 END OF TRANSMISSION
    ('\t', "       "), // U+0009 CHARACTER TABULATION
    ('\u{0010}', ""), // U+0010 DATA LINK ESCAPE
    ('\u{0011}', ""), // U+0011 DEVICE CONTROL ONE
    ('\u{0012}', ""), // U+0012 DEVICE CONTROL TWO
    ('\u{0013}', ""), // U+0013 DEVICE CONTROL THREE
    ('\u{0014}', ""), // U+0014 DEVICE CONTROL FOUR
    ('\u{0017}', ""), // U+0017 END OF TRANSMISSION BLOCK
    ('\u{0019}', ""), // U+0019 END OF MEDIUM
    ('`', "'"), // U+0060 GRAVE ACCENT
    ('\u{0080}', "  "), // U+0080 C1 CONTROL 0x80
    ('\u{008D}', "  "), // U+008D REVERSE LINE FEED
    ('\u{0090}', "  "), // U+0090 DEVICE CONTROL STRING
    ('\u{009B}', "  "), // U+009B CONTROL SEQUENCE INTRODUCER
    ('\u{009F}', "  "), // U+009F APPLICATION PROGRAM COMMAND
    ('\u{00A0}', "  "), // U+00A0 NO-BREAK SPACE
    ('«', "\""), // U+00AB LEFT-POINTING DOUBLE ANGLE QUOTATION MARK
    ('´', "'"), // U+00B4 ACUTE ACCENT
    ('»', "\""), // U+00BB RIGHT-POINTING DOUBLE ANGLE QUOTATION MARK
    ('¼', "1/4"), // U+00BC VULGAR FRACTION ONE QUARTER
    ('½', "1/2"), // U+00BD VULGAR FRACTION ONE HALF
    ('¾', "3/4"), // U+00BE VULGAR FRACTION THREE QUARTERS
    ('÷', "/"), // U+00F7 DIVISION SIGN
    ('ǃ', "!"), // U+01C3 LATIN LETTER RETROFLEX CLICK
    ('ɢ', "G"), // U+0262 LATIN LETTER SMALL CAPITAL G
    ('ɪ', "I"), // U+026A LATIN LETTER SMALL CAPITAL I
    ('ɴ', "N"), // U+0274 LATIN LETTER SMALL CAPITAL N
    ('ʀ', "R"), // U+0280 LATIN LETTER SMALL CAPITAL R
    ('ʏ', "Y"), // U+028F LATIN LETTER SMALL CAPITAL Y
    ('ʙ', "B"), // U+0299 LATIN LETTER SMALL CAPITAL B
    ('ʜ', "H"), // U+029C LATIN LETTER SMALL CAPITAL H
    ('ʟ', "L"), // U+029F LATIN LETTER SMALL CAPITAL L
    ('ʹ', "'"), // U+02B9 MODIFIER LETTER PRIME
    ('ʺ', "\""), // U+02BA MODIFIER LETTER DOUBLE PRIME
    ('ʻ', "'"), // U+02BB MODIFIER LETTER TURNED COMMA
    ('ʼ', "'"), // U+02BC MODIFIER LETTER APOSTROPHE
    ('ʽ', "'"), // U+02BD MODIFIER LETTER REVERSED COMMA
    ('ˆ', "^"), // U+02C6 MODIFIER LETTER CIRCUMFLEX ACCENT
    ('ˈ', "'"), // U+02C8 MODIFIER LETTER VERTICAL LINE
    ('ˊ', "'"), // U+02CA MODIFIER LETTER ACUTE ACCENT
    ('ˋ', "'"), // U+02CB MODIFIER LETTER GRAVE ACCENT
    ('ː', ":"), // U+02D0 MODIFIER LETTER TRIANGULAR COLON
    ('˖', "+"), // U+02D6 MODIFIER LETTER PLUS SIGN
    ('˜', "~"), // U+02DC SMALL TILDE
    ('ˮ', "\""), // U+02EE MODIFIER LETTER DOUBLE APOSTROPHE
    ('˷', "~"), // U+02F7 MODIFIER LETTER LOW TILDE
    ('˸', ":"), // U+02F8 MODIFIER LETTER RAISED COLON
    ('\u{0302}', "^"), // U+0302 COMBINING CIRCUMFLEX ACCENT
    ('\u{0303}', "~"), // U+0303 COMBINING TILDE
    ('\u{0313}', "'"), // U+0313 COMBINING COMMA ABOVE
    ('\u{0314}', "'"), // U+0314 COMBINING REVERSED COMMA ABOVE
    ('\u{0326}', ","), // U+0326 COMBINING COMMA BELOW
    ('\u{0330}', "~"), // U+0330 COMBINING TILDE BELOW
    ('\u{0332}', "_"), // U+0332 COMBINING LOW LINE
    ('\u{0334}', "~"), // U+0334 COMBINING TILDE OVERLAY
    ('\u{0337}', "/"), // U+0337 COMBINING SHORT SOLIDUS OVERLAY
    ('\u{0338}', "/"), // U+0338 COMBINING LONG SOLIDUS OVERLAY
    ('\u{0347}', "="), // U+0347 COMBINING EQUALS SIGN BELOW
    ('ᴀ', "A"), // U+1D00 LATIN LETTER SMALL CAPITAL A
    ('ᴄ', "C"), // U+1D04 LATIN LETTER SMALL CAPITAL C
    ('ᴅ', "D"), // U+1D05 LATIN LETTER SMALL CAPITAL D
    ('ᴇ', "E"), // U+1D07 LATIN LETTER SMALL CAPITAL E
    ('ᴊ', "J"), // U+1D0A LATIN LETTER SMALL CAPITAL J
    ('ᴋ', "K"), // U+1D0B LATIN LETTER SMALL CAPITAL K
    ('ᴍ', "M"), // U+1D0D LATIN LETTER SMALL CAPITAL M
    ('ᴏ', "O"), // U+1D0F LATIN LETTER SMALL CAPITAL O
    ('ᴘ', "P"), // U+1D18 LATIN LETTER SMALL CAPITAL P
    ('ᴛ', "T"), // U+1D1B LATIN LETTER SMALL CAPITAL T
    ('ᴜ', "U"), // U+1D1C LATIN LETTER SMALL CAPITAL U
    ('ᴠ', "V"), // U+1D20 LATIN LETTER SMALL CAPITAL V
    ('ᴡ', "W"), // U+1D21 LATIN LETTER SMALL CAPITAL W
    ('ᴢ', "Z"), // U+1D22 LATIN LETTER SMALL CAPITAL Z
    ('\u{1DCD}', "^"), // U+1DCD COMBINING DOUBLE CIRCUMFLEX ABOVE
    ('\u{2000}', "  "), // U+2000 EN QUAD
    ('\u{2001}', " "), // U+2001 EM QUAD
    ('\u{2002}', "  "), // U+2002 EN SPACE
    ('\u{2003}', "  "), // U+2003 EM SPACE
    ('\u{2004}', "  "), // U+2004 THREE-PER-EM SPACE
    ('\u{2005}', "  "), // U+2005 FOUR-PER-EM SPACE
    ('\u{2006}', "  "), // U+2006 SIX-PER-EM SPACE
    ('\u{2007}', "  "), // U+2007 FIGURE SPACE
    ('\u{2008}', "  "), // U+2008 PUNCTUATION SPACE
    ('\u{2009}', "  "), // U+2009 THIN SPACE
    ('\u{200A}', "  "), // U+200A HAIR SPACE
    ('\u{200B}', ""), // U+200B ZERO WIDTH SPACE
    ('‐', "-"), // U+2010 HYPHEN
    ('–', "-"), // U+2013 EN DASH
    ('—', "-"), // U+2014 EM DASH
    ('―', "-"), // U+2015 HORIZONTAL BAR
    ('‗', "'"), // U+2017 DOUBLE LOW LINE
    ('‘', "'"), // U+2018 LEFT SINGLE QUOTATION MARK
    ('’', "'"), // U+2019 RIGHT SINGLE QUOTATION MARK
    ('‚', ","), // U+201A SINGLE LOW-9 QUOTATION MARK
    ('‛', "'"), // U+201B SINGLE HIGH-REVERSED-9 QUOTATION MARK
    ('“', "\""), // U+201C LEFT DOUBLE QUOTATION MARK
    ('”', "\""), // U+201D RIGHT DOUBLE QUOTATION MARK
    ('„', "\""), // U+201E DOUBLE LOW-9 QUOTATION MARK
    ('‟', "\""), // U+201F DOUBLE HIGH-REVERSED-9 QUOTATION MARK
    ('•', "-"), // U+2022 BULLET
    ('…', "..."), // U+2026 HORIZONTAL ELLIPSIS
    ('\u{2028}', " "), // U+2028 LINE SEPARATOR
    ('\u{2029}', " "), // U+2029 PARAGRAPH SEPARATOR
    ('\u{202F}', "  "), // U+202F NARROW NO-BREAK SPACE
    ('‹', ">"), // U+2039 SINGLE LEFT-POINTING ANGLE QUOTATION MARK
    ('›', "<"), // U+203A SINGLE RIGHT-POINTING ANGLE QUOTATION MARK
    ('‼', "!!"), // U+203C DOUBLE EXCLAMATION MARK
    ('⁃', "-"), // U+2043 HYPHEN BULLET
    ('⁄', "/"), // U+2044 FRACTION SLASH
    ('⁎', "*"), // U+204E LOW ASTERISK
    ('⁏', ";"), // U+204F REVERSED SEMICOLON
    ('\u{205F}', "  "), // U+205F MEDIUM MATHEMATICAL SPACE
    ('\u{2060}', ""), // U+2060 WORD JOINER
    ('\u{20D2}', "|"), // U+20D2 COMBINING LONG VERTICAL LINE OVERLAY
    ('\u{20D3}', "|"), // U+20D3 COMBINING SHORT VERTICAL LINE OVERLAY
    ('\u{20E5}', "\\"), // U+20E5 COMBINING REVERSE SOLIDUS OVERLAY
    ('∕', "/"), // U+2215 DIVISION SLASH
    ('∗', "*"), // U+2217 ASTERISK OPERATOR
    ('∣', "|"), // U+2223 DIVIDES
    ('∼', "~"), // U+223C TILDE OPERATOR
    ('⊛', "*"), // U+229B CIRCLED ASTERISK OPERATOR
    ('⎜', "|"), // U+239C LEFT PARENTHESIS EXTENSION
    ('⎟', "|"), // U+239F RIGHT PARENTHESIS EXTENSION
    ('⎸', "|"), // U+23B8 LEFT VERTICAL BOX LINE
    ('⎹', "|"), // U+23B9 RIGHT VERTICAL BOX LINE
    ('⎼', "-"), // U+23BC HORIZONTAL SCAN LINE-7
    ('⎽', "-"), // U+23BD HORIZONTAL SCAN LINE-9
    ('⏐', "|"), // U+23D0 VERTICAL LINE EXTENSION
    ('✢', "*"), // U+2722 FOUR TEARDROP-SPOKED ASTERISK
    ('✣', "*"), // U+2723 FOUR BALLOON-SPOKED ASTERISK
    ('✤', "*"), // U+2724 HEAVY FOUR BALLOON-SPOKED ASTERISK
    ('✥', "*"), // U+2725 FOUR CLUB-SPOKED ASTERISK
    ('✱', "*"), // U+2731 HEAVY ASTERISK
    ('✲', "*"), // U+2732 OPEN CENTRE ASTERISK
    ('✳', "*"), // U+2733 EIGHT SPOKED ASTERISK
    ('✺', "*"), // U+273A SIXTEEN POINTED ASTERISK
    ('✻', "*"), // U+273B TEARDROP-SPOKED ASTERISK
    ('✼', "*"), // U+273C OPEN CENTRE TEARDROP-SPOKED ASTERISK
    ('✽', "*"), // U+273D HEAVY TEARDROP-SPOKED ASTERISK
    ('❃', "*"), // U+2743 HEAVY TEARDROP-SPOKED PINWHEEL ASTERISK
    ('❉', "*"), // U+2749 BALLOON-SPOKED ASTERISK
    ('❊', "*"), // U+274A EIGHT TEARDROP-SPOKED PROPELLER ASTERISK
    ('❋', "*"), // U+274B HEAVY EIGHT TEARDROP-SPOKED PROPELLER ASTERISK
    ('❛', "'"), // U+275B HEAVY SINGLE TURNED COMMA QUOTATION MARK ORNAMENT
    ('❜', "'"), // U+275C HEAVY SINGLE COMMA QUOTATION MARK ORNAMENT
    ('❝', "\""), // U+275D HEAVY DOUBLE TURNED COMMA QUOTATION MARK ORNAMENT
    ('❞', "\""), // U+275E HEAVY DOUBLE COMMA QUOTATION MARK ORNAMENT
    ('❨', "("), // U+2768 MEDIUM LEFT PARENTHESIS ORNAMENT
    ('❩', ")"), // U+2769 MEDIUM RIGHT PARENTHESIS ORNAMENT
    ('❪', "("), // U+276A MEDIUM FLATTENED LEFT PARENTHESIS ORNAMENT
    ('❫', ")"), // U+276B MEDIUM FLATTENED RIGHT PARENTHESIS ORNAMENT
    ('❴', "{"), // U+2774 MEDIUM LEFT CURLY BRACKET ORNAMENT
    ('❵', "}"), // U+2775 MEDIUM RIGHT CURLY BRACKET ORNAMENT
    ('⟮', "("), // U+27EE MATHEMATICAL LEFT FLATTENED PARENTHESIS
    ('⟯', ")"), // U+27EF MATHEMATICAL RIGHT FLATTENED PARENTHESIS
    ('⦂', ":"), // U+2982 Z NOTATION TYPE COLON
    ('⦅', "("), // U+2985 LEFT WHITE PARENTHESIS
    ('⦆', ")"), // U+2986 RIGHT WHITE PARENTHESIS
    ('⧆', "*"), // U+29C6 SQUARED ASTERISK
    ('⧵', "\\"), // U+29F5 REVERSE SOLIDUS OPERATOR
    ('⧸', "/"), // U+29F8 BIG SOLIDUS
    ('⧹', "\\"), // U+29F9 BIG REVERSE SOLIDUS
    ('\u{3000}', "  "), // U+3000 IDEOGRAPHIC SPACE
    ('、', ","), // U+3001 IDEOGRAPHIC COMMA
    ('。', "."), // U+3002 IDEOGRAPHIC FULL STOP
    ('〝', "\""), // U+301D REVERSED DOUBLE PRIME QUOTATION MARK
    ('〞', "\""), // U+301E DOUBLE PRIME QUOTATION MARK
    ('ꜰ', "F"), // U+A730 LATIN LETTER SMALL CAPITAL F
    ('ꜱ', "S"), // U+A731 LATIN LETTER SMALL CAPITAL S
    ('꞉', ":"), // U+A789 MODIFIER LETTER COLON
    ('꞊', "="), // U+A78A MODIFIER LETTER SHORT EQUALS SIGN
    ('︐', "'"), // U+FE10 PRESENTATION FORM FOR VERTICAL COMMA
    ('︑', "'"), // U+FE11 PRESENTATION FORM FOR VERTICAL IDEOGRAPHIC COMMA
    ('︓', ":"), // U+FE13 PRESENTATION FORM FOR VERTICAL COLON
    ('︔', ";"), // U+FE14 PRESENTATION FORM FOR VERTICAL SEMICOLON
    ('︕', "!"), // U+FE15 PRESENTATION FORM FOR VERTICAL EXCLAMATION MARK
    ('︖', "?"), // U+FE16 PRESENTATION FORM FOR VERTICAL QUESTION MARK
    ('﹐', ","), // U+FE50 SMALL COMMA
    ('﹑', ","), // U+FE51 SMALL IDEOGRAPHIC COMMA
    ('﹒', "."), // U+FE52 SMALL FULL STOP
    ('﹔', ";"), // U+FE54 SMALL SEMICOLON
    ('﹖', "?"), // U+FE56 SMALL QUESTION MARK
    ('﹗', "!"), // U+FE57 SMALL EXCLAMATION MARK
    ('﹙', "("), // U+FE59 SMALL LEFT PARENTHESIS
    ('﹚', ")"), // U+FE5A SMALL RIGHT PARENTHESIS
    ('﹛', "{"), // U+FE5B SMALL LEFT CURLY BRACKET
    ('﹜', "}"), // U+FE5C SMALL RIGHT CURLY BRACKET
    ('﹟', "#"), // U+FE5F SMALL NUMBER SIGN
    ('﹠', "&"), // U+FE60 SMALL AMPERSAND
    ('﹡', "*"), // U+FE61 SMALL ASTERISK
    ('﹢', "+"), // U+FE62 SMALL PLUS SIGN
    ('﹣', "-"), // U+FE63 SMALL HYPHEN-MINUS
    ('﹤', "<"), // U+FE64 SMALL LESS-THAN SIGN
    ('﹥', ">"), // U+FE65 SMALL GREATER-THAN SIGN
    ('﹦', "="), // U+FE66 SMALL EQUALS SIGN
    ('﹨', "\\"), // U+FE68 SMALL REVERSE SOLIDUS
    ('﹩', "$"), // U+FE69 SMALL DOLLAR SIGN
    ('﹪', "%"), // U+FE6A SMALL PERCENT SIGN
    ('﹫', "@"), // U+FE6B SMALL COMMERCIAL AT
    ('\u{FEFF}', ""), // U+FEFF ZERO WIDTH NO-BREAK SPACE
    ('！', "!"), // U+FF01 FULLWIDTH EXCLAMATION MARK
    ('＂', "\""), // U+FF02 FULLWIDTH QUOTATION MARK
    ('＃', "#"), // U+FF03 FULLWIDTH NUMBER SIGN
    ('＄', "$"), // U+FF04 FULLWIDTH DOLLAR SIGN
    ('％', "%"), // U+FF05 FULLWIDTH PERCENT SIGN
    ('＆', "&"), // U+FF06 FULLWIDTH AMPERSAND
    ('＇', "'"), // U+FF07 FULLWIDTH APOSTROPHE
    ('（', "("), // U+FF08 FULLWIDTH LEFT PARENTHESIS
    ('）', ")"), // U+FF09 FULLWIDTH RIGHT PARENTHESIS
    ('＊', "*"), // U+FF0A FULLWIDTH ASTERISK
    ('＋', "+"), // U+FF0B FULLWIDTH PLUS SIGN
    ('，', ","), // U+FF0C FULLWIDTH COMMA
    ('－', "-"), // U+FF0D FULLWIDTH HYPHEN-MINUS
    ('．', "."), // U+FF0E FULLWIDTH FULL STOP
    ('／', "/"), // U+FF0F FULLWIDTH SOLIDUS
    ('０', "0"), // U+FF10 FULLWIDTH DIGIT ZERO
    ('１', "1"), // U+FF11 FULLWIDTH DIGIT ONE
    ('２', "2"), // U+FF12 FULLWIDTH DIGIT TWO
    ('３', "3"), // U+FF13 FULLWIDTH DIGIT THREE
    ('４', "4"), // U+FF14 FULLWIDTH DIGIT FOUR
    ('５', "5"), // U+FF15 FULLWIDTH DIGIT FIVE
    ('６', "6"), // U+FF16 FULLWIDTH DIGIT SIX
    ('７', "7"), // U+FF17 FULLWIDTH DIGIT SEVEN
    ('８', "8"), // U+FF18 FULLWIDTH DIGIT EIGHT
    ('９', "9"), // U+FF19 FULLWIDTH DIGIT NINE
    ('：', ":"), // U+FF1A FULLWIDTH COLON
    ('；', ";"), // U+FF1B FULLWIDTH SEMICOLON
    ('＜', "<"), // U+FF1C FULLWIDTH LESS-THAN SIGN
    ('＝', "="), // U+FF1D FULLWIDTH EQUALS SIGN
    ('＞', ">"), // U+FF1E FULLWIDTH GREATER-THAN SIGN
    ('？', "?"), // U+FF1F FULLWIDTH QUESTION MARK
    ('＠', "@"), // U+FF20 FULLWIDTH COMMERCIAL AT
    ('Ａ', "A"), // U+FF21 FULLWIDTH LATIN CAPITAL LETTER A
    ('Ｂ', "B"), // U+FF22 FULLWIDTH LATIN CAPITAL LETTER B
    ('Ｃ', "C"), // U+FF23 FULLWIDTH LATIN CAPITAL LETTER C
    ('Ｄ', "D"), // U+FF24 FULLWIDTH LATIN CAPITAL LETTER D
    ('Ｅ', "E"), // U+FF25 FULLWIDTH LATIN CAPITAL LETTER E
    ('Ｆ', "F"), // U+FF26 FULLWIDTH LATIN CAPITAL LETTER F
    ('Ｇ', "G"), // U+FF27 FULLWIDTH LATIN CAPITAL LETTER G
    ('Ｈ', "H"), // U+FF28 FULLWIDTH LATIN CAPITAL LETTER H
    ('Ｉ', "I"), // U+FF29 FULLWIDTH LATIN CAPITAL LETTER I
    ('Ｊ', "J"), // U+FF2A FULLWIDTH LATIN CAPITAL LETTER J
    ('Ｋ', "K"), // U+FF2B FULLWIDTH LATIN CAPITAL LETTER K
    ('Ｌ', "L"), // U+FF2C FULLWIDTH LATIN CAPITAL LETTER L
    ('Ｍ', "M"), // U+FF2D FULLWIDTH LATIN CAPITAL LETTER M
    ('Ｎ', "N"), // U+FF2E FULLWIDTH LATIN CAPITAL LETTER N
    ('Ｏ', "O"), // U+FF2F FULLWIDTH LATIN CAPITAL LETTER O
    ('Ｐ', "P"), // U+FF30 FULLWIDTH LATIN CAPITAL LETTER P
    ('Ｑ', "Q"), // U+FF31 FULLWIDTH LATIN CAPITAL LETTER Q
    ('Ｒ', "R"), // U+FF32 FULLWIDTH LATIN CAPITAL LETTER R
    ('Ｓ', "S"), // U+FF33 FULLWIDTH LATIN CAPITAL LETTER S
    ('Ｔ', "T"), // U+FF34 FULLWIDTH LATIN CAPITAL LETTER T
    ('Ｕ', "U"), // U+FF35 FULLWIDTH LATIN CAPITAL LETTER U
    ('Ｖ', "V"), // U+FF36 FULLWIDTH LATIN CAPITAL LETTER V
    ('Ｗ', "W"), // U+FF37 FULLWIDTH LATIN CAPITAL LETTER W
    ('Ｘ', "X"), // U+FF38 FULLWIDTH LATIN CAPITAL LETTER X
    ('Ｙ', "Y"), // U+FF39 FULLWIDTH LATIN CAPITAL LETTER Y
    ('Ｚ', "Z"), // U+FF3A FULLWIDTH LATIN CAPITAL LETTER Z
    ('［', "["), // U+FF3B FULLWIDTH LEFT SQUARE BRACKET
    ('＼', "\\"), // U+FF3C FULLWIDTH REVERSE SOLIDUS
    ('］', "]"), // U+FF3D FULLWIDTH RIGHT SQUARE BRACKET
    ('＾', "^"), // U+FF3E FULLWIDTH CIRCUMFLEX ACCENT
    ('＿', "_"), // U+FF3F FULLWIDTH LOW LINE
    ('｛', "{"), // U+FF5B FULLWIDTH LEFT CURLY BRACKET
    ('｜', "|"), // U+FF5C FULLWIDTH VERTICAL LINE
    ('｝', "}"), // U+FF5D FULLWIDTH RIGHT CURLY BRACKET
    ('～', "~"), // U+FF5E FULLWIDTH TILDE
    ('｡', "."), // U+FF61 HALFWIDTH IDEOGRAPHIC FULL STOP
    ('､', ","), // U+FF64 HALFWIDTH IDEOGRAPHIC COMMA
];
