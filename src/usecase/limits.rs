//! Limits that stop a bug or an attacker from running up a bill. Counters live
//! in the database, so they hold across every process sharing it.

use std::time::Duration;

use super::Core;
use super::error::{ApiError, ProblemCode};
use crate::domain::Mode;
use crate::domain::message::Pence;
use crate::store::AuthContext;

/// Admits one event under `key`: at most `limit` per `period`, else 429 with Retry-After.
pub async fn admit(
    app: &Core,
    key: &str,
    limit: u32,
    period: Duration,
    what: &str,
) -> Result<(), ApiError> {
    let period_ms = period.as_millis() as i64;
    let interval_ms = (period_ms / i64::from(limit)).max(1);
    match app
        .store
        .rate_limit(key, app.clock.now(), interval_ms, period_ms)
        .await?
    {
        None => Ok(()),
        Some(wait_ms) => Err(ApiError::too_many(what, wait_ms)),
    }
}

/// Counts a live send's price against the tenant's monthly cap (402 once it would pass it).
pub async fn charge(app: &Core, auth: &AuthContext, price: Pence) -> Result<(), ApiError> {
    let cap = app.config.limits.monthly_spend_cap_pence;
    if auth.mode == Mode::Test || cap.0 == 0 || price.0 == 0 {
        return Ok(());
    }
    let month = chrono::DateTime::from_timestamp_millis(app.clock.now().millis())
        .unwrap_or_default()
        .format("%Y-%m")
        .to_string();
    if app
        .store
        .add_spend(&auth.tenant.id, &month, price.0, cap.0)
        .await?
    {
        Ok(())
    } else {
        Err(ApiError::new(
            ProblemCode::SpendCapReached,
            format!("this send would pass the monthly spend cap of {}p", cap.0),
        ))
    }
}
