//! Tenants, their API keys, and service-wide settings.

use async_trait::async_trait;

use sqlx::AssertSqlSafe;

use super::rows::{API_KEY_COLUMNS, TENANT_COLUMNS};
use super::sql::{Db, sql};
use super::{ApiKeyInfo, AuthContext, NewApiKey, Result, SqlStore, Tenant, TenantStore};
use crate::domain::ids::{KeyId, TenantId};
use crate::domain::message::Timestamp;

/// Inserts a key (on its own or in a sign-up's transaction).
pub(super) async fn insert_api_key<D: Db>(conn: &mut D::Connection, k: &NewApiKey) -> Result<()> {
    sql::<D>(
        "INSERT INTO api_keys (id, tenant_id, mode, key_hash, hint, name, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(k.id.as_str())
    .bind(k.tenant_id.as_str())
    .bind(k.mode.as_str())
    .bind(&k.key_hash)
    .bind(&k.hint)
    .bind(&k.name)
    .bind(k.created_at.millis())
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl<D: Db> TenantStore for SqlStore<D> {
    async fn count_tenants(&self) -> Result<i64> {
        sql::<D>("SELECT COUNT(*) FROM tenants")
            .fetch_one(&mut *self.conn().await?)
            .await
    }

    async fn create_tenant(&self, id: &TenantId, name: &str, now: Timestamp) -> Result<Tenant> {
        let mut conn = self.write().await?;
        sql::<D>("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(id.as_str())
            .bind(name)
            .bind(now.millis())
            .execute(&mut conn)
            .await?;
        let text = format!("SELECT {TENANT_COLUMNS} FROM tenants t WHERE t.id = $1");
        let tenant = sql::<D>(AssertSqlSafe(text))
            .bind(id.as_str())
            .fetch_one(&mut conn)
            .await?;
        conn.commit().await?;
        Ok(tenant)
    }

    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>> {
        let text = format!("SELECT {TENANT_COLUMNS} FROM tenants t WHERE t.id = $1");
        sql::<D>(AssertSqlSafe(text))
            .bind(id.as_str())
            .fetch_optional(&mut *self.conn().await?)
            .await
    }

    async fn update_tenant(&self, t: &Tenant) -> Result<bool> {
        let done = sql::<D>(
            "UPDATE tenants SET name = $2, allowed_regions = $3, default_sender = $4,                spend_cap_pence = $5 WHERE id = $1",
        )
        .bind(t.id.as_str())
        .bind(&t.name)
        .bind(t.allowed_regions.join(","))
        .bind(t.default_sender.as_ref().map(|s| s.as_str()))
        .bind(t.spend_cap.map(|p| p.0))
        .written(self)
        .await?;
        Ok(done == 1)
    }

    async fn tenant_exists(&self, tenant_id: &TenantId) -> Result<bool> {
        sql::<D>("SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)")
            .bind(tenant_id.as_str())
            .fetch_one(&mut *self.conn().await?)
            .await
    }

    async fn create_api_key(&self, k: &NewApiKey) -> Result<()> {
        let mut w = self.write().await?;
        insert_api_key::<D>(&mut w, k).await?;
        w.commit().await
    }

    async fn list_api_keys(&self, tenant_id: &TenantId) -> Result<Vec<ApiKeyInfo>> {
        let text =
            format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY id DESC");
        sql::<D>(AssertSqlSafe(text))
            .bind(tenant_id.as_str())
            .fetch_all(&mut *self.conn().await?)
            .await
    }

    async fn revoke_api_key(
        &self,
        tenant_id: Option<&TenantId>,
        key_id: &KeyId,
        now: Timestamp,
    ) -> Result<bool> {
        let text = format!(
            "UPDATE api_keys SET revoked_at = $2 \
             WHERE id = $1 AND revoked_at IS NULL AND ({} IS NULL OR tenant_id = $3)",
            D::text(3)
        );
        let revoked = sql::<D>(AssertSqlSafe(text))
            .bind(key_id.as_str())
            .bind(now.millis())
            .bind(tenant_id.map(|t| t.as_str()))
            .written(self)
            .await?;
        Ok(revoked == 1)
    }

    async fn authenticate(&self, key_hash: &str, now: Timestamp) -> Result<Option<AuthContext>> {
        let text = format!(
            "SELECT k.mode, {TENANT_COLUMNS} FROM api_keys k \
             JOIN tenants t ON t.id = k.tenant_id WHERE k.key_hash = $1 AND k.revoked_at IS NULL"
        );
        let found: Option<AuthContext> = sql::<D>(AssertSqlSafe(text))
            .bind(key_hash)
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        if found.is_some() {
            // Callers cache what this answers, so this write runs at most once
            // per key and cache period, and only when the minute has moved on;
            // a key that does not exist costs no write.
            sql::<D>(
                "UPDATE api_keys SET last_used_at = $2 WHERE key_hash = $1 \
                 AND (last_used_at IS NULL OR last_used_at < $3)",
            )
            .bind(key_hash)
            .bind(now.millis())
            .bind(now.millis() - 60_000)
            .written(self)
            .await?;
        }
        Ok(found)
    }

    async fn setting_or_init(&self, key: &str, value: &str) -> Result<String> {
        let mut conn = self.write().await?;
        sql::<D>("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&mut conn)
            .await?;
        let value = sql::<D>("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_one(&mut conn)
            .await?;
        conn.commit().await?;
        Ok(value)
    }
}
