//! The built-in sandbox carrier: costs nothing, reaches no network, and behaves
//! by number so integration tests can see every outcome.
//!
//! +44 7700 900000–900899 delivered; 900900–900949 undelivered; 900950–900999
//! rejected by the carrier; any other valid number delivered. Receipts arrive
//! after `receipt_delay` and are kept in the database, so a restart loses none.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Accepted, Carrier, CarrierError, CarrierState, CarrierStatus, Counters};
use crate::domain::Mode;
use crate::domain::message::MessageStatus;
use crate::domain::phone::drama_suffix;
use crate::infra::clock::Clock;
use crate::store::{ClaimedMessage, NewSandboxMessage, Store};

pub struct Sandbox {
    name: String,
    store: Arc<dyn Store>,
    clock: Clock,
    receipt_delay: Duration,
    counters: Counters,
}

impl Sandbox {
    pub fn new(name: &str, store: Arc<dyn Store>, clock: Clock, receipt_delay: Duration) -> Self {
        Sandbox {
            name: name.to_string(),
            store,
            clock,
            receipt_delay,
            counters: Counters::default(),
        }
    }
}

/// What the sandbox does with a message to this number.
fn outcome(to: &str) -> Option<MessageStatus> {
    match drama_suffix(to) {
        Some(950..=999) => None,
        Some(900..=949) => Some(MessageStatus::Undelivered),
        _ => Some(MessageStatus::Delivered),
    }
}

#[async_trait]
impl Carrier for Sandbox {
    fn name(&self) -> &str {
        &self.name
    }

    async fn submit(&self, msg: &ClaimedMessage) -> Result<Accepted, CarrierError> {
        self.counters.submitted();
        let Some(receipt) = outcome(&msg.to) else {
            return Err(CarrierError::Permanent {
                code: "carrier_rejected".into(),
                message: "the sandbox carrier rejects +44 7700 900950–900999".into(),
            });
        };
        let now = self.clock.now();
        self.store
            .sandbox_deliver(&NewSandboxMessage {
                message_id: msg.id.clone(),
                tenant_id: msg.tenant_id.clone(),
                to: msg.to.clone(),
                from: msg.from.clone(),
                // A live message's body (perhaps a code) is never kept.
                body: (msg.mode == Mode::Test).then(|| msg.body.clone()),
                received_at: now,
                receipt,
                receipt_due: now.plus_ms(self.receipt_delay.as_millis() as i64),
            })
            .await
            .map_err(|e| CarrierError::Transient(format!("sandbox store: {e}")))?;
        // Our own id is the carrier's: its receipts come from `sandbox_messages`.
        Ok(Accepted {
            carrier_message_ids: vec![msg.id.to_string()],
        })
    }

    fn status(&self) -> CarrierStatus {
        let (submits, receipts, errors) = self.counters.snapshot();
        CarrierStatus {
            name: self.name.clone(),
            kind: "sandbox",
            state: CarrierState::Bound,
            throttled: false,
            window: 0,
            window_in_use: 0,
            submits,
            receipts,
            errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_numbers() {
        assert_eq!(outcome("+447700900000"), Some(MessageStatus::Delivered));
        assert_eq!(outcome("+447700900899"), Some(MessageStatus::Delivered));
        assert_eq!(outcome("+447700900900"), Some(MessageStatus::Undelivered));
        assert_eq!(outcome("+447700900949"), Some(MessageStatus::Undelivered));
        assert_eq!(outcome("+447700900950"), None);
        assert_eq!(outcome("+447700900999"), None);
        assert_eq!(outcome("+447400123456"), Some(MessageStatus::Delivered));
    }
}
