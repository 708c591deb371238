//! The Redis adapter: runs `lua/inventory_*.lua`, one script per state change, so every change
//! is atomic per hub (all keys share the `{<hub_id>}` hash tag).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use qc_kit::redis_kit::{bounded, BackendError, KeyPrefix};
use qc_kit::scripts::{
    evalsha, is_noscript, INVENTORY_RESERVE, INVENTORY_SET_STOCK, INVENTORY_TRANSITION,
};
use redis::aio::ConnectionManager;
use redis::Value;

use crate::error::InventoryError;
use crate::model::*;
use crate::rules::{credit_bucket, start_bucket};
use crate::store::{HoldPolicy, StockStore};

/// Key names (01 §3), under the configured prefix.
#[derive(Debug, Clone, Default)]
pub struct InventoryKeys {
    prefix: KeyPrefix,
}

impl InventoryKeys {
    pub fn new(prefix: KeyPrefix) -> Self {
        Self { prefix }
    }
    fn hub(&self, hub: &HubId, rest: &str) -> String {
        self.prefix.key(&format!("inv:{{{hub}}}:{rest}"))
    }
    pub fn counter(&self, hub: &HubId, sku: &Sku, buckets: u8, bucket: u8) -> String {
        if buckets <= 1 {
            self.hub(hub, &format!("stock:{sku}"))
        } else {
            self.hub(hub, &format!("stock:{sku}:{bucket}"))
        }
    }
    pub fn counters(&self, hub: &HubId, sku: &Sku, buckets: u8) -> Vec<String> {
        (0..buckets.max(1))
            .map(|b| self.counter(hub, sku, buckets, b))
            .collect()
    }
    pub fn reserved(&self, hub: &HubId, sku: &Sku) -> String {
        self.hub(hub, &format!("reserved:{sku}"))
    }
    pub fn meta(&self, hub: &HubId, sku: &Sku) -> String {
        self.hub(hub, &format!("meta:{sku}"))
    }
    pub fn res(&self, hub: &HubId, rid: &ReservationId) -> String {
        self.hub(hub, &format!("res:{rid}"))
    }
    pub fn items(&self, hub: &HubId, rid: &ReservationId) -> String {
        self.hub(hub, &format!("res:{rid}:items"))
    }
    pub fn expiry(&self, hub: &HubId) -> String {
        self.hub(hub, "expiry")
    }
    pub fn idem(&self, hub: &HubId, key: &str) -> String {
        self.hub(hub, &format!("idem:{key}"))
    }
    pub fn events(&self, hub: &HubId) -> String {
        self.hub(hub, "events")
    }
    pub fn resid(&self, rid: &ReservationId) -> String {
        self.prefix.key(&format!("inv:resid:{rid}"))
    }
    pub fn hubs(&self) -> String {
        self.prefix.key("inv:hubs")
    }
    pub fn reaper_lock(&self) -> String {
        self.prefix.key("inv:reaper:lock")
    }
    pub fn writer_lock(&self) -> String {
        self.prefix.key("inv:writer:lock")
    }
    pub fn rebuild_lock(&self) -> String {
        self.prefix.key("inv:rebuild:lock")
    }
}

/// Redis-backed [`StockStore`].
#[derive(Debug)]
pub struct RedisStore {
    conn: ConnectionManager,
    keys: InventoryKeys,
    policy: HoldPolicy,
    timeout_ms: u64,
    /// Last seen bucket count per SKU. Only a guess: every script checks it and answers
    /// LAYOUT_CHANGED when it is stale, so a wrong guess costs one retry, never correctness.
    layouts: Mutex<HashMap<(HubId, Sku), u8>>,
}

/// How often a script may answer LAYOUT_CHANGED before the caller gets `Contended`.
const LAYOUT_RETRIES: usize = 4;
const LAYOUT_CACHE_MAX: usize = 200_000;

impl RedisStore {
    pub fn new(
        conn: ConnectionManager,
        prefix: KeyPrefix,
        policy: HoldPolicy,
        timeout_ms: u64,
    ) -> Self {
        Self {
            conn,
            keys: InventoryKeys::new(prefix),
            policy,
            timeout_ms,
            layouts: Mutex::default(),
        }
    }

