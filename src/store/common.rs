//! Queries that are the same on both backends (sqlx takes `$N` placeholders on
//! SQLite too), written once and stamped out for each backend's types.

macro_rules! shared_queries {
    // `$rows(param, columns)`: SQL for a table `u` read from a JSON array of
    // objects bound as `$param` (each backend spells it its own way);
    // `$keys(param, column)`: `IN` that table's `column`, looked up by index;
    // the worker's batch statements over messages and their parts run
    // unprepared (`persistent(false)`), so that PostgreSQL plans each for the
    // tables' current size: a cached plan made while a table was nearly empty
    // went on scanning all of it once it had grown (seen here: 800 ms a batch
    // at 300k parts);
    // `$lock`: " FOR UPDATE" where the backend locks rows (PostgreSQL), else "";
    // `$claim_receipts`: how the receipts query claims its rows `r` there
    // (" FOR UPDATE OF r SKIP LOCKED": appliers pass each other by), else "".
    ($db:ty, $rows:path, $keys:path, $lock:expr, $claim_receipts:expr) => {
    pub(super) async fn count_tenants(pool: &sqlx::Pool<$db>) -> Result<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM tenants")
            .fetch_one(pool)
            .await
    }

    pub(super) async fn create_tenant(pool: &sqlx::Pool<$db>, id: &str, name: &str, now: Timestamp) -> Result<Tenant> {
        let regions: String = sqlx::query_scalar(
            "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) RETURNING allowed_regions",
        )
        .bind(id)
        .bind(name)
        .bind(now.millis())
        .fetch_one(pool)
        .await?;
        Ok(Tenant {
            id: id.into(),
            name: name.into(),
            allowed_regions: super::regions(&regions),
        })
    }

    pub(super) async fn get_message(pool: &sqlx::Pool<$db>, tenant_id: &str, id: &str) -> Result<Option<Message>> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = $1 AND id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(pool)
            .await?;
        row.map(|row| message_from_row(&row)).transpose()
    }

    pub(super) async fn tenant_exists(pool: &sqlx::Pool<$db>, tenant_id: &str) -> Result<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)")
            .bind(tenant_id)
            .fetch_one(pool)
            .await
    }

    pub(super) async fn create_api_key(pool: &sqlx::Pool<$db>,
        tenant_id: &str,
        key_id: &str,
        mode: Mode,
        key_hash: &str,
        hint: &str,
        now: Timestamp,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, mode, key_hash, hint, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(key_id)
        .bind(tenant_id)
        .bind(mode.as_str())
        .bind(key_hash)
        .bind(hint)
        .bind(now.millis())
        .execute(pool)
        .await?;
        Ok(())
    }

    pub(super) async fn revoke_api_key(pool: &sqlx::Pool<$db>, key_id: &str, now: Timestamp) -> Result<bool> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(key_id)
                .bind(now.millis())
                .execute(pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn authenticate(pool: &sqlx::Pool<$db>, key_hash: &str) -> Result<Option<AuthContext>> {
        let row: Option<(String, String, String, String, String)> = sqlx::query_as(
            "SELECT k.id, k.mode, t.id, t.name, t.allowed_regions FROM api_keys k \
             JOIN tenants t ON t.id = k.tenant_id WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(pool)
        .await?;
        Ok(row.and_then(|(key_id, mode, id, name, regions)| {
            Some(AuthContext {
                key_id,
                mode: Mode::parse(&mode)?,
                tenant: Tenant {
                    id,
                    name,
                    allowed_regions: super::regions(&regions),
                },
            })
        }))
    }

    pub(super) async fn release_leases(pool: &sqlx::Pool<$db>, token: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE messages SET lease_until = NULL, lease_token = NULL WHERE lease_token = $1 AND status = 'queued'",
        )
        .bind(token)
        .execute(pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub(super) async fn sandbox_deliver(pool: &sqlx::Pool<$db>, m: &NewSandboxMessage) -> Result<()> {
        // A resubmission (after a worker died) re-arms the receipt but adds no second copy.
        sqlx::query(
            "INSERT INTO sandbox_messages (message_id, tenant_id, to_number, sender, body, received_at, \
               receipt_status, receipt_due) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (message_id) DO UPDATE SET receipt_done = FALSE, receipt_due = excluded.receipt_due",
        )
        .bind(&m.message_id)
        .bind(&m.tenant_id)
        .bind(&m.to)
        .bind(&m.from)
        .bind(&m.body)
        .bind(m.received_at.millis())
        .bind(m.receipt.as_str())
        .bind(m.receipt_due.millis())
        .execute(pool)
        .await?;
        Ok(())
    }

    pub(super) async fn setting_or_init(pool: &sqlx::Pool<$db>, key: &str, value: &str) -> Result<String> {
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(pool)
            .await?;
        sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_one(pool)
            .await
    }

    pub(super) async fn rate_limit(pool: &sqlx::Pool<$db>,
        key: &str,
        now: Timestamp,
        interval_ms: i64,
        period_ms: i64,
    ) -> Result<Option<i64>> {
        let admitted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO rate_limits (key, tat) VALUES ($1, $2 + $3) \
             ON CONFLICT (key) DO UPDATE SET tat = CASE WHEN rate_limits.tat > $2 THEN rate_limits.tat ELSE $2 END + $3 \
             WHERE CASE WHEN rate_limits.tat > $2 THEN rate_limits.tat ELSE $2 END + $3 - $2 <= $4 RETURNING tat",
        )
        .bind(key)
        .bind(now.millis())
        .bind(interval_ms)
        .bind(period_ms)
        .fetch_optional(pool)
        .await?;
        if admitted.is_some() {
            return Ok(None);
        }
        let tat: i64 = sqlx::query_scalar("SELECT tat FROM rate_limits WHERE key = $1")
            .bind(key)
            .fetch_one(pool)
            .await?;
        Ok(Some(
            (tat.max(now.millis()) + interval_ms - period_ms - now.millis()).max(1),
        ))
    }

    pub(super) async fn add_spend(pool: &sqlx::Pool<$db>, tenant_id: &str, month: &str, pence: i64, cap: i64) -> Result<bool> {
        let row: Option<i64> = sqlx::query_scalar(
            "INSERT INTO spend (tenant_id, month, pence) SELECT $1, $2, $3 WHERE $3 <= $4 \
             ON CONFLICT (tenant_id, month) DO UPDATE SET pence = spend.pence + $3 \
             WHERE spend.pence + $3 <= $4 RETURNING pence",
        )
        .bind(tenant_id)
        .bind(month)
        .bind(pence)
        .bind(cap)
        .fetch_optional(pool)
        .await?;
        Ok(row.is_some())
    }

    pub(super) async fn get_verification(pool: &sqlx::Pool<$db>,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<StoredVerification>> {
        let sql = format!(
            "SELECT {VERIFICATION_COLUMNS} FROM verifications WHERE tenant_id = $1 AND id = $2"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(pool)
            .await?;
        row.as_ref().map(verification_from_row).transpose()
    }

    pub(super) async fn latest_verification(pool: &sqlx::Pool<$db>,
        tenant_id: &str,
        to: &str,
    ) -> Result<Option<StoredVerification>> {
        let sql = format!(
            "SELECT {VERIFICATION_COLUMNS} FROM verifications WHERE tenant_id = $1 AND to_number = $2 \
             ORDER BY (status = 'pending') DESC, created_at DESC, id DESC LIMIT 1"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(to)
            .fetch_optional(pool)
            .await?;
        row.as_ref().map(verification_from_row).transpose()
    }

    pub(super) async fn close_verification(pool: &sqlx::Pool<$db>,
        tenant_id: &str,
        id: &str,
        status: VerificationStatus,
        now: Timestamp,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE verifications SET status = $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2 AND status = 'pending'",
        )
        .bind(tenant_id)
        .bind(id)
        .bind(status.as_str())
        .bind(now.millis())
        .execute(pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a request's idempotency key in `tx`, first, so that a reused key
    /// writes nothing else: `Some` with what the key stored before if it was used.
    pub(super) async fn take_key(
        tx: &mut sqlx::Transaction<'_, $db>,
        tenant_id: &str,
        idem: Option<&IdempotencyRecord>,
        at: Timestamp,
    ) -> Result<Option<CreateOutcome>> {
        let Some(i) = idem else { return Ok(None) };
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (tenant_id, key, request_hash, status, response, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(tenant_id)
        .bind(&i.key)
        .bind(&i.request_hash)
        .bind(i64::from(i.status))
        .bind(&i.response)
        .bind(at.millis())
        .execute(&mut **tx)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(None);
        }
        let (request_hash, status, response) = stored_response(&mut **tx, tenant_id, &i.key)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        Ok(Some(CreateOutcome::Existing {
            request_hash,
            status,
            response,
        }))
    }

    /// What an earlier request with this key stored: request hash, status, body.
    pub(super) async fn stored_response<'e>(
        db: impl sqlx::Executor<'e, Database = $db>,
        tenant_id: &str,
        key: &str,
    ) -> Result<Option<(String, u16, String)>> {
        let row: Option<(String, i64, String)> = sqlx::query_as(
            "SELECT request_hash, status, response FROM idempotency_keys WHERE tenant_id = $1 AND key = $2",
        )
        .bind(tenant_id)
        .bind(key)
        .fetch_optional(db)
        .await?;
        Ok(row.map(|(h, s, r)| (h, s as u16, r)))
    }

    /// Cancels the number's pending verification (at most one live code per number).
    pub(super) async fn cancel_pending(conn: &mut <$db as sqlx::Database>::Connection, v: &StoredVerification) -> Result<()> {
        sqlx::query(
            "UPDATE verifications SET status = 'canceled', updated_at = $3 \
             WHERE tenant_id = $1 AND to_number = $2 AND status = 'pending'",
        )
        .bind(&v.tenant_id)
        .bind(&v.to)
        .bind(v.created_at.millis())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    pub(super) async fn insert_verification(conn: &mut <$db as sqlx::Database>::Connection, v: &StoredVerification) -> Result<()> {
        sqlx::query(
            "INSERT INTO verifications (id, tenant_id, mode, to_number, status, code_hash, code_length, \
               max_attempts, attempts, sends, ttl_seconds, brand, template, app_domain, message_id, last_sent_at, \
               expires_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
        )
        .bind(&v.id)
        .bind(&v.tenant_id)
        .bind(v.mode.as_str())
        .bind(&v.to)
        .bind(v.status.as_str())
        .bind(&v.code_hash)
        .bind(i64::from(v.code_length))
        .bind(i64::from(v.max_attempts))
        .bind(i64::from(v.attempts))
        .bind(i64::from(v.sends))
        .bind(i64::from(v.ttl_seconds))
        .bind(&v.brand)
        .bind(&v.template)
        .bind(&v.app_domain)
        .bind(&v.message_id)
        .bind(v.last_sent_at.millis())
        .bind(v.expires_at.millis())
        .bind(v.created_at.millis())
        .bind(v.updated_at.millis())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// The fresh code of a resend, if the verification is still pending at `sends` sends.
    pub(super) async fn resend_update(conn: &mut <$db as sqlx::Database>::Connection, r: &Resend, message_id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE verifications SET code_hash = $3, sends = sends + 1, last_sent_at = $4, expires_at = $5, \
               message_id = $6, updated_at = $4 \
             WHERE tenant_id = $1 AND id = $2 AND status = 'pending' AND sends = $7",
        )
        .bind(&r.tenant_id)
        .bind(&r.id)
        .bind(&r.code_hash)
        .bind(r.now.millis())
        .bind(r.expires_at.millis())
        .bind(message_id)
        .bind(i64::from(r.sends))
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    const ENDPOINT_COLUMNS: &str = "id, tenant_id, url, description, events, secret, previous_secret, \
        previous_secret_until, enabled, disabled_reason, created_at, updated_at";

    fn endpoint_from_row(row: &<$db as sqlx::Database>::Row) -> Result<StoredEndpoint> {
        use sqlx::Row;
        Ok(StoredEndpoint {
            id: row.try_get(0)?,
            tenant_id: row.try_get(1)?,
            url: row.try_get(2)?,
            description: row.try_get(3)?,
            events: row.try_get(4)?,
            secret: row.try_get(5)?,
            previous_secret: row.try_get(6)?,
            previous_secret_until: row.try_get::<Option<i64>, _>(7)?.map(Timestamp),
            enabled: row.try_get(8)?,
            disabled_reason: row.try_get(9)?,
            created_at: Timestamp(row.try_get(10)?),
            updated_at: Timestamp(row.try_get(11)?),
        })
    }

    pub(super) async fn create_endpoint(pool: &sqlx::Pool<$db>, e: &StoredEndpoint) -> Result<()> {
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, tenant_id, url, description, events, secret, enabled, \
               created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&e.id)
        .bind(&e.tenant_id)
        .bind(&e.url)
        .bind(&e.description)
        .bind(&e.events)
        .bind(&e.secret)
        .bind(e.enabled)
        .bind(e.created_at.millis())
        .bind(e.updated_at.millis())
        .execute(pool)
        .await?;
        Ok(())
    }

    pub(super) async fn list_endpoints(
        pool: &sqlx::Pool<$db>,
        tenant_id: &str,
        starting_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredEndpoint>> {
        // Without a cursor, "~" sorts after every id.
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND id < $2 \
             ORDER BY id DESC LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(starting_after.unwrap_or("~"))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
        rows.iter().map(endpoint_from_row).collect()
    }

    pub(super) async fn get_endpoint(
        pool: &sqlx::Pool<$db>,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<StoredEndpoint>> {
        let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(pool)
            .await?;
        row.as_ref().map(endpoint_from_row).transpose()
    }

    pub(super) async fn update_endpoint(pool: &sqlx::Pool<$db>, e: &StoredEndpoint) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET url = $3, description = $4, events = $5, enabled = $6, \
               disabled_reason = $7, updated_at = $8 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(&e.tenant_id)
        .bind(&e.id)
        .bind(&e.url)
        .bind(&e.description)
        .bind(&e.events)
        .bind(e.enabled)
        .bind(&e.disabled_reason)
        .bind(e.updated_at.millis())
        .execute(pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn delete_endpoint(pool: &sqlx::Pool<$db>, tenant_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn rotate_endpoint_secret(pool: &sqlx::Pool<$db>, r: &Rotation) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_until = $4, secret = $3, \
               updated_at = $5 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(&r.tenant_id)
        .bind(&r.id)
        .bind(&r.secret)
        .bind(r.previous_until.millis())
        .bind(r.now.millis())
        .execute(pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A transient failure: try again at `at`, if `token` still holds the lease.
    pub(super) async fn retry_later(
        conn: &mut <$db as sqlx::Database>::Connection,
        id: &str,
        token: &str,
        at: Timestamp,
        error: &str,
        now: Timestamp,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE messages SET next_attempt_at = $3, error_message = $4, lease_until = NULL, \
             lease_token = NULL, updated_at = $5 WHERE id = $1 AND lease_token = $2 AND status = 'queued'",
        )
        .bind(id)
        .bind(token)
        .bind(at.millis())
        .bind(error)
        .bind(now.millis())
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends a submission that no carrier took (failed, expired) if `token` still
    /// holds the lease: the status, its history and its webhooks.
    async fn end_unsent(
        conn: &mut <$db as sqlx::Database>::Connection,
        f: &Finish,
        status: MessageStatus,
        code: &str,
        message: &str,
    ) -> Result<bool> {
        let sql = format!(
            "UPDATE messages SET status = $3, error_code = $4, error_message = $5, body = NULL, \
               lease_until = NULL, lease_token = NULL, updated_at = $6, {} \
             WHERE id = $1 AND lease_token = $2 AND status = 'queued' RETURNING tenant_id",
            history_append("$3", "$6"),
        );
        let tenant: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(&f.id)
        .bind(&f.token)
        .bind(status.as_str())
        .bind(code)
        .bind(message)
        .bind(f.now.millis())
        .fetch_optional(&mut *conn)
        .await?;
        let Some(tenant) = tenant else { return Ok(false) };
        queue_message_webhooks(conn, &tenant, &f.id, status, f.now).await?;
        Ok(true)
    }

    /// Queues the webhooks of a message's new status (its history already recorded).
    async fn queue_message_webhooks(
        conn: &mut <$db as sqlx::Database>::Connection,
        tenant_id: &str,
        id: &str,
        status: MessageStatus,
        at: Timestamp,
    ) -> Result<()> {
        let Some(event) = EventType::for_message(status) else { return Ok(()) };
        let endpoints = subscribed(conn, tenant_id, event).await?;
        if endpoints.is_empty() {
            return Ok(());
        }
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_one(&mut *conn).await?;
        let message = message_from_row(&row)?;
        enqueue(conn, tenant_id, &endpoints, event, serde_json::to_value(&message).map_err(encode)?, at).await
    }

    /// Queues verification.approved for a verification just approved.
    async fn verification_approved(
        conn: &mut <$db as sqlx::Database>::Connection,
        v: &StoredVerification,
    ) -> Result<()> {
        let event = EventType::VerificationApproved;
        let endpoints = subscribed(conn, &v.tenant_id, event).await?;
        if endpoints.is_empty() {
            return Ok(());
        }
        let payload = serde_json::to_value(Verification::from(v)).map_err(encode)?;
        enqueue(conn, &v.tenant_id, &endpoints, event, payload, v.updated_at).await
    }

    /// The tenant's enabled endpoints that take `event`.
    async fn subscribed(
        conn: &mut <$db as sqlx::Database>::Connection,
        tenant_id: &str,
        event: EventType,
    ) -> Result<Vec<String>> {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT id, events FROM webhook_endpoints WHERE tenant_id = $1 AND enabled = TRUE",
        )
        .bind(tenant_id)
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows
            .into_iter()
            .filter(|(_, events)| events.as_deref().is_none_or(|list| list.split(',').any(|e| e == event.as_str())))
            .map(|(id, _)| id)
            .collect())
    }

    async fn enqueue(
        conn: &mut <$db as sqlx::Database>::Connection,
        tenant_id: &str,
        endpoints: &[String],
        event: EventType,
        data: serde_json::Value,
        at: Timestamp,
    ) -> Result<()> {
        let payload = serde_json::json!({"type": event.as_str(), "timestamp": at, "data": data}).to_string();
        for endpoint in endpoints {
            sqlx::query(
                "INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_type, payload, status, \
                   next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6, $6)",
            )
            .bind(crate::clock::new_id("whd"))
            .bind(tenant_id)
            .bind(endpoint)
            .bind(event.as_str())
            .bind(&payload)
            .bind(at.millis())
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    fn encode(e: serde_json::Error) -> sqlx::Error {
        sqlx::Error::Encode(Box::new(e))
    }

    /// Records submissions' outcomes in one transaction (one flush for many);
    /// the common case, sent, in a few set-wide statements.
    pub(super) async fn finish_submits(pool: &sqlx::Pool<$db>, items: &[Finish]) -> Result<Vec<bool>> {
        let mut tx = pool.begin().await?;
        let (sent, other): (Vec<&Finish>, Vec<&Finish>) =
            items.iter().partition(|f| matches!(f.result, SubmitResult::Sent { .. }));
        let done = finish_sent(&mut tx, &sent).await?;
        let mut others = std::collections::HashMap::new();
        for f in other {
            others.insert(f.id.as_str(), finish_one(&mut tx, f).await?);
        }
        tx.commit().await?;
        Ok(items
            .iter()
            .map(|f| done.contains(&f.id) || others.get(f.id.as_str()).copied().unwrap_or(false))
            .collect())
    }

    /// sent: status, history, parts and webhooks for many messages at once.
    /// Returns the ids whose lease still held.
    async fn finish_sent(
        conn: &mut <$db as sqlx::Database>::Connection,
        items: &[&Finish],
    ) -> Result<std::collections::HashSet<String>> {
        if items.is_empty() {
            return Ok(Default::default());
        }
        let mut rows = Vec::with_capacity(items.len());
        let mut parts = Vec::new();
        for f in items {
            let SubmitResult::Sent { carrier, carrier_message_ids } = &f.result else { continue };
            rows.push(serde_json::json!({
                "mid": f.id, "tok": f.token, "car": carrier,
                "cid": carrier_message_ids.first(), "at": f.now.millis(),
            }));
            for (i, cid) in carrier_message_ids.iter().enumerate() {
                parts.push(serde_json::json!({"carrier": carrier, "cid": cid, "id": f.id, "part": i + 1}));
            }
        }
        let sql = format!(
            // SQLite's RETURNING takes only the updated table's columns, unqualified:
            // `u`'s names differ from theirs.
            // The rows are found by key. Our lease token alone says a message is
            // still queued and ours: every way out of queued clears it. A
            // `status = 'queued'` here would match messages_due's predicate, and
            // with statistics from a shorter queue PostgreSQL then hash-joins the
            // whole queue for every batch (seen: half the batches of a 10 s run).
            "UPDATE messages SET status = 'sent', carrier = u.car, carrier_message_id = u.cid, \
               error_code = NULL, error_message = NULL, body = NULL, lease_until = NULL, lease_token = NULL, \
               updated_at = u.at, {} \
             FROM {} WHERE id {} AND id = u.mid AND lease_token = u.tok \
             RETURNING id, tenant_id, updated_at",
            history_append("'sent'", "u.at"),
            $rows(1, &[("mid", "TEXT"), ("tok", "TEXT"), ("car", "TEXT"), ("cid", "TEXT"), ("at", "BIGINT")]),
            $keys(1, "mid"),
        );
        let updated: Vec<(String, String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).persistent(false)
            .bind(serde_json::Value::from(rows).to_string())
            .fetch_all(&mut *conn)
            .await?;
        let done: std::collections::HashSet<String> = updated.iter().map(|(id, _, _)| id.clone()).collect();
        if done.is_empty() {
            return Ok(done);
        }
        parts.retain(|p| p["id"].as_str().is_some_and(|id| done.contains(id)));
        // One row per carrier id: a carrier that repeats an id within a batch
        // (one id for every part, say) must not fail the whole batch; the last wins.
        let mut seen = std::collections::HashSet::new();
        parts.reverse();
        parts.retain(|p| seen.insert((p["carrier"].to_string(), p["cid"].to_string())));
        // A carrier may reuse an id long after: the newest message takes it.
        let sql = format!(
            "INSERT INTO message_parts (carrier, carrier_message_id, message_id, part) \
             SELECT u.carrier, u.cid, u.id, u.part FROM {} WHERE TRUE \
             ON CONFLICT (carrier, carrier_message_id) \
             DO UPDATE SET message_id = excluded.message_id, part = excluded.part, status = NULL, error = NULL",
            $rows(1, &[("carrier", "TEXT"), ("cid", "TEXT"), ("id", "TEXT"), ("part", "BIGINT")]),
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(serde_json::Value::from(parts).to_string())
            .execute(&mut *conn)
            .await?;
        let listening = tenants_with_endpoints(conn, updated.iter().map(|(_, t, _)| t.as_str())).await?;
        for (id, tenant, at) in &updated {
            if listening.contains(tenant) {
                queue_message_webhooks(conn, tenant, id, MessageStatus::Sent, Timestamp(*at)).await?;
            }
        }
        Ok(done)
    }

    /// Any outcome but sent (those go through `finish_sent`).
    async fn finish_one(conn: &mut <$db as sqlx::Database>::Connection, f: &Finish) -> Result<bool> {
        match &f.result {
            SubmitResult::Retry { at, error } => retry_later(conn, &f.id, &f.token, *at, error, f.now).await,
            SubmitResult::Failed { code, message } => end_unsent(conn, f, MessageStatus::Failed, code, message).await,
            SubmitResult::Expired => {
                let why = "no carrier accepted the message within its validity period";
                end_unsent(conn, f, MessageStatus::Expired, "expired", why).await
            }
            SubmitResult::Sent { .. } => unreachable!("sent outcomes go through finish_sent"),
        }
    }

    /// Applies receipts whose parts exist and keeps the others in
    /// `carrier_receipts` for later, in one transaction; true if some wait.
    pub(super) async fn record_carrier_receipts(pool: &sqlx::Pool<$db>, receipts: &[CarrierReceipt]) -> Result<bool> {
        let Some(now) = receipts.iter().map(|r| r.received_at).max() else { return Ok(false) };
        let mut tx = pool.begin().await?;
        let all = receipts
            .iter()
            .map(|r| (r.carrier.clone(), r.carrier_message_id.clone(), r.status.as_str().to_string(), r.error.clone()))
            .collect();
        let applied = apply_to_parts(&mut tx, all, now).await?;
        let waiting: Vec<&CarrierReceipt> = receipts
            .iter()
            .filter(|r| !applied.contains(&(r.carrier.clone(), r.carrier_message_id.clone())))
            .collect();
        keep_receipts(&mut *tx, &waiting).await?;
        tx.commit().await?;
        Ok(!waiting.is_empty())
    }

    /// Only stores receipts, for the appliers.
    pub(super) async fn keep_carrier_receipts(pool: &sqlx::Pool<$db>, receipts: &[CarrierReceipt]) -> Result<()> {
        keep_receipts(pool, &receipts.iter().collect::<Vec<_>>()).await
    }

    async fn keep_receipts<'e>(
        db: impl sqlx::Executor<'e, Database = $db>,
        receipts: &[&CarrierReceipt],
    ) -> Result<()> {
        if receipts.is_empty() {
            return Ok(());
        }
        let rows: Vec<serde_json::Value> = receipts
            .iter()
            .map(|r| {
                serde_json::json!({"car": r.carrier, "cid": r.carrier_message_id, "st": r.status.as_str(),
                                   "err": r.error, "at": r.received_at.millis()})
            })
            .collect();
        let sql = format!(
            "INSERT INTO carrier_receipts (carrier, carrier_message_id, status, error, received_at) \
             SELECT u.car, u.cid, u.st, u.err, u.at FROM {}",
            $rows(1, &[("car", "TEXT"), ("cid", "TEXT"), ("st", "TEXT"), ("err", "TEXT"), ("at", "BIGINT")]),
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(serde_json::Value::from(rows).to_string())
            .execute(db)
            .await?;
        Ok(())
    }

    /// Applies receipts (carrier, id, status, error) to their parts, set-wide;
    /// a message whose parts have all ended is delivered if every part was,
    /// else takes its first other part's status and error. Returns the
    /// (carrier, id) of the parts it ended.
    /// The touched messages are locked (where the backend can) in id order, so that two appliers ending the last two parts of
    /// one message see each other's part, and never wait on each other in a cycle.
    pub(super) async fn apply_to_parts(
        conn: &mut <$db as sqlx::Database>::Connection,
        matched: Vec<(String, String, String, Option<String>)>,
        now: Timestamp,
    ) -> Result<std::collections::HashSet<(String, String)>> {
        // One receipt per part, in one order.
        let mut matched = matched;
        matched.sort();
        matched.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        // One statement per (carrier, status, error): usually one or two. Each
        // looks its parts up by key, a plan no table size or statistics can turn
        // into a scan (a join with the JSON table could: seen here).
        let mut groups: std::collections::BTreeMap<(&str, &str, Option<&str>), Vec<serde_json::Value>> =
            Default::default();
        for (car, cid, st, err) in &matched {
            groups.entry((car, st, err.as_deref())).or_default().push(serde_json::json!({"cid": cid}));
        }
        let sql = format!(
            "UPDATE message_parts SET status = $2, error = $3 \
             WHERE carrier = $4 AND carrier_message_id {} AND status IS NULL \
             RETURNING carrier, carrier_message_id, message_id",
            $keys(1, "cid"),
        );
        let mut ended: Vec<(String, String, String)> = Vec::with_capacity(matched.len());
        for ((car, st, err), cids) in groups {
            let rows: Vec<(String, String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).persistent(false)
                .bind(serde_json::Value::from(cids).to_string())
                .bind(st)
                .bind(err)
                .bind(car)
                .fetch_all(&mut *conn)
                .await?;
            ended.extend(rows);
        }
        let mut touched: Vec<String> = ended.iter().map(|(_, _, id)| id.clone()).collect();
        let ended = ended.into_iter().map(|(car, cid, _)| (car, cid)).collect();
        touched.sort();
        touched.dedup();
        if touched.is_empty() {
            return Ok(ended);
        }
        let ids = serde_json::Value::from(
            touched.iter().map(|id| serde_json::json!({"mid": id})).collect::<Vec<_>>(),
        )
        .to_string();
        let sql = format!("SELECT id FROM messages WHERE id {} ORDER BY id{}", $keys(1, "mid"), $lock);
        sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false).bind(&ids).execute(&mut *conn).await?;
        // Sent messages none of whose parts is still open, with their outcome.
        let first_other = "FROM message_parts p WHERE p.message_id = m.id AND p.status <> 'delivered' ORDER BY p.part LIMIT 1";
        let sql = format!(
            "SELECT m.id, COALESCE((SELECT p.status {first_other}), 'delivered'), (SELECT p.error {first_other}) \
             FROM messages m WHERE m.id {} AND m.status = 'sent' \
               AND NOT EXISTS (SELECT 1 FROM message_parts p WHERE p.message_id = m.id AND p.status IS NULL)",
            $keys(1, "mid"),
        );
        let done: Vec<(String, String, Option<String>)> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).persistent(false).bind(&ids).fetch_all(&mut *conn).await?;
        if done.is_empty() {
            return Ok(ended);
        }
        let rows: Vec<serde_json::Value> = done
            .iter()
            .map(|(id, st, err)| serde_json::json!({"mid": id, "st": st, "err": err}))
            .collect();
        let sql = format!(
            "UPDATE messages SET status = u.st, updated_at = $2, error_code = COALESCE(u.err, error_code), {} \
             FROM {} WHERE id {} AND id = u.mid AND status = 'sent' RETURNING id, tenant_id, status",
            history_append("u.st", "$2"),
            $rows(1, &[("mid", "TEXT"), ("st", "TEXT"), ("err", "TEXT")]),
            $keys(1, "mid"),
        );
        let changed: Vec<(String, String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).persistent(false)
            .bind(serde_json::Value::from(rows).to_string())
            .bind(now.millis())
            .fetch_all(&mut *conn)
            .await?;
        let listening = tenants_with_endpoints(conn, changed.iter().map(|(_, t, _)| t.as_str())).await?;
        for (id, tenant, status) in &changed {
            if listening.contains(tenant) {
                let status = MessageStatus::parse(status)
                    .ok_or_else(|| sqlx::Error::Decode("bad stored part status".into()))?;
                queue_message_webhooks(conn, tenant, id, status, now).await?;
            }
        }
        Ok(ended)
    }

    /// Takes up to `limit` stored receipts whose part exists (each once, even
    /// with other appliers at work) and applies them; returns how many it took.
    pub(super) async fn apply_carrier_receipts(pool: &sqlx::Pool<$db>, now: Timestamp, limit: u32) -> Result<u64> {
        let mut tx = pool.begin().await?;
        let sql = format!(
            "DELETE FROM carrier_receipts WHERE id IN \
               (SELECT r.id FROM carrier_receipts r JOIN message_parts p \
                  ON p.carrier = r.carrier AND p.carrier_message_id = r.carrier_message_id \
                ORDER BY r.id LIMIT $1{}) \
             RETURNING carrier, carrier_message_id, status, error",
            $claim_receipts,
        );
        let matched: Vec<(String, String, String, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).persistent(false)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        if matched.is_empty() {
            return Ok(0);
        }
        let taken = matched.len() as u64;
        apply_to_parts(&mut tx, matched, now).await?;
        tx.commit().await?;
        Ok(taken)
    }

    /// Sandbox receipts that came due (message id, status): applied to the
    /// messages' parts like any carrier's receipts.
    pub(super) async fn apply_sandbox_due(
        conn: &mut <$db as sqlx::Database>::Connection,
        due: Vec<(String, String)>,
        now: Timestamp,
    ) -> Result<()> {
        let status: std::collections::HashMap<String, String> = due.into_iter().collect();
        let sql = format!(
            "SELECT carrier, carrier_message_id, message_id FROM message_parts WHERE message_id {}",
            $keys(1, "mid"),
        );
        let ids: Vec<serde_json::Value> = status.keys().map(|id| serde_json::json!({"mid": id})).collect();
        let parts: Vec<(String, String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).persistent(false)
            .bind(serde_json::Value::from(ids).to_string())
            .fetch_all(&mut *conn)
            .await?;
        let matched = parts
            .into_iter()
            .map(|(carrier, cid, id)| (carrier, cid, status[&id].clone(), None))
            .collect();
        apply_to_parts(conn, matched, now).await?;
        Ok(())
    }

    /// Which of these tenants have an enabled webhook endpoint (one query for a batch).
    async fn tenants_with_endpoints<'t>(
        conn: &mut <$db as sqlx::Database>::Connection,
        tenants: impl Iterator<Item = &'t str>,
    ) -> Result<Vec<String>> {
        let tenants: std::collections::BTreeSet<&str> = tenants.collect();
        let sql = format!(
            "SELECT DISTINCT tenant_id FROM webhook_endpoints WHERE enabled = TRUE AND tenant_id IN (SELECT u.t FROM {})",
            $rows(1, &[("t", "TEXT")]),
        );
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(serde_json::Value::from(tenants.iter().map(|t| serde_json::json!({"t": t})).collect::<Vec<_>>()).to_string())
            .fetch_all(&mut *conn)
            .await
    }

    pub(super) async fn record_inbound(pool: &sqlx::Pool<$db>, m: &InboundMessage) -> Result<()> {
        sqlx::query(
            "INSERT INTO inbound_messages (id, carrier, from_number, to_number, body, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&m.id)
        .bind(&m.carrier)
        .bind(&m.from)
        .bind(&m.to)
        .bind(m.body.as_deref())
        .bind(m.received_at.millis())
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Takes the checked verifications from `cache` or reads them, lets `judge`
    /// decide each check in arrival order (a second check of one verification
    /// sees the first one's effect), then writes what changed in one statement,
    /// each row only if it is still as it was taken. Checks whose verification
    /// changed meanwhile (another process, a resend) are decided again on a
    /// fresh read. No BEGIN, lock or COMMIT unless an approval queues a webhook.
    pub(super) async fn check_codes(
        pool: &sqlx::Pool<$db>,
        checks: &[CodeCheck],
        judge: &Judge,
        cache: &VerificationCache,
    ) -> Result<Vec<Verdict>> {
        let mut verdicts: Vec<Option<Verdict>> = vec![None; checks.len()];
        let mut todo: Vec<usize> = (0..checks.len()).collect();
        for _ in 0..CHECK_ROUNDS {
            if todo.is_empty() {
                break;
            }
            // Each verification as taken, and as the checks leave it.
            let mut found = std::collections::HashMap::new();
            let mut missing = Vec::new();
            for &i in &todo {
                let id = &checks[i].id;
                if found.contains_key(id) {
                    continue;
                }
                match cache.get(id) {
                    Some(v) => {
                        found.insert(id.clone(), (v.clone(), v));
                    }
                    None => missing.push(serde_json::json!({"vid": id})),
                }
            }
            if !missing.is_empty() {
                let sql = format!("SELECT {VERIFICATION_COLUMNS} FROM verifications WHERE id {}", $keys(1, "vid"));
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(serde_json::Value::from(missing).to_string())
                    .fetch_all(pool)
                    .await?;
                for row in &rows {
                    let v = verification_from_row(row)?;
                    found.insert(v.id.clone(), (v.clone(), v));
                }
            }
            for &i in &todo {
                let c = &checks[i];
                verdicts[i] = Some(match found.get_mut(&c.id) {
                    Some((_, v)) if v.tenant_id == c.tenant_id => judge(v, c),
                    _ => Verdict::NotFound,
                });
            }
            // A check changes a verification's status or attempts, nothing else.
            let moved = |was: &StoredVerification, v: &StoredVerification| {
                (was.status, was.attempts) != (v.status, v.attempts)
            };
            let changed: Vec<(&StoredVerification, &StoredVerification)> = found
                .values()
                .filter(|(was, v)| moved(was, v))
                .map(|(was, v)| (was, v))
                .collect();
            let written = if changed.iter().any(|(_, v)| v.status == VerificationStatus::Approved) {
                let mut tx = pool.begin().await?;
                let written = write_checked(&mut *tx, &changed).await?;
                for (_, v) in &changed {
                    if v.status == VerificationStatus::Approved && written.contains(&v.id) {
                        verification_approved(&mut tx, v).await?;
                    }
                }
                tx.commit().await?;
                written
            } else {
                write_checked(pool, &changed).await?
            };
            let mut stale = std::collections::HashSet::new();
            for (id, (was, v)) in found {
                if !moved(&was, &v) || written.contains(&id) {
                    cache.put(v);
                } else {
                    cache.forget(&id);
                    stale.insert(id);
                }
            }
            todo.retain(|&i| stale.contains(&checks[i].id));
        }
        if !todo.is_empty() {
            return Err(sqlx::Error::Protocol("verifications kept changing under their checks".into()));
        }
        Ok(verdicts.into_iter().map(|v| v.expect("every check was decided")).collect())
    }

    /// Writes checked verifications (`was` → `now` pairs), each only if it is
    /// still as read; the ids written.
    async fn write_checked<'e>(
        db: impl sqlx::Executor<'e, Database = $db>,
        changed: &[(&StoredVerification, &StoredVerification)],
    ) -> Result<std::collections::HashSet<String>> {
        if changed.is_empty() {
            return Ok(Default::default());
        }
        let rows: Vec<serde_json::Value> = changed
            .iter()
            .map(|(was, v)| serde_json::json!({
                "vid": v.id, "st": v.status.as_str(), "n": v.attempts, "at": v.updated_at.millis(),
                "wst": was.status.as_str(), "wn": was.attempts, "wh": was.code_hash,
            }))
            .collect();
        // The old status is compared with `u.wst`, not a constant 'pending':
        // with one, stale statistics had PostgreSQL scan the whole pending index (seen here).
        let sql = format!(
            "UPDATE verifications SET status = u.st, attempts = u.n, updated_at = u.at \
             FROM {} WHERE id {} AND id = u.vid \
               AND status = u.wst AND attempts = u.wn AND code_hash = u.wh \
             RETURNING id",
            $rows(1, &[
                ("vid", "TEXT"), ("st", "TEXT"), ("n", "BIGINT"), ("at", "BIGINT"),
                ("wst", "TEXT"), ("wn", "BIGINT"), ("wh", "TEXT"),
            ]),
            $keys(1, "vid"),
        );
        let written: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(serde_json::Value::from(rows).to_string())
            .fetch_all(db)
            .await?;
        Ok(written.into_iter().map(|(id,)| id).collect())
    }

    /// How many times a batch of checks is decided again when its verifications change meanwhile.
    const CHECK_ROUNDS: usize = 8;

    /// Endpoints failing this long without a success are disabled.
    const FAILING_LIMIT_MS: i64 = 5 * 24 * 3600 * 1000;

    pub(super) async fn finish_delivery(pool: &sqlx::Pool<$db>, r: &AttemptRecord) -> Result<bool> {
        let mut tx = pool.begin().await?;
        let (status, next_at) = match &r.next {
            NextStep::Succeeded => ("succeeded", r.at),
            NextStep::RetryAt(at) => ("pending", *at),
            NextStep::Failed { .. } => ("failed", r.at),
        };
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = $3, next_attempt_at = $4, lease_until = NULL, \
               lease_token = NULL, updated_at = $5 WHERE id = $1 AND lease_token = $2 AND status = 'pending'",
        )
        .bind(&r.delivery_id)
        .bind(&r.token)
        .bind(status)
        .bind(next_at.millis())
        .bind(r.at.millis())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO webhook_attempts (delivery_id, at, status_code, response, duration_ms, error) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&r.delivery_id)
        .bind(r.at.millis())
        .bind(r.status_code.map(i64::from))
        .bind(&r.response)
        .bind(r.duration_ms)
        .bind(&r.error)
        .execute(&mut *tx)
        .await?;
        if r.next == NextStep::Succeeded {
            sqlx::query("UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1")
                .bind(&r.endpoint_id)
                .execute(&mut *tx)
                .await?;
        } else {
            let since: Option<i64> = sqlx::query_scalar(
                "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $2) WHERE id = $1 \
                 RETURNING failing_since",
            )
            .bind(&r.endpoint_id)
            .bind(r.at.millis())
            .fetch_optional(&mut *tx)
            .await?
            .flatten();
            let reason = match &r.next {
                NextStep::Failed { disable_endpoint: Some(reason) } => Some(reason.clone()),
                _ if since.is_some_and(|s| r.at.millis() - s >= FAILING_LIMIT_MS) => {
                    Some("failing for five days without a success".to_string())
                }
                _ => None,
            };
            if let Some(reason) = reason {
                sqlx::query(
                    "UPDATE webhook_endpoints SET enabled = FALSE, disabled_reason = $2, updated_at = $3 \
                     WHERE id = $1 AND enabled = TRUE",
                )
                .bind(&r.endpoint_id)
                .bind(reason)
                .bind(r.at.millis())
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn list_deliveries(
        pool: &sqlx::Pool<$db>,
        tenant_id: &str,
        endpoint_id: &str,
        starting_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        let rows: Vec<(String, String, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT id, event_type, status, next_attempt_at, created_at, updated_at FROM webhook_deliveries \
             WHERE tenant_id = $1 AND endpoint_id = $2 AND id < $3 ORDER BY id DESC LIMIT $4",
        )
        .bind(tenant_id)
        .bind(endpoint_id)
        .bind(starting_after.unwrap_or("~"))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, event_type, status, next, created_at, updated_at) in rows {
            let attempts: Vec<(i64, Option<i64>, Option<String>, i64, Option<String>)> = sqlx::query_as(
                "SELECT at, status_code, response, duration_ms, error FROM webhook_attempts \
                 WHERE delivery_id = $1 ORDER BY id",
            )
            .bind(&id)
            .fetch_all(pool)
            .await?;
            out.push(Delivery {
                event_type: EventType::parse(&event_type)
                    .ok_or_else(|| sqlx::Error::Decode("bad stored event type".into()))?,
                next_attempt_at: (status == "pending").then_some(Timestamp(next)),
                id,
                status,
                created_at: Timestamp(created_at),
                updated_at: Timestamp(updated_at),
                attempts: attempts
                    .into_iter()
                    .map(|(at, code, response, duration_ms, error)| DeliveryAttempt {
                        at: Timestamp(at),
                        status_code: code.and_then(|c| u16::try_from(c).ok()),
                        response,
                        duration_ms,
                        error,
                    })
                    .collect(),
            });
        }
        Ok(out)
    }

    pub(super) async fn replay_delivery(
        pool: &sqlx::Pool<$db>,
        tenant_id: &str,
        endpoint_id: &str,
        id: &str,
        now: Timestamp,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $4, lease_until = NULL, \
               lease_token = NULL, updated_at = $4 WHERE tenant_id = $1 AND endpoint_id = $2 AND id = $3",
        )
        .bind(tenant_id)
        .bind(endpoint_id)
        .bind(id)
        .bind(now.millis())
        .execute(pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn cleanup(
        pool: &sqlx::Pool<$db>,
        idempotency_before: Timestamp,
        sandbox_before: Timestamp,
        now: Timestamp,
    ) -> Result<u64> {
        let mut n = 0;
        for (sql, at) in [
            ("DELETE FROM idempotency_keys WHERE created_at < $1", idempotency_before),
            (
                "DELETE FROM sandbox_messages WHERE received_at < $1 AND receipt_done = TRUE",
                sandbox_before,
            ),
            ("DELETE FROM rate_limits WHERE tat < $1", now),
            // A receipt no part claimed within a week never will.
            ("DELETE FROM carrier_receipts WHERE received_at < $1", now.plus_ms(-UNMATCHED_RECEIPT_TTL_MS)),
        ] {
            n += sqlx::query(sql).bind(at.millis()).execute(pool).await?.rows_affected();
        }
        // Parts of messages whose every part has ended are done with: a late
        // duplicate receipt for one finds nothing and ages out with the unmatched.
        n += sqlx::query(
            "DELETE FROM message_parts WHERE status IS NOT NULL AND NOT EXISTS \
               (SELECT 1 FROM message_parts o WHERE o.message_id = message_parts.message_id AND o.status IS NULL)",
        )
        .execute(pool)
        .await?
        .rows_affected();
        Ok(n)
    }
    };
}

pub(crate) use shared_queries;
