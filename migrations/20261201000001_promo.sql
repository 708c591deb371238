-- Promo (05 §7): rules, one column per field (the tree, the effect and the limits as JSON),
-- versioned, with an audit row per write; redemptions, one per (rule, redemption id).
CREATE TABLE IF NOT EXISTS promo_rules (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    conditions        JSONB NOT NULL,
    priority          BIGINT NOT NULL,
    effect            JSONB NOT NULL,
    limits            JSONB NOT NULL,
    stackable         BOOLEAN NOT NULL,
    exclusivity_group TEXT,
    max_stackable     INT NOT NULL,
    start_at          TIMESTAMPTZ,
    end_at            TIMESTAMPTZ,
    status            TEXT NOT NULL CHECK (status IN ('active', 'inactive', 'expired')),
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL,
    version           BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS promo_rule_audit (
    id      BIGSERIAL PRIMARY KEY,
    rule_id TEXT NOT NULL REFERENCES promo_rules (id),
    version BIGINT NOT NULL,
    action  TEXT NOT NULL CHECK (action IN ('create', 'replace', 'expire')),
    body    JSONB NOT NULL,
    at      TIMESTAMPTZ NOT NULL,
    UNIQUE (rule_id, version)
);

CREATE TABLE IF NOT EXISTS promo_redemptions (
    id              BIGSERIAL PRIMARY KEY,
    redemption_id   TEXT NOT NULL,
    rule_id         TEXT NOT NULL REFERENCES promo_rules (id),
    user_id         TEXT NOT NULL,
    discount_amount BIGINT NOT NULL CHECK (discount_amount >= 0),
    cashback_amount BIGINT NOT NULL CHECK (cashback_amount >= 0),
    device_hash     TEXT,
    address         TEXT,
    status          TEXT NOT NULL CHECK (status IN ('reserved', 'released')),
    created_at      TIMESTAMPTZ NOT NULL,
    released_at     TIMESTAMPTZ,
    UNIQUE (rule_id, redemption_id)
);
CREATE INDEX IF NOT EXISTS promo_redemptions_rule ON promo_redemptions (rule_id, status);
