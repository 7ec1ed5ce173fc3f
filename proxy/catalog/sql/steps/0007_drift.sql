-- Drift detection's tables (see README.md, DRIFT; proxy/catalog/drift_watch.py writes them).
-- Released: never edit; a change is a new step.

-- One row: where the baseline stands. `format` is proxy/catalog/snapshot.py's FORMAT: a baseline
-- taken by a reader of another format is retaken rather than compared. `scanned_at` bounds the
-- migrations the next scan asks to explain what it sees (those committed since, with a margin),
-- and `seen_migrations` are the ones already used, so each explains changes once, in the first
-- scan whose snapshot shows it committed; `fingerprint` is the live schema's at the last scan,
-- so that a scan that finds it unchanged stops there.
CREATE TABLE IF NOT EXISTS @extschema@.drift_state (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    format integer NOT NULL,
    fingerprint text,
    baseline_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    scanned_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    seen_migrations bigint[] NOT NULL DEFAULT '{}'
);

-- The drift mode the proxies run with (config [drift] mode and block_scope), for the block
-- trigger (routines/drift.sql) to read at COMMIT. Written by each proxy's drift watcher when it
-- connects: replicas are expected to share one configuration.
CREATE TABLE IF NOT EXISTS @extschema@.drift_settings (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    mode text NOT NULL DEFAULT 'detect' CHECK (mode IN ('detect', 'block', 'off')),
    block_scope text NOT NULL DEFAULT 'electrified' CHECK (block_scope IN ('electrified', 'all')),
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
INSERT INTO @extschema@.drift_settings DEFAULT VALUES ON CONFLICT (id) DO NOTHING;

-- The expected schema, one row per object (snapshot.py's SchemaObject as JSON, by its key).
-- `digest` is the md5 of the object's JSON text, which snapshot.py's query also computes for the
-- live objects: a scan parses only the baseline objects whose digest differs.
CREATE TABLE IF NOT EXISTS @extschema@.drift_baseline (
    key text PRIMARY KEY,
    object jsonb NOT NULL,
    digest text GENERATED ALWAYS AS (pg_catalog.md5(object::text)) STORED
);

-- `electric-proxy drift accept`: who adopted which drift as the new baseline.
CREATE TABLE IF NOT EXISTS @extschema@.drift_acceptances (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    accepted_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    accepted_by text NOT NULL CHECK (accepted_by <> ''),  -- the --by NAME
    db_user text NOT NULL DEFAULT session_user,
    identities text[],  -- as named on the command line; NULL: --all
    changes jsonb NOT NULL  -- the changes accepted, as `drift --json` reported them
);

-- Drift found: one open row per drifted object (by snapshot key) until it is accepted, or until
-- it no longer differs from the baseline (resolved: put back by hand, or adopted by a migration
-- that touched the object).
CREATE TABLE IF NOT EXISTS @extschema@.drift_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    object_key text NOT NULL,
    identity text NOT NULL,
    object_type text NOT NULL,
    change text NOT NULL CHECK (change IN ('added', 'removed', 'modified', 'renamed')),
    severity text NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low')),
    electrified boolean NOT NULL,
    detail jsonb NOT NULL,
    attribution jsonb,  -- from the database's DDL log, when its triggers saw the change
    source text NOT NULL CHECK (source IN ('scan', 'event_trigger')),
    first_seen timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    last_seen timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'accepted', 'resolved')),
    closed_at timestamptz,
    acceptance_id bigint REFERENCES @extschema@.drift_acceptances (id)
);
CREATE UNIQUE INDEX IF NOT EXISTS drift_events_open
    ON @extschema@.drift_events (object_key) WHERE status = 'open';

REVOKE ALL ON @extschema@.drift_state, @extschema@.drift_settings, @extschema@.drift_baseline, @extschema@.drift_acceptances,
    @extschema@.drift_events FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA @extschema@ FROM PUBLIC;
