-- Dispatch (06-dispatch §4) and the dispatch_queue contract (00-platform: Checkout writes,
-- Dispatch claims). Times are bound from the Clock; `version` is compared-and-set on every write.
CREATE TABLE IF NOT EXISTS dispatch_queue (
    id           BIGSERIAL PRIMARY KEY,
    order_id     TEXT UNIQUE NOT NULL,
    hub_id       TEXT NOT NULL,
    priority     SMALLINT NOT NULL DEFAULT 1,
    payload      JSONB NOT NULL,
    status       TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'claimed', 'done', 'failed')),
    attempts     INT NOT NULL DEFAULT 0,
    available_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    claimed_by   TEXT,
    claimed_at   TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Ours, beyond 00's columns: why the last attempt failed (kept on failed rows).
    last_error   TEXT
);
CREATE INDEX IF NOT EXISTS dispatch_queue_ready ON dispatch_queue (priority DESC, id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS dispatch_queue_claimed ON dispatch_queue (claimed_at) WHERE status = 'claimed';

CREATE TABLE IF NOT EXISTS drivers (
    id                    TEXT PRIMARY KEY,
    name                  TEXT NOT NULL DEFAULT '',
    lat                   DOUBLE PRECISION,
    lng                   DOUBLE PRECISION,
    loc_at                TIMESTAMPTZ,
    status                TEXT NOT NULL CHECK (status IN ('OFFLINE', 'IDLE', 'ASSIGNED', 'TO_HUB', 'PICKING', 'DELIVERING', 'COMPLETED')),
    load                  INT NOT NULL DEFAULT 0 CHECK (load >= 0),
    max_load              INT NOT NULL CHECK (max_load BETWEEN 1 AND 10),
    total_deliveries      BIGINT NOT NULL DEFAULT 0,
    last_assigned_at      TIMESTAMPTZ,
    skipped_count         INT NOT NULL DEFAULT 0,
    current_assignment_id TEXT,
    version               BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS drivers_idle ON drivers (id) WHERE status = 'IDLE';

CREATE TABLE IF NOT EXISTS dispatch_orders (
    id                    TEXT PRIMARY KEY,
    customer_id           TEXT NOT NULL,
    hub_id                TEXT NOT NULL,
    items                 JSONB NOT NULL,
    total                 BIGINT NOT NULL CHECK (total >= 0),
    priority              SMALLINT NOT NULL CHECK (priority BETWEEN 1 AND 9),
    status                TEXT NOT NULL CHECK (status IN ('PENDING', 'ASSIGNED', 'DISPATCHED', 'DELIVERED', 'FAILED')),
    created_at            TIMESTAMPTZ NOT NULL,
    delivery_lat          DOUBLE PRECISION NOT NULL,
    delivery_lng          DOUBLE PRECISION NOT NULL,
    pickup_lat            DOUBLE PRECISION,
    pickup_lng            DOUBLE PRECISION,
    assigned_driver_id    TEXT,
    current_assignment_id TEXT,
    batch_id              TEXT,
    reassign_count        INT NOT NULL DEFAULT 0,
    failure_reason        TEXT,
    excluded              JSONB NOT NULL DEFAULT '[]',
    pooled_at             TIMESTAMPTZ,
    reassign_due_at       TIMESTAMPTZ,
    version               BIGINT NOT NULL,
    CHECK (status <> 'FAILED' OR failure_reason IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS dispatch_orders_pool ON dispatch_orders (pooled_at, id) WHERE pooled_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS dispatch_orders_reassign ON dispatch_orders (reassign_due_at, id) WHERE reassign_due_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS dispatch_assignments (
    id          TEXT PRIMARY KEY,
    order_id    TEXT NOT NULL REFERENCES dispatch_orders,
    driver_id   TEXT NOT NULL REFERENCES drivers,
    status      TEXT NOT NULL CHECK (status IN ('PENDING', 'ACCEPTED', 'REJECTED', 'TIMEOUT', 'CANCELLED')),
    score       DOUBLE PRECISION NOT NULL,
    attempt     INT NOT NULL CHECK (attempt BETWEEN 1 AND 4),
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    accepted_at TIMESTAMPTZ,
    rejected_at TIMESTAMPTZ,
    -- Ours: set when the assignment stops being live (offer closed, order delivered or failed),
    -- so an ACCEPTED assignment of a delivered order frees its driver for the next one.
    finished_at TIMESTAMPTZ,
    version     BIGINT NOT NULL
);
-- Never two live assignments for one order or one driver (06 §4).
CREATE UNIQUE INDEX IF NOT EXISTS dispatch_assignments_live_order
    ON dispatch_assignments (order_id) WHERE status IN ('PENDING', 'ACCEPTED') AND finished_at IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS dispatch_assignments_live_driver
    ON dispatch_assignments (driver_id) WHERE status IN ('PENDING', 'ACCEPTED') AND finished_at IS NULL;
CREATE INDEX IF NOT EXISTS dispatch_assignments_offers
    ON dispatch_assignments (expires_at) WHERE status = 'PENDING' AND finished_at IS NULL;
CREATE INDEX IF NOT EXISTS dispatch_assignments_order ON dispatch_assignments (order_id);

CREATE TABLE IF NOT EXISTS driver_state_events (
    id         BIGSERIAL PRIMARY KEY,
    driver_id  TEXT NOT NULL REFERENCES drivers,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    reason     TEXT,
    at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS driver_state_events_driver ON driver_state_events (driver_id, id);
