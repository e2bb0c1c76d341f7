//! Tenants, their API keys, and service-wide settings.

use async_trait::async_trait;

use sqlx::AssertSqlSafe;

use super::rows::TENANT_COLUMNS;
use super::sql::{Db, sql};
use super::{AuthContext, NewApiKey, Result, SqlStore, Tenant, TenantStore};
use crate::domain::ids::{KeyId, TenantId};
use crate::domain::message::Timestamp;

#[async_trait]
impl<D: Db> TenantStore for SqlStore<D> {
    async fn count_tenants(&self) -> Result<i64> {
        sql::<D>("SELECT COUNT(*) FROM tenants")
            .fetch_one(&mut *self.conn().await?)
            .await
    }

    async fn create_tenant(&self, id: &TenantId, name: &str, now: Timestamp) -> Result<Tenant> {
        let mut conn = self.conn().await?;
        sql::<D>("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(id.as_str())
            .bind(name)
            .bind(now.millis())
            .execute(&mut conn)
            .await?;
        let text = format!("SELECT {TENANT_COLUMNS} FROM tenants t WHERE t.id = $1");
        sql::<D>(AssertSqlSafe(text))
            .bind(id.as_str())
            .fetch_one(&mut conn)
            .await
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
        .execute(&mut *self.conn().await?)
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
        sql::<D>(
            "INSERT INTO api_keys (id, tenant_id, mode, key_hash, hint, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(k.id.as_str())
        .bind(k.tenant_id.as_str())
        .bind(k.mode.as_str())
        .bind(&k.key_hash)
        .bind(&k.hint)
        .bind(k.created_at.millis())
        .execute(&mut *self.conn().await?)
        .await?;
        Ok(())
    }

    async fn revoke_api_key(&self, key_id: &KeyId, now: Timestamp) -> Result<bool> {
        let revoked =
            sql::<D>("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(key_id.as_str())
                .bind(now.millis())
                .execute(&mut *self.conn().await?)
                .await?;
        Ok(revoked == 1)
    }

    async fn authenticate(&self, key_hash: &str) -> Result<Option<AuthContext>> {
        let text = format!(
            "SELECT k.id, k.mode, {TENANT_COLUMNS} FROM api_keys k \
             JOIN tenants t ON t.id = k.tenant_id WHERE k.key_hash = $1 AND k.revoked_at IS NULL"
        );
        sql::<D>(AssertSqlSafe(text))
            .bind(key_hash)
            .fetch_optional(&mut *self.conn().await?)
            .await
    }

    async fn setting_or_init(&self, key: &str, value: &str) -> Result<String> {
        let mut conn = self.conn().await?;
        sql::<D>("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&mut conn)
            .await?;
        sql::<D>("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_one(&mut conn)
            .await
    }
}
