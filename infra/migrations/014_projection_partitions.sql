-- The statistics projection split across worker processes by province (projections/partitions.py).
--
-- A copy is folded by `parts` workers (1: one runner, its checkpoint is `projection_checkpoint.seq`, as before).
-- With parts > 1, worker k of n consumes only the events of its provinces (a filtered durable consumer) and
-- keeps its OWN checkpoint here, advanced in the same transaction as its figures: every event of its provinces
-- at or below `seq` is folded in (a partition with nothing pending is moved up to the stream's last sequence it
-- saw). `projection_checkpoint.seq` of such a copy is then the lowest of its partitions' sequences, raised by
-- each worker after its commits (never lowered): every event at or below it is in the figures. That is what
-- queries report as `as_of_seq` and what `min_seq` waits for; every reader keeps reading projection_checkpoint.
ALTER TABLE projection_checkpoint ADD COLUMN parts int NOT NULL DEFAULT 1 CHECK (parts BETWEEN 1 AND 34);

CREATE TABLE projection_partition (
    name        text        NOT NULL,
    copy        int         NOT NULL,
    parts       int         NOT NULL CHECK (parts BETWEEN 2 AND 34),
    part        int         NOT NULL CHECK (part >= 0 AND part < parts),
    seq         bigint      NOT NULL CHECK (seq >= 0),
    halted      text,
    halted_seq  bigint,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, copy, parts, part),
    FOREIGN KEY (name, copy) REFERENCES projection_checkpoint (name, copy) ON DELETE CASCADE
);

-- what may read the checkpoint may read the partitions' (the auditor, the query service)
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT a.privilege_type, r.rolname
        FROM pg_class c
        CROSS JOIN LATERAL aclexplode(c.relacl) AS a
        JOIN pg_roles r ON r.oid = a.grantee
        WHERE c.oid = 'projection_checkpoint'::regclass AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON projection_partition TO %I', g.privilege_type, g.rolname);
    END LOOP;
END
$$;
