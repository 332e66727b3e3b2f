-- Config deltas for virtual keys (docs/architecture.md, "Snapshots and deltas").
--
-- Every insert or update of a key stamps it with the next value of virtual_key_change_seq; a hard
-- delete leaves a tombstone stamped from the same sequence. The control plane remembers the highest
-- stamp it has published (its high-water mark) and on a notification selects only what is above it.
--
-- Why the advisory lock: a sequence hands out numbers in call order, not commit order. If a
-- transaction stamped 11 committed before one stamped 10, a reader could see 11, move its mark to 11
-- and never see 10. Taking one transaction-scoped lock before stamping makes writers of keys commit in
-- stamp order (the lock is released only after the commit is visible), so whatever a reader sees is a
-- prefix of the stamps. Key writes are rare and short (admin API, bulk SQL takes the lock once).
CREATE SEQUENCE virtual_key_change_seq;

ALTER TABLE virtual_keys ADD COLUMN change_seq bigint NOT NULL DEFAULT nextval('virtual_key_change_seq');
CREATE INDEX virtual_keys_change_seq_idx ON virtual_keys (change_seq);

CREATE TABLE virtual_key_tombstones (
    key_id     uuid NOT NULL,
    tenant_id  uuid NOT NULL,
    change_seq bigint NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX virtual_key_tombstones_seq_idx ON virtual_key_tombstones (change_seq);

-- 0x746f6c6c = 'toll': the lock id of key stamping, shared by both triggers.
CREATE FUNCTION tollgate_key_stamp() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1953459308);
    IF TG_OP = 'DELETE' THEN
        INSERT INTO virtual_key_tombstones (key_id, tenant_id, change_seq)
        VALUES (OLD.id, OLD.tenant_id, nextval('virtual_key_change_seq'));
        RETURN OLD;
    END IF;
    NEW.change_seq := nextval('virtual_key_change_seq');
    RETURN NEW;
END
$$;

CREATE TRIGGER virtual_keys_stamp BEFORE INSERT OR UPDATE ON virtual_keys
    FOR EACH ROW EXECUTE FUNCTION tollgate_key_stamp();
CREATE TRIGGER virtual_keys_tombstone AFTER DELETE ON virtual_keys
    FOR EACH ROW EXECUTE FUNCTION tollgate_key_stamp();

-- Key changes notify with payload 'keys' (the control plane publishes a delta); a TRUNCATE leaves no
-- tombstones, so it asks for a reload of every key ('keys_reload'). Everything else keeps ''.
CREATE FUNCTION tollgate_notify_keys() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tollgate_config', CASE WHEN TG_OP = 'TRUNCATE' THEN 'keys_reload' ELSE 'keys' END);
    RETURN NULL;
END
$$;

DROP TRIGGER virtual_keys_notify ON virtual_keys;
CREATE TRIGGER virtual_keys_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON virtual_keys
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_notify_keys();

-- Deleting a key cascades a DELETE to budgets and rate_limits, whose statement triggers fired even when
-- no row of theirs went, turning every key delete into a full rebuild. Their DELETE now notifies only
-- when rows were deleted (a transition table says which).
CREATE FUNCTION tollgate_notify_config_if_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM gone) THEN
        PERFORM pg_notify('tollgate_config', '');
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER budgets_notify ON budgets;
CREATE TRIGGER budgets_notify AFTER INSERT OR UPDATE OR TRUNCATE ON budgets
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_notify_config();
CREATE TRIGGER budgets_notify_delete AFTER DELETE ON budgets REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_notify_config_if_rows();
DROP TRIGGER rate_limits_notify ON rate_limits;
CREATE TRIGGER rate_limits_notify AFTER INSERT OR UPDATE OR TRUNCATE ON rate_limits
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_notify_config();
CREATE TRIGGER rate_limits_notify_delete AFTER DELETE ON rate_limits REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_notify_config_if_rows();
