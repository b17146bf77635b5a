-- The statistics read model (projections/), built for zero-downtime rebuilds: every read-model table has a
-- `copy` column. A rebuild folds the log into a new copy while the live runner keeps the active one up to
-- date; switching is one update of projection_active.

-- Which copy of a projection the queries read.
CREATE TABLE projection_active (
    name  text PRIMARY KEY,
    copy  int  NOT NULL
);
INSERT INTO projection_active (name, copy) VALUES ('stats', 1);

-- Up to which JetStream stream sequence (of ANTQ_EVENTS) a copy is folded, by which fold version; `halted`
-- holds the reason when the runner stopped on an event it cannot apply (then figures are stale).
CREATE TABLE projection_checkpoint (
    name          text        NOT NULL,
    copy          int         NOT NULL,
    seq           bigint      NOT NULL DEFAULT 0 CHECK (seq >= 0),
    fold_version  int         NOT NULL,
    halted        text,
    halted_seq    bigint,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, copy)
);

-- Figures per ward, year and metric, for both kinds of year.
CREATE TABLE stats (
    copy      int    NOT NULL,
    period    text   NOT NULL CHECK (period IN ('calendar', 'reporting')),
    province  text   NOT NULL,
    ward      text   NOT NULL,
    year      int    NOT NULL,
    metric    text   NOT NULL,
    value     bigint NOT NULL,
    PRIMARY KEY (copy, period, ward, year, metric)
);
-- Province rollups.
CREATE INDEX stats_by_province ON stats (copy, period, province, year);

-- The fold's state (projections/folds.py): small keys to small msgpack values.
CREATE TABLE stats_fold_state (
    copy   int   NOT NULL,
    key    bytea NOT NULL,
    value  bytea NOT NULL,
    PRIMARY KEY (copy, key)
);

-- Updates written in the same transaction as the figures, published to ANTQ_UPDATES after the commit and
-- then deleted: none is lost to a crash between commit and publish.
CREATE TABLE stats_outbox (
    copy      int    NOT NULL,
    province  text   NOT NULL,
    ward      text   NOT NULL,
    year      int    NOT NULL,
    seq       bigint NOT NULL,
    payload   bytea  NOT NULL,
    PRIMARY KEY (copy, seq, ward, year)
);
