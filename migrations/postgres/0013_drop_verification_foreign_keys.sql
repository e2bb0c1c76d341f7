-- The two foreign keys checked on every verification started, for the reason
-- 0007 dropped those of messages: each inserted row ran a trigger that looked
-- up and share-locked its parent (the one tenant row every start of that
-- tenant locks too, and the message just inserted). Measured here, together
-- they were about 90 µs of PostgreSQL time per verification, more than the
-- two inserts themselves.
--
-- Neither can be broken by the code that writes these rows: a verification
-- is inserted only for the tenant its API key authenticated, with the message
-- that carries its code, inserted in the same statement (a resend, in the
-- same transaction). Tenants are never deleted, and retention deletes a
-- message only once no verification refers to it (store/maintenance.rs).
-- SQLite keeps both keys (see its 0007).
ALTER TABLE verifications DROP CONSTRAINT verifications_tenant_id_fkey;
ALTER TABLE verifications DROP CONSTRAINT verifications_message_id_fkey;
