//! Webhook endpoints: event types, secrets, and which destinations are allowed.

use std::net::IpAddr;

use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ids::{DeliveryId, EndpointId};
use super::message::{MessageStatus, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    #[serde(rename = "message.sent")]
    MessageSent,
    #[serde(rename = "message.delivered")]
    MessageDelivered,
    #[serde(rename = "message.undelivered")]
    MessageUndelivered,
    #[serde(rename = "message.failed")]
    MessageFailed,
    #[serde(rename = "message.expired")]
    MessageExpired,
    #[serde(rename = "message.received")]
    MessageReceived,
    #[serde(rename = "verification.approved")]
    VerificationApproved,
}

impl EventType {
    pub const ALL: [EventType; 7] = [
        EventType::MessageSent,
        EventType::MessageDelivered,
        EventType::MessageUndelivered,
        EventType::MessageFailed,
        EventType::MessageExpired,
        EventType::MessageReceived,
        EventType::VerificationApproved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::MessageSent => "message.sent",
            EventType::MessageDelivered => "message.delivered",
            EventType::MessageUndelivered => "message.undelivered",
            EventType::MessageFailed => "message.failed",
            EventType::MessageExpired => "message.expired",
            EventType::MessageReceived => "message.received",
            EventType::VerificationApproved => "verification.approved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// The event a message's new status fires (none for `queued`).
    pub fn for_message(status: MessageStatus) -> Option<Self> {
        match status {
            MessageStatus::Queued => None,
            MessageStatus::Sent => Some(EventType::MessageSent),
            MessageStatus::Delivered => Some(EventType::MessageDelivered),
            MessageStatus::Undelivered => Some(EventType::MessageUndelivered),
            MessageStatus::Failed => Some(EventType::MessageFailed),
            MessageStatus::Expired => Some(EventType::MessageExpired),
        }
    }
}

/// The event types an endpoint takes: all of them, or a non-empty list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventSet {
    All,
    Only(Vec<EventType>),
}

impl EventSet {
    pub fn contains(&self, event: EventType) -> bool {
        match self {
            EventSet::All => true,
            EventSet::Only(list) => list.contains(&event),
        }
    }

    /// As the API shows it: `null` for all.
    pub fn to_list(&self) -> Option<Vec<EventType>> {
        match self {
            EventSet::All => None,
            EventSet::Only(list) => Some(list.clone()),
        }
    }

    /// As stored: comma-separated names, `NULL` for all.
    pub fn to_column(&self) -> Option<String> {
        self.to_list().map(|list| {
            list.iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join(",")
        })
    }

    /// Reads the stored form. A name this version does not know (written by
    /// another version, say) is skipped: the endpoint keeps the events it knows.
    pub fn from_column(column: Option<&str>) -> Self {
        match column {
            None => EventSet::All,
            Some(list) => EventSet::Only(list.split(',').filter_map(EventType::parse).collect()),
        }
    }
}

/// The body of every webhook: `{"type", "timestamp", "data"}`.
pub fn envelope(event: EventType, at: Timestamp, data: serde_json::Value) -> String {
    serde_json::json!({"type": event.as_str(), "timestamp": at, "data": data}).to_string()
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Due now or at `next_attempt_at`.
    Pending,
    Succeeded,
    /// No attempts left.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Succeeded, Self::Failed]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// Endpoints failing this long without a success are disabled.
pub const FAILING_LIMIT_MS: i64 = 5 * 24 * 3600 * 1000;

/// Why an endpoint that has been failing since `failing_since` is disabled
/// after a failed attempt at `at`, if it is.
pub fn disable_reason(
    asked: Option<&str>,
    failing_since: Option<Timestamp>,
    at: Timestamp,
) -> Option<String> {
    match asked {
        Some(reason) => Some(reason.to_string()),
        None if failing_since.is_some_and(|s| at.millis() - s.millis() >= FAILING_LIMIT_MS) => {
            Some("failing for five days without a success".to_string())
        }
        None => None,
    }
}

/// A signing secret: `whsec_` + base64 of 32 random bytes (Standard Webhooks).
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// An endpoint as the API returns it (the secret only on create and rotation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Endpoint {
    pub id: EndpointId,
    pub url: String,
    pub description: Option<String>,
    /// The event types sent here; `null` = all of them.
    pub events: Option<Vec<EventType>>,
    pub enabled: bool,
    /// Why it was disabled (e.g. the receiver answered 410 Gone).
    pub disabled_reason: Option<String>,
    /// Shown when the endpoint is created and when its secret is rotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One attempt to deliver an event to an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryAttempt {
    pub at: Timestamp,
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<u16>,
    /// The first 1 KiB of its answer.
    pub response: Option<String>,
    pub duration_ms: i64,
    /// Why there was no answer (timeout, refused address, …).
    pub error: Option<String>,
}

/// An event on its way to one endpoint, with every attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    pub id: DeliveryId,
    pub event_type: EventType,
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Oldest first.
    pub attempts: Vec<DeliveryAttempt>,
}

/// Addresses a webhook may not reach unless private addresses are allowed:
/// loopback, private, link-local, shared (CGNAT), multicast, unspecified, broadcast.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "ff02::1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "172.32.0.1"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn event_sets_round_trip_through_their_column() {
        let some = EventSet::Only(vec![
            EventType::MessageSent,
            EventType::VerificationApproved,
        ]);
        let column = some.to_column();
        assert_eq!(
            column.as_deref(),
            Some("message.sent,verification.approved")
        );
        assert_eq!(EventSet::from_column(column.as_deref()), some);
        assert_eq!(EventSet::from_column(None), EventSet::All);
        assert_eq!(
            EventSet::from_column(Some("message.sent,teleported")),
            EventSet::Only(vec![EventType::MessageSent])
        );
        assert!(some.contains(EventType::MessageSent));
        assert!(!some.contains(EventType::MessageFailed));
        assert!(EventSet::All.contains(EventType::MessageFailed));
    }

    #[test]
    fn endpoints_are_disabled_after_five_days_of_failures() {
        let day = 24 * 3600 * 1000;
        let since = Some(Timestamp(0));
        assert_eq!(disable_reason(None, since, Timestamp(5 * day - 1)), None);
        assert!(disable_reason(None, since, Timestamp(5 * day)).is_some());
        assert_eq!(disable_reason(None, None, Timestamp(9 * day)), None);
        assert_eq!(
            disable_reason(Some("410 Gone"), None, Timestamp(0)).as_deref(),
            Some("410 Gone")
        );
    }

    #[test]
    fn secrets_and_event_names() {
        let s = new_secret();
        assert!(s.starts_with("whsec_"));
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&s[6..])
            .unwrap();
        assert_eq!(raw.len(), 32);
        assert_ne!(new_secret(), s);
        for e in EventType::ALL {
            assert_eq!(EventType::parse(e.as_str()), Some(e));
            assert_eq!(serde_json::to_value(e).unwrap(), e.as_str());
        }
    }
}
