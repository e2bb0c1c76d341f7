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

/// The renewal date after `due` of a rental that started at `rented_at`: the
/// same day of the month as the start (or the month's last day where it has
/// none), so the 31st renews on Feb 28 and then on Mar 31, not on the 28th
/// for ever after.
pub fn next_renewal(rented_at: Timestamp, due: Timestamp) -> Timestamp {
    (1..)
        .map(|months| rented_at.plus_months(months))
        .find(|at| *at > due)
        .expect("some month ahead is after the due date")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        Timestamp(
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis(),
        )
    }

    #[test]
    fn renewals_keep_the_day_of_the_month_they_started_on() {
        let start = at("2026-01-31T10:00:00Z");
        let feb = next_renewal(start, start);
        assert_eq!(feb, at("2026-02-28T10:00:00Z"));
        assert_eq!(next_renewal(start, feb), at("2026-03-31T10:00:00Z"));
        // A renewal charged late still moves to the next date after the one due.
        assert_eq!(
            next_renewal(start, at("2026-03-31T10:00:00Z")),
            at("2026-04-30T10:00:00Z")
        );
    }
}
