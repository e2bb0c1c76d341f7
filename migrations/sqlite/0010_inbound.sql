-- Inbound messages reach the tenant renting the number they were sent to
-- (NULL: nobody rents it; kept for the operator, shown to no tenant).
ALTER TABLE inbound_messages ADD COLUMN tenant_id TEXT;
ALTER TABLE inbound_messages ADD COLUMN number_id TEXT;
ALTER TABLE inbound_messages ADD COLUMN mode TEXT NOT NULL DEFAULT 'live';
CREATE INDEX inbound_messages_tenant ON inbound_messages (tenant_id, mode, id);
