//! SQLite's one writer, fed by group commit.
//!
//! A SQLite file has one write lock. Writers on their own connections met it
//! held and waited in SQLite's busy handler, which sleeps up to 100 ms between
//! tries and serves no one in order: in the side-by-side kit claims waited
//! 1-4 s and the API's p99 reached hundreds of milliseconds. And each writer
//! paid its own flush. Here every write (a request's, a sender's, the
//! receipts', the webhooks', upkeep's) is a job on one connection: jobs take
//! their turn in order, each inside the group's one transaction (those after
//! the first in a savepoint of their own), and the group commits (one flush)
//! when no job is waiting to join it, or when it is `MAX_JOBS` jobs or
//! `MAX_OPEN` old. A job's `commit` returns once its group has committed, so
//! a success still means on disk (a queue claim's excepted: `Flush::Later`);
//! a job dropped without `commit` is rolled back, alone. A request's job
//! (`Turn::Request`: someone waits on it for an answer) goes ahead of the
//! pipeline's queued jobs, and commits its group as soon as no other
//! request's job waits to join it; the pipeline's pass one at a time into
//! the queue, so a request waits behind at most the job that holds the
//! writer and one of theirs. Each statement is a
//! round trip to the connection's thread, which the jobs behind wait for, so
//! the writer's own statements are merged where they can be. Reads run on
//! the pool's other connections and see committed groups.

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
    /// How many of them are requests': a request's job commits its group
    /// when none is (it does not wait for the pipeline's).
    requests: AtomicUsize,
    /// The pipeline's jobs queue for the turn through here, one at a time.
    pipeline: Mutex<()>,
    pool: sqlx::Pool<D>,
}

/// Who waits on a job: a request's goes ahead of the pipeline's.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(super) enum Turn {
    /// A request waits on it for its answer.
    Request,
    /// The pipeline's (sends, receipts, webhooks, upkeep): it can wait.
    Pipeline,
}

struct State<D: Db> {
    /// The one connection writes go through (taken from the pool when first needed).
    conn: Option<PoolConnection<D>>,
    /// The group whose transaction is open.
    group: Option<Group>,
    /// What a job let go without commit left open, to roll back.
    undo: Undo,
    /// The next group's number.
    next: u64,
    /// The connection's `synchronous` setting, when known.
    level: Option<Flush>,
}

/// When a job's commit reaches the disk.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(super) enum Flush {
    /// Before its commit returns: what a success promises.
    Now,
    /// With the next group that flushes: a queue claim, whose loss in a crash
    /// leaves its rows unclaimed, as they were. Its group holds it alone and
    /// commits without a flush (`synchronous = NORMAL`, which in WAL mode
    /// still keeps each commit whole); the next group's flush takes its WAL
    /// frames to the disk with its own. A claim that finds a group open
    /// joins it, and is flushed with it.
    Later,
}

/// What rolls back a job's writes. The first job of a group needs no
/// savepoint: the group's own transaction holds nothing else. So a job alone
/// in its group costs two statements besides its own, BEGIN and COMMIT.
#[derive(Clone, Copy, PartialEq)]
enum Undo {
    Nothing,
    Savepoint,
    Group,
}

struct Group {
    id: u64,
    flush: Flush,
    jobs: u32,
    opened: Instant,
    /// The commit's outcome, for the jobs that wait on it.
    done: watch::Sender<Option<std::result::Result<(), SharedError>>>,
}

