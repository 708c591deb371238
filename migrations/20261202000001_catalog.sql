-- Catalog (08 §4): the system of record for products, the category tree and hub prices.
-- Every write takes the next catalog_seq for its product (a price write too): the change feed
-- is "products with seq > n, in seq order".
CREATE SEQUENCE IF NOT EXISTS catalog_seq;

CREATE TABLE IF NOT EXISTS categories (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    parent_id  TEXT REFERENCES categories (id),
    sort_order INT NOT NULL DEFAULT 0,
    active     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS products (
    sku              TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    description      TEXT NOT NULL DEFAULT '',
    category_id      TEXT REFERENCES categories (id),
    brand            TEXT NOT NULL DEFAULT '',
    tags             TEXT[] NOT NULL DEFAULT '{}',
    image_url        TEXT NOT NULL DEFAULT '',
    base_price       BIGINT NOT NULL CHECK (base_price >= 0),
    margin_pct       NUMERIC(5, 2) NOT NULL DEFAULT 0 CHECK (margin_pct BETWEEN 0 AND 100),
    popularity_score FLOAT8 NOT NULL DEFAULT 0 CHECK (popularity_score BETWEEN 0 AND 1),
    active           BOOLEAN NOT NULL DEFAULT TRUE,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    version          INT NOT NULL,
    seq              BIGINT NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS products_category ON products (category_id) WHERE active;

CREATE TABLE IF NOT EXISTS hub_prices (
    hub_id     TEXT NOT NULL,
    sku        TEXT NOT NULL REFERENCES products (sku),
    valid_from TIMESTAMPTZ NOT NULL,
    price      BIGINT NOT NULL CHECK (price >= 0),
    valid_to   TIMESTAMPTZ,
    PRIMARY KEY (hub_id, sku, valid_from)
);
CREATE INDEX IF NOT EXISTS hub_prices_sku ON hub_prices (sku);
