-- A message's status history lives in its own row: "status:at " entries,
-- oldest first (at in unix milliseconds; queued at created_at is implied).
-- Each change appends to the row the status update writes anyway, instead of
-- inserting a row and two index entries in message_events.
ALTER TABLE messages ADD COLUMN history TEXT NOT NULL DEFAULT '';
UPDATE messages SET history = (
    SELECT group_concat(status || ':' || at || ' ', '' ORDER BY id)
    FROM message_events e WHERE e.message_id = messages.id)
WHERE id IN (SELECT message_id FROM message_events);
DROP TABLE message_events;
