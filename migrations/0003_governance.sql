-- Governance, version 3: teams under tenants, richer virtual keys, budgets and rate limits at every
-- level, tenant-scoped admin tokens and the audit log of every admin change.
--
-- Money is integer nano-USD everywhere (bigint): $1.00 = 1,000,000,000. Budget periods are aligned to
-- the calendar in the tenant's time zone (tenants.time_zone, an IANA name; UTC by default).

-- log_content: the tenant allows prompt and completion text in access logs (off by default; even then
-- secrets and keys never are).
ALTER TABLE tenants ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC',
    ADD COLUMN log_content boolean NOT NULL DEFAULT false;

CREATE TABLE teams (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    metadata   jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, id)  -- target of the composite key below: a key's team is in the key's tenant
);

-- A key belongs to its tenant and optionally to one team of that tenant. allowed_models holds exact
-- names and glob patterns ('*' any run, '?' one character); empty = every route. allowed_providers
-- holds provider account ids; empty = every provider. Rotation: the new key records the one it
-- replaces; the old key keeps working until its expires_at (the grace period).
ALTER TABLE virtual_keys
    ADD COLUMN team_id uuid,
    ADD COLUMN allowed_providers uuid[] NOT NULL DEFAULT '{}',
    ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    ADD COLUMN tags text[] NOT NULL DEFAULT '{}',
    ADD COLUMN rotated_from uuid REFERENCES virtual_keys (id) ON DELETE SET NULL,
    ADD CONSTRAINT virtual_keys_team_fk FOREIGN KEY (tenant_id, team_id) REFERENCES teams (tenant_id, id)
        ON DELETE RESTRICT;
CREATE INDEX virtual_keys_team_idx ON virtual_keys (team_id) WHERE team_id IS NOT NULL;

-- The reservation cap for requests that give no max_tokens (0 = the gateway's default).
ALTER TABLE routes ADD COLUMN default_max_tokens int NOT NULL DEFAULT 0 CHECK (default_max_tokens >= 0);

-- One row per budget. scope says which of team_id / key_id is set (tenant: neither). model, when set,
-- limits the budget to requests for that public model name. hard_nanousd is enforced at admission;
-- soft_nanousd only raises an alert (log line, metric, audit) when crossed.
CREATE TABLE budgets (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    scope         text NOT NULL CHECK (scope IN ('tenant', 'team', 'key')),
    team_id       uuid REFERENCES teams (id) ON DELETE CASCADE,
    key_id        uuid REFERENCES virtual_keys (id) ON DELETE CASCADE,
    model         text CHECK (model IS NULL OR length(model) BETWEEN 1 AND 200),
    period        text NOT NULL CHECK (period IN ('hourly', 'daily', 'weekly', 'monthly', 'total')),
    hard_nanousd  bigint NOT NULL CHECK (hard_nanousd >= 0),
    soft_nanousd  bigint CHECK (soft_nanousd IS NULL OR (soft_nanousd >= 0 AND soft_nanousd <= hard_nanousd)),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((scope = 'tenant' AND team_id IS NULL AND key_id IS NULL) OR
           (scope = 'team' AND team_id IS NOT NULL AND key_id IS NULL) OR
           (scope = 'key' AND key_id IS NOT NULL AND team_id IS NULL))
);
CREATE UNIQUE INDEX budgets_scope_uq ON budgets (tenant_id, scope,
    (coalesce(team_id, key_id, '00000000-0000-0000-0000-000000000000'::uuid)), (coalesce(model, '')), period);

-- Rate limits, same scopes. window_s is the window of rpm/tpm style limits (60 for "per minute"; tests
-- use 1); NULL limits are not enforced. concurrent caps requests in flight across all dataplanes.
CREATE TABLE rate_limits (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    scope              text NOT NULL CHECK (scope IN ('tenant', 'team', 'key')),
    team_id            uuid REFERENCES teams (id) ON DELETE CASCADE,
    key_id             uuid REFERENCES virtual_keys (id) ON DELETE CASCADE,
    window_s           int NOT NULL DEFAULT 60 CHECK (window_s BETWEEN 1 AND 86400),
    requests_per_window bigint CHECK (requests_per_window IS NULL OR requests_per_window >= 0),
    tokens_per_window  bigint CHECK (tokens_per_window IS NULL OR tokens_per_window >= 0),
    concurrent         int CHECK (concurrent IS NULL OR concurrent >= 0),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((scope = 'tenant' AND team_id IS NULL AND key_id IS NULL) OR
           (scope = 'team' AND team_id IS NOT NULL AND key_id IS NULL) OR
           (scope = 'key' AND key_id IS NOT NULL AND team_id IS NULL))
);
CREATE UNIQUE INDEX rate_limits_scope_uq ON rate_limits (tenant_id, scope,
    (coalesce(team_id, key_id, '00000000-0000-0000-0000-000000000000'::uuid)));

-- Admin tokens besides the global one (TOLLGATE_ADMIN_TOKEN): bound to one tenant, role admin
-- (read/write within the tenant) or viewer (read only). Only the SHA-256 of the token is kept.
CREATE TABLE admin_tokens (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role       text NOT NULL CHECK (role IN ('admin', 'viewer')),
    token_hash bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    prefix     text NOT NULL,
    status     text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- Every admin change: who (admin token id, NULL for the global token), what, on which target, the
-- row before and after (secrets masked), when and under which request id. Append only.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,               -- 'global' or 'token:<uuid>'
    tenant_id   uuid,                        -- the tenant the change belongs to, NULL for global objects
    action      text NOT NULL,               -- e.g. 'key.create', 'budget.update'
    target_type text NOT NULL,
    target_id   text,
    before      jsonb,
    after       jsonb,
    request_id  text NOT NULL
);
CREATE INDEX audit_log_tenant_at_idx ON audit_log (tenant_id, at);

CREATE TRIGGER teams_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON teams
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_notify_config();
CREATE TRIGGER budgets_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON budgets
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_notify_config();
CREATE TRIGGER rate_limits_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON rate_limits
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_notify_config();

-- Usage carries the key's team (NULL when the key has none) so reports and rollups can group by it.
ALTER TABLE usage_events ADD COLUMN team_id uuid;
