//! The idempotent event writer (01 §6): per-hub Redis streams read through a consumer group
//! (claiming idle entries), each event applied to Postgres in one transaction, under a lease so
//! each hub's events apply in stream order; and the stream lag it reports.

use std::collections::{HashMap, HashSet};

use qc_kit::lease::Lease;
use qc_kit::redis_kit::{bounded, entries_of, flat_map, stream_reply, BackendError};
use redis::aio::ConnectionManager;
use redis::Value;
use sqlx::{PgPool, Postgres, Transaction};

use crate::error::InventoryError;
use crate::model::*;
use crate::redis_store::InventoryKeys;

pub const WRITER_GROUP: &str = "pg-writer";
const READ_COUNT: usize = 100;
const CLAIM_IDLE_MS: u64 = 60_000;

/// Decodes one stream entry's fields into an event.
pub fn parse_event(fields: &HashMap<String, String>) -> Result<InventoryEvent, String> {
    let get = |k: &str| fields.get(k).ok_or_else(|| format!("missing field {k}"));
    let int = |k: &str| -> Result<i64, String> {
        get(k)?
            .parse::<i64>()
            .map_err(|_| format!("field {k} is not an integer"))
    };
    let kind = get("type")?.as_str();
    let at_ms = int("at")?;
    if let Some(reason) = StockSetReason::parse(kind) {
        return Ok(InventoryEvent::StockSet {
            reason,
            at_ms,
            sku: Sku::parse(get("sku")?).map_err(|e| e.to_string())?,
            on_hand: int("on_hand")?,
            buckets: u8::try_from(int("buckets")?).map_err(|_| "bad buckets".to_string())?,
            actor: get("actor")?.clone(),
        });
    }
    let status = ReservationStatus::parse(kind).ok_or_else(|| format!("unknown type {kind}"))?;
    let items: Vec<Item> =
        serde_json::from_str(get("items")?).map_err(|e| format!("bad items: {e}"))?;
    Ok(InventoryEvent::Reservation {
        status,
        at_ms,
        reservation_id: ReservationId::parse(get("rid")?).map_err(|e| e.to_string())?,
        cart_id: CartId::parse(get("cart_id")?).map_err(|e| e.to_string())?,
        user_id: UserId::parse(get("user_id")?).map_err(|e| e.to_string())?,
        created_at: int("created_at")?,
        expires_at: int("expires_at")?,
        items,
    })
}

fn uuid_of(rid: &ReservationId) -> uuid::Uuid {
    uuid::Uuid::parse_str(rid.as_str()).expect("ReservationId is always a UUID")
}

