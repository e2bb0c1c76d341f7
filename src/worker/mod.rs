//! The sending stage: claims queued messages with a lease, hands them to their
//! carriers and records the outcomes in groups; also runs the receipts applier
//! beside it and cleans expired records. Every loop has a `run_once` that tests call.

pub mod handoff;
pub mod heartbeat;

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rand::Rng;
use tokio::sync::Notify;

use crate::carrier::{CarrierError, Carriers};
use crate::config::WorkerConfig;
use crate::domain::ids::new_id;
use crate::domain::message::Timestamp;
use crate::domain::phone::Masked;
use crate::infra::batch::Batcher;
use crate::infra::clock::Clock;
use crate::infra::shutdown::Shutdown;
use crate::receipts::Applier;
use crate::store::{
    Claim, ClaimedMessage, Finish, SharedError, Store, SubmitResult, write_grouped,
};
use handoff::Handoff;

/// Send loops in one worker.
const SENDERS: usize = 4;
/// How long idempotency records and sandbox inbox entries are kept.
const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;
const SANDBOX_TTL_MS: i64 = 3600 * 1000;
/// Rows per table per statement, and statements per cleanup pass, that the
/// retention deletes: short locks, and at most this much work a minute.
const RETENTION_BATCH: u32 = 1000;
const RETENTION_BATCHES: usize = 20;

