-- Checkout (04 §Postgres): orders with their lines and saga log, the transactional outbox, and
-- processed payment webhooks. `dispatch_queue` is Dispatch's migration (00's one definition).
CREATE TABLE IF NOT EXISTS checkout_orders (
    id              UUID PRIMARY KEY,
    user_id         TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    hub_id          TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'cancelled', 'failed')),
    payment_status  TEXT NOT NULL DEFAULT 'none' CHECK (payment_status IN
                        ('none', 'charged', 'confirmed', 'declined', 'refunded', 'refund_pending', 'failed')),
    subtotal        BIGINT NOT NULL CHECK (subtotal >= 0),
    discount        BIGINT NOT NULL DEFAULT 0 CHECK (discount >= 0),
    total           BIGINT NOT NULL CHECK (total >= 0),
    currency        CHAR(3) NOT NULL DEFAULT 'IDR',
    reservation_id  UUID,
    transaction_id  TEXT UNIQUE,
    applied_promos  JSONB,
    delivery_lat    DOUBLE PRECISION NOT NULL,
    delivery_lng    DOUBLE PRECISION NOT NULL,
    priority        SMALLINT NOT NULL DEFAULT 1,
    failed_step     TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX IF NOT EXISTS checkout_orders_status ON checkout_orders (status, updated_at);

CREATE TABLE IF NOT EXISTS checkout_order_items (
    order_id   UUID NOT NULL REFERENCES checkout_orders (id) ON DELETE CASCADE,
    line_no    INT NOT NULL,
    sku        TEXT NOT NULL,
    name       TEXT,
    quantity   INT NOT NULL CHECK (quantity BETWEEN 1 AND 50),
    unit_price BIGINT NOT NULL CHECK (unit_price >= 0),
    PRIMARY KEY (order_id, line_no)
);

CREATE TABLE IF NOT EXISTS checkout_saga_steps (
    id       BIGSERIAL PRIMARY KEY,
    order_id UUID NOT NULL,
    step     TEXT NOT NULL,
    action   TEXT NOT NULL CHECK (action IN ('execute', 'compensate')),
    outcome  TEXT NOT NULL CHECK (outcome IN ('ok', 'error')),
    error    TEXT,
    at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS checkout_saga_steps_order ON checkout_saga_steps (order_id);

CREATE TABLE IF NOT EXISTS checkout_outbox (
    id              UUID PRIMARY KEY,
    aggregate_id    UUID NOT NULL,
    event_type      TEXT NOT NULL,
    payload         JSONB NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'dead')),
    attempts        INT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    sent_at         TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS checkout_outbox_due ON checkout_outbox (next_attempt_at) WHERE status = 'pending';

CREATE TABLE IF NOT EXISTS checkout_processed_webhooks (
    transaction_id TEXT PRIMARY KEY,
    order_id       UUID,
    event_status   TEXT NOT NULL,
    received_at    TIMESTAMPTZ NOT NULL
);
