//! Rented numbers: a tenant's UK mobile number, paid for monthly, rested for a
//! while after release before anyone else may rent it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Mode;
use super::ids::NumberId;
use super::message::{Pence, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NumberStatus {
    Rented,
    Released,
}

impl NumberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NumberStatus::Rented => "rented",
            NumberStatus::Released => "released",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Rented, Self::Released]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// A number as the API shows it: one rental by one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Number {
    pub id: NumberId,
    /// E.164.
    pub number: String,
    /// Test keys rent sandbox numbers (free, the drama range); live keys real ones.
    pub mode: Mode,
    pub monthly_price_pence: Pence,
    pub status: NumberStatus,
    pub rented_at: Timestamp,
    /// When the next month's fee is charged; `null` once released.
    pub renews_at: Option<Timestamp>,
    pub released_at: Option<Timestamp>,
}

/// A number that may be rented now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AvailableNumber {
    pub number: String,
    pub monthly_price_pence: Pence,
}
