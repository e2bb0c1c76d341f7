//! Phone numbers: parsed to E.164 at the edge, masked in every log line.

use std::fmt;

use super::Mode;

/// Ofcom's drama range: never assigned to a handset, so safe as sandbox magic numbers.
const DRAMA_PREFIX: &str = "+447700900";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PhoneError(pub &'static str);

/// A destination number in E.164 with its ISO region ("GB").
#[derive(Clone, PartialEq, Eq)]
pub struct PhoneNumber {
    e164: String,
    region: String,
}

impl PhoneNumber {
    /// Parses E.164 or UK national format. The drama range is accepted only in test mode.
    pub fn parse(input: &str, mode: Mode) -> Result<Self, PhoneError> {
        let trimmed = input.trim();
        if trimmed.is_empty() || trimmed.len() > 32 {
            return Err(PhoneError(
                "must be a phone number in E.164 or UK national format",
            ));
        }
        let parsed = phonenumber::parse(Some(phonenumber::country::Id::GB), trimmed)
            .map_err(|_| PhoneError("must be a phone number in E.164 or UK national format"))?;
        let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
        if is_drama(&e164) {
            return match mode {
                Mode::Test => Ok(PhoneNumber {
                    e164,
                    region: "GB".into(),
                }),
                Mode::Live => Err(PhoneError(
                    "+44 7700 900xxx is the sandbox range; it works only with test keys",
                )),
            };
        }
        if !phonenumber::is_valid(&parsed) {
            return Err(PhoneError("is not a valid phone number"));
        }
        let region = parsed
            .country()
            .id()
            .map(|id| id.as_ref().to_string())
            .ok_or(PhoneError("is not a valid phone number"))?;
        Ok(PhoneNumber { e164, region })
    }

    /// Rebuilds a number this service stored earlier (already validated).
    pub fn from_stored(e164: String) -> Self {
        let region = phonenumber::parse(None, &e164)
            .ok()
            .and_then(|p| p.country().id())
            .map(|id| id.as_ref().to_string())
            .unwrap_or_else(|| "GB".into());
        PhoneNumber { e164, region }
    }

    pub fn e164(&self) -> &str {
        &self.e164
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The number in the sandbox drama range, as its last three digits.
    pub fn drama_suffix(&self) -> Option<u16> {
        if is_drama(&self.e164) {
            self.e164[DRAMA_PREFIX.len()..].parse().ok()
        } else {
            None
        }
    }

    /// For logs: the last four digits hidden.
    pub fn masked(&self) -> Masked<'_> {
        Masked(&self.e164)
    }
}

fn is_drama(e164: &str) -> bool {
    e164.len() == DRAMA_PREFIX.len() + 3
        && e164.starts_with(DRAMA_PREFIX)
        && e164[DRAMA_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit())
}

/// An E.164 string with its last four digits hidden, for logs.
pub struct Masked<'a>(pub &'a str);

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keep = self.0.len().saturating_sub(4);
        write!(f, "{}****", &self.0[..keep])
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uk_national_and_e164_agree() {
        let a = PhoneNumber::parse("07400 123456", Mode::Live).unwrap();
        let b = PhoneNumber::parse("+447400123456", Mode::Live).unwrap();
        assert_eq!(a.e164(), "+447400123456");
        assert_eq!(a, b);
        assert_eq!(a.region(), "GB");
    }

    #[test]
    fn drama_range_only_in_test_mode() {
        let n = PhoneNumber::parse("07700 900123", Mode::Test).unwrap();
        assert_eq!(n.e164(), "+447700900123");
        assert_eq!(n.drama_suffix(), Some(123));
        assert!(PhoneNumber::parse("+447700900123", Mode::Live).is_err());
    }

    #[test]
    fn rubbish_is_rejected() {
        for bad in ["", "hello", "123", "+44 1234", "+999 123456789"] {
            assert!(PhoneNumber::parse(bad, Mode::Test).is_err(), "{bad}");
        }
    }

    #[test]
    fn masked_hides_last_digits() {
        let n = PhoneNumber::parse("+447400123456", Mode::Live).unwrap();
        assert_eq!(n.masked().to_string(), "+44740012****");
        assert!(!format!("{n:?}").contains("123456"));
    }

    #[test]
    fn other_regions_parse_with_their_region() {
        let n = PhoneNumber::parse("+33612345678", Mode::Live).unwrap();
        assert_eq!(n.region(), "FR");
    }
}
