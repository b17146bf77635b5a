-- A seal may record a restore (services/sealer/chain.py, "restored" seals): the creation time of the stream
-- the chain sealed before, when the stream was restored from a backup and so created anew. NULL: a range seal.
ALTER TABLE seals ADD COLUMN restored_from timestamptz;