    pub fn keys(&self) -> &InventoryKeys {
        &self.keys
    }

    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, InventoryError> {
        let mut c = self.conn.clone();
        Ok(bounded(self.timeout_ms, cmd.query_async(&mut c)).await?)
    }

    fn cached_layout(&self, hub: &HubId, sku: &Sku) -> u8 {
        let m = self.layouts.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&(hub.clone(), sku.clone())).copied().unwrap_or(1)
    }

    fn remember_layout(&self, hub: &HubId, sku: &Sku, buckets: u8) {
        let mut m = self.layouts.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= LAYOUT_CACHE_MAX {
            m.clear();
        }
        m.insert((hub.clone(), sku.clone()), buckets);
    }

    /// Reads the real layouts (HGET meta buckets) and refreshes the cache.
    async fn refresh_layouts(&self, hub: &HubId, skus: &[&Sku]) -> Result<(), InventoryError> {
        let mut pipe = redis::pipe();
        for sku in skus {
            pipe.cmd("HGET")
                .arg(self.keys.meta(hub, sku))
                .arg("buckets");
        }
        let mut c = self.conn.clone();
        let vals: Vec<Option<u8>> = bounded(self.timeout_ms, pipe.query_async(&mut c)).await?;
        for (sku, n) in skus.iter().zip(vals) {
            self.remember_layout(hub, sku, n.unwrap_or(1).max(1));
        }
        Ok(())
    }

    /// One round trip: the reserve script and, pipelined with it, the `inv:resid:<rid>` pointer
    /// (deleted again when the hold is refused; the id is fresh, so nobody can have read it).
    async fn try_reserve(
        &self,
        now_ms: i64,
        cmd: &ReserveCommand,
    ) -> Result<Vec<Value>, InventoryError> {
        let k = &self.keys;
        let hub = &cmd.hub_id;
        let idem_key = match &cmd.idempotency_key {
            Some(key) => k.idem(hub, key.as_str()),
            None => k.idem(hub, "-"),
        };
        let mut keys = vec![
            k.res(hub, &cmd.reservation_id),
            k.items(hub, &cmd.reservation_id),
            k.expiry(hub),
            idem_key,
            k.events(hub),
        ];
        let mut args: Vec<String> = vec![
            now_ms.to_string(),
            cmd.reservation_id.to_string(),
            hub.to_string(),
            cmd.cart_id.to_string(),
            cmd.user_id.to_string(),
            cmd.ttl_s.to_string(),
            self.policy.grace_s.to_string(),
            self.policy.retention_s.to_string(),
            u8::from(cmd.idempotency_key.is_some()).to_string(),
            cmd.items.len().to_string(),
        ];
        for it in &cmd.items {
            let n = self.cached_layout(hub, &it.sku);
            keys.push(k.meta(hub, &it.sku));
            keys.push(k.reserved(hub, &it.sku));
            keys.extend(k.counters(hub, &it.sku, n));
            args.extend([
                it.sku.to_string(),
                it.quantity.to_string(),
                n.to_string(),
                start_bucket(&it.sku, &cmd.user_id, n).to_string(),
            ]);
        }
        let gc_ms = (i64::from(cmd.ttl_s)
            + i64::from(self.policy.grace_s)
            + i64::from(self.policy.retention_s))
            * 1000;
        let resid = k.resid(&cmd.reservation_id);
        let mut pipe = redis::pipe();
        pipe.add_command(evalsha(&INVENTORY_RESERVE, &keys, &args));
        pipe.cmd("SET")
            .arg(&resid)
            .arg(hub.as_str())
            .arg("PX")
            .arg(gc_ms)
            .ignore();
        let mut c = self.conn.clone();
        let first = tokio::time::timeout(
            Duration::from_millis(self.timeout_ms),
            pipe.query_async::<(Vec<Value>,)>(&mut c),
        )
        .await;
        let reply = match first {
            Err(_) => return Err(BackendError::Timeout("redis", self.timeout_ms).into()),
            Ok(Ok((reply,))) => reply,
            Ok(Err(e)) if is_noscript(&e) => {
                bounded(
                    self.timeout_ms,
                    INVENTORY_RESERVE.prepare_invoke().load_async(&mut c),
                )
                .await?;
                let (reply,): (Vec<Value>,) =
                    bounded(self.timeout_ms, pipe.query_async(&mut c)).await?;
                reply
            }
            Ok(Err(e)) => return Err(BackendError::from(e).into()),
        };
        if reply.first().map(text).as_deref() != Some("OK") {
            let _: i64 = self.query(redis::cmd("DEL").arg(&resid)).await?;
        }
        Ok(reply)
    }

    /// The items hash as takes, sorted by (sku, bucket).
    async fn takes(&self, hub: &HubId, rid: &ReservationId) -> Result<Vec<Take>, InventoryError> {
        let raw: HashMap<String, i64> = self
            .query(redis::cmd("HGETALL").arg(self.keys.items(hub, rid)))
            .await?;
        let mut takes = raw
            .into_iter()
            .map(|(field, qty)| {
                let (sku, bucket) = parse_take_field(&field)?;
                Ok(Take {
                    sku,
                    bucket,
                    quantity: qty,
                    field,
                })
            })
            .collect::<Result<Vec<_>, InventoryError>>()?;
        takes.sort_by(|a, b| (&a.sku, a.bucket).cmp(&(&b.sku, b.bucket)));
        Ok(takes)
    }

    async fn try_transition(
        &self,
        now_ms: i64,
        hub: &HubId,
        rid: &ReservationId,
        action: Action,
        takes: &[Take],
    ) -> Result<Vec<Value>, InventoryError> {
        let k = &self.keys;
        let mut inv = INVENTORY_TRANSITION.prepare_invoke();
        inv.key(k.res(hub, rid))
            .key(k.items(hub, rid))
            .key(k.expiry(hub))
            .key(k.events(hub));
        inv.arg(now_ms)
            .arg(action.as_str())
            .arg(i64::from(self.policy.grace_s) * 1000)
            .arg(self.policy.retention_s)
            .arg(takes.len());
        for t in takes {
            let n = self.cached_layout(hub, &t.sku);
            inv.key(k.meta(hub, &t.sku))
                .key(k.reserved(hub, &t.sku))
                .key(k.counter(hub, &t.sku, n, credit_bucket(t.bucket, n)));
            inv.arg(&t.field).arg(n);
        }
        inv.arg(rid.as_str());
        let mut c = self.conn.clone();
        Ok(bounded(self.timeout_ms, inv.invoke_async(&mut c)).await?)
    }
}

