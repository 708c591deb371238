-- Geo hub registry (02-geo §5). created_at/updated_at are bound from the Clock.
CREATE TABLE IF NOT EXISTS hubs (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL DEFAULT '',
    lat           DOUBLE PRECISION NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lng           DOUBLE PRECISION NOT NULL CHECK (lng BETWEEN -180 AND 180),
    max_radius_km DOUBLE PRECISION NOT NULL CHECK (max_radius_km > 0 AND max_radius_km <= 50),
    priority      INT NOT NULL DEFAULT 0,
    stock         DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (stock BETWEEN 0 AND 1),
    rider_avail   DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (rider_avail BETWEEN 0 AND 1),
    active        BOOLEAN NOT NULL DEFAULT true,
    h3_cell       TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS hubs_active ON hubs (active);
