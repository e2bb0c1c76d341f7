//! What shared queries need of a backend: binding and reading our few column
//! types, running a statement on a connection, and the SQL that differs.
//!
//! sqlx's own bounds (`T: Encode<DB>`, `&mut DB::Connection: Executor`) are not
//! implied by a trait, so generic code would repeat them on every function.
//! Here they are stated once, as supertraits of [`Db`], and every shared query
//! is a plain generic function over `D: Db`, written once for both backends.

use std::collections::HashMap;
use std::future::Future;

use sqlx::database::HasStatementCache;
use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, Row, Type};

use super::Result;
use super::records::{IdempotencyRecord, NewMessage, StoredResponse};
use crate::domain::ids::{
    DeliveryId, EndpointId, InviteId, KeyId, MessageId, NumberId, TenantId, UserId, VerificationId,
};
use crate::domain::message::Timestamp;
use crate::domain::verification::StoredVerification;

/// A statement with its arguments, for backend `D`.
pub type Statement<D> = Query<'static, D, <D as Database>::Arguments>;

/// A value a statement can bind.
pub trait Bind<T>: Database {
    fn bind(q: Statement<Self>, value: T) -> Statement<Self>;
}

impl<'t, D: Database, T> Bind<T> for D
where
    T: Encode<'t, D> + Type<D>,
{
    fn bind(q: Statement<D>, value: T) -> Statement<D> {
        q.bind(value)
    }
}

/// A value a row's column can be read as.
pub trait Get<T>: Database {
    fn get(row: &Self::Row, index: usize) -> Result<T>;
}

impl<D: Database, T> Get<T> for D
where
    T: for<'r> Decode<'r, D> + Type<D>,
    usize: ColumnIndex<D::Row>,
{
    fn get(row: &D::Row, index: usize) -> Result<T> {
        Ok(row.try_get(index)?)
    }
}

