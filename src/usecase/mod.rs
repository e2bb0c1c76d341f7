//! The use cases: what the service does for a tenant (send an SMS; start,
//! check, resend and cancel a verification), below any transport, so that the
//! JSON API and the dashboard run the same rules. Handlers parse and respond;
//! everything between is here.

pub mod account;
pub mod accounts;
pub mod error;
pub mod idempotency;
pub mod keys;
pub mod limits;
pub mod numbers;
pub mod otp;
pub mod sms;
pub mod usage;
pub mod webhooks;

use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::Config;
use crate::domain::otp::HashKey;
use crate::infra::clock::Clock;
use crate::store::Store;
use crate::worker::handoff::Handoff;

pub use error::{ApiError, ProblemCode};

/// What the use cases run on: configuration, storage, time and the writers.
#[derive(Clone)]
pub struct Core {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub clock: Clock,
    /// Wakes this process's sender when messages are queued.
    pub wake: Arc<Notify>,
    /// Gives new messages straight to this process's sender (when it runs).
    pub handoff: Arc<Handoff>,
    /// Keys the hashes of codes and message bodies.
    pub hash_key: HashKey,
    /// Commits new messages in groups.
    pub messages: sms::MessageWriter,
    /// Starts verifications in groups.
    pub starts: otp::StartWriter,
    /// Decides and commits code checks in groups.
    pub checks: otp::CheckWriter,
    /// Verifications as this process last saw them (see `otp::VerificationCache`).
    pub verifications: Arc<otp::VerificationCache>,
}

impl Core {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        clock: Clock,
        hash_key: HashKey,
    ) -> Self {
        let verifications = Arc::new(otp::VerificationCache::default());
        let handoff = Arc::new(Handoff::default());
        Core {
            messages: sms::message_writer(store.clone(), handoff.clone()),
            starts: otp::start_writer(store.clone(), clock.clone(), handoff.clone()),
            checks: otp::check_writer(store.clone(), hash_key.clone(), verifications.clone()),
            verifications,
            config,
            store,
            clock,
            wake: Arc::new(Notify::new()),
            handoff,
            hash_key,
        }
    }
}

/// Runs a multi-statement write to its end even if the client goes away: a
/// request future dropped halfway through a transaction would leave it to the
/// connection pool to clean up, holding row locks meanwhile.
pub async fn detached<T: Send + 'static>(
    write: impl std::future::Future<Output = crate::store::Result<T>> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::spawn(write).await.map_err(ApiError::internal)??)
}