/// One line of a reservation's items hash: `sku` (unbucketed) or `sku#b` → quantity.
#[derive(Debug, Clone)]
struct Take {
    sku: Sku,
    bucket: u8,
    quantity: i64,
    field: String,
}

fn parse_take_field(field: &str) -> Result<(Sku, u8), InventoryError> {
    let bad = || {
        InventoryError::Backend(BackendError::Redis(
            format!("corrupt items field {field:?}").into(),
        ))
    };
    match field.split_once('#') {
        None => Ok((Sku::parse(field).map_err(|_| bad())?, 0)),
        Some((sku, b)) => Ok((
            Sku::parse(sku).map_err(|_| bad())?,
            b.parse::<u8>().map_err(|_| bad())?,
        )),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Okay => "OK".into(),
        other => format!("{other:?}"),
    }
}

fn int(v: &Value) -> Result<i64, InventoryError> {
    match v {
        Value::Int(i) => Ok(*i),
        other => text(other).parse().map_err(|_| {
            BackendError::Redis(format!("expected an integer, got {other:?}").into()).into()
        }),
    }
}

fn unexpected(script: &str, reply: &[Value]) -> InventoryError {
    InventoryError::Backend(BackendError::Redis(
        format!("{script}: unexpected reply {reply:?}").into(),
    ))
}

fn status_at(reply: &[Value], i: usize) -> Result<ReservationStatus, InventoryError> {
    reply
        .get(i)
        .and_then(|v| ReservationStatus::parse(&text(v)))
        .ok_or_else(|| unexpected("transition", reply))
}

