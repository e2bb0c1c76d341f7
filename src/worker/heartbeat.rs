//! Heartbeats of this process's leaseholders (its worker and its webhook
//! dispatcher). Each beat also frees the claims of holders anywhere that have
//! gone quiet: a node killed mid-batch loses its claims in seconds, not a lease.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::config::WorkerConfig;
use crate::infra::clock::Clock;
use crate::store::Store;

pub struct Heartbeat {
    store: Arc<dyn Store>,
    clock: Clock,
    tokens: Vec<String>,
    every: Duration,
    presumed_dead_ms: i64,
}

/// A running heartbeat; `stop` ends it and forgets its holders.
pub struct Beating {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Heartbeat>,
}

impl Heartbeat {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Clock,
        cfg: &WorkerConfig,
        tokens: Vec<String>,
    ) -> Self {
        Heartbeat {
            store,
            clock,
            tokens,
            every: Duration::from_millis(cfg.heartbeat_ms),
            presumed_dead_ms: cfg.presumed_dead_ms as i64,
        }
    }

    /// Beats for each holder, then frees the claims of holders silent longer
    /// than `presumed_dead_ms`; returns how many claims it freed.
    pub async fn run_once(&self) -> anyhow::Result<u64> {
        let now = self.clock.now();
        self.beat(now).await?;
        self.free_silent_since(now.plus_ms(-self.presumed_dead_ms))
            .await
    }

    async fn beat(&self, now: crate::domain::message::Timestamp) -> anyhow::Result<()> {
        for token in &self.tokens {
            self.store.heartbeat(token, now).await?;
        }
        Ok(())
    }

    /// Frees the claims of every holder not heard from since `since`.
    pub async fn free_silent_since(
        &self,
        since: crate::domain::message::Timestamp,
    ) -> anyhow::Result<u64> {
        let freed = self.store.free_silent(since).await?;
        if freed > 0 {
            tracing::warn!(freed, "claims of a silent worker freed");
        }
        Ok(freed)
    }

    /// Beats until stopped.
    pub fn start(self) -> Beating {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            // After a beat of its own failed (the database out of reach for
            // everyone, say), a holder only beats for `presumed_dead_ms` from
            // its first beat that works again: the others were silent for
            // the same reason and reconnect at their own pace; their claims
            // (outcomes waiting to be recorded) are not freed under them.
            let quiet = Duration::from_millis(self.presumed_dead_ms as u64);
            // `None` while beats fail; then when freeing others is fair again.
            let mut frees_from = Some(std::time::Instant::now());
            loop {
                let beat = match frees_from {
                    Some(t) if std::time::Instant::now() >= t => self.run_once().await.map(drop),
                    _ => self.beat(self.clock.now()).await,
                };
                match beat {
                    Ok(()) if frees_from.is_none() => {
                        frees_from = Some(std::time::Instant::now() + quiet);
                    }
                    Ok(()) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "heartbeat failed");
                        frees_from = None;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.every) => {}
                    _ = &mut stopped => break,
                }
            }
            self
        });
        Beating { stop, task }
    }
}

impl Beating {
    /// Stops beating once the holders have given their leases back.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Ok(beat) = self.task.await {
            for token in &beat.tokens {
                if let Err(e) = beat.store.forget_leaseholder(token).await {
                    tracing::error!(error = %e, "forgetting a leaseholder failed");
                }
            }
        }
    }
}
