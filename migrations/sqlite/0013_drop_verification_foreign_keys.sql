-- PostgreSQL dropped the two foreign keys checked on every verification (its
-- 0013). SQLite keeps them, as it kept those of messages (its 0007). This
-- file keeps the two folders' numbers in step.
SELECT 1;