impl StockStore for RedisStore {
    async fn set_stock(
        &self,
        now_ms: i64,
        cmd: &SetStockCommand,
    ) -> Result<StockSetResult, InventoryError> {
        let k = &self.keys;
        let hub = &cmd.hub_id;
        for _ in 0..LAYOUT_RETRIES {
            let old = self.cached_layout(hub, &cmd.sku);
            let mut inv = INVENTORY_SET_STOCK.prepare_invoke();
            inv.key(k.meta(hub, &cmd.sku))
                .key(k.reserved(hub, &cmd.sku))
                .key(k.events(hub));
            for key in k.counters(hub, &cmd.sku, old) {
                inv.key(key);
            }
            for key in k.counters(hub, &cmd.sku, cmd.buckets) {
                inv.key(key);
            }
            inv.arg(now_ms)
                .arg(cmd.on_hand)
                .arg(cmd.buckets)
                .arg(cmd.reason.as_str())
                .arg(&cmd.actor)
                .arg(cmd.sku.as_str())
                .arg(old);
            let mut c = self.conn.clone();
            let reply: Vec<Value> = bounded(self.timeout_ms, inv.invoke_async(&mut c)).await?;
            if reply.first().map(text).as_deref() == Some("LAYOUT_CHANGED") {
                self.refresh_layouts(hub, &[&cmd.sku]).await?;
                continue;
            }
            self.remember_layout(hub, &cmd.sku, cmd.buckets);
            let _: i64 = self
                .query(redis::cmd("SADD").arg(k.hubs()).arg(hub.as_str()))
                .await?;
            let (Some(counter), Some(reserved)) = (reply.first(), reply.get(1)) else {
                return Err(unexpected("set_stock", &reply));
            };
            return Ok(StockSetResult {
                counter: int(counter)?,
                reserved: int(reserved)?,
            });
        }
        Err(InventoryError::Contended)
    }

    async fn available(&self, hub: &HubId, skus: &[Sku]) -> Result<Vec<i64>, InventoryError> {
        if skus.is_empty() {
            return Ok(Vec::new());
        }
        let k = &self.keys;
        // The usual unbucketed counters in one MGET (one hub: one slot).
        let base: Vec<Option<i64>> = self
            .query(
                redis::cmd("MGET").arg(
                    skus.iter()
                        .map(|s| k.counter(hub, s, 1, 0))
                        .collect::<Vec<_>>(),
                ),
            )
            .await?;
        let mut out: Vec<i64> = base.iter().map(|v| v.unwrap_or(0).max(0)).collect();
        // A missing base key may be a bucketed SKU: its layout, then its buckets.
        let missing: Vec<usize> = (0..skus.len()).filter(|i| base[*i].is_none()).collect();
        if missing.is_empty() {
            return Ok(out);
        }
        let mut pipe = redis::pipe();
        for i in &missing {
            pipe.cmd("HGET").arg(k.meta(hub, &skus[*i])).arg("buckets");
        }
        let mut c = self.conn.clone();
        let layouts: Vec<Option<u8>> = bounded(self.timeout_ms, pipe.query_async(&mut c)).await?;
        for (i, buckets) in missing.into_iter().zip(layouts) {
            let n = buckets.unwrap_or(1);
            if n > 1 {
                let vals: Vec<Option<i64>> = self
                    .query(redis::cmd("MGET").arg(k.counters(hub, &skus[i], n)))
                    .await?;
                out[i] = vals.iter().flatten().map(|v| (*v).max(0)).sum();
            }
        }
        Ok(out)
    }

