//! The `from` of a message: an alphanumeric sender ID or an E.164 number.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 1–11 letters, digits or spaces with at least one letter, or an E.164 number")]
pub struct SenderError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender(String);

impl Sender {
    pub fn parse(input: &str) -> Result<Self, SenderError> {
        let s = input.trim();
        if let Some(digits) = s.strip_prefix('+') {
            let ok = (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
            return ok.then(|| Sender(s.to_string())).ok_or(SenderError);
        }
        let ok = (1..=11).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ')
            && s.bytes().any(|b| b.is_ascii_alphabetic());
        ok.then(|| Sender(s.to_string())).ok_or(SenderError)
    }

    /// An E.164 number (else an alphanumeric sender ID).
    pub fn is_number(&self) -> bool {
        self.0.starts_with('+')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders() {
        assert!(Sender::parse("Line").is_ok());
        assert!(Sender::parse("My Shop 24").is_ok());
        assert!(Sender::parse("+447400123456").is_ok());
        assert!(Sender::parse("").is_err());
        assert!(Sender::parse("TwelveChars1").is_err());
        assert!(Sender::parse("12345").is_err());
        assert!(Sender::parse("Shop!").is_err());
    }
}
