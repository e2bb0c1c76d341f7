//! Limits that stop a bug or an attacker from running up a bill. Counters live
//! in the database, so they hold across every process sharing it.

use std::time::Duration;

use super::Core;
use super::error::{ApiError, ProblemCode};
use crate::domain::message::Pence;
use crate::store::{Limit, Tenant};

/// Admits one event under `key`: at most `limit` per `period`, else 429 with Retry-After.
pub async fn admit(
    app: &Core,
    key: &str,
    limit: u32,
    period: Duration,
    what: &str,
) -> Result<(), ApiError> {
    take(app, &counter(key.to_string(), limit, period, what)?, what).await
}

/// Admits one event against `l`, else 429 with Retry-After.
pub async fn take(app: &Core, l: &Limit, what: &str) -> Result<(), ApiError> {
    match app
        .store
        .rate_limit(&l.key, app.clock.now(), l.interval_ms, l.period_ms)
        .await?
    {
        None => Ok(()),
        Some(wait_ms) => Err(ApiError::too_many(what, wait_ms)),
    }
}

/// The counter for at most `limit` events per `period` under `key`; 429 at
/// once if `limit` is 0 (an operator's 0 means "none at all").
pub fn counter(key: String, limit: u32, period: Duration, what: &str) -> Result<Limit, ApiError> {
    let period_ms = period.as_millis() as i64;
    if limit == 0 {
        return Err(ApiError::too_many(what, period_ms));
    }
    Ok(Limit {
        key,
        interval_ms: (period_ms / i64::from(limit)).max(1),
        period_ms,
    })
}

/// The monthly spend cap a tenant's live sends must fit under: its own, else
/// the operator's default; `None` when there is none (0). The store checks it
/// in the transaction that writes the charge (`store/ledger.rs`).
pub fn spend_cap(app: &Core, tenant: &Tenant) -> Option<Pence> {
    let cap = tenant
        .spend_cap
        .unwrap_or(app.config.limits.monthly_spend_cap_pence);
    (cap.0 > 0).then_some(cap)
}

/// 402: a charge would pass the cap.
pub fn cap_reached() -> ApiError {
    ApiError::new(
        ProblemCode::SpendCapReached,
        "this send would pass the account's monthly spend cap; see GET /v1/usage",
    )
}
