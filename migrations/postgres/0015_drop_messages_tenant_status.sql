-- Every message gets three entries in this index: at its insert and at its
-- two status changes (sent, then delivered or failed), which can never be
-- heap-only since status is indexed. Listing a tenant's messages by status
-- reads messages_tenant (tenant_id, id DESC) instead and filters: a page of
-- a common status is found at once; a rare one costs more reading, on a
-- dashboard view, not on every message.
DROP INDEX IF EXISTS messages_tenant_status;
