-- What each office's refused submissions brought to ANTQ_REJECTED, per UTC day: the raw bytes the gateway
-- was asked to keep (kept or not). Beyond the office's quota (`rejected_quota_bytes` in the offices registry,
-- 64 MiB a day by default) a refusal is still recorded, without its raw body (`over_quota: true`). In
-- PostgreSQL, so that the count is shared by every gateway copy and survives a restart; one row per office and
-- day with refusals. Every name that is not a registered office shares the row of '_unknown'.
CREATE TABLE rejected_usage (
    office     text NOT NULL,
    day        date NOT NULL,
    raw_bytes  bigint NOT NULL CHECK (raw_bytes >= 0),
    PRIMARY KEY (office, day)
);
