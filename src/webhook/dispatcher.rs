//! The webhook dispatcher: claims due deliveries with a lease, signs them per
//! Standard Webhooks, POSTs them and records every attempt. Retries follow the
//! configured schedule with jitter; 410 Gone disables the endpoint at once.
//!
//! Deliveries run side by side, up to `in_flight` in all and
//! `in_flight_per_endpoint` requests open to one endpoint, so webhooks flow at the rate
//! events happen. Order is therefore not kept (retries could not keep it
//! anyway): receivers order events by their `timestamp` and a message's
//! `status_history`. Claims skip endpoints at their limit and never take more
//! than `in_flight` minus what is claimed and unfinished (the few over an
//! endpoint's limit wait for its next free slot, well within their lease), so
//! a slow or failing endpoint holds back neither other endpoints nor tenants.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use rand::Rng;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::guard::{GuardedResolver, check_destination};
use super::signing::signature;
use crate::config::WebhooksConfig;
use crate::domain::ids::{EndpointId, new_id};
use crate::domain::message::Timestamp;
use crate::infra::batch::Batcher;
use crate::infra::clock::Clock;
use crate::infra::shutdown::Shutdown;
use crate::store::{
    AttemptRecord, Claim, ClaimedDelivery, NextStep, SharedError, Store, StoredEndpoint,
    write_grouped,
};

/// Attempts recorded in groups: one bad record holds back no other.
fn outcome_writer(store: Arc<dyn Store>) -> Batcher<AttemptRecord, bool, SharedError> {
    Batcher::start(store.group_limit(), move |batch: Vec<AttemptRecord>| {
        let store = store.clone();
        async move {
            write_grouped(
                &*store,
                batch,
                |s, items| s.finish_deliveries(items),
                |r| r.delivery_id.to_string(),
            )
            .await
        }
    })
}

/// Bounds on a receiver's Retry-After.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// How much of a receiver's answer is kept with the attempt.
const KEPT_RESPONSE_BYTES: usize = 1024;

