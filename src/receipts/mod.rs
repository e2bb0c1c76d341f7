//! The receipts stage: carriers hand final receipts to the [`ReceiptSink`],
//! which applies them in groups as they arrive; the [`Applier`] applies the
//! ones that had to wait (a receipt that overtook its submit_sm_resp) and the
//! sandbox handsets' receipts when they come due. A message whose parts have
//! all ended takes its final status and fires its webhook, in the same
//! transaction (`store/receipts.rs`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::infra::batch::Batcher;
use crate::infra::clock::Clock;
use crate::infra::shutdown::Shutdown;
use crate::store::{CarrierReceipt, SharedError, Store};

/// Where carriers hand final receipts.
#[derive(Clone)]
pub struct ReceiptSink {
    writer: Batcher<CarrierReceipt, (), SharedError>,
}

impl ReceiptSink {
    /// `wake` is the applier's: rung when a receipt is kept to wait for its part;
    /// `webhooks` is the dispatcher's, rung when receipts were applied (their
    /// messages' webhooks are queued in the same commit).
    pub fn start(store: Arc<dyn Store>, wake: Arc<Notify>, webhooks: Arc<Notify>) -> Self {
        let writer = Batcher::start(store.group_limit(), move |batch: Vec<CarrierReceipt>| {
            let store = store.clone();
            let (wake, webhooks) = (wake.clone(), webhooks.clone());
            async move {
                let waiting = match store.record_carrier_receipts(&batch).await {
                    Ok(waiting) => {
                        webhooks.notify_one();
                        waiting
                    }
                    Err(e) => {
                        // Kept, they are applied by the applier.
                        tracing::warn!(error = %e, "applying receipts failed; keeping them for later");
                        store
                            .keep_carrier_receipts(&batch)
                            .await
                            .map_err(Arc::new)?;
                        true
                    }
                };
                if waiting {
                    wake.notify_one();
                }
                Ok(vec![(); batch.len()])
            }
        });
        ReceiptSink { writer }
    }

    /// Returns once the receipt is durable: only then may the carrier be told we have it.
    pub async fn record(&self, receipt: CarrierReceipt) -> anyhow::Result<()> {
        self.writer.submit(receipt).await
    }
}

/// Applies receipts that are due: sandbox ones, and carriers' that waited for their parts.
pub struct Applier {
    store: Arc<dyn Store>,
    clock: Clock,
    batch_size: u32,
    wake: Arc<Notify>,
    /// The dispatcher's: rung when receipts were applied.
    webhooks: Arc<Notify>,
}

impl Applier {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Clock,
        batch_size: u32,
        wake: Arc<Notify>,
        webhooks: Arc<Notify>,
    ) -> Self {
        Applier {
            store,
            clock,
            batch_size,
            wake,
            webhooks,
        }
    }

    /// One pass; how many receipts it applied (0 = nothing was due).
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        let now = self.clock.now();
        let sandbox = self
            .store
            .apply_sandbox_receipts(now, self.batch_size)
            .await?;
        let carriers = self
            .store
            .apply_carrier_receipts(now, self.batch_size)
            .await?;
        if sandbox + carriers > 0 {
            self.webhooks.notify_one();
        }
        Ok((sandbox + carriers) as usize)
    }

    /// Runs until shutdown: at once while there is work, else when woken or after `idle`.
    pub async fn run(&self, mut shutdown: Shutdown, idle: Duration) {
        while !shutdown.is_set() {
            let busy = match self.run_once().await {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::error!(error = %e, "applying receipts failed");
                    false
                }
            };
            if !busy {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(idle) => {}
                    _ = shutdown.wait() => {}
                }
            }
        }
    }
}
