//! Verifications: pending → approved | expired | canceled | max_attempts_reached.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Mode;
use super::message::Timestamp;

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
    pub id: String,
    pub tenant_id: String,
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
    pub message_id: String,
    pub last_sent_at: Timestamp,
    pub expires_at: Timestamp,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A verification as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Verification {
    /// `otp_…`
    pub id: String,
    pub status: VerificationStatus,
    pub to: String,
    pub mode: Mode,
    pub length: u32,
    pub expires_at: Timestamp,
    pub attempts_remaining: u32,
    pub max_attempts: u32,
    /// The SMS that carried the latest code.
    pub message_id: String,
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