    async fn stock(&self, hub: &HubId, sku: &Sku) -> Result<StockLevel, InventoryError> {
        let k = &self.keys;
        // One round trip for the usual unbucketed SKU: layout, held units and the base counter.
        let (meta, reserved, base): (Option<u8>, Option<i64>, Option<i64>) = {
            let mut pipe = redis::pipe();
            pipe.cmd("HGET").arg(k.meta(hub, sku)).arg("buckets");
            pipe.cmd("GET").arg(k.reserved(hub, sku));
            pipe.cmd("GET").arg(k.counter(hub, sku, 1, 0));
            let mut c = self.conn.clone();
            bounded(self.timeout_ms, pipe.query_async(&mut c)).await?
        };
        let buckets = meta.unwrap_or(1).max(1);
        let counters: Vec<Option<i64>> = if buckets == 1 {
            vec![base]
        } else {
            self.query(redis::cmd("MGET").arg(k.counters(hub, sku, buckets)))
                .await?
        };
        let present: Vec<i64> = counters.iter().flatten().copied().collect();
        Ok(StockLevel {
            available: present.iter().map(|v| (*v).max(0)).sum(),
            reserved: reserved.unwrap_or(0),
            counter_sum: present.iter().sum(),
            buckets,
            exists: !present.is_empty(),
        })
    }

    async fn reserve(
        &self,
        now_ms: i64,
        cmd: &ReserveCommand,
    ) -> Result<ReserveOutcome, InventoryError> {
        for _ in 0..LAYOUT_RETRIES {
            let reply = self.try_reserve(now_ms, cmd).await?;
            let tag = reply.first().map(text).unwrap_or_default();
            match tag.as_str() {
                "OK" => {
                    let expires_at_ms =
                        int(reply.get(1).ok_or_else(|| unexpected("reserve", &reply))?)?;
                    let remaining = reply[2..].iter().map(int).collect::<Result<Vec<_>, _>>()?;
                    if remaining.len() != cmd.items.len() {
                        return Err(unexpected("reserve", &reply));
                    }
                    return Ok(ReserveOutcome::Reserved {
                        expires_at_ms,
                        remaining,
                    });
                }
                "REPLAY" => {
                    let rid = reply.get(1).map(text).unwrap_or_default();
                    return Ok(ReserveOutcome::Replay {
                        reservation_id: ReservationId::parse(&rid)?,
                    });
                }
                "SKU_NOT_FOUND" => {
                    return Err(InventoryError::SkuNotFound {
                        sku: Sku::parse(&reply.get(1).map(text).unwrap_or_default())?,
                    })
                }
                "INSUFFICIENT_STOCK" => {
                    let sku = Sku::parse(&reply.get(1).map(text).unwrap_or_default())?;
                    let requested = cmd
                        .items
                        .iter()
                        .find(|i| i.sku == sku)
                        .map_or(0, |i| i.quantity);
                    return Err(InventoryError::InsufficientStock {
                        available: int(reply
                            .get(2)
                            .ok_or_else(|| unexpected("reserve", &reply))?)?,
                        sku,
                        requested,
                    });
                }
                "LAYOUT_CHANGED" => {
                    let skus: Vec<&Sku> = cmd.items.iter().map(|i| &i.sku).collect();
                    self.refresh_layouts(&cmd.hub_id, &skus).await?;
                }
                _ => return Err(unexpected("reserve", &reply)),
            }
        }
        Err(InventoryError::Contended)
    }

    async fn transition(
        &self,
        now_ms: i64,
        hub: &HubId,
        rid: &ReservationId,
        action: Action,
    ) -> Result<TransitionOutcome, InventoryError> {
        let takes = self.takes(hub, rid).await?;
        for _ in 0..LAYOUT_RETRIES {
            let reply = self
                .try_transition(now_ms, hub, rid, action, &takes)
                .await?;
            let tag = reply.first().map(text).unwrap_or_default();
            return Ok(match tag.as_str() {
                "OK" => TransitionOutcome::Done,
                "NOT_FOUND" => TransitionOutcome::NotFound,
                "EXPIRED" => TransitionOutcome::Expired,
                "NOT_DUE" => TransitionOutcome::NotDue,
                "SKIP" => TransitionOutcome::Skip(status_at(&reply, 1)?),
                "ALREADY" => TransitionOutcome::Already(status_at(&reply, 1)?),
                "INVALID_STATE" => TransitionOutcome::InvalidState(status_at(&reply, 1)?),
                "LAYOUT_CHANGED" => {
                    let mut skus: Vec<&Sku> = takes.iter().map(|t| &t.sku).collect();
                    skus.dedup();
                    self.refresh_layouts(hub, &skus).await?;
                    continue;
                }
                _ => return Err(unexpected("transition", &reply)),
            });
        }
        Err(InventoryError::Contended)
    }

