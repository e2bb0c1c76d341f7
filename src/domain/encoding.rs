//! SMS body encoding and exact segment counting.
//!
//! GSM 03.38 (7-bit) is used when every character is in the basic table or the
//! extension table (extension characters cost two septets). Anything else is
//! sent as UCS-2, counted in UTF-16 code units so that emoji (surrogate pairs)
//! are counted correctly. Concatenated parts carry a 6-octet UDH, which leaves
//! 153 septets or 67 UTF-16 units per part; a character is never split across
//! two parts.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM_EXTENSION: &str = "\u{000C}^{}\\[~]|€";

/// The most segments one message may have.
pub const MAX_SEGMENTS: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "gsm7" => Some(Encoding::Gsm7),
            "ucs2" => Some(Encoding::Ucs2),
            _ => None,
        }
    }
}

/// Septets a character takes in GSM-7, or `None` when it has no GSM-7 form.
fn gsm_septets(c: char) -> Option<usize> {
    if gsm_basic(c).is_some() {
        Some(1)
    } else {
        gsm_extension(c).map(|_| 2)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body must not be empty")]
    Empty,
    #[error("body needs {segments} segments; at most {MAX_SEGMENTS} are allowed")]
    TooLong { segments: u32 },
}

/// A message body that is known to be sendable, with its encoding and segment count.
#[derive(Clone, PartialEq, Eq)]
pub struct SmsBody {
    text: String,
    encoding: Encoding,
    segments: u32,
}

impl std::fmt::Debug for SmsBody {
    // Bodies may carry one-time codes: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsBody")
            .field("encoding", &self.encoding)
            .field("segments", &self.segments)
            .finish_non_exhaustive()
    }
}

