//! Dashboard accounts: e-mail addresses, passwords, roles and the random
//! tokens behind sessions and invitations.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// OWASP: at least 8 characters; we ask for 10 and allow long passphrases.
pub const MIN_PASSWORD: usize = 10;
pub const MAX_PASSWORD: usize = 200;

/// A plausible e-mail address, lower-cased (addresses are compared that way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(input: &str) -> Option<Email> {
        let e = input.trim().to_lowercase();
        let (local, domain) = e.split_once('@')?;
        let ok = !local.is_empty()
            && e.len() <= 254
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !e.chars().any(|c| c.is_whitespace() || c.is_control())
            && !domain.contains('@');
        ok.then_some(Email(e))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password as typed, checked for length. Its Debug never shows it.
pub struct Password(String);

impl Password {
    pub fn parse(input: String) -> Result<Password, String> {
        let n = input.chars().count();
        if n < MIN_PASSWORD {
            Err(format!("a password has at least {MIN_PASSWORD} characters"))
        } else if n > MAX_PASSWORD {
            Err(format!("a password has at most {MAX_PASSWORD} characters"))
        } else {
            Ok(Password(input))
        }
    }

    /// argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane: OWASP's
    /// first choice), as a PHC string with its own random salt. CPU-heavy:
    /// call it off the async threads.
    pub fn hash(&self) -> String {
        Argon2::default()
            .hash_password(self.0.as_bytes())
            .expect("argon2 with default parameters hashes any password")
            .to_string()
    }

    /// Checks against a stored PHC string. CPU-heavy, as `hash` is.
    pub fn matches(&self, stored: &str) -> bool {
        PasswordHash::new(stored).is_ok_and(|h| {
            Argon2::default()
                .verify_password(self.0.as_bytes(), &h)
                .is_ok()
        })
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(…)")
    }
}

/// What a team member may do. Owners also manage money and people: numbers,
/// settings and the team.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Developer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Developer => "developer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "owner" => Some(Role::Owner),
            "developer" => Some(Role::Developer),
            _ => None,
        }
    }
}

/// A random bearer token (a session cookie, an invitation link): 256 bits,
/// URL-safe. Only its SHA-256 is stored, so a database dump holds none.
pub struct Token(String);

impl Token {
    pub fn generate() -> Token {
        Token(URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()))
    }

    /// A presented token; anything not shaped like ours is `None`.
    pub fn parse(s: &str) -> Option<Token> {
        (s.len() == 43
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| Token(s.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_lower_cased_and_need_a_domain() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@x.com",
            "a@b@c.com",
        ] {
            assert!(Email::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        assert!(Password::parse("short".into()).is_err());
        let p = Password::parse("correct horse battery".into()).unwrap();
        let stored = p.hash();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(p.matches(&stored));
        assert!(
            !Password::parse("correct horse battery!".into())
                .unwrap()
                .matches(&stored)
        );
        assert!(!p.matches("not a phc string"));
        assert_eq!(format!("{p:?}"), "Password(…)");
    }

    #[test]
    fn tokens_are_random_and_parse_back() {
        let t = Token::generate();
        assert_ne!(t.expose(), Token::generate().expose());
        assert_eq!(Token::parse(t.expose()).unwrap().hash(), t.hash());
        assert!(Token::parse("short").is_none());
    }
}
