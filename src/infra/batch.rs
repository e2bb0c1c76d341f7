//! Group commit. A request still waits for its own commit before it answers;
//! requests that arrive while a commit is in flight are written together in the
//! next one, so a busy API does a few large transactions, each with one disk
//! flush, instead of many single-row ones. One committing task per kind of
//! write: measured here, one with larger batches beat two or four with smaller
//! ones (and SQLite has a single writer anyway).

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

/// The most items one transaction writes.
const MAX_BATCH: usize = 256;

type Reply<O, E> = oneshot::Sender<Result<O, E>>;

/// Feeds items to one committing task and hands each caller its own outcome
/// (or its batch's error `E`, the same for every item in the batch).
pub struct Batcher<I, O, E> {
    queue: mpsc::Sender<(I, Reply<O, E>)>,
}

impl<I, O, E> Clone for Batcher<I, O, E> {
    fn clone(&self) -> Self {
        Batcher {
            queue: self.queue.clone(),
        }
    }
}

impl<I, O, E> Batcher<I, O, E>
where
    I: Send + 'static,
    O: Send + 'static,
    E: std::error::Error + Clone + Send + Sync + 'static,
{
    /// Starts the committing task; it ends when the last handle is dropped.
    /// `commit` writes a batch in one transaction and answers one outcome per item, in order.
    pub fn start<F, Fut>(commit: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<O>, E>> + Send,
    {
        let (queue, mut rx) = mpsc::channel::<(I, Reply<O, E>)>(MAX_BATCH * 16);
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let (items, replies): (Vec<I>, Vec<Reply<O, E>>) = batch.drain(..).unzip();
                match commit(items).await {
                    Ok(outcomes) => {
                        for (reply, outcome) in replies.into_iter().zip(outcomes) {
                            let _ = reply.send(Ok(outcome));
                        }
                    }
                    Err(e) => {
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        Batcher { queue }
    }

    /// Returns once the item is committed (or its batch failed).
    pub async fn submit(&self, item: I) -> anyhow::Result<O> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((item, reply))
            .await
            .map_err(|_| anyhow::anyhow!("the batcher has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the batcher dropped a request"))?
            // The error itself, so that callers can tell what failed (a
            // database out of reach is a 503, not a 500).
            .map_err(|e| anyhow::Error::new(e).context("group commit"))
    }
}