impl SmsBody {
    pub fn parse(text: String) -> Result<Self, BodyError> {
        if text.is_empty() {
            return Err(BodyError::Empty);
        }
        let (encoding, segments) = count_segments(&text);
        if segments > MAX_SEGMENTS {
            return Err(BodyError::TooLong { segments });
        }
        Ok(SmsBody {
            text,
            encoding,
            segments,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }
    pub fn segments(&self) -> u32 {
        self.segments
    }
}

/// The encoding a text needs and how many segments it takes.
pub fn count_segments(text: &str) -> (Encoding, u32) {
    let gsm: Option<Vec<usize>> = text.chars().map(gsm_septets).collect();
    match gsm {
        Some(widths) => (Encoding::Gsm7, parts(&widths, 160, 153)),
        None => {
            let widths: Vec<usize> = text.chars().map(char::len_utf16).collect();
            (Encoding::Ucs2, parts(&widths, 70, 67))
        }
    }
}

/// Parts needed for characters of the given widths: one part if all fit in
/// `single`, else greedy parts of at most `multi` units without splitting a character.
fn parts(widths: &[usize], single: usize, multi: usize) -> u32 {
    if widths.iter().sum::<usize>() <= single {
        return 1;
    }
    let mut count = 1;
    let mut used = 0;
    for &w in widths {
        if used + w > multi {
            count += 1;
            used = 0;
        }
        used += w;
    }
    count
}

/// GSM 03.38 basic-table codes of the ASCII characters (0xFF: none).
static GSM_ASCII: std::sync::LazyLock<[u8; 128]> = std::sync::LazyLock::new(|| {
    let mut table = [0xFF; 128];
    for (i, c) in GSM_BASIC.chars().enumerate().filter(|(_, c)| c.is_ascii()) {
        table[c as usize] = basic_code(i);
    }
    table
});

/// The code of GSM_BASIC's i-th character: the table's 0x1B is the escape,
/// which GSM_BASIC leaves out.
fn basic_code(i: usize) -> u8 {
    if i >= 0x1B { i as u8 + 1 } else { i as u8 }
}

/// A character's code in the GSM 03.38 basic table. Most text is ASCII: its
/// codes come from a table, not a search.
fn gsm_basic(c: char) -> Option<u8> {
    if c.is_ascii() {
        Some(GSM_ASCII[c as usize]).filter(|&code| code != 0xFF)
    } else {
        GSM_BASIC.chars().position(|b| b == c).map(basic_code)
    }
}

/// A character's code in the extension table (sent after the escape 0x1B).
fn gsm_extension(c: char) -> Option<u8> {
    Some(match c {
        '\u{000C}' => 0x0A,
        '^' => 0x14,
        '{' => 0x28,
        '}' => 0x29,
        '\\' => 0x2F,
        '[' => 0x3C,
        '~' => 0x3D,
        ']' => 0x3E,
        '|' => 0x40,
        '€' => 0x65,
        _ => return None,
    })
}

/// GSM 03.38 code of a character, one byte per septet (unpacked): extension
/// characters are the escape 0x1B and their code.
fn gsm_code(c: char) -> Option<Vec<u8>> {
    match (gsm_basic(c), gsm_extension(c)) {
        (Some(code), _) => Some(vec![code]),
        (None, Some(ext)) => Some(vec![0x1B, ext]),
        (None, None) => None,
    }
}

/// The text as carriers take it, one payload per part (without UDH): GSM-7
/// unpacked (data_coding 0) or UCS-2/UTF-16BE (data_coding 8), split exactly as
/// `count_segments` counts, never inside a character.
pub fn encode_parts(text: &str, encoding: Encoding) -> Vec<Vec<u8>> {
    let (chars, single, multi): (Vec<Vec<u8>>, usize, usize) = match encoding {
        Encoding::Gsm7 => (
            text.chars()
                .map(|c| gsm_code(c).unwrap_or(vec![b'?']))
                .collect(),
            160,
            153,
        ),
        Encoding::Ucs2 => (
            text.chars()
                .map(|c| {
                    let mut units = [0u16; 2];
                    c.encode_utf16(&mut units)
                        .iter()
                        .flat_map(|u| u.to_be_bytes())
                        .collect()
                })
                .collect(),
            140,
            134,
        ),
    };
    // GSM widths are septets (one byte each); UCS-2 widths are bytes (two per unit).
    if chars.iter().map(Vec::len).sum::<usize>() <= single {
        return vec![chars.concat()];
    }
    let mut parts: Vec<Vec<u8>> = vec![Vec::new()];
    for c in chars {
        let last = parts.last_mut().expect("one part at least");
        if last.len() + c.len() > multi {
            parts.push(c);
        } else {
            last.extend(c);
        }
    }
    parts
}

/// Reads GSM-7 unpacked text (an inbound message); unknown codes become '?'.
pub fn decode_gsm7(bytes: &[u8]) -> String {
    let basic: Vec<char> = GSM_BASIC.chars().collect();
    let mut out = String::new();
    let mut escaped = false;
    for &b in bytes {
        if escaped {
            escaped = false;
            let ext = GSM_EXTENSION.chars().find(|&c| gsm_extension(c) == Some(b));
            out.push(ext.unwrap_or('?'));
        } else if b == 0x1B {
            escaped = true;
        } else {
            let i = if b > 0x1B { b as usize - 1 } else { b as usize };
            out.push(basic.get(i).copied().unwrap_or('?'));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_match_the_segment_count_and_round_trip() {
        let texts = [
            "Your code is 123456".to_string(),
            "a".repeat(160),
            "a".repeat(161),
            "€".repeat(80),
            format!("{}€{}", "a".repeat(152), "a".repeat(152)),
            "ж".repeat(70),
            "ж".repeat(135),
            format!("{}😀{}", "ж".repeat(66), "ж".repeat(66)),
            "😀".repeat(36),
            "Café £5 {x} [y] ~ | ^ \\ @$".to_string(),
        ];
        for text in texts {
            let (encoding, segments) = count_segments(&text);
            let parts = encode_parts(&text, encoding);
            assert_eq!(parts.len() as u32, segments, "{text}");
            let back = match encoding {
                Encoding::Gsm7 => decode_gsm7(&parts.concat()),
                Encoding::Ucs2 => {
                    let units: Vec<u16> = parts
                        .concat()
                        .chunks(2)
                        .map(|b| u16::from_be_bytes([b[0], b[1]]))
                        .collect();
                    String::from_utf16(&units).unwrap()
                }
            };
            assert_eq!(back, text);
        }
        assert_eq!(encode_parts("@£$", Encoding::Gsm7), vec![vec![0, 1, 2]]);
        assert_eq!(
            encode_parts("ÆA€", Encoding::Gsm7),
            vec![vec![0x1C, 0x41, 0x1B, 0x65]]
        );
    }

    #[test]
    fn plain_gsm_fits_160_in_one_segment() {
        assert_eq!(count_segments(&"a".repeat(160)), (Encoding::Gsm7, 1));
        assert_eq!(count_segments(&"a".repeat(161)), (Encoding::Gsm7, 2));
        assert_eq!(count_segments(&"a".repeat(306)), (Encoding::Gsm7, 2));
        assert_eq!(count_segments(&"a".repeat(307)), (Encoding::Gsm7, 3));
        assert_eq!(count_segments(&"a".repeat(1530)), (Encoding::Gsm7, 10));
    }

    #[test]
    fn every_gsm_character_has_its_code() {
        // Spot checks against GSM 03.38, then every character both ways.
        for (c, code) in [
            ('@', 0x00),
            ('$', 0x02),
            ('\n', 0x0A),
            ('_', 0x11),
            (' ', 0x20),
        ] {
            assert_eq!(gsm_code(c), Some(vec![code]), "{c:?}");
        }
        for (c, code) in [
            ('A', 0x41),
            ('a', 0x61),
            ('£', 0x01),
            ('é', 0x05),
            ('à', 0x7F),
        ] {
            assert_eq!(gsm_code(c), Some(vec![code]), "{c:?}");
        }
        assert_eq!(gsm_code('€'), Some(vec![0x1B, 0x65]));
        assert_eq!(gsm_code('`'), None);
        let all = format!("{GSM_BASIC}{GSM_EXTENSION}");
        let encoded = encode_parts(&all, Encoding::Gsm7).concat();
        assert_eq!(decode_gsm7(&encoded), all);
    }

    #[test]
    fn extension_characters_cost_two_septets() {
        // 80 euro signs = 160 septets: one segment; one more character tips it over.
        assert_eq!(count_segments(&"€".repeat(80)), (Encoding::Gsm7, 1));
        assert_eq!(
            count_segments(&format!("{}a", "€".repeat(80))),
            (Encoding::Gsm7, 2)
        );
        assert_eq!(count_segments("{[~]}|^\\"), (Encoding::Gsm7, 1));
        // 152 plain septets then an escape pair: the pair must not straddle parts.
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(10));
        assert_eq!(count_segments(&text), (Encoding::Gsm7, 2));
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(count_segments(&text), (Encoding::Gsm7, 3));
    }

    #[test]
    fn gsm_accented_letters_stay_gsm() {
        assert_eq!(count_segments("Café £5 Ñ ü ß"), (Encoding::Gsm7, 1));
    }

    #[test]
    fn non_gsm_text_is_ucs2_counted_in_utf16_units() {
        assert_eq!(count_segments(&"ç".repeat(70)), (Encoding::Ucs2, 1)); // lowercase ç is not GSM
        assert_eq!(count_segments(&"ж".repeat(70)), (Encoding::Ucs2, 1));
        assert_eq!(count_segments(&"ж".repeat(71)), (Encoding::Ucs2, 2));
        assert_eq!(count_segments(&"ж".repeat(134)), (Encoding::Ucs2, 2));
        assert_eq!(count_segments(&"ж".repeat(135)), (Encoding::Ucs2, 3));
    }

    #[test]
    fn emoji_are_two_utf16_units_and_never_split() {
        assert_eq!(count_segments("Hi 😀"), (Encoding::Ucs2, 1));
        assert_eq!(count_segments(&"😀".repeat(35)), (Encoding::Ucs2, 1));
        assert_eq!(count_segments(&"😀".repeat(36)), (Encoding::Ucs2, 2));
        // 66 units then an emoji: the surrogate pair goes whole into part two.
        let text = format!("{}😀", "ж".repeat(66));
        assert_eq!(count_segments(&text), (Encoding::Ucs2, 1));
        let text = format!("{}😀{}", "ж".repeat(66), "ж".repeat(65));
        assert_eq!(count_segments(&text), (Encoding::Ucs2, 2));
        let text = format!("{}😀{}", "ж".repeat(66), "ж".repeat(66));
        assert_eq!(count_segments(&text), (Encoding::Ucs2, 3));
    }

    #[test]
    fn one_non_gsm_character_switches_the_whole_body() {
        assert_eq!(
            count_segments(&format!("{}😀", "a".repeat(68))),
            (Encoding::Ucs2, 1)
        );
        assert_eq!(
            count_segments(&format!("{}😀", "a".repeat(69))),
            (Encoding::Ucs2, 2)
        );
    }

    #[test]
    fn body_limits() {
        assert_eq!(SmsBody::parse(String::new()), Err(BodyError::Empty));
        assert_eq!(
            SmsBody::parse("a".repeat(1531)),
            Err(BodyError::TooLong { segments: 11 })
        );
        let body = SmsBody::parse("hello".into()).unwrap();
        assert_eq!((body.encoding(), body.segments()), (Encoding::Gsm7, 1));
        assert!(!format!("{body:?}").contains("hello"));
    }
}
