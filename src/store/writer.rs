//! Group commit for new messages. Each request still waits for its own commit
//! before it answers 202; requests that arrive while a commit is in flight are
//! written together in the next one, so a busy API does a few large
//! transactions instead of many single-row ones. One committing task: measured
//! here, one writer with larger batches beat two or four with smaller ones
//! (SQLite has a single writer anyway).

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{CreateOutcome, PendingMessage, Store};

/// The most messages one transaction writes.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<CreateOutcome, String>>;

#[derive(Clone)]
pub struct MessageWriter {
    queue: mpsc::Sender<(PendingMessage, Reply)>,
}

impl MessageWriter {
    /// Starts the committing task; it ends when the last writer is dropped.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (queue, rx) = mpsc::channel(MAX_BATCH * 16);
        tokio::spawn(commit_loop(store, rx));
        MessageWriter { queue }
    }

    /// Writes one message; returns once it is committed (or its key was used before).
    pub async fn create(&self, pending: PendingMessage) -> anyhow::Result<CreateOutcome> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((pending, reply))
            .await
            .map_err(|_| anyhow::anyhow!("the message writer has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the message writer dropped a request"))?
            .map_err(|e| anyhow::anyhow!("writing messages: {e}"))
    }
}

async fn commit_loop(store: Arc<dyn Store>, mut rx: mpsc::Receiver<(PendingMessage, Reply)>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // Items repeating a (tenant, key) already in this round wait for the next
        // round, where they find the first one's record.
        while !batch.is_empty() {
            let mut seen = HashSet::new();
            let (now, later): (Vec<_>, Vec<_>) =
                batch.into_iter().partition(|(p, _)| match &p.idem {
                    Some(i) => seen.insert((p.message.tenant_id.clone(), i.key.clone())),
                    None => true,
                });
            let (items, replies): (Vec<_>, Vec<_>) = now.into_iter().unzip();
            match store.create_messages(&items).await {
                Ok(outcomes) => {
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Err(e) => {
                    let e = e.to_string();
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            batch = later;
        }
    }
}