#[derive(Clone)]
pub struct Dispatcher {
    store: Arc<dyn Store>,
    clock: Clock,
    client: reqwest::Client,
    cfg: WebhooksConfig,
    token: String,
    /// Rung when deliveries may have been queued: claims at once, not after `idle`.
    wake: Arc<Notify>,
    /// Attempts are recorded in groups: a commit for many webhooks.
    outcomes: Batcher<AttemptRecord, bool, SharedError>,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Clock,
        cfg: WebhooksConfig,
        wake: Arc<Notify>,
    ) -> Self {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                allow_private: cfg.allow_private_addresses,
            }))
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Line-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client");
        Dispatcher {
            outcomes: outcome_writer(store.clone()),
            store,
            clock,
            client,
            cfg,
            token: new_id("lease"),
            wake,
        }
    }

    /// The token that marks this dispatcher's leases.
    pub fn lease_token(&self) -> &str {
        &self.token
    }

    /// One pass: claims what is due (within the limits) and delivers it,
    /// waiting for every attempt. Returns how many deliveries it attempted.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        let mut flight = InFlight::default();
        let n = self.claim_into(&mut flight).await?;
        while flight.join_next(self).await.is_some() {}
        Ok(n)
    }

    /// Claims as many due deliveries as the limits leave room for and starts them.
    async fn claim_into(&self, flight: &mut InFlight) -> anyhow::Result<usize> {
        // Claimed and not yet finished (running or waiting their endpoint's
        // turn) stays within `in_flight`: what waits is sent within its lease.
        let free = self.cfg.in_flight.saturating_sub(flight.claimed);
        if free == 0 {
            return Ok(0);
        }
        let now = self.clock.now();
        let claim = Claim {
            now,
            lease_until: now.plus_ms(self.cfg.lease_seconds as i64 * 1000),
            token: self.token.clone(),
            limit: free.min(self.cfg.batch_size),
        };
        let busy = flight.busy(self.cfg.in_flight_per_endpoint);
        let batch = self.store.claim_deliveries(&claim, &busy).await?;
        let n = batch.len();
        for d in batch {
            flight.start(self, d);
        }
        Ok(n)
    }

    /// Runs until shutdown, claiming again when a few attempts have ended (or
    /// the idle interval passes) and the limits leave room; attempts under way,
    /// and those waiting on their endpoint's slot, finish before it returns.
    pub async fn run(self, mut shutdown: Shutdown, idle: Duration) {
        let mut flight = InFlight::default();
        // Claims wait until a few attempts have ended (a claim per ended
        // attempt would be a query per webhook), unless nothing is under way.
        let batch = (self.cfg.in_flight_per_endpoint / 4).max(1);
        let mut ended = batch;
        while !shutdown.is_set() {
            let claimed = if ended >= batch || flight.tasks.is_empty() {
                ended = 0;
                match self.claim_into(&mut flight).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::error!(error = %e, "claiming webhook deliveries failed");
                        0
                    }
                }
            } else {
                0
            };
            if claimed > 0 && flight.tasks.len() < self.cfg.in_flight as usize {
                ended = batch; // more may be due
                continue;
            }
            tokio::select! {
                Some(recorded) = flight.join_next(&self), if !flight.tasks.is_empty() => {
                    ended += u32::from(recorded)
                }
                _ = self.wake.notified() => ended = batch,
                _ = tokio::time::sleep(idle) => ended = batch,
                _ = shutdown.wait() => {}
            }
        }
        while flight.join_next(&self).await.is_some() {}
    }

    /// Makes one attempt and decides what comes next; the record is written after.
    #[tracing::instrument(skip_all, fields(delivery_id = %d.id, endpoint_id = %d.endpoint.id, attempt = d.attempts))]
    async fn attempt(&self, d: ClaimedDelivery) -> AttemptRecord {
        let endpoint = &d.endpoint;
        let started = Instant::now();
        let now = self.clock.now();
        let (status_code, response, error, retry_after) = if !endpoint.enabled {
            (
                None,
                None,
                Some("the endpoint is disabled".to_string()),
                None,
            )
        } else {
            self.post(endpoint, &d, now).await
        };
        let next = match status_code {
            Some(code) if (200..300).contains(&code) => NextStep::Succeeded,
            Some(410) => NextStep::Failed {
                disable_endpoint: Some("the receiver answered 410 Gone".into()),
            },
            _ => match self.cfg.retry_schedule_seconds.get(d.attempts as usize) {
                Some(&secs) if endpoint.enabled => {
                    let jittered = secs as f64 * rand::rng().random_range(0.8..1.2);
                    let wait =
                        Duration::from_secs_f64(jittered).max(retry_after.unwrap_or_default());
                    NextStep::RetryAt(now.plus_ms(wait.as_millis() as i64))
                }
                _ => NextStep::Failed {
                    disable_endpoint: None,
                },
            },
        };
        match (&next, status_code) {
            // At debug, as other successes are: one line a webhook otherwise.
            (NextStep::Succeeded, _) => tracing::debug!("webhook delivered"),
            (_, code) => {
                tracing::warn!(status = ?code, error = ?error, next = ?next, "webhook attempt failed")
            }
        }
        AttemptRecord {
            endpoint_id: endpoint.id.clone(),
            delivery_id: d.id,
            token: self.token.clone(),
            at: now,
            status_code,
            response,
            duration_ms: started.elapsed().as_millis() as i64,
            error,
            next,
        }
    }

    /// Records an attempt (in a group commit with others).
    async fn record(&self, record: AttemptRecord) {
        let id = record.delivery_id.clone();
        match self.outcomes.submit(record).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(delivery_id = %id, "lease lost before the attempt was recorded")
            }
            // The lease expires and a later pass tries again: nothing is lost.
            Err(e) => {
                tracing::error!(delivery_id = %id, error = %e, "recording a webhook attempt failed")
            }
        }
    }

    /// One signed POST: status, the start of the answer, an error, a Retry-After.
    async fn post(
        &self,
        endpoint: &StoredEndpoint,
        d: &ClaimedDelivery,
        now: Timestamp,
    ) -> (
        Option<u16>,
        Option<String>,
        Option<String>,
        Option<Duration>,
    ) {
        // Checked again at every attempt: DNS may have changed since the URL was saved.
        let url = match check_destination(&endpoint.url, self.cfg.allow_private_addresses).await {
            Ok(url) => url,
            Err(e) => return (None, None, Some(format!("refused: the URL {e}")), None),
        };
        let mut secrets = vec![endpoint.secret.as_str()];
        if let (Some(old), Some(until)) =
            (&endpoint.previous_secret, endpoint.previous_secret_until)
            && until > now
        {
            secrets.push(old);
        }
        let timestamp = now.millis() / 1000;
        let result = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", d.id.as_str())
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                signature(&secrets, d.id.as_str(), timestamp, &d.payload),
            )
            .body(d.payload.clone())
            .send()
            .await;
        match result {
            Err(e) => (None, None, Some(format!("{e}")), None),
            Ok(resp) => {
                let code = resp.status().as_u16();
                let retry_after = matches!(code, 429 | 503)
                    .then(|| {
                        resp.headers()
                            .get("retry-after")?
                            .to_str()
                            .ok()?
                            .trim()
                            .parse::<u64>()
                            .ok()
                    })
                    .flatten()
                    .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
                let body = resp.text().await.unwrap_or_default();
                // NUL is no text to the database.
                let kept: String = body
                    .chars()
                    .filter(|&c| c != '\0')
                    .take(KEPT_RESPONSE_BYTES)
                    .collect();
                (Some(code), Some(kept), None, retry_after)
            }
        }
    }
}

