-- A message's status history lives in its own row: "status:at " entries,
-- oldest first (at in unix milliseconds; queued at created_at is implied).
-- Each change appends to the row the status update writes anyway, instead of
-- inserting a row and two index entries in message_events.
ALTER TABLE messages ADD COLUMN history TEXT NOT NULL DEFAULT '';
UPDATE messages m SET history = e.h
FROM (SELECT message_id, string_agg(status || ':' || at || ' ', '' ORDER BY id) AS h
      FROM message_events GROUP BY message_id) e
WHERE m.id = e.message_id;
DROP TABLE message_events;
