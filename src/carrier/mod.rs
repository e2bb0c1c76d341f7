//! Carriers hand messages to mobile networks. Each classifies its own failures;
//! only the worker decides whether and when to retry.

mod sandbox;

use std::time::Duration;

use async_trait::async_trait;

use crate::store::ClaimedMessage;

pub use sandbox::Sandbox;

/// The carrier's reference for an accepted message (receipts quote it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub carrier_message_id: String,
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
}

#[async_trait]
pub trait Carrier: Send + Sync + 'static {
    fn name(&self) -> &str;
    async fn submit(&self, msg: &ClaimedMessage) -> Result<Accepted, CarrierError>;
}