/// A backend: PostgreSQL or SQLite.
pub trait Db:
    Database<Arguments: sqlx::IntoArguments<Self>>
    + HasStatementCache
    + Bind<i64>
    + Bind<bool>
    + Bind<String>
    + Bind<Option<i64>>
    + Bind<Option<String>>
    + for<'a> Bind<&'a str>
    + for<'a> Bind<&'a String>
    + for<'a> Bind<Option<&'a str>>
    + for<'a> Bind<&'a Option<String>>
    + Get<i64>
    + Get<bool>
    + Get<String>
    + Get<Option<i64>>
    + Get<Option<String>>
    + Get<TenantId>
    + Get<KeyId>
    + Get<MessageId>
    + Get<VerificationId>
    + Get<EndpointId>
    + Get<DeliveryId>
    + Get<NumberId>
    + Get<UserId>
    + Get<InviteId>
{
    /// Every file of the backend's migrations folder, in order: (version, name, SQL).
    const MIGRATIONS: &'static [(i64, &'static str, &'static str)];
    /// Brings the schema up to date (`MIGRATIONS`), free of the time limits
    /// ordinary statements have: a migration may take longer.
    fn migrate(pool: &sqlx::Pool<Self>) -> impl Future<Output = Result<()>> + Send;

    fn executor<'c>(conn: &'c mut Self::Connection) -> impl Executor<'c, Database = Self>;
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// SQL for a table `u` of `columns` (name, SQL type) read from the JSON
    /// array of objects bound as `$param`.
    fn json_rows(param: u8, columns: &[(&str, &str)]) -> String;
    /// `= ANY (…)` / `IN (…)` the `column` values of the JSON array bound as
    /// `$param`, spelled so that the keys are looked up in their index.
    fn json_keys(param: u8, column: &str) -> String;
    /// A text parameter where its type must be stated (`$2::text IS NULL`).
    fn text(param: u8) -> String;
    /// How a write transaction starts.
    const BEGIN: &'static str;
    /// " FOR UPDATE" where the backend locks rows, else "".
    const LOCK: &'static str;
    /// How the receipts applier claims stored receipts `r` (" FOR UPDATE OF r
    /// SKIP LOCKED": appliers pass each other by), else "".
    const CLAIM_RECEIPTS: &'static str;
    /// Whether a queue claim first reads whether anything is due, and writes
    /// only then. SQLite: every write takes a turn at the one writer (see
    /// `writer`), even one that changes no row, and the idle claims of the
    /// senders, the dispatcher and the receipt appliers would keep the API's
    /// writes waiting; a read runs beside it. PostgreSQL: no (its claims
    /// skip locked rows).
    const LOOK_FIRST: bool;

    /// Inserts queued messages (their first status at `created_at`); on
    /// PostgreSQL in one statement, so atomic even outside a transaction.
    fn insert_messages(
        conn: &mut Self::Connection,
        batch: &[&NewMessage],
    ) -> impl Future<Output = Result<()>> + Send;
    /// The most items one group commit writes (`Maintenance::group_limit`).
    const GROUP_LIMIT: usize;
    /// Inserts one tenant's priced messages of one month (one cap) with their
    /// charges, atomically and in one round trip, if all fit under the cap;
    /// false (nothing written) if not.
    fn insert_charged(
        conn: &mut Self::Connection,
        batch: &[&NewMessage],
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Records a batch's idempotency keys in the transaction on `conn`, in the
    /// backend's best way: `Some` with what a key stored before, per item
    /// (each a message to write and its record, if it has a key).
    fn take_keys(
        conn: &mut Self::Connection,
        batch: &[(&NewMessage, Option<&IdempotencyRecord>)],
    ) -> impl Future<Output = Result<Vec<Option<StoredResponse>>>> + Send;
    /// "FOR UPDATE SKIP LOCKED" where claimers can pass each other by, else "".
    const SKIP_LOCKED: &'static str;
    /// Which sandbox receipts are due at `$1`, spelled for the backend's index.
    const SANDBOX_DUE: &'static str;
    /// Marks due sandbox receipts taken; their (message id, status).
    fn take_sandbox_receipts(
        conn: &mut Self::Connection,
        now: Timestamp,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<(MessageId, String)>>> + Send;
    /// The first step of starting verifications, in the transaction on
    /// `conn`: makes starts for one (tenant, number) take turns (PostgreSQL;
    /// SQLite has one writer), and locks the rate counters `keys`, creating
    /// those never seen; their theoretical arrival times.
    fn lock_starts(
        conn: &mut Self::Connection,
        numbers: &[(&TenantId, &str)],
        keys: &[&str],
    ) -> impl Future<Output = Result<HashMap<String, i64>>> + Send;
    /// The last step: sets the counters' times, cancels the pending
    /// verification of each started one's number, and inserts the messages
    /// and the verifications.
    fn write_starts(
        conn: &mut Self::Connection,
        tats: &[(String, i64)],
        messages: &[&NewMessage],
        started: &[&StoredVerification],
    ) -> impl Future<Output = Result<()>> + Send;
}

/// A statement being built for backend `D`.
pub struct Sql<D: Db>(Statement<D>);

/// Starts a statement; a `format!`ed one must say `sqlx::AssertSqlSafe`.
pub fn sql<D: Db>(text: impl sqlx::SqlSafeStr) -> Sql<D> {
    Sql(sqlx::query(text))
}

impl<D: Db> Sql<D> {
    pub fn bind<T>(self, value: T) -> Self
    where
        D: Bind<T>,
    {
        Sql(D::bind(self.0, value))
    }

    /// Plans the statement anew on each run instead of caching a plan: the
    /// worker's batch statements over messages and their parts, because a plan
    /// cached while a table was nearly empty went on scanning all of it once
    /// it had grown (seen here: 800 ms a batch at 300k parts).
    pub fn unprepared(self) -> Self {
        Sql(self.0.persistent(false))
    }

    /// Runs it; how many rows it changed.
    pub async fn execute(self, conn: &mut D::Connection) -> Result<u64> {
        let done = self.0.execute(D::executor(conn)).await?;
        Ok(D::rows_affected(&done))
    }

    pub async fn fetch_all<T: FromRow<D>>(self, conn: &mut D::Connection) -> Result<Vec<T>> {
        let rows = self.0.fetch_all(D::executor(conn)).await?;
        rows.iter().map(T::from_row).collect()
    }

    pub async fn fetch_optional<T: FromRow<D>>(
        self,
        conn: &mut D::Connection,
    ) -> Result<Option<T>> {
        let row = self.0.fetch_optional(D::executor(conn)).await?;
        row.as_ref().map(T::from_row).transpose()
    }

    /// Runs it (a `SELECT 1 … LIMIT 1`); whether it found a row.
    pub async fn finds(self, conn: &mut D::Connection) -> Result<bool> {
        Ok(self.fetch_optional::<i64>(conn).await?.is_some())
    }

    pub async fn fetch_one<T: FromRow<D>>(self, conn: &mut D::Connection) -> Result<T> {
        T::from_row(&self.0.fetch_one(D::executor(conn)).await?)
    }
}

/// What a row is read as: a column value, a tuple of them, or a record.
pub trait FromRow<D: Database>: Sized {
    fn from_row(row: &D::Row) -> Result<Self>;
}

/// A row, read column by column.
pub struct Columns<'r, D: Database>(pub &'r D::Row);

