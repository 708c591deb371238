-- Flash sale (03 "Postgres"): confirmed orders and their outbox, written in one transaction
-- after the confirm script returned 1 (a repeated confirm writes nothing new).
CREATE TABLE IF NOT EXISTS flash_sale_orders (
    order_id       TEXT PRIMARY KEY,
    reservation_id TEXT UNIQUE NOT NULL,
    product_id     TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    quantity       INT NOT NULL CHECK (quantity > 0),
    confirmed_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS flash_sale_orders_product ON flash_sale_orders (product_id);

CREATE TABLE IF NOT EXISTS flash_outbox (
    id              BIGSERIAL PRIMARY KEY,
    aggregate_id    TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    payload         JSONB NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'dead')),
    created_at      TIMESTAMPTZ NOT NULL,
    sent_at         TIMESTAMPTZ,
    UNIQUE (aggregate_id, event_type)
);
CREATE INDEX IF NOT EXISTS flash_outbox_pending ON flash_outbox (id) WHERE status = 'pending';