/// Applies one event in one transaction; applying it again changes nothing.
pub async fn apply_event(
    pool: &PgPool,
    hub: &HubId,
    stream_id: &str,
    ev: &InventoryEvent,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    match ev {
        InventoryEvent::StockSet {
            reason,
            at_ms,
            sku,
            on_hand,
            buckets,
            actor,
        } => {
            let old: Option<i32> = sqlx::query_scalar(
                "SELECT on_hand FROM inventory_stock WHERE hub_id = $1 AND sku = $2 FOR UPDATE",
            )
            .bind(hub.as_str())
            .bind(sku.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            let delta = *on_hand - i64::from(old.unwrap_or(0));
            let fresh = insert_movement(
                &mut tx,
                hub,
                sku,
                delta,
                *on_hand,
                reason.as_str(),
                None,
                Some(actor),
                stream_id,
                *at_ms,
            )
            .await?;
            if fresh {
                sqlx::query(
                    "INSERT INTO inventory_stock (hub_id, sku, on_hand, buckets, updated_at)
                     VALUES ($1, $2, $3, $4, to_timestamp($5::float8 / 1000))
                     ON CONFLICT (hub_id, sku) DO UPDATE
                     SET on_hand = EXCLUDED.on_hand, buckets = EXCLUDED.buckets, updated_at = EXCLUDED.updated_at",
                )
                .bind(hub.as_str())
                .bind(sku.as_str())
                .bind(*on_hand as i32)
                .bind(i16::from(*buckets))
                .bind(*at_ms as f64)
                .execute(&mut *tx)
                .await?;
            }
        }
        InventoryEvent::Reservation {
            status,
            at_ms,
            reservation_id,
            cart_id,
            user_id,
            created_at,
            expires_at,
            items,
        } => {
            let rid = uuid_of(reservation_id);
            // Every event carries the whole hold, so a reservation row exists whatever the order.
            let inserted = sqlx::query(
                "INSERT INTO reservations (reservation_id, hub_id, cart_id, user_id, status, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, 'RESERVED', to_timestamp($5::float8 / 1000), to_timestamp($6::float8 / 1000))
                 ON CONFLICT (reservation_id) DO NOTHING",
            )
            .bind(rid)
            .bind(hub.as_str())
            .bind(cart_id.as_str())
            .bind(user_id.as_str())
            .bind(*created_at as f64)
            .bind(*expires_at as f64)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                for it in items {
                    sqlx::query(
                        "INSERT INTO reservation_items (reservation_id, sku, quantity) VALUES ($1, $2, $3)
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(rid)
                    .bind(it.sku.as_str())
                    .bind(it.quantity as i32)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            if *status != ReservationStatus::Reserved {
                let column = match status {
                    ReservationStatus::Confirmed => "confirmed_at",
                    ReservationStatus::Released => "released_at",
                    _ => "expired_at",
                };
                let changed = sqlx::query(&format!(
                    "UPDATE reservations SET status = $2, {column} = to_timestamp($3::float8 / 1000)
                     WHERE reservation_id = $1 AND status = 'RESERVED'"
                ))
                .bind(rid)
                .bind(status.as_str())
                .bind(*at_ms as f64)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if changed == 1 && *status == ReservationStatus::Confirmed {
                    for it in items {
                        let after: Option<i32> = sqlx::query_scalar(
                            "UPDATE inventory_stock SET on_hand = on_hand - $3, updated_at = to_timestamp($4::float8 / 1000)
                             WHERE hub_id = $1 AND sku = $2 RETURNING on_hand",
                        )
                        .bind(hub.as_str())
                        .bind(it.sku.as_str())
                        .bind(it.quantity as i32)
                        .bind(*at_ms as f64)
                        .fetch_optional(&mut *tx)
                        .await?;
                        match after {
                            Some(after) => {
                                insert_movement(
                                    &mut tx,
                                    hub,
                                    &it.sku,
                                    -i64::from(it.quantity),
                                    i64::from(after),
                                    "CONFIRM",
                                    Some(rid),
                                    None,
                                    stream_id,
                                    *at_ms,
                                )
                                .await?;
                            }
                            None => {
                                tracing::error!(hub_id = %hub, sku = %it.sku, "confirm for a SKU with no stock row")
                            }
                        }
                    }
                }
            }
        }
    }
    tx.commit().await
}

#[allow(clippy::too_many_arguments)]
async fn insert_movement(
    tx: &mut Transaction<'_, Postgres>,
    hub: &HubId,
    sku: &Sku,
    delta: i64,
    on_hand_after: i64,
    reason: &str,
    rid: Option<uuid::Uuid>,
    actor: Option<&str>,
    stream_id: &str,
    at_ms: i64,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "INSERT INTO stock_movements (hub_id, sku, delta, on_hand_after, reason, reservation_id, actor, stream_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, to_timestamp($9::float8 / 1000))
         ON CONFLICT (hub_id, stream_id, sku) DO NOTHING",
    )
    .bind(hub.as_str())
    .bind(sku.as_str())
    .bind(delta as i32)
    .bind(on_hand_after as i32)
    .bind(reason)
    .bind(rid)
    .bind(actor)
    .bind(stream_id)
    .bind(at_ms as f64)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// A stream entry with the hub whose stream it came from.
type HubEntry = (HubId, String, HashMap<String, String>);

/// Reads the hub streams as consumer group `pg-writer` and applies them to Postgres.
#[derive(Debug, Clone)]
pub struct EventWriter {
    conn: ConnectionManager,
    pool: PgPool,
    keys: InventoryKeys,
    consumer: String,
    timeout_ms: u64,
    known_groups: HashSet<HubId>,
}

/// What one writer round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteReport {
    pub applied: u64,
    /// Entries that could not be decoded (acknowledged and logged: a bug, not a retryable state).
    pub poison: u64,
}

impl EventWriter {
    /// `conn` should be a connection of its own: a blocking read holds it for `block_ms`.
    pub fn new(
        conn: ConnectionManager,
        pool: PgPool,
        keys: InventoryKeys,
        consumer: String,
        timeout_ms: u64,
    ) -> Self {
        Self {
            conn,
            pool,
            keys,
            consumer,
            timeout_ms,
            known_groups: HashSet::new(),
        }
    }

    /// The lease that makes one writer active at a time, keeping each hub's events in order.
    pub fn lease(&self, ttl_ms: i64) -> Lease {
        Lease::new(self.keys.writer_lock(), self.consumer.clone(), ttl_ms)
    }

    async fn hubs(&mut self) -> Result<Vec<HubId>, InventoryError> {
        let mut c = self.conn.clone();
        let raw: Vec<String> = bounded(
            self.timeout_ms,
            redis::cmd("SMEMBERS")
                .arg(self.keys.hubs())
                .query_async(&mut c),
        )
        .await?;
        let mut hubs: Vec<HubId> = raw.iter().filter_map(|h| HubId::parse(h).ok()).collect();
        hubs.sort();
        for hub in &hubs {
            if self.known_groups.contains(hub) {
                continue;
            }
            let r: Result<Value, _> = bounded(
                self.timeout_ms,
                redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(self.keys.events(hub))
                    .arg(WRITER_GROUP)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query_async(&mut c),
            )
            .await;
            match r {
                Ok(_) => {}
                Err(BackendError::Redis(e)) if e.message().contains("BUSYGROUP") => {}
                Err(e) => return Err(e.into()),
            }
            self.known_groups.insert(hub.clone());
        }
        Ok(hubs)
    }

    /// One round: our unacknowledged entries first, then entries idle too long at other
    /// consumers, then new ones (waiting up to `block_ms` when there are none; 0 = do not wait).
    pub async fn run_once(&mut self, block_ms: u64) -> Result<WriteReport, InventoryError> {
        let hubs = self.hubs().await?;
        if hubs.is_empty() {
            if block_ms > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(block_ms.min(1000))).await;
            }
            return Ok(WriteReport::default());
        }
        let mut report = WriteReport::default();
        let pending = self.read(&hubs, "0", 0).await?;
        if self.apply_batch(pending, &mut report).await? > 0 {
            return Ok(report);
        }
        for hub in &hubs {
            let claimed = self.autoclaim(hub).await?;
            self.apply_batch(claimed, &mut report).await?;
        }
        let fresh = self.read(&hubs, ">", block_ms).await?;
        self.apply_batch(fresh, &mut report).await?;
        Ok(report)
    }

    /// Runs rounds without waiting until every hub's lag is 0 (tests, shutdown).
    pub async fn drain(&mut self) -> Result<WriteReport, InventoryError> {
        let mut total = WriteReport::default();
        for _ in 0..10_000 {
            let r = self.run_once(0).await?;
            total.applied += r.applied;
            total.poison += r.poison;
            if r.applied == 0 && r.poison == 0 {
                let hubs = self.hubs().await?;
                let mut idle = true;
                for hub in &hubs {
                    idle &= stream_lag(&mut self.conn.clone(), &self.keys, hub, self.timeout_ms)
                        .await?
                        == Some(0);
                }
                if idle {
                    break;
                }
            }
        }
        Ok(total)
    }

    async fn read(
        &mut self,
        hubs: &[HubId],
        id: &str,
        block_ms: u64,
    ) -> Result<Vec<HubEntry>, InventoryError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(WRITER_GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(READ_COUNT);
        if block_ms > 0 {
            cmd.arg("BLOCK").arg(block_ms);
        }
        cmd.arg("STREAMS");
        for hub in hubs {
            cmd.arg(self.keys.events(hub));
        }
        for _ in hubs {
            cmd.arg(id);
        }
        let mut c = self.conn.clone();
        let v: Value = bounded(self.timeout_ms + block_ms, cmd.query_async(&mut c)).await?;
        let by_key: HashMap<String, HubId> = hubs
            .iter()
            .map(|h| (self.keys.events(h), h.clone()))
            .collect();
        let mut out = Vec::new();
        for (key, entries) in stream_reply(&v) {
            let Some(hub) = by_key.get(&key) else {
                continue;
            };
            for (id, fields) in entries {
                out.push((hub.clone(), id, fields));
            }
        }
        Ok(out)
    }

    async fn autoclaim(&mut self, hub: &HubId) -> Result<Vec<HubEntry>, InventoryError> {
        let mut c = self.conn.clone();
        let v: Value = bounded(
            self.timeout_ms,
            redis::cmd("XAUTOCLAIM")
                .arg(self.keys.events(hub))
                .arg(WRITER_GROUP)
                .arg(&self.consumer)
                .arg(CLAIM_IDLE_MS)
                .arg("0-0")
                .arg("COUNT")
                .arg(READ_COUNT)
                .query_async(&mut c),
        )
        .await?;
        let entries = match &v {
            Value::Array(parts) if parts.len() >= 2 => entries_of(&parts[1]),
            _ => Vec::new(),
        };
        Ok(entries
            .into_iter()
            .map(|(id, f)| (hub.clone(), id, f))
            .collect())
    }

    /// Applies entries in order; stops a hub at its first database error so order is kept.
    async fn apply_batch(
        &mut self,
        entries: Vec<HubEntry>,
        report: &mut WriteReport,
    ) -> Result<usize, InventoryError> {
        let n = entries.len();
        let mut failed: HashSet<HubId> = HashSet::new();
        for (hub, id, fields) in entries {
            if failed.contains(&hub) {
                continue;
            }
            match parse_event(&fields) {
                Ok(ev) => match apply_event(&self.pool, &hub, &id, &ev).await {
                    Ok(()) => report.applied += 1,
                    Err(e) => {
                        tracing::warn!(hub_id = %hub, stream_id = %id, error = %e, "event not applied; will retry");
                        failed.insert(hub);
                        continue;
                    }
                },
                Err(why) => {
                    tracing::error!(hub_id = %hub, stream_id = %id, %why, "undecodable inventory event acknowledged");
                    report.poison += 1;
                }
            }
            let mut c = self.conn.clone();
            let _: i64 = bounded(
                self.timeout_ms,
                redis::cmd("XACK")
                    .arg(self.keys.events(&hub))
                    .arg(WRITER_GROUP)
                    .arg(&id)
                    .query_async(&mut c),
            )
            .await?;
        }
        if let Some(hub) = failed.into_iter().next() {
            return Err(InventoryError::Backend(BackendError::Postgres(
                format!("writer stalled on hub {hub}").into(),
            )));
        }
        Ok(n)
    }
}

