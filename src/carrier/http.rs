//! An HTTP upstream: each message is POSTed as JSON; the upstream reports
//! delivery to `POST /v1/carriers/{name}/receipts`, signed with a shared secret.
//!
//! Request: `{"id", "to", "from", "body", "encoding", "segments"}`, with the
//! configured auth header. A 2xx answer accepts the message; its JSON `id` (or,
//! without one, our message id) is what receipts quote. 429 throttles (honouring
//! Retry-After), 408/425/5xx and network errors are transient, other 4xx permanent.
//!
//! Receipt: a JSON object `{"id", "status", "error"?}` or an array of them, with
//! header `X-Line-Signature: sha256=<hex HMAC-SHA256 of the body>`. Statuses:
//! delivered, undelivered, expired, failed (final) or accepted, enroute (ignored).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::{Accepted, Carrier, CarrierError, CarrierState, CarrierStatus, Counters};
use crate::config::{CarrierConfig, Secret};
use crate::domain::Mode;
use crate::domain::ids::new_id;
use crate::domain::message::{MessageStatus, Timestamp};
use crate::domain::phone::PhoneNumber;
use crate::store::{CarrierReceipt, ClaimedMessage, InboundMessage};

/// `sha256=<hex HMAC-SHA256(receipt_secret, "<timestamp>.<body>")>`
pub const SIGNATURE_HEADER: &str = "x-line-signature";
/// The time of signing, in unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-line-timestamp";
/// The most of a receipt's `error` that is kept.
const MAX_RECEIPT_ERROR: usize = 256;
/// How far from our clock a signed request's timestamp may be.
pub const SIGNATURE_TOLERANCE_SECONDS: i64 = 300;
/// Consecutive transient failures after which the upstream counts as down.
const DOWN_AFTER: u32 = 3;
/// How long a down upstream is left alone before it is tried again.
const RETRY_DOWN_AFTER: Duration = Duration::from_secs(10);

pub struct HttpCarrier {
    name: String,
    url: String,
    auth_header: String,
    auth_value: Secret,
    receipt_secret: Secret,
    client: reqwest::Client,
    counters: Counters,
    failures: AtomicU32,
    last_failure: Mutex<Option<Instant>>,
    throttled_until: Mutex<Option<Instant>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error("the receipt signature is missing or wrong")]
    Unauthorized,
    #[error("{0}")]
    Invalid(String),
}

/// Upstreams send ids as strings or numbers.
#[derive(Deserialize)]
#[serde(untagged)]
enum Id {
    Text(String),
    Number(u64),
}