impl<D: Database> Columns<'_, D> {
    pub fn get<T>(&self, index: usize) -> Result<T>
    where
        D: Get<T>,
    {
        D::get(self.0, index)
    }
}

macro_rules! scalar_from_row {
    ($($t:ty),*) => {$(
        impl<D: Db> FromRow<D> for $t {
            fn from_row(row: &D::Row) -> Result<Self> {
                Columns::<D>(row).get(0)
            }
        }
    )*};
}
scalar_from_row!(
    i64,
    bool,
    String,
    Option<i64>,
    Option<String>,
    TenantId,
    VerificationId,
    DeliveryId
);

/// Ids are stored as text and read back as their type.
macro_rules! id_columns {
    ($($t:ty),*) => {$(
        impl<D: Database> Type<D> for $t
        where
            String: Type<D>,
        {
            fn type_info() -> D::TypeInfo {
                <String as Type<D>>::type_info()
            }

            fn compatible(ty: &D::TypeInfo) -> bool {
                <String as Type<D>>::compatible(ty)
            }
        }

        impl<'r, D: Database> Decode<'r, D> for $t
        where
            String: Decode<'r, D>,
        {
            fn decode(value: D::ValueRef<'r>) -> std::result::Result<Self, sqlx::error::BoxDynError> {
                Ok(<$t>::from(String::decode(value)?))
            }
        }
    )*};
}
id_columns!(
    TenantId,
    KeyId,
    MessageId,
    VerificationId,
    EndpointId,
    DeliveryId,
    NumberId,
    UserId,
    InviteId
);

macro_rules! tuple_from_row {
    ($($t:ident $i:tt),+) => {
        impl<D: Database, $($t),+> FromRow<D> for ($($t,)+)
        where
            $(D: Get<$t>),+
        {
            fn from_row(row: &D::Row) -> Result<Self> {
                let r = Columns::<D>(row);
                Ok(($(r.get::<$t>($i)?,)+))
            }
        }
    };
}
tuple_from_row!(A 0, B 1);
tuple_from_row!(A 0, B 1, C 2);
tuple_from_row!(A 0, B 1, C 2, E 3);
tuple_from_row!(A 0, B 1, C 2, E 3, F 4);
tuple_from_row!(A 0, B 1, C 2, E 3, F 4, G 5);

/// A tenant's row of `table` by id, read as `T` from `columns`: another
/// tenant's row is not found (the API answers 404, never 403).
pub async fn find_owned<D: Db, T: FromRow<D>>(
    conn: &mut D::Connection,
    columns: &str,
    table: &str,
    tenant_id: &TenantId,
    id: &str,
) -> Result<Option<T>> {
    let text = format!("SELECT {columns} FROM {table} WHERE tenant_id = $1 AND id = $2");
    sql::<D>(sqlx::AssertSqlSafe(text))
        .bind(tenant_id.as_str())
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// A JSON array of objects, bound as one text parameter for `json_rows`/`json_keys`.
pub fn json_param(rows: Vec<serde_json::Value>) -> String {
    serde_json::Value::from(rows).to_string()
}
