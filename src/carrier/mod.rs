//! Carriers hand messages to mobile networks. Each classifies its own failures;
//! only the worker decides whether and when to retry.

mod http;
mod routes;
mod sandbox;
mod smpp;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::config::IdBase;
use crate::store::ClaimedMessage;

pub use http::{
    HttpCarrier, ReceiptError, SIGNATURE_HEADER, SIGNATURE_TOLERANCE_SECONDS, TIMESTAMP_HEADER,
    verify_signature,
};
pub use routes::Carriers;
pub use sandbox::Sandbox;
pub use smpp::SmppCarrier;

/// The carrier's references for an accepted message: one normalised id per
/// part, in order (receipts quote them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub carrier_message_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarrierError {
    /// Worth retrying later: connection lost, timeout, carrier-side fault.
    #[error("transient carrier failure: {0}")]
    Transient(String),
    /// The carrier asked us to slow down.
    #[error("carrier throttled us")]
    Throttled { retry_after: Option<Duration> },
    /// Will never succeed: the carrier refused this message.
    #[error("carrier rejected the message: {message}")]
    Permanent { code: String, message: String },
    /// Not sent: this node is shutting down (another node, or this one
    /// started again, sends it at once).
    #[error("not sent: the node is stopping")]
    Stopping,
}

/// Whether a carrier can take messages now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CarrierState {
    Bound,
    Connecting,
    Down,
}

impl CarrierState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => CarrierState::Bound,
            1 => CarrierState::Connecting,
            _ => CarrierState::Down,
        }
    }
}

/// What `/readyz` and `/metrics` show of a carrier.
#[derive(Debug, Clone, Serialize)]
pub struct CarrierStatus {
    pub name: String,
    pub kind: &'static str,
    pub state: CarrierState,
    /// Paused after the carrier asked us to slow down.
    pub throttled: bool,
    pub window: u32,
    pub window_in_use: u32,
    pub submits: u64,
    pub receipts: u64,
    /// Failed submissions by the carrier's status (e.g. `ESME_RTHROTTLED`).
    pub errors: BTreeMap<String, u64>,
}

#[async_trait]
pub trait Carrier: Send + Sync + 'static {
    fn name(&self) -> &str;
    async fn submit(&self, msg: &ClaimedMessage) -> Result<Accepted, CarrierError>;
    fn status(&self) -> CarrierStatus;
    /// False while down or throttled: a route with a fallback uses that instead.
    fn available(&self) -> bool {
        let s = self.status();
        s.state == CarrierState::Bound && !s.throttled
    }
}

/// Counters every carrier keeps.
#[derive(Default)]
pub struct Counters {
    submits: AtomicU64,
    receipts: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Counters {
    pub fn submitted(&self) {
        self.submits.fetch_add(1, Ordering::Relaxed);
    }
    pub fn received(&self) {
        self.receipts.fetch_add(1, Ordering::Relaxed);
    }
    pub fn error(&self, what: &str) {
        *self
            .errors
            .lock()
            .expect("counters lock")
            .entry(what.to_string())
            .or_default() += 1;
    }
    fn snapshot(&self) -> (u64, u64, BTreeMap<String, u64>) {
        (
            self.submits.load(Ordering::Relaxed),
            self.receipts.load(Ordering::Relaxed),
            self.errors.lock().expect("counters lock").clone(),
        )
    }
}

/// A carrier's message id in one canonical form: numbers as decimal, text in
/// lower case without leading zeros, so "0A1B", "a1b" (hex) and "2587" meet.
pub fn normalize_id(raw: &str, base: IdBase) -> String {
    let t = raw.trim();
    let number = match base {
        IdBase::Text => None,
        IdBase::Hex => u128::from_str_radix(t, 16).ok(),
        IdBase::Decimal => t.parse::<u128>().ok(),
    };
    if let Some(n) = number {
        return n.to_string();
    }
    let lower = t.to_ascii_lowercase();
    match lower.trim_start_matches('0') {
        "" if !lower.is_empty() => "0".into(),
        rest => rest.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_meet_whatever_their_spelling() {
        assert_eq!(normalize_id("1a2b", IdBase::Hex), "6699");
        assert_eq!(normalize_id("6699", IdBase::Decimal), "6699");
        assert_eq!(normalize_id("00001A2B", IdBase::Hex), "6699");
        assert_eq!(
            normalize_id("00498478D1", IdBase::Text),
            normalize_id("498478d1", IdBase::Text)
        );
        assert_eq!(normalize_id(" 000 ", IdBase::Text), "0");
        // Not a number in the declared base: compared as text.
        assert_eq!(normalize_id("Msg-7F", IdBase::Decimal), "msg-7f");
    }
}
