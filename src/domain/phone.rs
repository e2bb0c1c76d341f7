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
        let region = valid_region(&parsed)
            .ok_or(PhoneError("is not a valid phone number"))?
            .to_string();
        Ok(PhoneNumber { e164, region })
    }

    /// A UK mobile number (what a rentable number must be); the drama range counts.
    pub fn is_uk_mobile(&self) -> bool {
        if is_drama(&self.e164) {
            return true;
        }
        let Ok(parsed) = phonenumber::parse(None, &self.e164) else {
            return false;
        };
        let national = parsed.national().to_string();
        self.region == "GB"
            && phonenumber::metadata::DATABASE
                .by_id("GB")
                .and_then(|m| m.descriptors().mobile())
                .is_some_and(|d| d.is_match(&national))
    }

    pub fn e164(&self) -> &str {
        &self.e164
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The number in the sandbox drama range, as its last three digits.
    pub fn drama_suffix(&self) -> Option<u16> {
        drama_suffix(&self.e164)
    }

    /// For logs: the last four digits hidden.
    pub fn masked(&self) -> Masked<'_> {
        Masked(&self.e164)
    }
}

/// The last three digits of an E.164 number in the drama range, else `None`.
pub fn drama_suffix(e164: &str) -> Option<u16> {
    if is_drama(e164) {
        e164[DRAMA_PREFIX.len()..].parse().ok()
    } else {
        None
    }
}

fn is_drama(e164: &str) -> bool {
    e164.len() == DRAMA_PREFIX.len() + 3
        && e164.starts_with(DRAMA_PREFIX)
        && e164[DRAMA_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit())
}

/// The region a number belongs to, if it is a valid number there: what
/// `phonenumber::is_valid` and `country().id()` answer together. Each of those
/// searches the calling code's regions again and tries up to eleven number
/// patterns, and each pattern match hashes its whole pattern to find it in the
/// crate's regex cache: three searches were most of the cost of POST /v1/sms.
/// Here the search runs once, and validity stops at the first type that matches
/// (mobile first: most of what we send goes to mobiles).
fn valid_region(number: &phonenumber::PhoneNumber) -> Option<&'static str> {
    let db = &*phonenumber::metadata::DATABASE;
    let national = number.national().to_string();
    let valid_in = |meta: &phonenumber::Metadata| {
        let d = meta.descriptors();
        d.general().is_match(&national)
            && [
                d.mobile(),
                d.fixed_line(),
                d.toll_free(),
                d.premium_rate(),
                d.shared_cost(),
                d.voip(),
                d.personal_number(),
                d.pager(),
                d.uan(),
                d.voicemail(),
            ]
            .into_iter()
            .flatten()
            .any(|t| t.is_match(&national))
    };
    let regions = db.region(&number.code().value())?;
    // The crate's own order: a code with one region is that region's; else a
    // region whose leading digits match owns the number, and a region without
    // leading digits owns it if it is valid there (known valid, then).
    let (region, known_valid) = if let [only] = regions[..] {
        (only, false)
    } else {
        regions.into_iter().find_map(|region| {
            let meta = db.by_id(region)?;
            match meta.leading_digits() {
                Some(leading) => leading
                    .find(&national)
                    .is_some_and(|m| m.start() == 0)
                    .then_some((region, false)),
                None => valid_in(meta).then_some((region, true)),
            }
        })?
    };
    // "001" stands for a non-geographic code (+800, +979): no region to allow.
    if region == "001" {
        return None;
    }
    (known_valid || valid_in(db.by_id(region)?)).then_some(region)
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

/// An ISO 3166-1 alpha-2 country a tenant may send to (`GB`): one that
/// libphonenumber has numbering data for.
pub fn parse_country(input: &str) -> Option<String> {
    let code = input.trim().to_ascii_uppercase();
    let known = code.len() == 2
        && code.bytes().all(|b| b.is_ascii_uppercase())
        && phonenumber::metadata::DATABASE
            .by_id(code.as_str())
            .is_some();
    known.then_some(code)
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

    /// The one-pass search answers as the crate's `is_valid` and
    /// `country().id()` do, across regions that share a calling code.
    #[test]
    fn countries_are_the_ones_with_numbering_data() {
        assert_eq!(parse_country("gb").as_deref(), Some("GB"));
        assert_eq!(parse_country(" IE ").as_deref(), Some("IE"));
        assert_eq!(parse_country("XX"), None);
        assert_eq!(parse_country("GBR"), None);
        assert_eq!(parse_country("G1"), None);
    }

    #[test]
    fn valid_region_agrees_with_the_crate() {
        let numbers = [
            "+447400123456",
            "+447912345678",
            "+442079460000",
            "+448001111111",
            "+449090901234",
            "+443001234567",
            "+445601234567",
            "+447700900123",
            "+441481256789",
            "+447781123456",
            "+441534456789",
            "+447797123456",
            "+441624756789",
            "+447624123456",
            "+44123",
            "+44740012345678",
            "+16502530000",
            "+14165550123",
            "+18095551234",
            "+12530000",
            "+33612345678",
            "+393123456789",
            "+6421387835",
            "+61412345678",
            "+79123456789",
            "+77012345678",
            "+4930123456",
            "+80012345678",
            "+979123456789",
            "+2348031234567",
            "+262692123456",
            "+590690123456",
            "+5491123456789",
            "+861012345678",
            "+999123456789",
            "+3531234",
        ];
        for n in numbers {
            let Ok(parsed) = phonenumber::parse(None, n) else {
                continue;
            };
            // The crate's region search drops a number's leading zeros (Italy
            // keeps them): it calls Milan's +39 02… regionless, valid_region IT.
            if parsed.national().zeros() > 0 {
                continue;
            }
            let crate_says = phonenumber::is_valid(&parsed)
                .then(|| parsed.country().id())
                .flatten()
                .map(|id| id.as_ref().to_string());
            assert_eq!(valid_region(&parsed).map(str::to_string), crate_says, "{n}");
        }
    }

    #[test]
    fn other_regions_parse_with_their_region() {
        let n = PhoneNumber::parse("+33612345678", Mode::Live).unwrap();
        assert_eq!(n.region(), "FR");
    }
}
