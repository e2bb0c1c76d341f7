-- Webhook endpoints. The secret signs deliveries (Standard Webhooks); after a
-- rotation the previous one keeps signing beside it until previous_secret_until.
CREATE TABLE webhook_endpoints (
    id TEXT COLLATE "C" PRIMARY KEY,
    tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    url TEXT NOT NULL,
    description TEXT,
    events TEXT, -- comma-separated event types; NULL = every type
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_secret_until BIGINT,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    disabled_reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, id DESC);

-- Failing without a single success since this time (cleared on success); after
-- five days the endpoint is disabled.
ALTER TABLE webhook_endpoints ADD COLUMN failing_since BIGINT;

-- The outbox: one row per event and endpoint, written in the same transaction
-- as the status change it reports. The payload is the exact body signed and sent.
CREATE TABLE webhook_deliveries (
    id TEXT COLLATE "C" PRIMARY KEY, -- also the webhook-id header, stable across retries
    tenant_id TEXT COLLATE "C" NOT NULL,
    endpoint_id TEXT COLLATE "C" NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_type TEXT COLLATE "C" NOT NULL,
    payload TEXT NOT NULL,
    status TEXT COLLATE "C" NOT NULL, -- pending | succeeded | failed
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT,
    lease_token TEXT COLLATE "C",
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id DESC);

CREATE TABLE webhook_attempts (
    id BIGSERIAL PRIMARY KEY,
    delivery_id TEXT COLLATE "C" NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    at BIGINT NOT NULL,
    status_code BIGINT,
    response TEXT, -- the first 1 KiB of the receiver's answer
    duration_ms BIGINT NOT NULL,
    error TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);
