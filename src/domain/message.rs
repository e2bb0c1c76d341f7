//! Messages, their status machine, money and time as the API shows them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ids::{MessageId, NumberId};
use super::{Mode, encoding::Encoding};

/// queued → sent → delivered | undelivered | failed | expired
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Queued,
    Sent,
    Delivered,
    Undelivered,
    Failed,
    Expired,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 6] = [
        MessageStatus::Queued,
        MessageStatus::Sent,
        MessageStatus::Delivered,
        MessageStatus::Undelivered,
        MessageStatus::Failed,
        MessageStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "queued",
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Undelivered => "undelivered",
            MessageStatus::Failed => "failed",
            MessageStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// Money, always in integer pence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct Pence(pub i64);

impl Pence {
    pub fn times(self, n: u32) -> Pence {
        Pence(self.0 * i64::from(n))
    }
}

/// A UTC instant, kept as unix milliseconds and shown as RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ToSchema)]
#[schema(value_type = String, format = DateTime)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn plus_ms(self, ms: i64) -> Timestamp {
        Timestamp(self.0 + ms)
    }

    /// The same time of day `n` calendar months on (the 31st becomes the
    /// month's last day where it has none).
    pub fn plus_months(self, n: u32) -> Timestamp {
        let at = chrono::DateTime::from_timestamp_millis(self.0).unwrap_or_default();
        Timestamp(
            at.checked_add_months(chrono::Months::new(n))
                .unwrap_or(at)
                .timestamp_millis(),
        )
    }

    /// The calendar month it falls in, `YYYY-MM` (UTC): what charges count against.
    pub fn month(self) -> String {
        chrono::DateTime::from_timestamp_millis(self.0)
            .unwrap_or_default()
            .format("%Y-%m")
            .to_string()
    }

    pub fn to_rfc3339(self) -> String {
        chrono::DateTime::from_timestamp_millis(self.0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        chrono::DateTime::parse_from_rfc3339(&s)
            .map(|t| Timestamp(t.timestamp_millis()))
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusChange {
    pub status: MessageStatus,
    pub at: Timestamp,
}

/// A message as the API returns it. The body is never returned: it is erased
/// once the carrier accepts the message and may carry a one-time code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub id: MessageId,
    pub to: String,
    pub from: String,
    pub mode: Mode,
    pub status: MessageStatus,
    pub encoding: Encoding,
    pub segments: u32,
    pub price_pence: Pence,
    pub reference: Option<String>,
    /// Why a message failed: a stable code such as `carrier_rejected`.
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Every status the message has had, oldest first.
    pub status_history: Vec<StatusChange>,
}

/// The error code of a multi-part message some of whose parts a carrier took
/// before it refused one: the handset got part of it, so it is not refunded.
pub const PARTLY_SENT: &str = "partly_sent";

/// A message a handset sent to one of the tenant's numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InboundSms {
    /// `mo_…`
    pub id: String,
    /// Always `inbound`.
    pub direction: String,
    /// The handset, E.164.
    pub from: String,
    /// The tenant's number it was sent to, E.164.
    pub to: String,
    /// The rental of that number.
    pub number_id: NumberId,
    pub body: String,
    pub received_at: Timestamp,
}

/// A part's final status (none yet while its receipt is awaited) and the carrier's error.
pub type PartEnd = (Option<MessageStatus>, Option<String>);

/// A message's final status from its parts' (in part order), once every part
/// has one: delivered if every part was, else the first other part's status
/// and error. `None` while some part has no final status yet.
pub fn final_status(parts: &[PartEnd]) -> Option<(MessageStatus, Option<String>)> {
    if parts.is_empty() || parts.iter().any(|(status, _)| status.is_none()) {
        return None;
    }
    Some(
        parts
            .iter()
            .find(|(status, _)| *status != Some(MessageStatus::Delivered))
            .map(|(status, error)| (status.expect("every part has ended"), error.clone()))
            .unwrap_or((MessageStatus::Delivered, None)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for st in MessageStatus::ALL {
            assert_eq!(MessageStatus::parse(st.as_str()), Some(st));
        }
        assert_eq!(MessageStatus::parse("nope"), None);
    }

    #[test]
    fn a_message_ends_when_its_last_part_does() {
        use MessageStatus::*;
        let part = |s: Option<MessageStatus>, e: Option<&str>| (s, e.map(str::to_string));
        assert_eq!(
            final_status(&[part(Some(Delivered), None)]),
            Some((Delivered, None))
        );
        assert_eq!(
            final_status(&[part(Some(Delivered), None), part(None, None)]),
            None
        );
        assert_eq!(final_status(&[]), None);
        assert_eq!(
            final_status(&[
                part(Some(Delivered), None),
                part(Some(Undelivered), Some("001")),
                part(Some(Failed), Some("002")),
            ]),
            Some((Undelivered, Some("001".into())))
        );
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(
            Timestamp(1_795_000_000_123).to_rfc3339(),
            "2026-11-18T11:06:40.123Z"
        );
    }
}
