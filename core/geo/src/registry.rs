//! Geo's store adapter: the hub registry in Postgres, and in Redis the cell index (cell → hubs, hub →
//! cells), the per-cell best-hub cache and the hubs version that guards it (02 §4, §5).

use std::collections::BTreeSet;

use crate::{coverage_cells, Hub, Point, Resolution};
use qc_kit::redis_kit::{bounded, BackendError, KeyPrefix};
use qc_kit::scripts::GEO_CACHE_WRITE;
use redis::aio::ConnectionManager;
use sqlx::{PgPool, Row};

const BATCH: usize = 500;

#[derive(Debug, Clone)]
pub struct GeoKeys {
    prefix: KeyPrefix,
}

impl GeoKeys {
    pub fn new(prefix: KeyPrefix) -> Self {
        Self { prefix }
    }
    pub fn cache(&self, cell: &str) -> String {
        self.prefix.key(&format!("geo:{{geo}}:h3:{cell}"))
    }
    pub fn version(&self) -> String {
        self.prefix.key("geo:{geo}:hubs:version")
    }
    pub fn cell_hubs(&self, cell: &str) -> String {
        self.prefix.key(&format!("geo:cell:{cell}:hubs"))
    }
    pub fn hub_cells(&self, id: &str) -> String {
        self.prefix.key(&format!("geo:hub:{id}:cells"))
    }
    pub fn ready(&self) -> String {
        self.prefix.key("geo:index:ready")
    }
}

/// Creates or replaces a hub; true when it was created.
pub async fn upsert_hub(
    pool: &PgPool,
    hub: &Hub,
    h3_cell: &str,
    now_ms: i64,
) -> Result<bool, BackendError> {
    let row = sqlx::query(
        "INSERT INTO hubs (id, name, lat, lng, max_radius_km, priority, stock, rider_avail, active, h3_cell, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, to_timestamp($11::float8 / 1000), to_timestamp($11::float8 / 1000))
         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, lat = EXCLUDED.lat, lng = EXCLUDED.lng,
           max_radius_km = EXCLUDED.max_radius_km, priority = EXCLUDED.priority, stock = EXCLUDED.stock,
           rider_avail = EXCLUDED.rider_avail, active = EXCLUDED.active, h3_cell = EXCLUDED.h3_cell,
           updated_at = EXCLUDED.updated_at
         RETURNING (xmax = 0) AS created",
    )
    .bind(&hub.id)
    .bind(&hub.name)
    .bind(hub.lat)
    .bind(hub.lng)
    .bind(hub.max_radius_km)
    .bind(hub.priority)
    .bind(hub.stock)
    .bind(hub.rider_avail)
    .bind(hub.active)
    .bind(h3_cell)
    .bind(now_ms as f64)
    .fetch_one(pool)
    .await?;
    Ok(row.get::<bool, _>("created"))
}

/// Every hub, ordered by created_at then id.
pub async fn load_hubs(pool: &PgPool) -> Result<Vec<Hub>, BackendError> {
    let rows = sqlx::query(
        "SELECT id, name, lat, lng, max_radius_km, priority, stock, rider_avail, active FROM hubs ORDER BY created_at, id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Hub {
            id: r.get(0),
            name: r.get(1),
            lat: r.get(2),
            lng: r.get(3),
            max_radius_km: r.get(4),
            priority: r.get(5),
            stock: r.get(6),
            rider_avail: r.get(7),
            active: r.get(8),
        })
        .collect())
}

/// The hubs version (0 when never written).
pub async fn version(
    conn: &mut ConnectionManager,
    keys: &GeoKeys,
    t: u64,
) -> Result<i64, BackendError> {
    let v: Option<i64> =
        bounded(t, redis::cmd("GET").arg(keys.version()).query_async(conn)).await?;
    Ok(v.unwrap_or(0))
}

/// The cells a hub's index entry covers at `res`: its coverage when active, none otherwise.
pub fn index_cells(hub: &Hub, res: Resolution) -> BTreeSet<String> {
    if hub.active {
        coverage_cells(hub, res)
            .iter()
            .map(ToString::to_string)
            .collect()
    } else {
        BTreeSet::new()
    }
}