    async fn reservation(
        &self,
        hub: &HubId,
        rid: &ReservationId,
    ) -> Result<Option<Reservation>, InventoryError> {
        let res: HashMap<String, String> = self
            .query(redis::cmd("HGETALL").arg(self.keys.res(hub, rid)))
            .await?;
        if res.is_empty() {
            return Ok(None);
        }
        let mut items: Vec<Item> = Vec::new();
        for t in self.takes(hub, rid).await? {
            match items.last_mut() {
                Some(last) if last.sku == t.sku => last.quantity += t.quantity as u32,
                _ => items.push(Item {
                    sku: t.sku,
                    quantity: t.quantity as u32,
                }),
            }
        }
        let corrupt = |f: &str| {
            InventoryError::Backend(BackendError::Redis(
                format!("reservation {rid}: bad field {f}").into(),
            ))
        };
        let ms = |f: &str| -> Result<Option<i64>, InventoryError> {
            res.get(f)
                .map(|v| v.parse::<i64>().map_err(|_| corrupt(f)))
                .transpose()
        };
        let s = |f: &str| res.get(f).cloned().unwrap_or_default();
        Ok(Some(Reservation {
            reservation_id: rid.clone(),
            hub_id: hub.clone(),
            cart_id: CartId::parse(&s("cart_id")).map_err(|_| corrupt("cart_id"))?,
            user_id: UserId::parse(&s("user_id")).map_err(|_| corrupt("user_id"))?,
            status: ReservationStatus::parse(&s("status")).ok_or_else(|| corrupt("status"))?,
            items,
            created_at: ms("created_at")?.ok_or_else(|| corrupt("created_at"))?,
            expires_at: ms("expires_at")?.ok_or_else(|| corrupt("expires_at"))?,
            confirmed_at: ms("confirmed_at")?,
            released_at: ms("released_at")?,
            expired_at: ms("expired_at")?,
        }))
    }

    async fn locate(&self, rid: &ReservationId) -> Result<Option<HubId>, InventoryError> {
        let hub: Option<String> = self
            .query(redis::cmd("GET").arg(self.keys.resid(rid)))
            .await?;
        hub.map(|h| HubId::parse(&h)).transpose()
    }

    async fn due_expiries(
        &self,
        now_ms: i64,
        hub: &HubId,
        limit: usize,
    ) -> Result<Vec<ReservationId>, InventoryError> {
        let cutoff = now_ms - i64::from(self.policy.grace_s) * 1000;
        let rids: Vec<String> = self
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(self.keys.expiry(hub))
                    .arg("-inf")
                    .arg(format!("({cutoff}"))
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit),
            )
            .await?;
        rids.iter().map(|r| ReservationId::parse(r)).collect()
    }

    async fn hubs(&self) -> Result<Vec<HubId>, InventoryError> {
        let mut hubs: Vec<String> = self
            .query(redis::cmd("SMEMBERS").arg(self.keys.hubs()))
            .await?;
        hubs.sort();
        hubs.iter().map(|h| HubId::parse(h)).collect()
    }

    fn policy(&self) -> HoldPolicy {
        self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_hub_tag() {
        let k = InventoryKeys::new(KeyPrefix::new("t:"));
        let hub = HubId::parse("h1").unwrap();
        let sku = Sku::parse("s1").unwrap();
        assert_eq!(k.counter(&hub, &sku, 1, 0), "t:inv:{h1}:stock:s1");
        assert_eq!(k.counter(&hub, &sku, 3, 2), "t:inv:{h1}:stock:s1:2");
        assert_eq!(k.hubs(), "t:inv:hubs");
    }

    #[test]
    fn take_fields_round_trip() {
        assert_eq!(parse_take_field("abc").unwrap().1, 0);
        assert_eq!(parse_take_field("abc#7").unwrap().1, 7);
        assert!(parse_take_field("a:b").is_err());
    }
}
