//! Idempotency records: written first in the transaction of the effect they
//! guard, so that a reused key writes nothing else.

use async_trait::async_trait;

use super::sql::{Db, sql};
use super::{
    CreateOutcome, IdempotencyRecord, IdempotencyStore, Result, SqlStore, StoreError,
    StoredResponse,
};
use crate::domain::ids::TenantId;
use crate::domain::message::Timestamp;

/// Records a request's key in the transaction on `conn`: `Some` with what the
/// key stored before if it was used, and then nothing else may be written.
pub(super) async fn take_key<D: Db>(
    conn: &mut D::Connection,
    tenant_id: &TenantId,
    idem: Option<&IdempotencyRecord>,
    at: Timestamp,
) -> Result<Option<CreateOutcome>> {
    let Some(i) = idem else { return Ok(None) };
    let inserted = sql::<D>(
        "INSERT INTO idempotency_keys (tenant_id, key, request_hash, status, response, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(tenant_id.as_str())
    .bind(&i.key)
    .bind(&i.response.request_hash)
    .bind(i64::from(i.response.status))
    .bind(&i.response.body)
    .bind(at.millis())
    .execute(conn)
    .await?;
    if inserted == 1 {
        return Ok(None);
    }
    let stored = stored_response::<D>(conn, tenant_id, &i.key)
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(Some(CreateOutcome::Existing(stored)))
}

/// Gives a key back (its request was refused after all, in this transaction).
pub(super) async fn drop_key<D: Db>(
    conn: &mut D::Connection,
    tenant_id: &TenantId,
    key: &str,
) -> Result<()> {
    sql::<D>("DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2")
        .bind(tenant_id.as_str())
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}

/// What an earlier request with this key stored.
pub(super) async fn stored_response<D: Db>(
    conn: &mut D::Connection,
    tenant_id: &TenantId,
    key: &str,
) -> Result<Option<StoredResponse>> {
    let row: Option<(String, i64, String)> = sql::<D>(
        "SELECT request_hash, status, response FROM idempotency_keys \
         WHERE tenant_id = $1 AND key = $2",
    )
    .bind(tenant_id.as_str())
    .bind(key)
    .fetch_optional(conn)
    .await?;
    row.map(|(request_hash, status, body)| {
        Ok(StoredResponse {
            request_hash,
            status: u16::try_from(status).map_err(|_| StoreError::Corrupt("status".into()))?,
            body,
        })
    })
    .transpose()
}

#[async_trait]
impl<D: Db> IdempotencyStore for SqlStore<D> {
    async fn find_idempotency(
        &self,
        tenant_id: &TenantId,
        key: &str,
    ) -> Result<Option<StoredResponse>> {
        stored_response::<D>(&mut *self.conn().await?, tenant_id, key).await
    }
}
