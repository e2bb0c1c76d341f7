//! Group commit. A request still waits for its own commit before it answers;
//! requests that arrive while a commit is in flight are written together in the
//! next one, so a busy API does a few large transactions, each with one disk
//! flush, instead of many single-row ones. One committing task per kind of
//! write: measured here, one with larger batches beat two or four with smaller
//! ones (and SQLite has a single writer anyway). How many items at most one
//! transaction writes is the store's (`Maintenance::group_limit`).

use std::collections::HashSet;
use std::future::Future;
use std::hash::Hash;

use tokio::sync::{mpsc, oneshot};

/// How many items may wait for their turn before `submit` itself waits.
const QUEUE: usize = 4096;

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
    /// `commit` writes a batch of at most `limit` items in one transaction
    /// and answers one outcome per item, in order.
    pub fn start<F, Fut>(limit: usize, commit: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<O>, E>> + Send,
    {
        Self::start_each(limit, move |items: Vec<I>| {
            let n = items.len();
            let written = commit(items);
            async move {
                match written.await {
                    Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
                    Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
                }
            }
        })
    }

    /// As `start`, for a `commit` that may write a batch in parts (`in_rounds`)
    /// and answers each item with its own part's outcome or error.
    pub fn start_each<F, Fut>(limit: usize, commit: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<Result<O, E>>> + Send,
    {
        let (queue, mut rx) = mpsc::channel::<(I, Reply<O, E>)>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while rx.recv_many(&mut batch, limit.max(1)).await > 0 {
                let (items, replies): (Vec<I>, Vec<Reply<O, E>>) = batch.drain(..).unzip();
                for (reply, outcome) in replies.into_iter().zip(commit(items).await) {
                    let _ = reply.send(outcome);
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

/// Writes a batch in rounds, in none of which two items share a key (`keys`
/// gives an item's): an item that repeats one goes in a later round, where it
/// finds the earlier one written. Answers per item, in the batch's order: a
/// round that fails answers its items and those of every later round with
/// its error, and the rounds before it keep their outcomes (they committed).
pub async fn in_rounds<I, O, K, E, F, Fut>(
    batch: Vec<I>,
    keys: impl Fn(&I) -> Vec<K>,
    mut write: F,
) -> Vec<Result<O, E>>
where
    K: Eq + Hash,
    E: Clone,
    F: FnMut(Vec<I>) -> Fut,
    Fut: Future<Output = Result<Vec<O>, E>>,
{
    let mut outcomes: Vec<Option<Result<O, E>>> = batch.iter().map(|_| None).collect();
    let mut left: Vec<(usize, I)> = batch.into_iter().enumerate().collect();
    while !left.is_empty() {
        let mut seen = HashSet::new();
        let (now, later): (Vec<_>, Vec<_>) = left.into_iter().partition(|(_, item)| {
            let keys = keys(item);
            let free = keys.iter().all(|k| !seen.contains(k));
            if free {
                seen.extend(keys);
            }
            free
        });
        let (slots, items): (Vec<usize>, Vec<I>) = now.into_iter().unzip();
        match write(items).await {
            Ok(written) => {
                for (slot, outcome) in slots.into_iter().zip(written) {
                    outcomes[slot] = Some(Ok(outcome));
                }
            }
            Err(e) => {
                for slot in slots.into_iter().chain(later.iter().map(|(slot, _)| *slot)) {
                    outcomes[slot] = Some(Err(e.clone()));
                }
                break;
            }
        }
        left = later;
    }
    outcomes
        .into_iter()
        .map(|o| o.expect("every item had a round"))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::{Batcher, in_rounds};

    #[derive(Debug, Clone)]
    struct Never;
    impl std::fmt::Display for Never {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("never")
        }
    }
    impl std::error::Error for Never {}

    #[tokio::test]
    async fn items_waiting_together_are_committed_in_groups_of_at_most_the_limit() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (s, g) = (sizes.clone(), gate.clone());
        let batcher = Batcher::start(2, move |items: Vec<u32>| {
            let (s, g) = (s.clone(), g.clone());
            async move {
                s.lock().unwrap().push(items.len());
                // Each commit waits for the gate: the others queue behind it.
                g.acquire().await.unwrap().forget();
                Ok::<_, Never>(items.iter().map(|i| i * 10).collect())
            }
        });
        let submits: Vec<_> = (0..7)
            .map(|i| {
                let b = batcher.clone();
                tokio::spawn(async move { b.submit(i).await.unwrap() })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        gate.add_permits(100);
        let mut answers = Vec::new();
        for s in submits {
            answers.push(s.await.unwrap());
        }
        assert_eq!(answers, vec![0, 10, 20, 30, 40, 50, 60]);
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 7, "{sizes:?}");
        assert!(sizes.iter().all(|&n| n <= 2), "{sizes:?}");
        assert!(sizes.contains(&2), "those waiting go together: {sizes:?}");
    }

    #[tokio::test]
    async fn items_that_share_a_key_go_in_later_rounds_and_answer_in_order() {
        let mut rounds = Vec::new();
        let batch = vec![(1, 'a'), (2, 'b'), (3, 'a'), (4, 'c'), (5, 'a')];
        let answers = in_rounds(
            batch,
            |&(_, k)| vec![k],
            |items: Vec<(i32, char)>| {
                rounds.push(items.iter().map(|i| i.0).collect::<Vec<_>>());
                async move { Ok::<_, ()>(items.iter().map(|i| i.0 * 10).collect()) }
            },
        )
        .await;
        assert_eq!(answers, vec![Ok(10), Ok(20), Ok(30), Ok(40), Ok(50)]);
        assert_eq!(rounds, vec![vec![1, 2, 4], vec![3], vec![5]]);
    }

    #[tokio::test]
    async fn a_failed_round_leaves_the_rounds_before_it_answered() {
        let batch = vec![(1, 'a'), (2, 'b'), (3, 'a'), (4, 'a')];
        let mut round = 0;
        let answers = in_rounds(
            batch,
            |&(_, k)| vec![k],
            |items: Vec<(i32, char)>| {
                round += 1;
                let fails = round == 2;
                async move {
                    if fails {
                        Err("round 2")
                    } else {
                        Ok(items.iter().map(|i| i.0).collect())
                    }
                }
            },
        )
        .await;
        assert_eq!(answers, vec![Ok(1), Ok(2), Err("round 2"), Err("round 2")]);
        assert_eq!(round, 2, "no round after the one that failed");
    }
}
