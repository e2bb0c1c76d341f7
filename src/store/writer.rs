//! SQLite's one writer, fed by group commit.
//!
//! A SQLite file has one write lock. Writers on their own connections met it
//! held and waited in SQLite's busy handler, which sleeps up to 100 ms between
//! tries and serves no one in order: in the side-by-side kit claims waited
//! 1-4 s and the API's p99 reached hundreds of milliseconds. And each writer
//! paid its own flush. Here every write (a request's, a sender's, the
//! receipts', the webhooks', upkeep's) is a job on one connection: jobs take
//! their turn in order, each in its own savepoint inside the group's one
//! transaction, and the group commits (one flush) when no job is waiting to
//! join it, or when it is `MAX_JOBS` jobs or `MAX_OPEN` old. A job's `commit`
//! returns once its group has committed, so a success still means on disk;
//! a job dropped without `commit` is rolled back to its savepoint, alone.
//! Reads run on the pool's other connections and see committed groups.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use tokio::sync::{Mutex, OwnedMutexGuard, watch};

use super::sql::{Db, sql};
use super::{Result, SharedError, StoreError};

/// The most jobs in one commit.
const MAX_JOBS: u32 = 512;
/// How long a group stays open for more jobs while they keep coming.
const MAX_OPEN: Duration = Duration::from_millis(1);
/// How long a job that let its turn go to those behind waits for one of them
/// to commit its group, before it commits the group itself (they went away).
const TAKE_OVER: Duration = Duration::from_millis(50);

pub(super) struct GroupWriter<D: Db> {
    state: Arc<Mutex<State<D>>>,
    /// How many jobs wait for their turn: the last of a run commits.
    queued: AtomicUsize,
    pool: sqlx::Pool<D>,
}

struct State<D: Db> {
    /// The one connection writes go through (taken from the pool when first needed).
    conn: Option<PoolConnection<D>>,
    /// The group whose transaction is open.
    group: Option<Group>,
    /// A job let go without commit: its savepoint is still open, to roll back.
    undo: bool,
    /// The next group's number.
    next: u64,
}

struct Group {
    id: u64,
    jobs: u32,
    opened: Instant,
    /// The commit's outcome, for the jobs that wait on it.
    done: watch::Sender<Option<std::result::Result<(), SharedError>>>,
}

/// One write in its group: a savepoint on the writer's connection, held
/// (with the turn) until `commit` or drop.
pub(super) struct Job<D: Db> {
    writer: Arc<GroupWriter<D>>,
    /// Taken by `commit` (or by drop).
    state: Option<OwnedMutexGuard<State<D>>>,
}

/// Counts a job as waiting for its turn, until dropped (also when its future is).
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::AcqRel);
        Queued(n)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<D: Db> GroupWriter<D> {
    pub(super) fn new(pool: sqlx::Pool<D>) -> Arc<Self> {
        Arc::new(GroupWriter {
            state: Arc::new(Mutex::new(State {
                conn: None,
                group: None,
                undo: false,
                next: 0,
            })),
            queued: AtomicUsize::new(0),
            pool,
        })
    }

    /// Waits for the turn, joins (or opens) the group, opens the job's savepoint.
    pub(super) async fn job(self: &Arc<Self>) -> Result<Job<D>> {
        let mut state = {
            let _queued = Queued::new(&self.queued);
            self.state.clone().lock_owned().await
        };
        let pool = self.pool.clone();
        let (state, ready) = on_own(async move {
            let ready = match state.ready(&pool).await {
                Ok(()) => Ok(()),
                Err(e) => Err(state.fail(e).await),
            };
            (state, ready)
        })
        .await?;
        ready?;
        Ok(Job {
            writer: self.clone(),
            state: Some(state),
        })
    }
}

impl<D: Db> State<D> {
    fn conn(&mut self) -> &mut D::Connection {
        self.conn.as_mut().expect("the writer's connection is open")
    }

    async fn ready(&mut self, pool: &sqlx::Pool<D>) -> Result<()> {
        if self.conn.is_none() {
            self.conn = Some(pool.acquire().await?);
        }
        self.tidy().await?;
        if self.group.is_none() {
            sql::<D>("BEGIN IMMEDIATE").execute(self.conn()).await?;
            self.next += 1;
            self.group = Some(Group {
                id: self.next,
                jobs: 0,
                opened: Instant::now(),
                done: watch::Sender::new(None),
            });
        }
        sql::<D>("SAVEPOINT job").execute(self.conn()).await?;
        self.undo = true;
        Ok(())
    }

    /// Rolls back the savepoint of a job let go without commit.
    async fn tidy(&mut self) -> Result<()> {
        if self.undo {
            sql::<D>("ROLLBACK TO job").execute(self.conn()).await?;
            sql::<D>("RELEASE job").execute(self.conn()).await?;
            self.undo = false;
        }
        Ok(())
    }

    /// Commits the open group (its jobs' waits end with the outcome).
    async fn finish(&mut self) -> Result<()> {
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        let committed = match self.tidy().await {
            Ok(()) => sql::<D>("COMMIT")
                .execute(self.conn())
                .await
                .map(drop)
                .map_err(Arc::new),
            Err(e) => Err(Arc::new(e)),
        };
        if let Err(e) = &committed {
            tracing::error!(error = %e, "SQLite group commit failed; its writes are undone");
            self.reset().await;
        }
        group.done.send_replace(Some(committed.clone()));
        committed.map_err(StoreError::Shared)
    }

