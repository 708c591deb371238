-- Inventory system of record (01-inventory §6). Written only by the event writer.
CREATE TABLE IF NOT EXISTS inventory_stock (
    hub_id     TEXT NOT NULL,
    sku        TEXT NOT NULL,
    on_hand    INT NOT NULL,
    buckets    SMALLINT NOT NULL DEFAULT 1,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (hub_id, sku)
);

CREATE TABLE IF NOT EXISTS reservations (
    reservation_id UUID PRIMARY KEY,
    hub_id         TEXT NOT NULL,
    cart_id        TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('RESERVED', 'CONFIRMED', 'RELEASED', 'EXPIRED')),
    created_at     TIMESTAMPTZ NOT NULL,
    expires_at     TIMESTAMPTZ NOT NULL,
    confirmed_at   TIMESTAMPTZ,
    released_at    TIMESTAMPTZ,
    expired_at     TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS reservations_hub_status ON reservations (hub_id, status);
CREATE INDEX IF NOT EXISTS reservations_cart ON reservations (cart_id);
CREATE INDEX IF NOT EXISTS reservations_active_expiry ON reservations (expires_at) WHERE status = 'RESERVED';

CREATE TABLE IF NOT EXISTS reservation_items (
    reservation_id UUID NOT NULL REFERENCES reservations ON DELETE CASCADE,
    sku            TEXT NOT NULL,
    quantity       INT NOT NULL CHECK (quantity BETWEEN 1 AND 50),
    PRIMARY KEY (reservation_id, sku)
);

CREATE TABLE IF NOT EXISTS stock_movements (
    id             BIGSERIAL PRIMARY KEY,
    hub_id         TEXT NOT NULL,
    sku            TEXT NOT NULL,
    delta          INT NOT NULL,
    on_hand_after  INT NOT NULL,
    reason         TEXT NOT NULL CHECK (reason IN ('ADMIN_SET', 'CYCLE_COUNT', 'CONFIRM')),
    reservation_id UUID,
    actor          TEXT,
    stream_id      TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (hub_id, stream_id, sku)
);
CREATE INDEX IF NOT EXISTS stock_movements_hub_sku_time ON stock_movements (hub_id, sku, created_at);
