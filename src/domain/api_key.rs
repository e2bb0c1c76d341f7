//! API keys: `line_test_…` / `line_live_…` with 190 bits of entropy. Only the
//! SHA-256 of a key is stored: the key is random, so a slow hash adds nothing.

use rand::Rng;
use sha2::{Digest, Sha256};

use super::Mode;

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SECRET_LEN: usize = 32;

/// A full API key. Its Debug never shows the secret part.
pub struct ApiKey {
    key: String,
    mode: Mode,
}

impl ApiKey {
    pub fn generate(mode: Mode) -> Self {
        let mut rng = rand::rng();
        let secret: String = (0..SECRET_LEN)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        ApiKey {
            key: format!("line_{}_{secret}", mode.as_str()),
            mode,
        }
    }

    /// Parses a presented key; anything not shaped like one of ours is `None`.
    pub fn parse(key: &str) -> Option<Self> {
        let (mode, secret) = if let Some(s) = key.strip_prefix("line_test_") {
            (Mode::Test, s)
        } else if let Some(s) = key.strip_prefix("line_live_") {
            (Mode::Live, s)
        } else {
            return None;
        };
        (secret.len() == SECRET_LEN && secret.bytes().all(|b| ALPHABET.contains(&b))).then(|| {
            ApiKey {
                key: key.to_string(),
                mode,
            }
        })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Shown to the user exactly once, at creation.
    pub fn expose(&self) -> &str {
        &self.key
    }

    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.key.as_bytes()))
    }

    /// A short, non-secret prefix for listings ("line_test_AbC1…").
    pub fn hint(&self) -> String {
        format!("{}…", &self.key[..14])
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey({})", self.hint())
    }
}

/// Constant-time comparison, so a token cannot be guessed byte by byte from timings.
pub fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_eq(b"abc", b"abc"));
        assert!(!constant_eq(b"abc", b"abd"));
        assert!(!constant_eq(b"abc", b"ab"));
    }

    #[test]
    fn generated_keys_parse_back_and_hash_stably() {
        let key = ApiKey::generate(Mode::Live);
        assert!(key.expose().starts_with("line_live_"));
        let again = ApiKey::parse(key.expose()).unwrap();
        assert_eq!(again.mode(), Mode::Live);
        assert_eq!(again.hash(), key.hash());
        assert_ne!(ApiKey::generate(Mode::Live).hash(), key.hash());
        assert!(!format!("{key:?}").contains(&key.expose()[14..]));
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(ApiKey::parse("line_test_short").is_none());
        assert!(ApiKey::parse("sk_test_0123456789abcdef0123456789abcdef").is_none());
        assert!(ApiKey::parse(&format!("line_test_{}!", "a".repeat(31))).is_none());
    }
}