/// One write in its group: a savepoint on the writer's connection, held
/// (with the turn) until `commit` or drop.
pub(super) struct Job<D: Db> {
    writer: Arc<GroupWriter<D>>,
    turn: Turn,
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
                undo: Undo::Nothing,
                next: 0,
                level: None,
            })),
            queued: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            pipeline: Mutex::new(()),
            pool,
        })
    }

    /// Waits for the turn, joins (or opens) the group, opens the job's savepoint.
    pub(super) async fn job(self: &Arc<Self>, flush: Flush, turn: Turn) -> Result<Job<D>> {
        let mut state = {
            let _queued = Queued::new(&self.queued);
            match turn {
                Turn::Request => {
                    let _request = Queued::new(&self.requests);
                    self.state.clone().lock_owned().await
                }
                Turn::Pipeline => {
                    let _one_at_a_time = self.pipeline.lock().await;
                    self.state.clone().lock_owned().await
                }
            }
        };
        let pool = self.pool.clone();
        let (state, ready) = on_own(async move {
            let ready = match state.ready(&pool, flush).await {
                Ok(()) => Ok(()),
                Err(e) => Err(state.fail(e).await),
            };
            (state, ready)
        })
        .await?;
        ready?;
        Ok(Job {
            writer: self.clone(),
            turn,
            state: Some(state),
        })
    }
}

impl<D: Db> State<D> {
    fn conn(&mut self) -> &mut D::Connection {
        self.conn.as_mut().expect("the writer's connection is open")
    }

    async fn ready(&mut self, pool: &sqlx::Pool<D>, flush: Flush) -> Result<()> {
        if self.conn.is_none() {
            self.conn = Some(pool.acquire().await?);
            self.level = None;
        }
        self.tidy().await?;
        if let Some(group) = &self.group {
            debug_assert_eq!(
                group.flush,
                Flush::Now,
                "a group without flush holds one job"
            );
            sql::<D>("SAVEPOINT job").execute(self.conn()).await?;
            self.undo = Undo::Savepoint;
            return Ok(());
        }
        let begin = match (self.level == Some(flush), flush) {
            (true, _) => "BEGIN IMMEDIATE",
            (false, Flush::Now) => "PRAGMA synchronous = FULL; BEGIN IMMEDIATE",
            (false, Flush::Later) => "PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE",
        };
        self.level = None;
        sql::<D>(begin).execute(self.conn()).await?;
        self.level = Some(flush);
        self.next += 1;
        self.group = Some(Group {
            id: self.next,
            flush,
            jobs: 0,
            opened: Instant::now(),
            done: watch::Sender::new(None),
        });
        self.undo = Undo::Group;
        Ok(())
    }

    /// Rolls back the writes of a job let go without commit (with its group,
    /// if it was the first: nothing else is in it, and no one waits on it).
    async fn tidy(&mut self) -> Result<()> {
        match self.undo {
            Undo::Nothing => {}
            Undo::Savepoint => {
                sql::<D>("ROLLBACK TO job; RELEASE job")
                    .execute(self.conn())
                    .await?;
            }
            Undo::Group => {
                sql::<D>("ROLLBACK").execute(self.conn()).await?;
                self.group = None;
            }
        }
        self.undo = Undo::Nothing;
        Ok(())
    }

    /// Commits the open group (its jobs' waits end with the outcome) with
    /// `commit`: COMMIT, after the last job's RELEASE if it has a savepoint.
    async fn finish(&mut self, commit: &'static str) -> Result<()> {
        let tidied = self.tidy().await;
        let Some(group) = self.group.take() else {
            return tidied;
        };
        let committed = match tidied {
            Ok(()) => sql::<D>(commit)
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
        self.undo = Undo::Nothing;
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
            runtime.spawn(async move { state.finish("COMMIT").await });
        }
    }
}

