-- One-time passwords. Codes are kept only as HMAC-SHA256 under the server secret.
CREATE TABLE verifications (
    id TEXT COLLATE "C" PRIMARY KEY,
    tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    mode TEXT COLLATE "C" NOT NULL,
    to_number TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    code_hash TEXT COLLATE "C" NOT NULL,
    code_length BIGINT NOT NULL,
    max_attempts BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    sends BIGINT NOT NULL DEFAULT 1,
    ttl_seconds BIGINT NOT NULL,
    brand TEXT NOT NULL,
    template TEXT,
    app_domain TEXT,
    message_id TEXT COLLATE "C" NOT NULL REFERENCES messages (id),
    last_sent_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX verifications_tenant_to ON verifications (tenant_id, to_number, created_at DESC);
-- At most one live code per number and tenant, even when two starts race.
-- (to_number first: with tenant_id first, the planner would pick it for id lookups.)
CREATE UNIQUE INDEX verifications_one_pending ON verifications (to_number, tenant_id) WHERE status = 'pending';

-- Rate limits as GCRA: one "theoretical arrival time" per key, updated atomically.
CREATE TABLE rate_limits (
    key TEXT COLLATE "C" PRIMARY KEY,
    tat BIGINT NOT NULL
);

-- Spend per tenant and month (YYYY-MM, UTC), in pence, checked against the cap as it grows.
CREATE TABLE spend (
    tenant_id TEXT COLLATE "C" NOT NULL,
    month TEXT COLLATE "C" NOT NULL,
    pence BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, month)
);

CREATE TABLE settings (
    key TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);
