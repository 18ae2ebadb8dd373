-- The work queue and the lock (wfe_postgres.queue, wfe_postgres.lock).

-- One row per enqueued item. receipt IS NULL: waiting (visible from visible_at on, so a
-- requeue with a delay is a waiting row visible later); receipt set: delivered, in flight
-- until visible_at, after which the delivery has lapsed and the item is handed out again.
-- seq orders the queue (FIFO); a requeue takes a new seq (the tail).
CREATE TABLE wfe_queue (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue text NOT NULL,
    item_id text NOT NULL,
    receipt text,
    visible_at timestamptz NOT NULL,
    attempt integer NOT NULL DEFAULT 0,
    enqueued_at timestamptz NOT NULL,
    delivered_at timestamptz
);
-- One waiting copy per id (an enqueue of a waiting id is a no-op).
CREATE UNIQUE INDEX ux_wfe_queue_waiting ON wfe_queue (queue, item_id) WHERE receipt IS NULL;
-- The dequeue walks the waiting items in FIFO order.
CREATE INDEX ix_wfe_queue_fifo ON wfe_queue (queue, seq) WHERE receipt IS NULL;
-- When the next delayed item becomes visible.
CREATE INDEX ix_wfe_queue_delayed ON wfe_queue (queue, visible_at) WHERE receipt IS NULL;
-- Deliveries by deadline: the lapsed ones, and when the next one lapses.
CREATE INDEX ix_wfe_queue_in_flight ON wfe_queue (queue, visible_at) WHERE receipt IS NOT NULL;
CREATE UNIQUE INDEX ux_wfe_queue_receipt ON wfe_queue (receipt) WHERE receipt IS NOT NULL;

-- One row per held (or expired, not yet retaken) lease; a release deletes it.
CREATE TABLE wfe_locks (
    key text PRIMARY KEY,
    owner text NOT NULL,
    token bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
-- Fencing tokens: a sequence is never reset and never goes back (not by a release, a
-- rollback or a restart of the server), so every acquisition gets a larger token.
CREATE SEQUENCE wfe_lock_tokens AS bigint;