/// The id of the hub stream's newest entry ("" when empty). Every state change appends one, so
/// an unchanged id means nothing changed in between.
pub async fn last_event_id(
    conn: &mut ConnectionManager,
    keys: &InventoryKeys,
    hub: &HubId,
    timeout_ms: u64,
) -> Result<String, InventoryError> {
    let v: Value = bounded(
        timeout_ms,
        redis::cmd("XREVRANGE")
            .arg(keys.events(hub))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(conn),
    )
    .await?;
    Ok(entries_of(&v)
        .into_iter()
        .next()
        .map(|(id, _)| id)
        .unwrap_or_default())
}

/// Entries not yet written to Postgres for a hub (pending + undelivered); None if unknown.
pub async fn stream_lag(
    conn: &mut ConnectionManager,
    keys: &InventoryKeys,
    hub: &HubId,
    timeout_ms: u64,
) -> Result<Option<i64>, InventoryError> {
    let v: Value = match bounded(
        timeout_ms,
        redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(keys.events(hub))
            .query_async(conn),
    )
    .await
    {
        Ok(v) => v,
        Err(BackendError::Redis(e)) if e.message().contains("no such key") => return Ok(Some(0)),
        Err(e) => return Err(e.into()),
    };
    let Value::Array(groups) = v else {
        return Ok(None);
    };
    for g in groups {
        let fields = flat_map(&g);
        if fields.get("name").map(String::as_str) == Some(WRITER_GROUP) {
            let pending: i64 = fields
                .get("pending")
                .and_then(|p| p.parse().ok())
                .unwrap_or(i64::MAX);
            let lag: Option<i64> = fields.get("lag").and_then(|p| p.parse().ok());
            return Ok(lag.map(|l| l + pending));
        }
    }
    Ok(None)
}
