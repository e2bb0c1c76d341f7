//! The webhook dispatcher: claims due deliveries with a lease, signs them per
//! Standard Webhooks, POSTs them and records every attempt. Retries follow the
//! configured schedule with jitter; 410 Gone disables the endpoint at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rand::Rng;

use super::guard::{GuardedResolver, check_destination};
use super::signing::signature;
use crate::config::WebhooksConfig;
use crate::domain::ids::new_id;
use crate::domain::message::Timestamp;
use crate::infra::clock::Clock;
use crate::infra::shutdown::Shutdown;
use crate::store::{AttemptRecord, Claim, ClaimedDelivery, NextStep, Store, StoredEndpoint};

/// Endpoints being delivered to at once.
const CONCURRENCY: usize = 16;
/// Bounds on a receiver's Retry-After.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// How much of a receiver's answer is kept with the attempt.
const KEPT_RESPONSE_BYTES: usize = 1024;

pub struct Dispatcher {
    store: Arc<dyn Store>,
    clock: Clock,
    client: reqwest::Client,
    cfg: WebhooksConfig,
    token: String,
}

impl Dispatcher {
    pub fn new(store: Arc<dyn Store>, clock: Clock, cfg: WebhooksConfig) -> Self {
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
            store,
            clock,
            client,
            cfg,
            token: new_id("lease"),
        }
    }

    /// One pass: deliver what is due. Returns how many deliveries it attempted.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        let now = self.clock.now();
        let lease_until = now.plus_ms(self.cfg.lease_seconds as i64 * 1000);
        let claim = Claim {
            now,
            lease_until,
            token: self.token.clone(),
            limit: self.cfg.batch_size,
        };
        let mut batch = self.store.claim_deliveries(&claim).await?;
        let n = batch.len();
        batch.sort_by(|a, b| a.id.cmp(&b.id)); // ids grow with time
        // In claim order (oldest first) one endpoint at a time, endpoints side by
        // side: each endpoint sees its events in order, as far as retries allow.
        let mut by_endpoint: Vec<Vec<ClaimedDelivery>> = Vec::new();
        for d in batch {
            match by_endpoint
                .iter_mut()
                .find(|group| group[0].endpoint_id == d.endpoint_id)
            {
                Some(group) => group.push(d),
                None => by_endpoint.push(vec![d]),
            }
        }
        futures_util::stream::iter(by_endpoint)
            .for_each_concurrent(CONCURRENCY, |group| async move {
                for d in group {
                    let id = d.id.clone();
                    if let Err(e) = self.deliver(d).await {
                        // The lease expires and a later pass tries again: nothing is lost.
                        tracing::error!(delivery_id = %id, error = %e, "recording a webhook attempt failed");
                    }
                }
            })
            .await;
        Ok(n)
    }

    #[tracing::instrument(skip_all, fields(delivery_id = %d.id, endpoint_id = %d.endpoint_id, attempt = d.attempts))]
    async fn deliver(&self, d: ClaimedDelivery) -> anyhow::Result<()> {
        let Some(endpoint) = self
            .store
            .get_endpoint(&d.tenant_id, &d.endpoint_id)
            .await?
        else {
            return Ok(()); // deleted: its deliveries went with it
        };
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
            self.post(&endpoint, &d, now).await
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
            (NextStep::Succeeded, _) => tracing::info!("webhook delivered"),
            (_, code) => {
                tracing::warn!(status = ?code, error = ?error, next = ?next, "webhook attempt failed")
            }
        }
        let record = AttemptRecord {
            delivery_id: d.id,
            endpoint_id: d.endpoint_id,
            token: self.token.clone(),
            at: now,
            status_code,
            response,
            duration_ms: started.elapsed().as_millis() as i64,
            error,
            next,
        };
        if !self.store.finish_delivery(&record).await? {
            tracing::warn!("lease lost before the attempt was recorded");
        }
        Ok(())
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
                let kept: String = body.chars().take(KEPT_RESPONSE_BYTES).collect();
                (Some(code), Some(kept), None, retry_after)
            }
        }
    }

    /// Runs until shutdown.
    pub async fn run(self, mut shutdown: Shutdown, idle: Duration) {
        while !shutdown.is_set() {
            let busy = match self.run_once().await {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::error!(error = %e, "dispatcher pass failed");
                    false
                }
            };
            if !busy {
                tokio::select! {
                    _ = tokio::time::sleep(idle) => {}
                    _ = shutdown.wait() => {}
                }
            }
        }
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
