-- The ingest gateway's own index of the event log: event_id -> stream sequence and body hash.
-- It answers duplicates after JetStream's dedup window has passed. Caught up from the stream on start.
CREATE TABLE event_index (
    event_id   uuid PRIMARY KEY,
    seq        bigint NOT NULL UNIQUE,
    body_hash  bytea NOT NULL,
    type       text NOT NULL,
    ward       text NOT NULL,
    subject    text NOT NULL
);

-- Up to which stream sequence the index was caught up by reading the stream in order.
CREATE TABLE event_index_checkpoint (
    id   boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq  bigint NOT NULL
);
INSERT INTO event_index_checkpoint (seq) VALUES (0);

-- Lifecycle entities (tips, mediation cases) claimed before their creating event is published, so two
-- offices cannot create the same tip_id or case_id, even in different wards.
CREATE TABLE entity_claims (
    entity    text PRIMARY KEY,          -- 'tip:<uuid>' or 'case:<uuid>'
    event_id  uuid NOT NULL,             -- the creating event
    ward      text NOT NULL,
    subject   text NOT NULL
);
