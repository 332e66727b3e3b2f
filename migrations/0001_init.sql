-- Tollgate schema, version 1: tenants, virtual keys, provider accounts and their sealed secrets,
-- routes, prices, the snapshot version counter, and usage (batches + time-partitioned events).
--
-- Applied by `tollgate-controlplane migrate` inside one transaction; no transaction control here.
-- Every config table notifies channel `tollgate_config` on change so the control plane rebuilds and
-- republishes the snapshot; usage tables do not.

CREATE TABLE tenants (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE virtual_keys (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name           text NOT NULL,
    key_hash       bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),  -- SHA-256 of the plaintext
    prefix         text NOT NULL,                                         -- "tg-" + 8 hex, for display
    allowed_models text[] NOT NULL DEFAULT '{}',                          -- empty = every route
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    expires_at     timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz
);
CREATE INDEX virtual_keys_tenant_idx ON virtual_keys (tenant_id, created_at);

CREATE TABLE providers (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL,
    kind       text NOT NULL,
    base_url   text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- sealed_secret = nonce || AES-256-GCM ciphertext || tag under TOLLGATE_MASTER_KEY, with the key's
-- own id (canonical lower-case UUID text) as associated data, so a blob cannot be moved to another row.
CREATE TABLE provider_keys (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    provider_id   uuid NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    ordinal       int NOT NULL,
    sealed_secret bytea NOT NULL,
    masked        text NOT NULL,
    weight        int NOT NULL DEFAULT 1 CHECK (weight >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider_id, ordinal)
);

CREATE TABLE routes (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE route_targets (
    route_id       uuid NOT NULL REFERENCES routes (id) ON DELETE CASCADE,
    ordinal        int NOT NULL,                 -- 0-based position; targets are tried in this order
    provider_id    uuid NOT NULL REFERENCES providers (id) ON DELETE RESTRICT,
    upstream_model text NOT NULL,
    weight         int NOT NULL DEFAULT 1 CHECK (weight >= 0),
    PRIMARY KEY (route_id, ordinal)
);
CREATE INDEX route_targets_provider_idx ON route_targets (provider_id);

CREATE TABLE prices (
    id                         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    provider_id                uuid REFERENCES providers (id) ON DELETE CASCADE,  -- NULL = any provider
    model                      text NOT NULL,
    input_usd_per_mtok         numeric(20, 9) NOT NULL CHECK (input_usd_per_mtok >= 0),
    output_usd_per_mtok        numeric(20, 9) NOT NULL CHECK (output_usd_per_mtok >= 0),
    cached_input_usd_per_mtok  numeric(20, 9) CHECK (cached_input_usd_per_mtok >= 0),  -- NULL = input price
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now()
);
-- One price per (provider or "any", model); portable to PostgreSQL < 15 (no NULLS NOT DISTINCT).
CREATE UNIQUE INDEX prices_provider_model_uq
    ON prices ((coalesce(provider_id, '00000000-0000-0000-0000-000000000000'::uuid)), model);

-- Snapshot versions: strictly increasing across control-plane restarts and replicas.
CREATE SEQUENCE snapshot_version;

-- Usage. A batch row makes ingestion idempotent on (instance_id, sequence).
CREATE TABLE usage_batches (
    instance_id text NOT NULL,
    sequence    bigint NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    records     int NOT NULL,
    PRIMARY KEY (instance_id, sequence)
);

CREATE TABLE usage_events (
    id                  bigserial,
    ts                  timestamptz NOT NULL,           -- when the request started
    received_at         timestamptz NOT NULL DEFAULT now(),
    request_id          text NOT NULL,
    instance_id         text NOT NULL,
    tenant_id           uuid,                           -- NULL for requests that never authenticated
    key_id              uuid,
    model               text NOT NULL,
    provider_id         uuid,
    upstream_model      text NOT NULL,
    input_tokens        bigint NOT NULL,
    output_tokens       bigint NOT NULL,
    cached_input_tokens bigint NOT NULL,
    cost_nanousd        bigint NOT NULL,
    status              int NOT NULL,
    stream              bool NOT NULL,
    latency_ms          int NOT NULL,
    endpoint            text NOT NULL,
    PRIMARY KEY (id, ts)
) PARTITION BY RANGE (ts);
-- Monthly partitions are added by partition management later; until then everything lands here.
CREATE TABLE usage_events_default PARTITION OF usage_events DEFAULT;
CREATE INDEX usage_events_tenant_ts_idx ON usage_events (tenant_id, ts);

-- Change notification for snapshot rebuilds. Statement level: one notification per statement, and
-- PostgreSQL folds identical notifications of one transaction into one.
CREATE FUNCTION tollgate_notify_config() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tollgate_config', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER tenants_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_notify_config();
CREATE TRIGGER virtual_keys_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON virtual_keys
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_notify_config();
CREATE TRIGGER providers_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON providers
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_notify_config();
CREATE TRIGGER provider_keys_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON provider_keys
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_notify_config();
CREATE TRIGGER routes_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON routes
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_notify_config();
CREATE TRIGGER route_targets_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON route_targets
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_notify_config();
CREATE TRIGGER prices_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON prices
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_notify_config();
