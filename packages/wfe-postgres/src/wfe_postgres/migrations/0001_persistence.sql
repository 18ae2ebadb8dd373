-- Persistence: workflow instances (a head row, one row per pointer, one row per child id),
-- events, subscriptions and errors. Every statement runs with search_path set to the
-- provider's schema. Frozen once shipped: add a new numbered file instead of editing this one.
--
-- Documents are the model objects' JSON as text (TEXT, not JSONB: nothing queries inside
-- them, and TEXT costs the server no parsing per write; see docs/providers/postgres.md). The
-- other columns exist for the queries and are derived from the document on every write.

CREATE TABLE workflows (
    id              text        PRIMARY KEY,
    definition_id   text        NOT NULL,
    version         integer     NOT NULL,
    status          text        NOT NULL,
    reference       text,
    next_execution  timestamptz,
    create_time     timestamptz NOT NULL,
    complete_time   timestamptz,
    revision        bigint      NOT NULL,
    -- How many rows of pointers the instance has (get_pointers' total without a count).
    pointer_count   integer     NOT NULL,
    -- The highest fencing token (Lease.token) a write has carried; NULL: none yet.
    fence           bigint,
    -- Ties between equal create_time values, in the order instances were stored.
    seq             bigint      GENERATED ALWAYS AS IDENTITY,
    document        text        NOT NULL
);
-- The scheduler's polls: due runnable instances, and the earliest due time.
CREATE INDEX workflows_runnable ON workflows (next_execution, seq)
    WHERE status = 'runnable' AND next_execution IS NOT NULL;
-- list_workflows: newest first, with or without each filter.
CREATE INDEX workflows_created ON workflows (create_time DESC, seq DESC);
CREATE INDEX workflows_status_created ON workflows (status, create_time DESC, seq DESC);
CREATE INDEX workflows_definition_created
    ON workflows (definition_id, create_time DESC, seq DESC);
CREATE INDEX workflows_reference_created ON workflows (reference, create_time DESC, seq DESC)
    WHERE reference IS NOT NULL;
-- purge_workflows: finished before a time, by status.
CREATE INDEX workflows_completed ON workflows (status, complete_time)
    WHERE complete_time IS NOT NULL;

CREATE TABLE pointers (
    workflow_id     text        NOT NULL,
    position        integer     NOT NULL,
    -- The pointer without its children (they are rows of pointer_children).
    document        text        NOT NULL,
    PRIMARY KEY (workflow_id, position)
);

CREATE TABLE pointer_children (
    workflow_id     text        NOT NULL,
    position        integer     NOT NULL,
    idx             integer     NOT NULL,
    child_id        text        NOT NULL,
    PRIMARY KEY (workflow_id, position, idx)
);

CREATE TABLE events (
    seq             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              text        NOT NULL UNIQUE,
    name            text        NOT NULL,
    key             text        NOT NULL,
    time            timestamptz NOT NULL,
    is_processed    boolean     NOT NULL,
    document        text        NOT NULL
);
CREATE INDEX events_unprocessed ON events (time, seq) WHERE NOT is_processed;
CREATE INDEX events_by_name_key ON events (name, key, time, seq);

CREATE TABLE subscriptions (
    seq             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              text        NOT NULL UNIQUE,
    workflow_id     text        NOT NULL,
    event_name      text        NOT NULL,
    event_key       text        NOT NULL,
    subscribe_as_of timestamptz NOT NULL,
    create_time     timestamptz NOT NULL,
    terminated      boolean     NOT NULL,
    document        text        NOT NULL
);
CREATE INDEX subscriptions_open
    ON subscriptions (event_name, event_key, subscribe_as_of, create_time, seq)
    WHERE NOT terminated;
CREATE INDEX subscriptions_workflow ON subscriptions (workflow_id);

CREATE TABLE errors (
    seq             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id     text        NOT NULL,
    time            timestamptz NOT NULL,
    document        text        NOT NULL
);
CREATE INDEX errors_workflow ON errors (workflow_id, time, seq);
