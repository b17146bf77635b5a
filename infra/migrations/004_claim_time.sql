-- When an entity was claimed: a claim whose creating event never reached the log (its publish failed) can be
-- taken over by another event after a while, instead of blocking that tip_id / case_id forever.
ALTER TABLE entity_claims ADD COLUMN claimed_at timestamptz NOT NULL DEFAULT now();
