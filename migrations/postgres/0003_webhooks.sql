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
