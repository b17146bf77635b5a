-- Seals of the event log, kept outside NATS: deny_delete does not stop someone deleting and recreating a
-- whole stream, so every seal appended to ANTQ_SEALS is also stored here (services/sealer). The columns
-- are the seal's fields (services/sealer/chain.py defines the digest layout); one chain per sealed stream.
CREATE TABLE seals (
    stream          text        NOT NULL,
    number          bigint      NOT NULL CHECK (number >= 1),
    first_seq       bigint      NOT NULL CHECK (first_seq >= 1),
    last_seq        bigint      NOT NULL CHECK (last_seq >= first_seq),
    count           bigint      NOT NULL CHECK (count >= 0),
    stream_created  timestamptz NOT NULL,
    prev_digest     text        NOT NULL,
    range_digest    text        NOT NULL,
    content_digest  text        NOT NULL,
    digest          text        NOT NULL,
    sealed_at       timestamptz NOT NULL,
    signer          text        NOT NULL,
    signature       text        NOT NULL,
    seals_seq       bigint,                              -- where it sits in ANTQ_SEALS (informational)
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, number)
);

-- Append-only: an ordinary UPDATE or DELETE fails. Someone who disables this trigger can still edit a row;
-- `antq audit seals` then reports the row disagreeing with ANTQ_SEALS or failing its digest or signature.
CREATE FUNCTION seals_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'seals are append-only (% refused)', TG_OP;
END;
$$;

CREATE TRIGGER seals_append_only
    BEFORE UPDATE OR DELETE ON seals
    FOR EACH ROW EXECUTE FUNCTION seals_append_only();

CREATE TRIGGER seals_no_truncate
    BEFORE TRUNCATE ON seals
    FOR EACH STATEMENT EXECUTE FUNCTION seals_append_only();
