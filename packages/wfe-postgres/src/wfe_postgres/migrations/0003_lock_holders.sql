-- Where each lease holder runs (wfe_postgres.lock): its host name and process id, so a
-- waiting worker can say who holds a key, and a key held by a process of the same machine
-- that no longer runs (killed, crashed) is taken over at once instead of after its lease.
-- NULL for leases taken before this migration (or by a holder that does not say).
ALTER TABLE wfe_locks ADD COLUMN holder_host text, ADD COLUMN holder_pid integer;
