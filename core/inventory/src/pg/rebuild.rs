//! Rebuilding Redis from Postgres when it comes back empty (01 §8): stock = on hand − active
//! holds, active holds restored, under a lease so one instance does it.

use std::collections::{BTreeMap, HashMap, HashSet};

use qc_kit::lease::Lease;
use qc_kit::redis_kit::bounded;
use redis::aio::ConnectionManager;
use sqlx::{PgPool, Row};

use crate::error::InventoryError;
use crate::model::*;
use crate::redis_store::InventoryKeys;
use crate::rules::spread;
use crate::store::HoldPolicy;

/// What a rebuild restored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RebuildReport {
    pub hubs: usize,
    pub skus: usize,
    pub holds: usize,
}

/// Rebuilds Redis from Postgres when `inv:hubs` is empty but Postgres has stock (01 §8): at
/// start, and periodically, so a Redis that restarted empty is restored without a redeploy.
/// Runs under a lease and re-checks emptiness under it, so concurrent instances rebuild once.
pub async fn rebuild_if_empty(
    pool: &PgPool,
    conn: &mut ConnectionManager,
    keys: &InventoryKeys,
    policy: HoldPolicy,
    now_ms: i64,
    instance: &str,
    timeout_ms: u64,
) -> Result<Option<RebuildReport>, InventoryError> {
    if redis_has_hubs(conn, keys, timeout_ms).await? {
        return Ok(None);
    }
    let lease = Lease::new(keys.rebuild_lock(), instance.to_string(), 30_000);
    if !lease.acquire(conn, now_ms, timeout_ms).await? {
        return Ok(None);
    }
    let result = rebuild_locked(pool, conn, keys, policy, timeout_ms).await;
    lease.release(conn, now_ms, timeout_ms).await.ok();
    result
}

async fn redis_has_hubs(
    conn: &mut ConnectionManager,
    keys: &InventoryKeys,
    timeout_ms: u64,
) -> Result<bool, InventoryError> {
    let n: i64 = bounded(
        timeout_ms,
        redis::cmd("SCARD").arg(keys.hubs()).query_async(conn),
    )
    .await?;
    Ok(n > 0)
}

async fn rebuild_locked(
    pool: &PgPool,
    conn: &mut ConnectionManager,
    keys: &InventoryKeys,
    policy: HoldPolicy,
    timeout_ms: u64,
) -> Result<Option<RebuildReport>, InventoryError> {
    if redis_has_hubs(conn, keys, timeout_ms).await? {
        return Ok(None);
    }
    let pg = |e: sqlx::Error| InventoryError::Backend(e.into());
    let stock = sqlx::query(
        "SELECT hub_id, sku, on_hand, buckets FROM inventory_stock ORDER BY hub_id, sku",
    )
    .fetch_all(pool)
    .await
    .map_err(pg)?;
    if stock.is_empty() {
        return Ok(None);
    }
    let holds = sqlx::query(
        "SELECT r.reservation_id::text, r.hub_id, r.cart_id, r.user_id,
                (extract(epoch FROM r.created_at) * 1000)::bigint, (extract(epoch FROM r.expires_at) * 1000)::bigint,
                i.sku, i.quantity
         FROM reservations r JOIN reservation_items i USING (reservation_id)
         WHERE r.status = 'RESERVED' ORDER BY r.hub_id, r.reservation_id, i.sku",
    )
    .fetch_all(pool)
    .await
    .map_err(pg)?;
    let mut held: HashMap<(String, String), i64> = HashMap::new();
    let mut by_rid: BTreeMap<String, Vec<&sqlx::postgres::PgRow>> = BTreeMap::new();
    for row in &holds {
        let hub: String = row.get(1);
        let sku: String = row.get(6);
        let q: i32 = row.get(7);
        *held.entry((hub, sku)).or_default() += i64::from(q);
        by_rid.entry(row.get::<String, _>(0)).or_default().push(row);
    }
    let mut report = RebuildReport::default();
    let mut hubs_seen: HashSet<String> = HashSet::new();
    let mut pipe = redis::pipe();
    pipe.atomic();
    for row in &stock {
        let (hub_s, sku_s): (String, String) = (row.get(0), row.get(1));
        let (Ok(hub), Ok(sku)) = (HubId::parse(&hub_s), Sku::parse(&sku_s)) else {
            continue;
        };
        let on_hand: i32 = row.get(2);
        let buckets = u8::try_from(row.get::<i16, _>(3)).unwrap_or(1).max(1);
        let reserved = held
            .get(&(hub_s.clone(), sku_s.clone()))
            .copied()
            .unwrap_or(0);
        for (key, v) in keys
            .counters(&hub, &sku, buckets)
            .into_iter()
            .zip(spread(i64::from(on_hand) - reserved, buckets))
        {
            pipe.cmd("SET").arg(key).arg(v).ignore();
        }
        pipe.cmd("SET")
            .arg(keys.reserved(&hub, &sku))
            .arg(reserved)
            .ignore();
        pipe.cmd("HSET")
            .arg(keys.meta(&hub, &sku))
            .arg("buckets")
            .arg(buckets)
            .ignore();
        hubs_seen.insert(hub_s);
        report.skus += 1;
    }
    for (rid_s, rows) in &by_rid {
        let first = rows[0];
        let (Ok(rid), Ok(hub)) = (
            ReservationId::parse(rid_s),
            HubId::parse(&first.get::<String, _>(1)),
        ) else {
            continue;
        };
        let created: i64 = first.get(4);
        let expires: i64 = first.get(5);
        let gc_ms = (expires - created).max(0)
            + (i64::from(policy.grace_s) + i64::from(policy.retention_s)) * 1000;
        pipe.cmd("HSET")
            .arg(keys.res(&hub, &rid))
            .arg(&[
                ("rid", rid_s.clone()),
                ("hub_id", hub.to_string()),
                ("cart_id", first.get::<String, _>(2)),
                ("user_id", first.get::<String, _>(3)),
                ("status", "RESERVED".to_string()),
                ("created_at", created.to_string()),
                ("expires_at", expires.to_string()),
            ])
            .ignore();
        for row in rows {
            pipe.cmd("HSET")
                .arg(keys.items(&hub, &rid))
                .arg(row.get::<String, _>(6))
                .arg(row.get::<i32, _>(7))
                .ignore();
        }
        pipe.cmd("PEXPIRE")
            .arg(keys.res(&hub, &rid))
            .arg(gc_ms)
            .ignore();
        pipe.cmd("PEXPIRE")
            .arg(keys.items(&hub, &rid))
            .arg(gc_ms)
            .ignore();
        pipe.cmd("ZADD")
            .arg(keys.expiry(&hub))
            .arg(expires)
            .arg(rid_s)
            .ignore();
        pipe.cmd("SET")
            .arg(keys.resid(&rid))
            .arg(hub.as_str())
            .arg("PX")
            .arg(gc_ms)
            .ignore();
        report.holds += 1;
    }
    report.hubs = hubs_seen.len();
    // Written last, in the same MULTI: a rebuild is visible whole or not at all.
    for hub in &hubs_seen {
        pipe.cmd("SADD").arg(keys.hubs()).arg(hub).ignore();
    }
    let _: () = bounded(timeout_ms, pipe.query_async(conn)).await?;
    Ok(Some(report))
}
