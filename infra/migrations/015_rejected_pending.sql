-- Refusals' records that ANTQ_REJECTED could not take at once (no stream leader during an election, the stream
-- away), kept here until it does (services/gateway/rejected_later.py). A gateway copy inserts a record whose
-- write failed before it answers the office, and deletes it once the stream acknowledged it (or called it a
-- duplicate: its Nats-Msg-Id, in `headers`, was chosen once). Every copy drains the table on start and
-- periodically, one office at a time, oldest first: a copy that dies leaves its records to the others.
-- `owner`: the process that inserted the record (a copy counts the records of others it kept as recovered).
CREATE TABLE gateway_rejected_pending (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    office      text        NOT NULL,  -- the subject's last token: records of one office are sent in id order
    subject     text        NOT NULL,
    headers     jsonb       NOT NULL,
    data        bytea       NOT NULL,
    owner       text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gateway_rejected_pending_office ON gateway_rejected_pending (office, id);

-- What the table holds, kept by the same statements that insert and delete (one row): an insert is refused
-- when it would take the table beyond the gateway's bound (records, bytes of `data`), atomically across
-- copies, without counting the table.
CREATE TABLE gateway_rejected_pending_total (
    one      boolean PRIMARY KEY DEFAULT true CHECK (one),
    records  bigint  NOT NULL CHECK (records >= 0),
    bytes    bigint  NOT NULL CHECK (bytes >= 0)
);
INSERT INTO gateway_rejected_pending_total (records, bytes) VALUES (0, 0);
