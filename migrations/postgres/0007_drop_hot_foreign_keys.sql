-- The two foreign keys checked on every message: each inserted row ran a
-- trigger that looked up and share-locked its parent (for messages, the one
-- tenant row that every concurrent insert of that tenant locks too). Together
-- they were ~20 µs of PostgreSQL time per message sent, of ~150 µs in all.
--
-- Neither can be broken by the code that writes these rows: a message is
-- inserted only for the tenant its API key authenticated, and a part only for
-- the message the same transaction has just marked sent. Tenants and messages
-- are never deleted; a feature that deletes them must take their messages and
-- parts with them. SQLite keeps both keys: there a check is one index probe
-- with no row lock, and dropping a key would mean rebuilding the table.
ALTER TABLE messages DROP CONSTRAINT messages_tenant_id_fkey;
ALTER TABLE message_parts DROP CONSTRAINT message_parts_message_id_fkey;
