//! Pure types and rules: they parse input into values that can only be valid.

pub mod account;
pub mod api_key;
pub mod encoding;
pub mod ids;
pub mod message;
pub mod number;
pub mod otp;
pub mod phone;
pub mod sender;
pub mod verification;
pub mod webhook;

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use phone::Masked;

/// What `Debug` shows of a code, a password or a message body: its length.
pub struct Hidden<'a>(pub &'a str);

impl fmt::Debug for Hidden<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<hidden: {} chars>", self.0.chars().count())
    }
}

/// What `Debug` shows of a phone number as a client wrote it: masked.
pub struct MaskedInput<'a>(pub Option<&'a str>);

impl fmt::Debug for MaskedInput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{}", Masked(n)),
            None => f.write_str("None"),
        }
    }
}

/// Test keys go to the sandbox and cost nothing; live keys reach carriers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Test,
    Live,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Live => "live",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "test" => Some(Mode::Test),
            "live" => Some(Mode::Live),
            _ => None,
        }
    }
}
