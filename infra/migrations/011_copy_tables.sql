-- Versioned tables: each copy of the statistics read model gets tables of its own. `stats`,
-- `stats_fold_state` and `stats_outbox` become list-partitioned by `copy`, with one partition per copy
-- (`stats_c2`, `stats_fold_state_c2`, `stats_outbox_c2` for copy 2). The code keeps reading and writing the
-- parent tables with `copy = $1` (PostgreSQL routes and prunes); a rebuild creates the new copy's tables
-- (`antq_create_copy`) and drops the old copy's tables at the end (`antq_drop_copy`) instead of deleting
-- its rows, which left the tables bloated after every rebuild.

CREATE FUNCTION antq_create_copy(c int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF c < 1 THEN
        RAISE EXCEPTION 'copy numbers start at 1, not %', c;
    END IF;
    -- fillfactor 70: updated rows stay on their page (HOT updates, see 005_hot_updates.sql)
    IF to_regclass(format('stats_c%s', c)) IS NULL THEN
        EXECUTE format('CREATE TABLE stats_c%s PARTITION OF stats FOR VALUES IN (%s) WITH (fillfactor = 70)', c, c);
    END IF;
    IF to_regclass(format('stats_fold_state_c%s', c)) IS NULL THEN
        EXECUTE format(
            'CREATE TABLE stats_fold_state_c%s PARTITION OF stats_fold_state FOR VALUES IN (%s) WITH (fillfactor = 70)',
            c, c);
    END IF;
    IF to_regclass(format('stats_outbox_c%s', c)) IS NULL THEN
        EXECUTE format('CREATE TABLE stats_outbox_c%s PARTITION OF stats_outbox FOR VALUES IN (%s)', c, c);
    END IF;
END
$$;

-- Locks the three parents in the order a runner's commit takes them (figures, fold state, outbox), so that a
-- drop and a commit never wait on each other in a cycle.
CREATE FUNCTION antq_drop_copy(c int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE stats, stats_fold_state, stats_outbox IN ACCESS EXCLUSIVE MODE;
    EXECUTE format('DROP TABLE IF EXISTS stats_c%s, stats_fold_state_c%s, stats_outbox_c%s', c, c, c);
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
DROP TABLE stats_unversioned, stats_fold_state_unversioned, stats_outbox_unversioned;
