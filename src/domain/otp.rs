//! One-time codes: drawn uniformly from the OS CSPRNG, kept only as an HMAC
//! under the server secret, compared in constant time, never printed.

use hmac::{Hmac, Mac};
use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::Sha256;

use super::encoding::{Encoding, count_segments};

pub const MIN_LENGTH: u32 = 4;
pub const MAX_LENGTH: u32 = 10;
pub const DEFAULT_TEMPLATE: &str =
    "Your {brand} code is {code}. It expires in {minutes} minutes. Don't share it.";

/// A code as sent by SMS. Its Debug never shows the digits.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpCode(String);

impl std::fmt::Debug for OtpCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OtpCode(<{} digits>)", self.0.len())
    }
}

impl OtpCode {
    /// `length` digits, each uniform over 0–9 (rejection sampling: no modulo bias).
    pub fn generate(length: u32) -> Self {
        let mut rng = OsRng.unwrap_err();
        let digits = (0..length)
            .map(|_| char::from(b'0' + rand::Rng::random_range(&mut rng, 0..10u8)))
            .collect();
        OtpCode(digits)
    }

    /// A code as a user typed it: exactly `length` ASCII digits.
    pub fn parse(input: &str, length: u32) -> Option<Self> {
        let s = input.trim();
        (s.len() == length as usize && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| OtpCode(s.to_string()))
    }

    /// Only for composing the SMS text.
    pub fn digits(&self) -> &str {
        &self.0
    }
}

/// The server secret that keys code hashes (and message-body hashes).
#[derive(Clone)]
pub struct HashKey(Vec<u8>);

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(***)")
    }
}

impl HashKey {
    pub fn new(secret: &str) -> Self {
        HashKey(secret.as_bytes().to_vec())
    }

    fn mac(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// Hex HMAC-SHA256 of (verification id, code).
    pub fn code_hash(&self, verification_id: &str, code: &OtpCode) -> String {
        hex::encode(
            self.mac(&[verification_id.as_bytes(), code.0.as_bytes()])
                .finalize()
                .into_bytes(),
        )
    }

    /// Does `code` match the stored hash? Constant time.
    pub fn code_matches(&self, verification_id: &str, code: &OtpCode, stored_hex: &str) -> bool {
        let Some(stored) = hex::decode(stored_hex).ok() else {
            return false;
        };
        self.mac(&[verification_id.as_bytes(), code.0.as_bytes()])
            .verify_slice(&stored)
            .is_ok()
    }

    /// Hex HMAC-SHA256 of a message body: proof of what was sent, useless for
    /// recovering a code by brute force without the secret.
    pub fn body_hash(&self, body: &str) -> String {
        hex::encode(
            self.mac(&[b"body", body.as_bytes()])
                .finalize()
                .into_bytes(),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("must contain {{code}}")]
    NoCode,
    #[error("must fit in one SMS segment with a {MAX_LENGTH}-digit code; it needs {0}")]
    TooLong(u32),
}

/// The SMS text of a verification.
pub struct OtpText<'a> {
    pub template: Option<&'a str>,
    pub brand: &'a str,
    pub minutes: u64,
    pub app_domain: Option<&'a str>,
}

impl OtpText<'_> {
    pub fn render(&self, code: &str) -> String {
        let text = self
            .template
            .unwrap_or(DEFAULT_TEMPLATE)
            .replace("{brand}", self.brand)
            .replace("{minutes}", &self.minutes.to_string())
            .replace("{code}", code);
        match self.app_domain {
            // WebOTP / Android autofill: the last line names the origin and the code.
            Some(domain) => format!("{text}\n\n@{domain} #{code}"),
            None => text,
        }
    }

    /// The text must name the code and fit one segment even with the longest code.
    pub fn check(&self) -> Result<(), TemplateError> {
        if !self.template.unwrap_or(DEFAULT_TEMPLATE).contains("{code}") {
            return Err(TemplateError::NoCode);
        }
        let longest = "0".repeat(MAX_LENGTH as usize);
        match count_segments(&self.render(&longest)) {
            (_, 1) => Ok(()),
            (Encoding::Gsm7 | Encoding::Ucs2, n) => Err(TemplateError::TooLong(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_their_length_and_only_digits() {
        for len in MIN_LENGTH..=MAX_LENGTH {
            let c = OtpCode::generate(len);
            assert_eq!(c.digits().len(), len as usize);
            assert!(c.digits().bytes().all(|b| b.is_ascii_digit()));
            assert!(!format!("{c:?}").contains(c.digits()));
        }
    }

    /// Chi-square over 600,000 digits: with 9 degrees of freedom, 27.88 is the
    /// 0.1% critical value, so a fair generator fails this once in a thousand runs.
    #[test]
    fn digits_are_uniform() {
        let mut counts = [0u64; 10];
        for _ in 0..100_000 {
            for b in OtpCode::generate(6).digits().bytes() {
                counts[(b - b'0') as usize] += 1;
            }
        }
        let expected = 60_000.0;
        let chi2: f64 = counts
            .iter()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum();
        assert!(chi2 < 27.88, "chi-square {chi2} for {counts:?}");
    }

    #[test]
    fn hashes_match_only_the_right_code_and_verification() {
        let key = HashKey::new("a-server-secret-that-is-long-enough!");
        let code = OtpCode::parse("123456", 6).unwrap();
        let stored = key.code_hash("otp_1", &code);
        assert!(key.code_matches("otp_1", &code, &stored));
        assert!(!key.code_matches("otp_2", &code, &stored));
        assert!(!key.code_matches("otp_1", &OtpCode::parse("123457", 6).unwrap(), &stored));
        assert!(!key.code_matches("otp_1", &code, "zz"));
        let other = HashKey::new("another-server-secret-long-enough!!");
        assert!(!other.code_matches("otp_1", &code, &stored));
        assert!(!stored.contains("123456"));
    }

    #[test]
    fn typed_codes_must_have_the_length() {
        assert!(OtpCode::parse(" 123456 ", 6).is_some());
        assert!(OtpCode::parse("12345", 6).is_none());
        assert!(OtpCode::parse("12345a", 6).is_none());
        assert!(OtpCode::parse("１２３４５６", 6).is_none());
    }

    #[test]
    fn texts() {
        let t = OtpText {
            template: None,
            brand: "Acme",
            minutes: 10,
            app_domain: None,
        };
        assert_eq!(
            t.render("123456"),
            "Your Acme code is 123456. It expires in 10 minutes. Don't share it."
        );
        assert!(t.check().is_ok());
        let t = OtpText {
            template: Some("{code} is your {brand} code"),
            brand: "Acme",
            minutes: 5,
            app_domain: Some("acme.example"),
        };
        assert_eq!(
            t.render("4242"),
            "4242 is your Acme code\n\n@acme.example #4242"
        );
        let t = OtpText {
            template: Some("no code here"),
            brand: "Acme",
            minutes: 5,
            app_domain: None,
        };
        assert_eq!(t.check(), Err(TemplateError::NoCode));
        let long = format!("{{code}} {}", "x".repeat(150));
        let t = OtpText {
            template: Some(&long),
            brand: "Acme",
            minutes: 5,
            app_domain: None,
        };
        assert_eq!(t.check(), Err(TemplateError::TooLong(2)));
    }
}
