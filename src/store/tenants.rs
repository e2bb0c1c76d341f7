//! Tenants, their API keys, and service-wide settings.

use async_trait::async_trait;

use super::sql::{Db, sql};
use super::{AuthContext, NewApiKey, Result, SqlStore, Tenant, TenantStore};
use crate::domain::Mode;
use crate::domain::ids::{KeyId, TenantId};
use crate::domain::message::Timestamp;

/// A tenant's allowed regions as stored: comma-separated ISO codes.
fn regions(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect()
}

#[async_trait]
impl<D: Db> TenantStore for SqlStore<D> {
    async fn count_tenants(&self) -> Result<i64> {
        sql::<D>("SELECT COUNT(*) FROM tenants")
            .fetch_one(&mut *self.conn().await?)
            .await
    }

    async fn create_tenant(&self, id: &TenantId, name: &str, now: Timestamp) -> Result<Tenant> {
        let allowed: String = sql::<D>(
            "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) \
             RETURNING allowed_regions",
        )
        .bind(id.as_str())
        .bind(name)
        .bind(now.millis())
        .fetch_one(&mut *self.conn().await?)
        .await?;
        Ok(Tenant {
            id: id.clone(),
            name: name.into(),
            allowed_regions: regions(&allowed),
        })
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
        let row: Option<(KeyId, String, TenantId, String, String)> = sql::<D>(
            "SELECT k.id, k.mode, t.id, t.name, t.allowed_regions FROM api_keys k \
             JOIN tenants t ON t.id = k.tenant_id WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(&mut *self.conn().await?)
        .await?;
        Ok(row.and_then(|(key_id, mode, id, name, allowed)| {
            Some(AuthContext {
                key_id,
                mode: Mode::parse(&mode)?,
                tenant: Tenant {
                    id,
                    name,
                    allowed_regions: regions(&allowed),
                },
            })
        }))
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