/// What a task of [`InFlight`] did.
enum Ended {
    /// An endpoint answered (or could not be reached): its slot is free, and
    /// the attempt, if it was made, is to be recorded.
    Posted(EndpointId, Option<AttemptRecord>),
    /// An attempt was recorded (or failed to be): its delivery is done with.
    Recorded,
}

/// Attempts under way; per endpoint, how many requests run and which wait
/// their turn. An endpoint's slot is freed when it answers, not when its
/// attempt is recorded: the limit is on requests to the receiver, and the
/// records of many attempts are written together.
#[derive(Default)]
struct InFlight {
    tasks: JoinSet<Ended>,
    per_endpoint: HashMap<EndpointId, (u32, VecDeque<ClaimedDelivery>)>,
    /// Posting, waiting their endpoint's turn, or being recorded.
    claimed: u32,
}

impl InFlight {
    /// Endpoints at their limit: claims leave theirs alone, so what waits
    /// is at most one claim's worth, and a hanging endpoint's backlog cannot
    /// take the slots other endpoints need.
    fn busy(&self, limit: u32) -> Vec<EndpointId> {
        self.per_endpoint
            .iter()
            .filter(|(_, (running, _))| *running >= limit)
            .map(|(e, _)| e.clone())
            .collect()
    }

    fn start(&mut self, dispatcher: &Dispatcher, d: ClaimedDelivery) {
        self.claimed += 1;
        let (running, waiting) = self.per_endpoint.entry(d.endpoint.id.clone()).or_default();
        if *running >= dispatcher.cfg.in_flight_per_endpoint {
            waiting.push_back(d);
            return;
        }
        *running += 1;
        let dispatcher = dispatcher.clone();
        self.tasks.spawn(async move {
            let (id, endpoint) = (d.id.clone(), d.endpoint.id.clone());
            // A panic must still give the endpoint its slot back; the lease
            // expires and a later pass tries again: nothing is lost.
            match AssertUnwindSafe(dispatcher.attempt(d)).catch_unwind().await {
                Ok(record) => Ended::Posted(endpoint, Some(record)),
                Err(_) => {
                    tracing::error!(delivery_id = %id, "a webhook attempt panicked");
                    Ended::Posted(endpoint, None)
                }
            }
        });
    }

    /// Waits for one task to end: an endpoint that answered starts its next
    /// waiting delivery and has its attempt recorded. Some(true) when a
    /// delivery is done with (recorded, or its attempt panicked), Some(false)
    /// when a request ended and its record is being written, None when
    /// nothing was under way.
    async fn join_next(&mut self, dispatcher: &Dispatcher) -> Option<bool> {
        let ended = self.tasks.join_next().await?;
        let Ok(Ended::Posted(endpoint, record)) = ended else {
            // Recorded (recording catches its errors; a panic there leaves
            // the lease to expire, as any failure to record does).
            self.claimed -= 1;
            return Some(true);
        };
        let done = record.is_none();
        match record {
            Some(record) => {
                let dispatcher = dispatcher.clone();
                self.tasks.spawn(async move {
                    dispatcher.record(record).await;
                    Ended::Recorded
                });
            }
            None => self.claimed -= 1,
        }
        let next = match self.per_endpoint.get_mut(&endpoint) {
            Some((running, waiting)) => {
                *running -= 1;
                let next = waiting.pop_front();
                if next.is_none() && *running == 0 {
                    self.per_endpoint.remove(&endpoint);
                }
                next
            }
            None => None,
        };
        if let Some(d) = next {
            self.claimed -= 1; // counted again by start
            self.start(dispatcher, d);
        }
        Some(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification.
    #[test]
    fn signs_like_the_specification() {
        let sig = signature(
            &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn two_secrets_give_two_signatures() {
        let sig = signature(
            &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_AAAA"],
            "id",
            1,
            "{}",
        );
        assert_eq!(sig.split(' ').count(), 2);
        assert!(sig.split(' ').all(|s| s.starts_with("v1,")));
    }
}
