-- The billing ledger: every charge and refund, append-only, in integer pence
-- (refunds negative), in the month (YYYY-MM, UTC) it counts against.
CREATE TABLE ledger (
    id BIGSERIAL PRIMARY KEY,
    tenant_id TEXT COLLATE "C" NOT NULL,
    month TEXT COLLATE "C" NOT NULL,
    at BIGINT NOT NULL,
    kind TEXT COLLATE "C" NOT NULL CHECK (kind IN ('sms', 'refund', 'number_fee')),
    pence BIGINT NOT NULL,
    segments BIGINT NOT NULL DEFAULT 0,
    message_id TEXT COLLATE "C",
    number_id TEXT COLLATE "C"
);
CREATE INDEX ledger_tenant_month ON ledger (tenant_id, month, at);
-- A message is charged once and refunded at most once, whatever retries or nodes do.
CREATE UNIQUE INDEX ledger_message_once ON ledger (kind, message_id) WHERE message_id IS NOT NULL;

-- Each tenant's month total, written in the transaction of every entry: what
-- the spend cap reads (one row a tenant, locked once per group commit).
ALTER TABLE spend RENAME TO ledger_totals;
-- What the old counter held becomes one entry a month, so totals and ledger agree.
INSERT INTO ledger (tenant_id, month, at, kind, pence)
SELECT tenant_id, month,
       CAST(EXTRACT(EPOCH FROM to_date(month || '-01', 'YYYY-MM-DD')) * 1000 AS BIGINT),
       'sms', pence
FROM ledger_totals WHERE pence <> 0;

-- Account settings a tenant changes itself (NULL: the operator's default).
ALTER TABLE tenants ADD COLUMN default_sender TEXT COLLATE "C";
ALTER TABLE tenants ADD COLUMN spend_cap_pence BIGINT;
