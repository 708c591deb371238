-- ETA analytics (07-eta §4): written asynchronously (a bounded queue; dropped on overflow), never
-- on the request path. They feed offline coverage reports. Times are bound from the Clock.
CREATE TABLE IF NOT EXISTS eta_predictions (
    id          BIGSERIAL PRIMARY KEY,
    order_id    TEXT NOT NULL,
    hub_id      TEXT NOT NULL,
    computed_at TIMESTAMPTZ NOT NULL,
    p50         DOUBLE PRECISION NOT NULL,
    p80         DOUBLE PRECISION NOT NULL,
    p95         DOUBLE PRECISION NOT NULL,
    fp          TEXT NOT NULL,
    segment     TEXT NOT NULL,
    calibration TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS eta_predictions_order ON eta_predictions (order_id, computed_at);

CREATE TABLE IF NOT EXISTS eta_observations (
    id          BIGSERIAL PRIMARY KEY,
    order_id    TEXT,
    segment     TEXT NOT NULL,
    expected_s  DOUBLE PRECISION NOT NULL,
    actual_s    DOUBLE PRECISION NOT NULL,
    ratio       DOUBLE PRECISION NOT NULL,
    observed_at TIMESTAMPTZ NOT NULL,
    applied     BOOLEAN NOT NULL
);
CREATE INDEX IF NOT EXISTS eta_observations_segment ON eta_observations (segment, observed_at);
