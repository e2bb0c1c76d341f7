//! Background work: sending queued messages, applying sandbox receipts and
//! cleaning expired records. Every loop has a `run_once` that tests call.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rand::Rng;
use tokio::sync::Notify;

use crate::carrier::{CarrierError, Carriers};
use crate::clock::{Clock, new_id};
use crate::config::WorkerConfig;
use crate::domain::message::Timestamp;
use crate::domain::phone::Masked;
use crate::shutdown::Shutdown;
use crate::store::{ClaimedMessage, Store, SubmitResult};

/// How long idempotency records and sandbox inbox entries are kept.
const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;
const SANDBOX_TTL_MS: i64 = 3600 * 1000;

pub struct Worker {
    store: Arc<dyn Store>,
    clock: Clock,
    carriers: Arc<Carriers>,
    cfg: WorkerConfig,
    validity_ms: i64,
    /// Marks this worker's leases; a late finish under another token is refused.
    token: String,
    wake: Arc<Notify>,
}

impl Worker {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Clock,
        carriers: Arc<Carriers>,
        cfg: WorkerConfig,
        validity: Duration,
        wake: Arc<Notify>,
    ) -> Self {
        Worker {
            store,
            clock,
            carriers,
            cfg,
            validity_ms: validity.as_millis() as i64,
            token: new_id("lease"),
            wake,
        }
    }

    /// One pass: send one batch of due messages and apply due receipts.
    /// Returns how many items it handled (0 = nothing was due).
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        let batch = self.claim().await?;
        let sent = batch.len();
        // All at once: each carrier's window bounds what is really in flight.
        futures_util::stream::iter(batch)
            .for_each_concurrent(None, |msg| async move {
                let id = msg.id.clone();
                if let Err(e) = self.process(msg).await {
                    // The lease expires and another pass retries: nothing is lost.
                    tracing::error!(message_id = %id, error = %e, "recording a submission failed");
                }
            })
            .await;
        let receipts = self
            .store
            .apply_sandbox_receipts(self.clock.now(), self.cfg.batch_size)
            .await?;
        let matched = self
            .store
            .apply_carrier_receipts(self.clock.now(), self.cfg.batch_size * 5)
            .await?;
        Ok(sent + (receipts + matched) as usize)
    }

    /// Leases a batch of due messages to this worker.
    pub async fn claim(&self) -> anyhow::Result<Vec<ClaimedMessage>> {
        let now = self.clock.now();
        let lease_until = now.plus_ms(self.cfg.lease_seconds as i64 * 1000);
        Ok(self
            .store
            .claim_messages(now, lease_until, &self.token, self.cfg.batch_size)
            .await?)
    }

    /// Hands one claimed message to its carrier and records the outcome.
    #[tracing::instrument(skip_all, fields(message_id = %msg.id, to = %Masked(&msg.to), attempt = msg.attempts))]
    pub async fn process(&self, msg: ClaimedMessage) -> anyhow::Result<()> {
        let now = self.clock.now();
        let result = if now.millis() - msg.created_at.millis() > self.validity_ms {
            SubmitResult::Expired
        } else {
            let carrier = self.carriers.for_message(msg.mode, &msg.to);
            match carrier.submit(&msg).await {
                Ok(accepted) => SubmitResult::Sent {
                    carrier: carrier.name().to_string(),
                    carrier_message_ids: accepted.carrier_message_ids,
                },
                Err(CarrierError::Permanent { code, message }) => {
                    SubmitResult::Failed { code, message }
                }
                Err(CarrierError::Throttled { retry_after }) => SubmitResult::Retry {
                    at: now
                        .plus_ms(retry_after.unwrap_or(Duration::from_secs(1)).as_millis() as i64),
                    error: "carrier throttled".into(),
                },
                Err(e @ CarrierError::Transient(_)) => SubmitResult::Retry {
                    at: self.backoff(now, msg.attempts),
                    error: e.to_string(),
                },
            }
        };
        let recorded = self
            .store
            .finish_submit(&msg.id, &self.token, &result, self.clock.now())
            .await?;
        match (&result, recorded) {
            (_, false) => tracing::warn!("lease lost before the outcome was recorded"),
            (SubmitResult::Sent { .. }, true) => tracing::info!("message sent"),
            (SubmitResult::Retry { error, .. }, true) => {
                tracing::warn!(%error, "submission will be retried")
            }
            (SubmitResult::Failed { code, .. }, true) => tracing::warn!(%code, "message failed"),
            (SubmitResult::Expired, true) => tracing::warn!("message expired in the queue"),
        }
        Ok(())
    }

    /// Exponential backoff with ±20% jitter so retries from an outage spread out.
    fn backoff(&self, now: Timestamp, attempts: u32) -> Timestamp {
        let exp = attempts.saturating_sub(1).min(20);
        let secs = (self.cfg.retry_base_seconds << exp).min(self.cfg.retry_max_seconds) as f64;
        let jitter = rand::rng().random_range(0.8..1.2);
        now.plus_ms((secs * jitter * 1000.0) as i64)
    }

    pub async fn cleanup(&self) -> anyhow::Result<u64> {
        let now = self.clock.now();
        Ok(self
            .store
            .cleanup(
                now.plus_ms(-IDEMPOTENCY_TTL_MS),
                now.plus_ms(-SANDBOX_TTL_MS),
                now,
            )
            .await?)
    }

    /// Runs until shutdown, then gives back any leases it still holds.
    pub async fn run(self, mut shutdown: Shutdown) {
        let idle = Duration::from_millis(self.cfg.poll_interval_ms);
        let mut last_cleanup = std::time::Instant::now();
        while !shutdown.is_set() {
            let busy = match self.run_once().await {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::error!(error = %e, "worker pass failed");
                    false
                }
            };
            if last_cleanup.elapsed() > Duration::from_secs(60) {
                last_cleanup = std::time::Instant::now();
                if let Err(e) = self.cleanup().await {
                    tracing::error!(error = %e, "cleanup failed");
                }
            }
            if !busy {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(idle) => {}
                    _ = shutdown.wait() => {}
                }
            }
        }
        match self.store.release_leases(&self.token).await {
            Ok(n) if n > 0 => tracing::info!(released = n, "worker released its leases"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "releasing leases failed"),
        }
    }
}
