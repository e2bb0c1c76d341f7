//! Verifications: pending → approved | expired | canceled | max_attempts_reached.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Mode;
use super::ids::{MessageId, TenantId, VerificationId};
use super::message::Timestamp;
use super::otp::OtpCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerificationStatus {
    Pending,
    Approved,
    Expired,
    Canceled,
    MaxAttemptsReached,
}

impl VerificationStatus {
    const ALL: [VerificationStatus; 5] = [
        VerificationStatus::Pending,
        VerificationStatus::Approved,
        VerificationStatus::Expired,
        VerificationStatus::Canceled,
        VerificationStatus::MaxAttemptsReached,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VerificationStatus::Pending => "pending",
            VerificationStatus::Approved => "approved",
            VerificationStatus::Expired => "expired",
            VerificationStatus::Canceled => "canceled",
            VerificationStatus::MaxAttemptsReached => "max_attempts_reached",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A verification as stored (the code only as its keyed hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVerification {
    pub id: VerificationId,
    pub tenant_id: TenantId,
    pub mode: Mode,
    pub to: String,
    pub status: VerificationStatus,
    pub code_hash: String,
    pub code_length: u32,
    pub max_attempts: u32,
    pub attempts: u32,
    pub sends: u32,
    pub ttl_seconds: u32,
    pub brand: String,
    pub template: Option<String>,
    pub app_domain: Option<String>,
    pub message_id: MessageId,
    pub last_sent_at: Timestamp,
    pub expires_at: Timestamp,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What one code check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No such verification for this tenant.
    NotFound,
    /// It takes no more codes (it may have just expired): 409 with this status.
    Closed(VerificationStatus),
    /// Not `length` digits: 422, and no attempt is used.
    Malformed { length: u32 },
    /// An attempt was counted.
    Checked {
        valid: bool,
        status: VerificationStatus,
        attempts_remaining: u32,
    },
}

impl StoredVerification {
    /// Checks `code` at `now` and changes the verification to match: past its
    /// time it expires; the right code approves it (once: it is no longer
    /// pending after); a wrong one uses an attempt and the last one locks it.
    /// `matches(id, code, code_hash)` compares a well-formed code with the stored hash.
    pub fn check(
        &mut self,
        code: &str,
        now: Timestamp,
        matches: impl FnOnce(&str, &OtpCode, &str) -> bool,
    ) -> Verdict {
        if self.status == VerificationStatus::Pending && now >= self.expires_at {
            self.status = VerificationStatus::Expired;
            self.updated_at = now;
        }
        if self.status != VerificationStatus::Pending {
            return Verdict::Closed(self.status);
        }
        let Some(code) = OtpCode::parse(code, self.code_length) else {
            return Verdict::Malformed {
                length: self.code_length,
            };
        };
        let valid = matches(self.id.as_str(), &code, &self.code_hash);
        if valid {
            self.status = VerificationStatus::Approved;
        } else {
            self.attempts += 1;
            if self.attempts >= self.max_attempts {
                self.status = VerificationStatus::MaxAttemptsReached;
            }
        }
        self.updated_at = now;
        Verdict::Checked {
            valid,
            status: self.status,
            attempts_remaining: self.max_attempts.saturating_sub(self.attempts),
        }
    }
}

/// A verification as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Verification {
    pub id: VerificationId,
    pub status: VerificationStatus,
    pub to: String,
    pub mode: Mode,
    pub length: u32,
    pub expires_at: Timestamp,
    pub attempts_remaining: u32,
    pub max_attempts: u32,
    /// The SMS that carried the latest code.
    pub message_id: MessageId,
    pub sends: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<&StoredVerification> for Verification {
    fn from(v: &StoredVerification) -> Self {
        Verification {
            id: v.id.clone(),
            status: v.status,
            to: v.to.clone(),
            mode: v.mode,
            length: v.code_length,
            expires_at: v.expires_at,
            attempts_remaining: v.max_attempts.saturating_sub(v.attempts),
            max_attempts: v.max_attempts,
            message_id: v.message_id.clone(),
            sends: v.sends,
            created_at: v.created_at,
            updated_at: v.updated_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(max_attempts: u32) -> StoredVerification {
        StoredVerification {
            id: "otp_1".to_string().into(),
            tenant_id: "ten_1".to_string().into(),
            mode: Mode::Test,
            to: "+447700900123".into(),
            status: VerificationStatus::Pending,
            code_hash: "h".into(),
            code_length: 6,
            max_attempts,
            attempts: 0,
            sends: 1,
            ttl_seconds: 600,
            brand: "Acme".into(),
            template: None,
            app_domain: None,
            message_id: "msg_1".to_string().into(),
            last_sent_at: Timestamp(0),
            expires_at: Timestamp(600_000),
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }
    }

    fn right(_: &str, c: &OtpCode, _: &str) -> bool {
        c.digits() == "123456"
    }

    #[test]
    fn wrong_codes_use_attempts_and_the_last_locks() {
        let (mut v, t) = (pending(2), Timestamp(1000));
        let first = v.check("000000", t, right);
        assert_eq!(
            first,
            Verdict::Checked {
                valid: false,
                status: VerificationStatus::Pending,
                attempts_remaining: 1
            }
        );
        let second = v.check("000001", t, right);
        assert_eq!(
            second,
            Verdict::Checked {
                valid: false,
                status: VerificationStatus::MaxAttemptsReached,
                attempts_remaining: 0
            }
        );
        // Locked: even the right code is refused now.
        assert_eq!(
            v.check("123456", t, right),
            Verdict::Closed(VerificationStatus::MaxAttemptsReached)
        );
        assert_eq!((v.attempts, v.updated_at), (2, t));
    }

    #[test]
    fn the_right_code_approves_once() {
        let (mut v, t) = (pending(5), Timestamp(1000));
        assert_eq!(
            v.check(" 123456 ", t, right),
            Verdict::Checked {
                valid: true,
                status: VerificationStatus::Approved,
                attempts_remaining: 5
            }
        );
        assert_eq!(
            v.check("123456", t, right),
            Verdict::Closed(VerificationStatus::Approved)
        );
    }

    #[test]
    fn malformed_codes_use_no_attempt_and_expiry_comes_first() {
        let mut v = pending(5);
        let before = v.clone();
        for bad in ["12345", "1234567", "12345a", ""] {
            assert_eq!(
                v.check(bad, Timestamp(1), right),
                Verdict::Malformed { length: 6 }
            );
        }
        assert_eq!(v, before);
        let late = Timestamp(600_000);
        assert_eq!(
            v.check("123456", late, right),
            Verdict::Closed(VerificationStatus::Expired)
        );
        assert_eq!(
            (v.status, v.updated_at),
            (VerificationStatus::Expired, late)
        );
    }
}