pub struct Worker {
    store: Arc<dyn Store>,
    clock: Clock,
    carriers: Arc<Carriers>,
    cfg: WorkerConfig,
    validity_ms: i64,
    /// Marks this worker's leases; a late finish under another token is refused.
    token: String,
    wake: Arc<Notify>,
    receipts: Applier,
    /// Records outcomes in groups.
    finishes: FinishWriter,
    /// Messages this node's API leased to this worker as it queued them.
    handoff: Arc<Handoff>,
    /// When a send loop last claimed from the store.
    claimed_at: Mutex<Instant>,
}

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        clock: Clock,
        carriers: Arc<Carriers>,
        cfg: WorkerConfig,
        validity: Duration,
        wake: Arc<Notify>,
        receipts_wake: Arc<Notify>,
        webhooks_wake: Arc<Notify>,
        handoff: Arc<Handoff>,
    ) -> Self {
        Worker {
            receipts: Applier::new(
                store.clone(),
                clock.clone(),
                cfg.batch_size,
                receipts_wake,
                webhooks_wake.clone(),
            ),
            clock,
            carriers,
            cfg,
            validity_ms: validity.as_millis() as i64,
            token: new_id("lease"),
            wake,
            finishes: finish_writer(store.clone(), webhooks_wake),
            store,
            handoff,
            claimed_at: Mutex::new(Instant::now()),
        }
    }

    /// Takes the messages this node's API queues, leased to this worker as
    /// they are inserted (see `handoff`), unless another worker here does;
    /// true if this one does. `run` calls it.
    pub fn take_handoffs(&self) -> bool {
        let room = SENDERS * self.cfg.batch_size as usize;
        let lease_ms = self.cfg.lease_seconds as i64 * 1000;
        self.handoff.open(&self.token, room, lease_ms)
    }

    /// The token that marks this worker's leases.
    pub fn lease_token(&self) -> &str {
        &self.token
    }

    /// One pass: send one batch of due messages, apply due receipts, charge
    /// due number renewals. Returns how many items it handled (0 = nothing was due).
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        Ok(self.send_once().await? + self.receipts_once().await? + self.renew_once().await?)
    }

    /// Charges the monthly fees of rented numbers that came due (each once,
    /// whatever other workers do).
    pub async fn renew_once(&self) -> anyhow::Result<usize> {
        let renewed = self
            .store
            .renew_due(self.clock.now(), self.cfg.batch_size)
            .await?;
        if renewed > 0 {
            tracing::info!(renewed, "number fees charged");
        }
        Ok(renewed as usize)
    }

    /// Hands a batch of due messages to their carriers: those handed over
    /// by this node's API, else (and at least every poll interval, so that
    /// retries and other nodes' messages are not starved) those claimed.
    pub async fn send_once(&self) -> anyhow::Result<usize> {
        let limit = self.cfg.batch_size as usize;
        let handed = self.handoff.take(&self.token, limit);
        let claim_due = {
            let mut at = self.claimed_at.lock().expect("claim time lock");
            let due = handed.is_empty()
                || at.elapsed() >= Duration::from_millis(self.cfg.poll_interval_ms);
            if due {
                *at = Instant::now();
            }
            due
        };
        let claimed = if claim_due {
            self.claim().await?
        } else {
            Vec::new()
        };
        let sent = handed.len() + claimed.len();
        let batch = handed
            .into_iter()
            .map(|h| {
                let (msg, room) = h.into_parts();
                (msg, Some(room))
            })
            .chain(claimed.into_iter().map(|m| (m, None)));
        // All at once: each carrier's window bounds what is really in flight.
        futures_util::stream::iter(batch)
            .for_each_concurrent(None, |(msg, room)| async move {
                let id = msg.id.clone();
                if let Err(e) = self.process(msg).await {
                    // The lease expires and another pass retries: nothing is lost.
                    tracing::error!(message_id = %id, error = %e, "recording a submission failed");
                }
                // Its place at the handoff is free once its outcome is recorded.
                drop(room);
            })
            .await;
        Ok(sent)
    }

    /// Applies due receipts (see `receipts::Applier`).
    pub async fn receipts_once(&self) -> anyhow::Result<usize> {
        self.receipts.run_once().await
    }

    /// Leases a batch of due messages to this worker.
    pub async fn claim(&self) -> anyhow::Result<Vec<ClaimedMessage>> {
        let now = self.clock.now();
        let lease_until = now.plus_ms(self.cfg.lease_seconds as i64 * 1000);
        let claim = Claim {
            now,
            lease_until,
            token: self.token.clone(),
            limit: self.cfg.batch_size,
        };
        Ok(self.store.claim_messages(&claim).await?)
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
                Err(CarrierError::Stopping) => SubmitResult::Retry {
                    at: now,
                    error: "not sent: the node was stopping".into(),
                },
                Err(e @ CarrierError::Transient(_)) => SubmitResult::Retry {
                    at: self.backoff(now, msg.attempts),
                    error: e.to_string(),
                },
            }
        };
        let finish = Finish {
            id: msg.id.clone(),
            token: self.token.clone(),
            result: result.clone(),
            now: self.clock.now(),
        };
        let recorded = self.record(finish).await?;
        match (&result, recorded) {
            (_, false) => tracing::warn!("lease lost before the outcome was recorded"),
            // At debug, as successful requests are: thousands of lines a second
            // that repeat the message's status; failures and retries stay at warn.
            (SubmitResult::Sent { .. }, true) => tracing::debug!("message sent"),
            (SubmitResult::Retry { error, .. }, true) => {
                tracing::warn!(%error, "submission will be retried")
            }
            (SubmitResult::Failed { code, .. }, true) => tracing::warn!(%code, "message failed"),
            (SubmitResult::Expired, true) => tracing::warn!("message expired in the queue"),
        }
        Ok(())
    }

    /// Records an outcome. While the database is out of reach it tries again,
    /// for up to half the lease: the carrier has the message, and an outcome
    /// given up would have it sent twice once the lease ran out.
    async fn record(&self, finish: Finish) -> anyhow::Result<bool> {
        let give_up = std::time::Instant::now() + Duration::from_secs(self.cfg.lease_seconds / 2);
        let mut wait = Duration::from_millis(100);
        loop {
            match self.finishes.submit(finish.clone()).await {
                Err(e) if crate::store::unavailable(&e) && std::time::Instant::now() < give_up => {
                    tracing::debug!(error = %e, "the database is out of reach; recording again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                done => return done,
            }
        }
    }

    /// Exponential backoff with ±20% jitter so retries from an outage spread out.
    fn backoff(&self, now: Timestamp, attempts: u32) -> Timestamp {
        let exp = attempts.saturating_sub(1).min(20);
        let secs = (self.cfg.retry_base_seconds << exp).min(self.cfg.retry_max_seconds) as f64;
        let jitter = rand::rng().random_range(0.8..1.2);
        now.plus_ms((secs * jitter * 1000.0) as i64)
    }

    /// Ends messages whose receipt never came, deletes what aged out (the
    /// retention, a batch at a time) and expired records; how many rows.
    pub async fn cleanup(&self) -> anyhow::Result<u64> {
        let now = self.clock.now();
        let hours = |h: u64| h as i64 * 3600 * 1000;
        let unconfirmed = now.plus_ms(-hours(self.cfg.receipt_timeout_hours));
        let mut n = 0;
        loop {
            let ended = self
                .store
                .expire_unconfirmed(unconfirmed, now, self.cfg.batch_size)
                .await?;
            if ended > 0 {
                tracing::warn!(parts = ended, "no final receipt came: expired");
            }
            n += ended;
            if ended < u64::from(self.cfg.batch_size) {
                break;
            }
        }
        let retained = now.plus_ms(-hours(self.cfg.retention_days * 24));
        for _ in 0..RETENTION_BATCHES {
            match self.store.delete_older(retained, RETENTION_BATCH).await {
                Ok(0) => break,
                Ok(deleted) => n += deleted,
                // The rest of the cleanup still runs.
                Err(e) => {
                    tracing::error!(error = %e, "retention failed");
                    break;
                }
            }
        }
        n += self
            .store
            .cleanup(
                now.plus_ms(-IDEMPOTENCY_TTL_MS),
                now.plus_ms(-SANDBOX_TTL_MS),
                now,
            )
            .await?;
        Ok(n)
    }

    /// Runs until shutdown, then gives back any leases it still holds. Sending
    /// and applying receipts are two loops, so neither waits for the other.
    pub async fn run(self, shutdown: Shutdown) {
        let idle = Duration::from_millis(self.cfg.poll_interval_ms);
        self.take_handoffs();
        // Several send loops, so that one batch's claim, submissions and commit
        // overlap with another's; claims never take the same message.
        let me = &self;
        let sending = futures_util::future::join_all((0..SENDERS).map(|n| {
            let mut shutdown = shutdown.clone();
            async move {
                let mut last_cleanup = std::time::Instant::now();
                while !shutdown.is_set() {
                    let busy = me.pass("sending", me.send_once()).await;
                    if n == 0 && last_cleanup.elapsed() > Duration::from_secs(60) {
                        last_cleanup = std::time::Instant::now();
                        if let Err(e) = me.cleanup().await {
                            tracing::error!(error = %e, "cleanup failed");
                        }
                        me.pass("renewing numbers", me.renew_once()).await;
                    }
                    if !busy {
                        tokio::select! {
                            _ = me.wake.notified() => {}
                            _ = tokio::time::sleep(idle) => {}
                            _ = shutdown.wait() => {}
                        }
                    }
                }
            }
        }));
        let receipts = self.receipts.run(shutdown.clone(), idle);
        tokio::join!(sending, receipts);
        self.handoff.close(&self.token);
        match self.store.release_leases(&self.token).await {
            Ok(n) if n > 0 => tracing::info!(released = n, "worker released its leases"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "releasing leases failed"),
        }
    }

    /// True when the pass found work.
    async fn pass(&self, what: &str, work: impl Future<Output = anyhow::Result<usize>>) -> bool {
        match work.await {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::error!(error = %e, "{what} failed");
                false
            }
        }
    }
}

/// Submission outcomes, committed in groups.
type FinishWriter = Batcher<Finish, bool, SharedError>;

/// Outcomes of messages the carrier already took: one bad one holds back no other.
/// `webhooks` is the dispatcher's, rung after each group (sent and failed
/// messages fire their webhooks in the same commit).
fn finish_writer(store: Arc<dyn Store>, webhooks: Arc<Notify>) -> FinishWriter {
    Batcher::start(store.group_limit(), move |batch: Vec<Finish>| {
        let (store, webhooks) = (store.clone(), webhooks.clone());
        async move {
            let recorded = write_grouped(
                &*store,
                batch,
                |s, items| s.finish_submits(items),
                |f| f.id.to_string(),
            )
            .await;
            webhooks.notify_one();
            recorded
        }
    })
}