impl<D: Db> Job<D> {
    /// Keeps the job's writes; returns once its group has committed.
    pub(super) async fn commit(mut self) -> Result<()> {
        let mut state = self.state.take().expect("a job holds its turn");
        let writer = self.writer.clone();
        let turn = self.turn;
        drop(self);
        let queued = writer.clone();
        let released = on_own(async move {
            let savepoint = std::mem::replace(&mut state.undo, Undo::Nothing) == Undo::Savepoint;
            let group = state.group.as_mut().expect("a job's group is open");
            group.jobs += 1;
            let behind = match turn {
                Turn::Request => &queued.requests,
                Turn::Pipeline => &queued.queued,
            };
            let last = behind.load(Ordering::Acquire) == 0 || group.flush == Flush::Later;
            if last || group.jobs >= MAX_JOBS || group.opened.elapsed() >= MAX_OPEN {
                let commit = if savepoint {
                    "RELEASE job; COMMIT"
                } else {
                    "COMMIT"
                };
                return state.finish(commit).await.map(|()| None);
            }
            let (id, done) = (group.id, group.done.subscribe());
            if savepoint && let Err(e) = sql::<D>("RELEASE job").execute(state.conn()).await {
                return Err(state.fail(e).await);
            }
            Ok(Some((id, done)))
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
                        return on_own(async move { state.finish("COMMIT").await }).await?;
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

    async fn pool(dir: &tempfile::TempDir) -> sqlx::SqlitePool {
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
        pool
    }

    /// Waits until `n` jobs are queued for the turn, `requests` of them requests'.
    async fn until_queued<D: Db>(writer: &GroupWriter<D>, n: usize, requests: usize) {
        while writer.queued.load(Ordering::Acquire) != n
            || writer.requests.load(Ordering::Acquire) != requests
        {
            tokio::task::yield_now().await;
        }
    }

    /// Three pipeline jobs wait behind a fourth when a request's comes: it
    /// goes after the one of them already in line for the turn, before the
    /// other two.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_goes_ahead_of_the_pipeline() {
        let dir = tempfile::tempdir().unwrap();
        let writer = GroupWriter::<Sqlite>::new(pool(&dir).await);
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let first = writer.job(Flush::Now, Turn::Pipeline).await.unwrap();
        let spawn = |name: &'static str, turn: Turn| {
            let (writer, order) = (writer.clone(), order.clone());
            tokio::spawn(async move {
                let job = writer.job(Flush::Now, turn).await.unwrap();
                order.lock().unwrap().push(name);
                job.commit().await.unwrap();
            })
        };
        let mut tasks = Vec::new();
        for (i, name) in ["b", "c", "d"].into_iter().enumerate() {
            tasks.push(spawn(name, Turn::Pipeline));
            until_queued(&writer, i + 1, 0).await;
        }
        tasks.push(spawn("request", Turn::Request));
        until_queued(&writer, 4, 1).await;
        first.commit().await.unwrap();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["b", "request", "c", "d"]);
    }

    /// Jobs from many tasks at once, some of them claims (`Flush::Later`):
    /// every committed one is seen from another connection when its commit
    /// returns; each dropped one is undone, alone; and a job that must be
    /// flushed never runs in a group that commits without its flush.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_job_is_undone_alone_and_the_rest_commit() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(&dir).await;
        let writer = GroupWriter::<Sqlite>::new(pool.clone());
        let tasks: Vec<_> = (0..200_i64)
            .map(|n| {
                let (writer, pool) = (writer.clone(), pool.clone());
                tokio::spawn(async move {
                    let flush = if n % 3 == 0 { Flush::Later } else { Flush::Now };
                    let mut job = writer.job(flush, Turn::Request).await.unwrap();
                    sql::<Sqlite>("INSERT INTO t (n) VALUES ($1)")
                        .bind(n)
                        .execute(&mut job)
                        .await
                        .unwrap();
                    // 2 is FULL (a flush at each commit), 1 NORMAL.
                    let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
                        .fetch_one(&mut *job)
                        .await
                        .unwrap();
                    if flush == Flush::Now {
                        assert_eq!(level, 2, "job {n} is in a group that does not flush");
                    }
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
        // Alone, a claim commits without its flush; the next job flushes again.
        for (flush, want) in [(Flush::Later, 1), (Flush::Now, 2)] {
            let mut job = writer.job(flush, Turn::Request).await.unwrap();
            let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut *job)
                .await
                .unwrap();
            assert_eq!(level, want, "{flush:?}");
            job.commit().await.unwrap();
        }
        // The last job may have been a dropped one, finished in a task of its own.
        let mut last = writer.job(Flush::Now, Turn::Request).await.unwrap();
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