impl Id {
    fn text(&self) -> String {
        match self {
            Id::Text(s) => s.clone(),
            Id::Number(n) => n.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Receipts {
    One(ReceiptBody),
    Many(Vec<ReceiptBody>),
}

#[derive(Deserialize)]
struct ReceiptBody {
    id: Id,
    status: String,
    error: Option<String>,
}

impl HttpCarrier {
    pub fn new(c: &CarrierConfig) -> Self {
        HttpCarrier {
            name: c.name.clone(),
            url: c.url.clone().unwrap_or_default(),
            auth_header: c.auth_header.clone(),
            auth_value: c.auth_value.clone(),
            receipt_secret: c.receipt_secret.clone(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client builds"),
            counters: Counters::default(),
            failures: AtomicU32::new(0),
            last_failure: Mutex::new(None),
            throttled_until: Mutex::new(None),
        }
    }

    /// Checks a posted request's signature and that it was signed within
    /// five minutes of `now` (its replay is the caller's to refuse).
    pub fn verify(
        &self,
        body: &[u8],
        timestamp: Option<&str>,
        signature: Option<&str>,
        now: Timestamp,
    ) -> Result<(), ReceiptError> {
        let secret = self.receipt_secret.expose();
        if verify_signature(secret, timestamp, body, signature, now) {
            Ok(())
        } else {
            Err(ReceiptError::Unauthorized)
        }
    }

    /// Reads a verified receipt request. Interim statuses are dropped.
    pub fn receipts(
        &self,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Vec<CarrierReceipt>, ReceiptError> {
        let parsed: Receipts =
            read_json(body).map_err(|e| ReceiptError::Invalid(format!("receipt JSON: {e}")))?;
        let list = match parsed {
            Receipts::One(r) => vec![r],
            Receipts::Many(rs) => rs,
        };
        let mut out = Vec::new();
        for r in list {
            self.counters.received();
            if matches!(&r.id, Id::Text(s) if s.is_empty()) {
                return Err(ReceiptError::Invalid("`id` must not be empty".into()));
            }
            let status = match r.status.as_str() {
                "delivered" => MessageStatus::Delivered,
                "undelivered" => MessageStatus::Undelivered,
                "expired" => MessageStatus::Expired,
                "failed" => MessageStatus::Failed,
                "accepted" | "enroute" => continue,
                other => {
                    return Err(ReceiptError::Invalid(format!(
                        "unknown receipt status {other:?}"
                    )));
                }
            };
            out.push(CarrierReceipt {
                carrier: self.name.clone(),
                carrier_message_id: super::normalize_id(&r.id.text(), crate::config::IdBase::Text),
                status,
                // Kept short: it becomes the message's error_code.
                error: r
                    .error
                    .filter(|_| status != MessageStatus::Delivered)
                    .map(|e| e.chars().take(MAX_RECEIPT_ERROR).collect()),
                received_at: now,
            });
        }
        Ok(out)
    }

    /// Reads a verified request of mobile-originated messages: `{"from",
    /// "to", "body"}` or an array of them, numbers in E.164.
    pub fn inbound(
        &self,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Vec<InboundMessage>, ReceiptError> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Many {
            One(Mo),
            Many(Vec<Mo>),
        }
        #[derive(Deserialize)]
        struct Mo {
            from: String,
            to: String,
            body: String,
        }
        let list = match read_json(body)
            .map_err(|e| ReceiptError::Invalid(format!("inbound JSON: {e}")))?
        {
            Many::One(m) => vec![m],
            Many::Many(ms) => ms,
        };
        list.into_iter()
            .map(|m| {
                let number = |n: &str, what: &str| {
                    PhoneNumber::parse(n, Mode::Live)
                        .map(|p| p.e164().to_string())
                        .map_err(|e| ReceiptError::Invalid(format!("`{what}` {e}")))
                };
                Ok(InboundMessage {
                    id: new_id("mo"),
                    carrier: self.name.clone(),
                    from: number(&m.from, "from")?,
                    to: number(&m.to, "to")?,
                    body: Some(m.body),
                    received_at: now,
                    mode: Mode::Live,
                    tenant: None,
                })
            })
            .collect()
    }

    fn failed(&self) -> CarrierError {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self.last_failure.lock().expect("failure lock") = Some(Instant::now());
        CarrierError::Transient("the HTTP upstream failed".into())
    }

    fn state(&self) -> CarrierState {
        if self.failures.load(Ordering::Relaxed) < DOWN_AFTER {
            return CarrierState::Bound;
        }
        // Down, but worth a try again after a while.
        match *self.last_failure.lock().expect("failure lock") {
            Some(at) if at.elapsed() < RETRY_DOWN_AFTER => CarrierState::Down,
            _ => CarrierState::Connecting,
        }
    }

    fn throttled(&self) -> bool {
        self.throttled_until
            .lock()
            .expect("throttle lock")
            .is_some_and(|until| until > Instant::now())
    }
}

/// A body as JSON Schema reads it (`6.0` is an integer), into its type.
fn read_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> serde_json::Result<T> {
    let mut value: serde_json::Value = serde_json::from_slice(body)?;
    crate::infra::json::whole_numbers(&mut value);
    serde_json::from_value(value)
}

/// Constant-time check of `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`,
/// with `timestamp` (unix seconds) within five minutes of `now`: a captured
/// request cannot be replayed later, nor its body given another time.
pub fn verify_signature(
    secret: &str,
    timestamp: Option<&str>,
    body: &[u8],
    header: Option<&str>,
    now: Timestamp,
) -> bool {
    let Some(ts) = timestamp
        .map(str::trim)
        .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))
    else {
        return false;
    };
    let Ok(secs) = ts.parse::<i64>() else {
        return false;
    };
    if (now.millis() / 1000 - secs).abs() > SIGNATURE_TOLERANCE_SECONDS {
        return false;
    }
    let Some(hex) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Some(expected) = hex::decode(hex).ok() else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

#[async_trait]
impl Carrier for HttpCarrier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn submit(&self, msg: &ClaimedMessage) -> Result<Accepted, CarrierError> {
        self.counters.submitted();
        let mut request = self.client.post(&self.url).json(&serde_json::json!({
            "id": msg.id,
            "to": msg.to,
            "from": msg.from,
            "body": msg.body,
            "encoding": msg.encoding,
            "segments": msg.segments,
        }));
        if !self.auth_value.expose().is_empty() {
            request = request.header(self.auth_header.as_str(), self.auth_value.expose());
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                self.counters.error(if e.is_timeout() {
                    "timeout"
                } else {
                    "connection"
                });
                return Err(self.failed());
            }
        };
        let status = response.status();
        if status.is_success() {
            self.failures.store(0, Ordering::Relaxed);
            let id = response
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| serde_json::from_value::<Id>(v.get("id")?.clone()).ok())
                .map_or_else(|| msg.id.to_string(), |id| id.text());
            return Ok(Accepted {
                carrier_message_ids: vec![super::normalize_id(&id, crate::config::IdBase::Text)],
            });
        }
        self.counters.error(&format!("http {}", status.as_u16()));
        match status.as_u16() {
            429 => {
                let wait = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map_or(Duration::from_secs(1), Duration::from_secs)
                    .min(Duration::from_secs(300));
                *self.throttled_until.lock().expect("throttle lock") = Some(Instant::now() + wait);
                Err(CarrierError::Throttled {
                    retry_after: Some(wait),
                })
            }
            408 | 425 | 500..=599 => Err(self.failed()),
            // Only the status is kept: an upstream's error text may echo the body (a code).
            code => Err(CarrierError::Permanent {
                code: format!("http_{code}"),
                message: format!("the HTTP upstream refused the message ({code})"),
            }),
        }
    }

    fn status(&self) -> CarrierStatus {
        let (submits, receipts, errors) = self.counters.snapshot();
        CarrierStatus {
            name: self.name.clone(),
            kind: "http",
            state: self.state(),
            throttled: self.throttled(),
            window: 0,
            window_in_use: 0,
            submits,
            receipts,
            errors,
        }
    }

    fn available(&self) -> bool {
        self.state() != CarrierState::Down && !self.throttled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_check_the_timestamp_and_the_whole_body() {
        let secret = "0123456789abcdef";
        let sign = |ts: &str, body: &[u8]| {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(format!("{ts}.").as_bytes());
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        };
        let now = Timestamp(1_800_000_000_000);
        let body = b"{\"id\":\"1\"}";
        let header = sign("1800000000", body);
        let ok = |secret: &str, ts: Option<&str>, body: &[u8], h: Option<&str>| {
            verify_signature(secret, ts, body, h, now)
        };
        assert!(ok(secret, Some("1800000000"), body, Some(&header)));
        assert!(!ok(
            secret,
            Some("1800000000"),
            b"{\"id\":\"2\"}",
            Some(&header)
        ));
        assert!(!ok(
            "another secret!!",
            Some("1800000000"),
            body,
            Some(&header)
        ));
        assert!(!ok(secret, Some("1800000000"), body, None));
        assert!(!ok(secret, None, body, Some(&header)));
        // The timestamp is signed: another one with the same signature fails.
        assert!(!ok(secret, Some("1800000001"), body, Some(&header)));
        // Within five minutes either way, and not beyond.
        let old = sign("1799999700", body);
        assert!(ok(secret, Some("1799999700"), body, Some(&old)));
        let older = sign("1799999699", body);
        assert!(!ok(secret, Some("1799999699"), body, Some(&older)));
        let ahead = sign("1800000301", body);
        assert!(!ok(secret, Some("1800000301"), body, Some(&ahead)));
        assert!(!ok(secret, Some("-5"), body, Some(&sign("-5", body))));
    }
}
