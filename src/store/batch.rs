//! Group commit. A request still waits for its own commit before it answers;
//! requests that arrive while a commit is in flight are written together in the
//! next one, so a busy API does a few large transactions, each with one disk
//! flush, instead of many single-row ones. One committing task per kind of
//! write: measured here, one with larger batches beat two or four with smaller
//! ones (and SQLite has a single writer anyway).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{CodeCheck, CreateOutcome, Finish, PendingMessage, Store, VerificationCache};
use crate::domain::otp::HashKey;
use crate::domain::verification::Verdict;

/// The most items one transaction writes.
const MAX_BATCH: usize = 256;

type Reply<O> = oneshot::Sender<Result<O, String>>;

/// Feeds items to one committing task and hands each caller its own outcome.
pub struct Batcher<I, O> {
    queue: mpsc::Sender<(I, Reply<O>)>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Batcher {
            queue: self.queue.clone(),
        }
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the committing task; it ends when the last handle is dropped.
    /// `commit` writes a batch in one transaction and answers one outcome per item, in order.
    pub fn start<F, Fut>(commit: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<O>, String>> + Send,
    {
        let (queue, mut rx) = mpsc::channel::<(I, Reply<O>)>(MAX_BATCH * 16);
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let (items, replies): (Vec<I>, Vec<Reply<O>>) = batch.drain(..).unzip();
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
            .map_err(|e| anyhow::anyhow!("group commit: {e}"))
    }
}

/// New messages, committed in groups.
pub type MessageWriter = Batcher<PendingMessage, CreateOutcome>;

/// Code checks, decided and committed in groups.
pub type CheckWriter = Batcher<CodeCheck, Verdict>;

/// Submission outcomes, committed in groups.
pub type FinishWriter = Batcher<Finish, bool>;

/// If a group fails, its items are written one by one, so that one bad item
/// cannot hold back the outcomes of messages the carrier already took.
pub fn finish_writer(store: Arc<dyn Store>) -> FinishWriter {
    Batcher::start(move |batch: Vec<Finish>| {
        let store = store.clone();
        async move {
            match store.finish_submits(&batch).await {
                Ok(recorded) => Ok(recorded),
                Err(e) if batch.len() > 1 => {
                    tracing::warn!(error = %e, "a group of outcomes failed; writing them one by one");
                    let mut recorded = Vec::with_capacity(batch.len());
                    for item in batch {
                        recorded.push(match store.finish_submits(std::slice::from_ref(&item)).await {
                            Ok(r) => r[0],
                            Err(e) => {
                                tracing::error!(message_id = %item.id, error = %e, "recording an outcome failed");
                                false
                            }
                        });
                    }
                    Ok(recorded)
                }
                Err(e) => Err(e.to_string()),
            }
        }
    })
}

pub fn message_writer(store: Arc<dyn Store>) -> MessageWriter {
    Batcher::start(move |batch| {
        let store = store.clone();
        async move {
            create_in_rounds(&*store, batch)
                .await
                .map_err(|e| e.to_string())
        }
    })
}

/// Checks codes against their verifications under `key`.
pub fn check_writer(
    store: Arc<dyn Store>,
    key: HashKey,
    cache: Arc<VerificationCache>,
) -> CheckWriter {
    let key = Arc::new(key);
    Batcher::start(move |batch: Vec<CodeCheck>| {
        let (store, key, cache) = (store.clone(), key.clone(), cache.clone());
        async move {
            let judge = move |v: &mut crate::domain::verification::StoredVerification,
                              c: &CodeCheck| {
                v.check(&c.code, c.now, |id, code, hash| {
                    key.code_matches(id, code, hash)
                })
            };
            store
                .check_codes(&batch, &judge, &cache)
                .await
                .map_err(|e| e.to_string())
        }
    })
}

/// `create_messages` wants no two items with one (tenant, key): those that
/// repeat one go in a later round, where they find the first one's record.
async fn create_in_rounds(
    store: &dyn Store,
    batch: Vec<PendingMessage>,
) -> super::Result<Vec<CreateOutcome>> {
    let mut outcomes: Vec<Option<CreateOutcome>> = vec![None; batch.len()];
    let mut left: Vec<(usize, PendingMessage)> = batch.into_iter().enumerate().collect();
    while !left.is_empty() {
        let mut seen = HashSet::new();
        let (now, later): (Vec<_>, Vec<_>) = left.into_iter().partition(|(_, p)| match &p.idem {
            Some(i) => seen.insert((p.message.tenant_id.clone(), i.key.clone())),
            None => true,
        });
        let (slots, items): (Vec<usize>, Vec<PendingMessage>) = now.into_iter().unzip();
        for (slot, outcome) in slots.into_iter().zip(store.create_messages(&items).await?) {
            outcomes[slot] = Some(outcome);
        }
        left = later;
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.expect("every item had a round"))
        .collect())
}
