//! Carrier failures: transient ones retry with backoff, throttling waits,
//! permanent ones fail the message. The carrier here is a stand-in that fails
//! on cue (a real carrier cannot be made to fail on demand); the queue, store
//! and worker are the real ones, on both backends.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::TestApp;
use line::carrier::{Accepted, Carrier, CarrierError, CarrierState, CarrierStatus, Carriers};
use line::store::ClaimedMessage;
use line::worker::Worker;

/// Answers each submission with the next scripted result (then accepts).
struct Scripted(Mutex<Vec<CarrierError>>);

#[async_trait]
impl Carrier for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }
    fn status(&self) -> CarrierStatus {
        CarrierStatus {
            name: "scripted".into(),
            kind: "scripted",
            state: CarrierState::Bound,
            throttled: false,
            window: 0,
            window_in_use: 0,
            submits: 0,
            receipts: 0,
            errors: Default::default(),
        }
    }
    async fn submit(&self, msg: &ClaimedMessage) -> Result<Accepted, CarrierError> {
        let mut script = self.0.lock().unwrap();
        if script.is_empty() {
            Ok(Accepted {
                carrier_message_ids: vec![format!("c-{}", msg.id)],
            })
        } else {
            Err(script.remove(0))
        }
    }
}

pub fn worker(app: &TestApp, script: Vec<CarrierError>) -> Worker {
    let carrier: Arc<dyn Carrier> = Arc::new(Scripted(Mutex::new(script)));
    Worker::new(
        app.line.store.clone(),
        app.clock.clone(),
        Arc::new(Carriers::only(carrier)),
        app.line.config.worker.clone(),
        Duration::from_secs(86_400),
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Notify::new()),
        app.line.core().handoff.clone(),
    )
}

async fn status_of(app: &TestApp, id: &str) -> String {
    let (_, msg) = app.get(&format!("/v1/sms/{id}"), &app.test_key).await;
    msg["status"].as_str().unwrap().to_string()
}

async fn transient_failures_retry_with_backoff(app: TestApp) {
    let id = app.send("+447700900001", "retry me").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let w = worker(
        &app,
        vec![
            CarrierError::Transient("link down".into()),
            CarrierError::Transient("link down".into()),
        ],
    );
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert_eq!(status_of(&app, &id).await, "queued");
    // Not due again before the backoff (5 s ± 20%) has passed.
    app.clock.advance(Duration::from_secs(3));
    assert_eq!(w.run_once().await.unwrap(), 0);
    app.clock.advance(Duration::from_secs(3));
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert_eq!(status_of(&app, &id).await, "queued");
    // The second backoff doubles: 10 s ± 20%.
    app.clock.advance(Duration::from_secs(7));
    assert_eq!(w.run_once().await.unwrap(), 0);
    app.clock.advance(Duration::from_secs(6));
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert_eq!(status_of(&app, &id).await, "sent");
    app.stop().await;
}

async fn throttling_waits_as_asked(app: TestApp) {
    let id = app.send("+447700900001", "slow down").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let w = worker(
        &app,
        vec![CarrierError::Throttled {
            retry_after: Some(Duration::from_secs(30)),
        }],
    );
    w.run_once().await.unwrap();
    app.clock.advance(Duration::from_secs(29));
    assert_eq!(w.run_once().await.unwrap(), 0);
    app.clock.advance(Duration::from_secs(2));
    w.run_once().await.unwrap();
    assert_eq!(status_of(&app, &id).await, "sent");
    app.stop().await;
}

async fn permanent_failures_fail_at_once(app: TestApp) {
    let id = app.send("+447700900001", "no").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let w = worker(
        &app,
        vec![CarrierError::Permanent {
            code: "invalid_destination".into(),
            message: "no such subscriber".into(),
        }],
    );
    w.run_once().await.unwrap();
    let (_, msg) = app.get(&format!("/v1/sms/{id}"), &app.test_key).await;
    assert_eq!(msg["status"], "failed");
    assert_eq!(msg["error_code"], "invalid_destination");
    assert_eq!(msg["error_message"], "no such subscriber");
    app.stop().await;
}

backends!(
    app:
    transient_failures_retry_with_backoff,
    throttling_waits_as_asked,
    permanent_failures_fail_at_once,
);