/// Rewrites one hub's part of the cell index and drops the cached winners of every cell it
/// covered or covers now; returns the number of cells it covers.
pub async fn reindex_hub(
    conn: &mut ConnectionManager,
    keys: &GeoKeys,
    hub: &Hub,
    res: Resolution,
    t: u64,
) -> Result<usize, BackendError> {
    let new = index_cells(hub, res);
    let old: BTreeSet<String> = bounded(
        t,
        redis::cmd("SMEMBERS")
            .arg(keys.hub_cells(&hub.id))
            .query_async(conn),
    )
    .await?;
    let dropped: Vec<&String> = old.difference(&new).collect();
    let touched: Vec<&String> = old.union(&new).collect();
    for chunk in dropped.chunks(BATCH) {
        let mut pipe = redis::pipe();
        for c in chunk {
            pipe.cmd("SREM")
                .arg(keys.cell_hubs(c))
                .arg(&hub.id)
                .ignore();
        }
        let _: () = bounded(t, pipe.query_async(conn)).await?;
    }
    let all_new: Vec<&String> = new.iter().collect();
    for chunk in all_new.chunks(BATCH) {
        let mut pipe = redis::pipe();
        for c in chunk {
            pipe.cmd("SADD")
                .arg(keys.cell_hubs(c))
                .arg(&hub.id)
                .ignore();
        }
        let _: () = bounded(t, pipe.query_async(conn)).await?;
    }
    let _: () = bounded(
        t,
        redis::cmd("DEL")
            .arg(keys.hub_cells(&hub.id))
            .query_async(conn),
    )
    .await?;
    for chunk in all_new.chunks(BATCH) {
        let _: () = bounded(
            t,
            redis::cmd("SADD")
                .arg(keys.hub_cells(&hub.id))
                .arg(chunk)
                .query_async(conn),
        )
        .await?;
    }
    for chunk in touched.chunks(BATCH) {
        let cache_keys: Vec<String> = chunk.iter().map(|c| keys.cache(c)).collect();
        let _: () = bounded(t, redis::cmd("DEL").arg(cache_keys).query_async(conn)).await?;
    }
    Ok(new.len())
}

/// Bumps the hubs version: no winner chosen from an older snapshot can be cached after this.
pub async fn bump_version(
    conn: &mut ConnectionManager,
    keys: &GeoKeys,
    t: u64,
) -> Result<i64, BackendError> {
    bounded(t, redis::cmd("INCR").arg(keys.version()).query_async(conn)).await
}

/// Caches a cell's winner if the version still matches the snapshot's.
pub async fn cache_winner(
    conn: &mut ConnectionManager,
    keys: &GeoKeys,
    cell: &str,
    snapshot_version: i64,
    hub_id: &str,
    now_ms: i64,
    t: u64,
) -> Result<bool, BackendError> {
    let mut inv = GEO_CACHE_WRITE.prepare_invoke();
    inv.key(keys.cache(cell))
        .key(keys.version())
        .arg(now_ms)
        .arg(snapshot_version)
        .arg(hub_id);
    let n: i64 = bounded(t, inv.invoke_async(conn)).await?;
    Ok(n == 1)
}

/// The cell's cached winner, whether the index is built, and the cell's candidate hubs.
pub async fn lookup(
    conn: &mut ConnectionManager,
    keys: &GeoKeys,
    cell: &str,
    t: u64,
) -> Result<(Option<String>, bool, Vec<String>), BackendError> {
    let mut pipe = redis::pipe();
    pipe.cmd("GET").arg(keys.cache(cell));
    pipe.cmd("EXISTS").arg(keys.ready());
    pipe.cmd("SMEMBERS").arg(keys.cell_hubs(cell));
    let (cached, ready, mut candidates): (Option<String>, bool, Vec<String>) =
        bounded(t, pipe.query_async(conn)).await?;
    candidates.sort();
    Ok((cached, ready, candidates))
}

/// Builds the whole index from Postgres when its marker is missing.
pub async fn bootstrap_index(
    conn: &mut ConnectionManager,
    pool: &PgPool,
    keys: &GeoKeys,
    res: Resolution,
    t: u64,
) -> Result<bool, BackendError> {
    let ready: bool = bounded(t, redis::cmd("EXISTS").arg(keys.ready()).query_async(conn)).await?;
    if ready {
        return Ok(false);
    }
    for hub in load_hubs(pool).await? {
        reindex_hub(conn, keys, &hub, res, t).await?;
    }
    bump_version(conn, keys, t).await?;
    let _: () = bounded(
        t,
        redis::cmd("SET")
            .arg(keys.ready())
            .arg("1")
            .query_async(conn),
    )
    .await?;
    Ok(true)
}

/// The hub's own res-9 cell, as stored.
pub fn hub_cell(hub: &Hub, res: Resolution) -> String {
    Point {
        lat: hub.lat,
        lng: hub.lng,
    }
    .cell(res)
    .to_string()
}
