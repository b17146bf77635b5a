-- Zero-downtime rebuilds (projections/rebuild.py): a copy replaced by a rebuild is retired at the sequence
-- of the switch; its runner stops at its next commit, and its rows are dropped once no runner holds it.
ALTER TABLE projection_checkpoint ADD COLUMN retired_at_seq bigint;
