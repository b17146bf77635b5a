-- Versioned tables: each copy of the statistics read model gets tables of its own. `stats`,
-- `stats_fold_state` and `stats_outbox` become list-partitioned by `copy`, with one partition per copy
-- (`stats_c2`, `stats_fold_state_c2`, `stats_outbox_c2` for copy 2). The code keeps reading and writing the
-- parent tables with `copy = $1` (PostgreSQL routes and prunes); a rebuild creates the new copy's tables
-- (`antq_create_copy`) and, at the end, detaches the old copy's tables concurrently and drops them
-- (projections/copies.py), instead of deleting its rows, which left the tables bloated after every rebuild.
--
-- Neither step takes a lock that queues queries behind it: a partition is created apart and then attached
-- (SHARE UPDATE EXCLUSIVE on the parent, which readers and writers do not conflict with), and a detach
-- CONCURRENTLY waits for the reads under way without blocking new ones. `CREATE TABLE ... PARTITION OF` or a
-- plain DROP would take ACCESS EXCLUSIVE on the parent: while a long read held it, every query would wait.

CREATE FUNCTION antq_create_copy(c int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    parent text;
BEGIN
    IF c < 1 THEN
        RAISE EXCEPTION 'copy numbers start at 1, not %', c;
    END IF;
    FOREACH parent IN ARRAY ARRAY['stats', 'stats_fold_state', 'stats_outbox'] LOOP
        IF to_regclass(format('%s_c%s', parent, c)) IS NULL THEN
            -- fillfactor 70 on figures and fold state: updated rows stay on their page (HOT updates, 005)
            EXECUTE format(
                'CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS) WITH (fillfactor = %s)',
                parent || '_c' || c, parent, CASE WHEN parent = 'stats_outbox' THEN 100 ELSE 70 END);
            -- the partition's constraint, so that the attach need not scan it (it is empty anyway)
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (copy = %s)',
                parent || '_c' || c, parent || '_c' || c || '_copy', c);
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES IN (%s)', parent, parent || '_c' || c, c);
        END IF;
    END LOOP;
END
$$;

ALTER TABLE stats RENAME TO stats_unversioned;
ALTER INDEX stats_pkey RENAME TO stats_unversioned_pkey;
ALTER INDEX stats_by_province RENAME TO stats_unversioned_by_province;
ALTER TABLE stats_fold_state RENAME TO stats_fold_state_unversioned;
ALTER INDEX stats_fold_state_pkey RENAME TO stats_fold_state_unversioned_pkey;
ALTER TABLE stats_outbox RENAME TO stats_outbox_unversioned;
ALTER INDEX stats_outbox_pkey RENAME TO stats_outbox_unversioned_pkey;

CREATE TABLE stats (
    copy      int    NOT NULL,
    period    text   NOT NULL CHECK (period IN ('calendar', 'reporting')),
    province  text   NOT NULL,
    ward      text   NOT NULL,
    year      int    NOT NULL,
    metric    text   NOT NULL,
    value     bigint NOT NULL,
    PRIMARY KEY (copy, period, ward, year, metric)
) PARTITION BY LIST (copy);
CREATE INDEX stats_by_province ON stats (copy, period, province, year);

CREATE TABLE stats_fold_state (
    copy   int   NOT NULL,
    key    bytea NOT NULL,
    value  bytea NOT NULL,
    PRIMARY KEY (copy, key)
) PARTITION BY LIST (copy);

CREATE TABLE stats_outbox (
    copy      int    NOT NULL,
    province  text   NOT NULL,
    ward      text   NOT NULL,
    year      int    NOT NULL,
    seq       bigint NOT NULL,
    payload   bytea  NOT NULL,
    PRIMARY KEY (copy, seq, ward, year)
) PARTITION BY LIST (copy);

-- the tables of every copy there is (the active one, and any other a checkpoint or a row names)
SELECT antq_create_copy(c) FROM (
    SELECT copy AS c FROM projection_active
    UNION SELECT copy FROM projection_checkpoint
    UNION SELECT DISTINCT copy FROM stats_unversioned
    UNION SELECT DISTINCT copy FROM stats_fold_state_unversioned
    UNION SELECT DISTINCT copy FROM stats_outbox_unversioned
) AS copies;

INSERT INTO stats SELECT * FROM stats_unversioned;
INSERT INTO stats_fold_state SELECT * FROM stats_fold_state_unversioned;
INSERT INTO stats_outbox SELECT * FROM stats_outbox_unversioned;

-- what others were granted on the old tables (the auditor's SELECT, from postgres_auditor.sql), on the new ones
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT t.new_name, a.privilege_type, r.rolname
        FROM (VALUES ('stats_unversioned', 'stats'), ('stats_fold_state_unversioned', 'stats_fold_state'),
                     ('stats_outbox_unversioned', 'stats_outbox')) AS t(old_name, new_name)
        JOIN pg_class c ON c.oid = t.old_name::regclass
        CROSS JOIN LATERAL aclexplode(c.relacl) AS a
        JOIN pg_roles r ON r.oid = a.grantee
        WHERE a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON %I TO %I', g.privilege_type, g.new_name, g.rolname);
    END LOOP;
END
$$;

DROP TABLE stats_unversioned, stats_fold_state_unversioned, stats_outbox_unversioned;
