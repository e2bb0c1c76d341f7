-- PostgreSQL dropped two foreign keys checked on every message (its 0007).
-- SQLite keeps them: there a check is an index probe with no row lock. This
-- file keeps the two folders' numbers in step.
SELECT 1;