    /// After an error outside a job's own statements: the group's writes are
    /// undone and its jobs told why (the same error as the caller's).
    async fn fail(&mut self, e: StoreError) -> StoreError {
        tracing::error!(error = %e, "SQLite writer failed; the open group's writes are undone");
        self.reset().await;
        let shared = Arc::new(e);
        if let Some(group) = self.group.take() {
            group.done.send_replace(Some(Err(shared.clone())));
        }
        StoreError::Shared(shared)
    }

    /// Rolls back whatever is open; a connection that cannot is closed.
    async fn reset(&mut self) {
        self.undo = false;
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if sql::<D>("ROLLBACK").execute(conn).await.is_err()
            && let Some(conn) = self.conn.take()
        {
            let _ = conn.close().await;
        }
    }
}

impl<D: Db> std::ops::Deref for Job<D> {
    type Target = D::Connection;
    fn deref(&self) -> &D::Connection {
        let state = self.state.as_ref().expect("a job holds its turn");
        state
            .conn
            .as_ref()
            .expect("the writer's connection is open")
    }
}

impl<D: Db> std::ops::DerefMut for Job<D> {
    fn deref_mut(&mut self) -> &mut D::Connection {
        self.state.as_mut().expect("a job holds its turn").conn()
    }
}

/// A job let go without commit: its writes are rolled back by the next job;
/// if none waits, its group is finished now (committing the jobs before it),
/// so the file's write lock is not left held.
impl<D: Db> Drop for Job<D> {
    fn drop(&mut self) {
        let Some(mut state) = self.state.take() else {
            return;
        };
        if self.writer.queued.load(Ordering::Acquire) == 0
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move { state.finish().await });
        }
    }
}

impl<D: Db> Job<D> {
    /// Keeps the job's writes; returns once its group has committed.
    pub(super) async fn commit(mut self) -> Result<()> {
        let mut state = self.state.take().expect("a job holds its turn");
        let writer = self.writer.clone();
        drop(self);
        let queued = writer.clone();
        let released = on_own(async move {
            if let Err(e) = sql::<D>("RELEASE job").execute(state.conn()).await {
                return Err(state.fail(e).await);
            }
            state.undo = false;
            let group = state.group.as_mut().expect("a job's group is open");
            group.jobs += 1;
            let last = queued.queued.load(Ordering::Acquire) == 0;
            if last || group.jobs >= MAX_JOBS || group.opened.elapsed() >= MAX_OPEN {
                return state.finish().await.map(|()| None);
            }
            Ok(Some((group.id, group.done.subscribe())))
        })
        .await??;
        let Some((id, mut done)) = released else {
            return Ok(());
        };
        loop {
            let waited = tokio::time::timeout(TAKE_OVER, done.wait_for(Option::is_some))
                .await
                .map(|outcome| outcome.map(|o| o.clone().expect("waited for Some")));
            match waited {
                Ok(Ok(outcome)) => return outcome.map_err(StoreError::Shared),
                // The writer itself went away (the store is closing).
                Ok(Err(_)) => return Err(sqlx::Error::PoolClosed.into()),
                // No one committed it yet (those behind may have gone away):
                // commit it now, if it is still open.
                Err(_) => {
                    let mut state = writer.state.clone().lock_owned().await;
                    if state.group.as_ref().is_some_and(|g| g.id == id) {
                        return on_own(async move { state.finish().await }).await?;
                    }
                }
            }
        }
    }
}

/// Runs `work` in a task of its own: a caller that goes away meanwhile (a
/// request cut short) does not leave the writer's connection half way
/// through a step, out of step with its state.
async fn on_own<T: Send + 'static>(work: impl Future<Output = T> + Send + 'static) -> Result<T> {
    match tokio::spawn(work).await {
        Ok(done) => Ok(done),
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // The runtime is shutting down.
            Err(_) => Err(sqlx::Error::PoolClosed.into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::Sqlite;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

    use super::*;

    /// Jobs from many tasks at once: every committed one is on disk (seen
    /// from another connection) when its commit returns; each dropped one is
    /// undone, alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_job_is_undone_alone_and_the_rest_commit() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::from_str(&format!(
            "sqlite://{}",
            dir.path().join("w.db").display()
        ))
        .unwrap()
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (n INTEGER PRIMARY KEY)")
            .execute(&pool)
            .await
            .unwrap();
        let writer = GroupWriter::<Sqlite>::new(pool.clone());
        let tasks: Vec<_> = (0..200_i64)
            .map(|n| {
                let (writer, pool) = (writer.clone(), pool.clone());
                tokio::spawn(async move {
                    let mut job = writer.job().await.unwrap();
                    sql::<Sqlite>("INSERT INTO t (n) VALUES ($1)")
                        .bind(n)
                        .execute(&mut job)
                        .await
                        .unwrap();
                    if n % 7 == 0 {
                        return;
                    }
                    job.commit().await.unwrap();
                    let seen: Option<i64> = sqlx::query_scalar("SELECT n FROM t WHERE n = $1")
                        .bind(n)
                        .fetch_optional(&pool)
                        .await
                        .unwrap();
                    assert_eq!(
                        seen,
                        Some(n),
                        "committed, yet not seen by another connection"
                    );
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        // The last job may have been a dropped one, finished in a task of its own.
        let mut last = writer.job().await.unwrap();
        sql::<Sqlite>("INSERT INTO t (n) VALUES (1000)")
            .execute(&mut last)
            .await
            .unwrap();
        last.commit().await.unwrap();
        let kept: Vec<i64> = sqlx::query_scalar("SELECT n FROM t WHERE n < 1000 ORDER BY n")
            .fetch_all(&pool)
            .await
            .unwrap();
        let committed: Vec<i64> = (0..200).filter(|n| n % 7 != 0).collect();
        assert_eq!(kept, committed);
    }
}
