//! The Redis adapter of [`FlashStore`] (03 "Redis keys"): a sale's keys under its tag
//! `{<product_id>}`, a user's bot signals under `{<user_id>}`, one script per atomic step
//! (`lua/flash_*.lua`). `flash:resid:<rid>` holds `<product_id>|<bucket_count>` so a confirm or
//! release finds its sale's keys in one read.

use qc_kit::redis_kit::{bounded, BackendError, KeyPrefix};
use qc_kit::scripts::{
    FLASH_ADMIT, FLASH_CONFIRM, FLASH_HIT, FLASH_INIT, FLASH_OBSERVE, FLASH_QUEUE, FLASH_RELEASE,
    FLASH_RESERVE, FLASH_SLOT,
};
use redis::aio::ConnectionManager;
use redis::Value;

use crate::bot::Signals;
use crate::model::{
    primary_bucket, QueueView, Reservation, Reserve, ReserveCmd, SaleConfig, Status, StockView,
    Transition, SLOT_LEASE_MS,
};
use crate::store::{FlashStore, Init, SIGNAL_KEEP, SIGNAL_WINDOW_MS};

/// A reservation's hash outlives its expiry by a day (03 flaw 3: the reaper must still see it).
const RES_KEEP_MS: i64 = 86_400_000;

#[derive(Debug, Clone)]
pub struct RedisFlash {
    conn: ConnectionManager,
    prefix: KeyPrefix,
    timeout_ms: u64,
}

fn bad(e: impl std::fmt::Display) -> BackendError {
    BackendError::Redis(format!("unexpected flash-sale script answer: {e}").into())
}

fn int(v: &Value) -> Result<i64, BackendError> {
    redis::from_redis_value(v.clone()).map_err(bad)
}

fn text(v: &Value) -> Result<String, BackendError> {
    redis::from_redis_value(v.clone()).map_err(bad)
}

/// A confirm's or release's answer.
fn transition(v: &[Value], conflict: Status) -> Result<Transition, BackendError> {
    Ok(match v.first().map(int).transpose()? {
        Some(1) => Transition::Done {
            order_id: text(&v[1])?,
            product_id: text(&v[2])?,
            user_id: text(&v[3])?,
            quantity: u32::try_from(int(&v[4])?).map_err(bad)?,
        },
        Some(2) => Transition::Already {
            order_id: text(&v[1])?,
        },
        Some(-1) => Transition::NotFound,
        Some(-3) => Transition::NotOwner,
        Some(-2) => Transition::Conflict(
            v.get(1)
                .map(text)
                .transpose()?
                .and_then(|s| Status::parse(&s))
                .unwrap_or(conflict),
        ),
        other => return Err(bad(format!("{other:?}"))),
    })
}

impl RedisFlash {
    pub fn new(conn: ConnectionManager, prefix: KeyPrefix, timeout_ms: u64) -> Self {
        Self {
            conn,
            prefix,
            timeout_ms,
        }
    }

    fn sale(&self, pid: &str, rest: &str) -> String {
        self.prefix.key(&format!("flash:{{{pid}}}:{rest}"))
    }

    fn buckets(&self, pid: &str, n: u32) -> impl Iterator<Item = String> + '_ {
        let pid = pid.to_string();
        (0..n).map(move |i| self.sale(&pid, &format!("bucket:{i}")))
    }

    fn resid(&self, rid: &str) -> String {
        self.prefix.key(&format!("flash:resid:{rid}"))
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        inv: redis::ScriptInvocation<'_>,
    ) -> Result<T, BackendError> {
        bounded(self.timeout_ms, inv.invoke_async(&mut self.conn.clone())).await
    }

    /// `(pid, bucket_count)` of a reservation, if it exists.
    async fn locate(&self, rid: &str) -> Result<Option<(String, u32)>, BackendError> {
        let v: Option<String> = bounded(
            self.timeout_ms,
            redis::cmd("GET")
                .arg(self.resid(rid))
                .query_async(&mut self.conn.clone()),
        )
        .await?;
        Ok(v.and_then(|s| {
            let (pid, n) = s.split_once('|')?;
            Some((pid.to_string(), n.parse().ok()?))
        }))
    }
}

impl FlashStore for RedisFlash {
    async fn init(&self, cfg: &SaleConfig, force: bool) -> Result<Init, BackendError> {
        let pid = &cfg.product_id;
        let mut inv = FLASH_INIT.prepare_invoke();
        for k in ["meta", "total", "waiting", "admit", "slot", "user", "exp"] {
            inv.key(self.sale(pid, k));
        }
        for b in self.buckets(pid, cfg.bucket_count) {
            inv.key(b);
        }
        inv.arg(i32::from(force))
            .arg(cfg.total_stock)
            .arg(cfg.max_slots)
            .arg(cfg.per_user_limit)
            .arg(cfg.reservation_ttl_s)
            .arg(cfg.opens_at_ms);
        let v: Vec<i64> = self.run(inv).await?;
        if v.first() != Some(&1) {
            return Ok(Init::Active);
        }
        let _: i64 = bounded(
            self.timeout_ms,
            redis::cmd("SADD")
                .arg(self.prefix.key("flash:products"))
                .arg(pid)
                .query_async(&mut self.conn.clone()),
        )
        .await?;
        Ok(Init::Ready {
            epoch: v.get(1).copied().unwrap_or(0),
        })
    }

    async fn stock(&self, pid: &str) -> Result<Option<StockView>, BackendError> {
        let (meta, total, waiting): (std::collections::HashMap<String, i64>, Option<i64>, u64) =
            bounded(
                self.timeout_ms,
                redis::pipe()
                    .cmd("HGETALL")
                    .arg(self.sale(pid, "meta"))
                    .cmd("GET")
                    .arg(self.sale(pid, "total"))
                    .cmd("ZCARD")
                    .arg(self.sale(pid, "waiting"))
                    .query_async(&mut self.conn.clone()),
            )
            .await?;
        if meta.is_empty() {
            return Ok(None);
        }
        let m = |k: &str| meta.get(k).copied().unwrap_or(0);
        Ok(Some(StockView {
            product_id: pid.to_string(),
            initial_stock: m("initial_stock"),
            remaining: total.unwrap_or(0),
            reserved_qty: m("reserved_qty"),
            confirmed_qty: m("confirmed_qty"),
            queue_length: waiting,
            epoch: m("epoch"),
            opens_at_ms: m("opens_at"),
        }))
    }

    async fn max_slots(&self, pid: &str) -> Result<Option<u32>, BackendError> {
        bounded(
            self.timeout_ms,
            redis::cmd("HGET")
                .arg(self.sale(pid, "meta"))
                .arg("max_slots")
                .query_async(&mut self.conn.clone()),
        )
        .await
    }

    async fn products(&self) -> Result<Vec<String>, BackendError> {
        let mut v: Vec<String> = bounded(
            self.timeout_ms,
            redis::cmd("SMEMBERS")
                .arg(self.prefix.key("flash:products"))
                .query_async(&mut self.conn.clone()),
        )
        .await?;
        v.sort();
        Ok(v)
    }

    async fn hit(
        &self,
        key: &str,
        now_ms: i64,
        window_ms: i64,
        burst: u32,
    ) -> Result<bool, BackendError> {
        let mut inv = FLASH_HIT.prepare_invoke();
        inv.key(self.prefix.key(&format!("flash:rl:{key}")))
            .arg(now_ms)
            .arg(window_ms)
            .arg(burst)
            .arg(format!("{now_ms}:{}", qc_kit::ids::new_uuid()));
        Ok(self.run::<i64>(inv).await? == 1)
    }

    async fn observe(
        &self,
        user: &str,
        device: &str,
        now_ms: i64,
    ) -> Result<Signals, BackendError> {
        let mut inv = FLASH_OBSERVE.prepare_invoke();
        inv.key(self.prefix.key(&format!("flash:sig:{{{user}}}:req")))
            .key(self.prefix.key(&format!("flash:sig:{{{user}}}:dev")))
            .arg(now_ms)
            .arg(SIGNAL_WINDOW_MS)
            .arg(SIGNAL_KEEP)
            .arg(format!("{now_ms}:{}", qc_kit::ids::new_uuid()))
            .arg(device);
        let v: Vec<i64> = self.run(inv).await?;
        Ok(Signals {
            devices: v.first().copied().unwrap_or(0) as u32,
            times_ms: v.into_iter().skip(1).collect(),
            account_age_days: None,
        })
    }

    async fn spend_nonce(
        &self,
        nonce: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<bool, BackendError> {
        let ttl = (until_ms - now_ms).max(0) + 60_000;
        let v: Option<String> = bounded(
            self.timeout_ms,
            redis::cmd("SET")
                .arg(self.prefix.key(&format!("flash:nonce:{nonce}")))
                .arg(1)
                .arg("PX")
                .arg(ttl)
                .arg("NX")
                .query_async(&mut self.conn.clone()),
        )
        .await?;
        Ok(v.is_some())
    }

    async fn slot(
        &self,
        pid: &str,
        user: &str,
        max: u32,
        now_ms: i64,
    ) -> Result<bool, BackendError> {
        let mut inv = FLASH_SLOT.prepare_invoke();
        inv.key(self.sale(pid, "slot"))
            .arg(now_ms)
            .arg(max)
            .arg(SLOT_LEASE_MS)
            .arg(user);
        Ok(self.run::<i64>(inv).await? == 1)
    }

    async fn free_slot(&self, pid: &str, user: &str) -> Result<(), BackendError> {
        let _: i64 = bounded(
            self.timeout_ms,
            redis::cmd("ZREM")
                .arg(self.sale(pid, "slot"))
                .arg(user)
                .query_async(&mut self.conn.clone()),
        )
        .await?;
        Ok(())
    }

    async fn slots_used(&self, pid: &str, now_ms: i64) -> Result<u64, BackendError> {
        bounded(
            self.timeout_ms,
            redis::cmd("ZCOUNT")
                .arg(self.sale(pid, "slot"))
                .arg(format!("({now_ms}"))
                .arg("+inf")
                .query_async(&mut self.conn.clone()),
        )
        .await
    }

    async fn reserve(&self, c: &ReserveCmd) -> Result<Reserve, BackendError> {
        let pid = &c.product_id;
        let n: Option<u32> = bounded(
            self.timeout_ms,
            redis::cmd("HGET")
                .arg(self.sale(pid, "meta"))
                .arg("bucket_count")
                .query_async(&mut self.conn.clone()),
        )
        .await?;
        let Some(n) = n else {
            return Ok(Reserve::NotFound);
        };
        let _: () = bounded(
            self.timeout_ms,
            redis::cmd("SET")
                .arg(self.resid(&c.reservation_id))
                .arg(format!("{pid}|{n}"))
                .arg("PX")
                .arg(3_600_000 + RES_KEEP_MS)
                .query_async(&mut self.conn.clone()),
        )
        .await?;
        let mut inv = FLASH_RESERVE.prepare_invoke();
        for k in ["meta", "total"] {
            inv.key(self.sale(pid, k));
        }
        inv.key(self.sale(pid, &format!("res:{}", c.reservation_id)));
        for k in ["exp", "user", "waiting", "admit"] {
            inv.key(self.sale(pid, k));
        }
        for b in self.buckets(pid, n) {
            inv.key(b);
        }
        inv.arg(c.now_ms)
            .arg(c.quantity)
            .arg(primary_bucket(&c.device, n))
            .arg(&c.reservation_id)
            .arg(pid)
            .arg(&c.user_id)
            .arg(&c.device)
            .arg(&c.order_id);
        let v: Vec<i64> = self.run(inv).await?;
        Ok(match v.first() {
            Some(1) => Reserve::Reserved {
                remaining: v[1],
                expires_at_ms: v[2],
            },
            Some(-1) => Reserve::NotFound,
            Some(-4) => Reserve::LimitExceeded,
            Some(-2) => Reserve::Queue,
            other => return Err(bad(format!("{other:?}"))),
        })
    }

    async fn enqueue(&self, pid: &str, user: &str, score: i64) -> Result<QueueView, BackendError> {
        self.place(pid, user, Some(score), 0).await
    }

    async fn queue(&self, pid: &str, user: &str, now_ms: i64) -> Result<QueueView, BackendError> {
        self.place(pid, user, None, now_ms).await
    }

    async fn admit(
        &self,
        pid: &str,
        now_ms: i64,
        batch: u32,
        pass_ms: i64,
    ) -> Result<Vec<String>, BackendError> {
        let mut inv = FLASH_ADMIT.prepare_invoke();
        inv.key(self.sale(pid, "waiting"))
            .key(self.sale(pid, "admit"))
            .key(self.sale(pid, "total"))
            .arg(now_ms)
            .arg(batch)
            .arg(pass_ms);
        self.run(inv).await
    }

    async fn confirm(
        &self,
        rid: &str,
        user: &str,
        now_ms: i64,
    ) -> Result<Transition, BackendError> {
        let Some((pid, _)) = self.locate(rid).await? else {
            return Ok(Transition::NotFound);
        };
        let mut inv = FLASH_CONFIRM.prepare_invoke();
        inv.key(self.sale(&pid, "meta"))
            .key(self.sale(&pid, &format!("res:{rid}")))
            .key(self.sale(&pid, "exp"))
            .key(self.sale(&pid, "slot"))
            .arg(now_ms)
            .arg(user);
        let v: Vec<Value> = self.run(inv).await?;
        transition(&v, Status::Expired)
    }

    async fn release(
        &self,
        rid: &str,
        user: Option<&str>,
        to: Status,
        now_ms: i64,
    ) -> Result<Transition, BackendError> {
        let Some((pid, n)) = self.locate(rid).await? else {
            return Ok(Transition::NotFound);
        };
        let mut inv = FLASH_RELEASE.prepare_invoke();
        inv.key(self.sale(&pid, "meta"))
            .key(self.sale(&pid, "total"));
        inv.key(self.sale(&pid, &format!("res:{rid}")));
        for k in ["exp", "user", "slot"] {
            inv.key(self.sale(&pid, k));
        }
        for b in self.buckets(&pid, n) {
            inv.key(b);
        }
        inv.arg(now_ms).arg(to.as_str()).arg(user.unwrap_or(""));
        let v: Vec<Value> = self.run(inv).await?;
        transition(&v, Status::Confirmed)
    }

    async fn overdue(
        &self,
        pid: &str,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<String>, BackendError> {
        bounded(
            self.timeout_ms,
            redis::cmd("ZRANGEBYSCORE")
                .arg(self.sale(pid, "exp"))
                .arg("-inf")
                .arg(before_ms)
                .arg("LIMIT")
                .arg(0)
                .arg(limit)
                .query_async(&mut self.conn.clone()),
        )
        .await
    }

    async fn reservation(&self, rid: &str) -> Result<Option<Reservation>, BackendError> {
        let Some((pid, _)) = self.locate(rid).await? else {
            return Ok(None);
        };
        let h: std::collections::HashMap<String, String> = bounded(
            self.timeout_ms,
            redis::cmd("HGETALL")
                .arg(self.sale(&pid, &format!("res:{rid}")))
                .query_async(&mut self.conn.clone()),
        )
        .await?;
        if h.is_empty() {
            return Ok(None);
        }
        let s = |k: &str| h.get(k).cloned().unwrap_or_default();
        Ok(Some(Reservation {
            id: s("id"),
            product_id: s("product_id"),
            user_id: s("user_id"),
            device: s("device_fp"),
            quantity: s("quantity").parse().map_err(bad)?,
            status: Status::parse(&s("status")).ok_or_else(|| bad("status"))?,
            expires_at_ms: s("expires_at").parse().map_err(bad)?,
            order_id: s("order_id"),
        }))
    }

    async fn cleanup(&self, pid: &str, before_ms: i64) -> Result<u64, BackendError> {
        bounded(
            self.timeout_ms,
            redis::cmd("ZREMRANGEBYSCORE")
                .arg(self.sale(pid, "waiting"))
                .arg("-inf")
                .arg(before_ms)
                .query_async(&mut self.conn.clone()),
        )
        .await
    }
}

impl RedisFlash {
    async fn place(
        &self,
        pid: &str,
        user: &str,
        join: Option<i64>,
        now_ms: i64,
    ) -> Result<QueueView, BackendError> {
        let mut inv = FLASH_QUEUE.prepare_invoke();
        inv.key(self.sale(pid, "waiting"))
            .key(self.sale(pid, "admit"))
            .arg(user)
            .arg(join.unwrap_or(0))
            .arg(if join.is_some() { "1" } else { "0" })
            .arg(if join.is_some() { i64::MIN } else { now_ms });
        let v: Vec<i64> = self.run(inv).await?;
        let status = match v.first() {
            Some(1) => "queued",
            Some(2) => "admitted",
            _ => "not_in_queue",
        };
        Ok(QueueView {
            status,
            position: v.get(1).copied().unwrap_or(0) as u64,
            total_in_queue: v.get(2).copied().unwrap_or(0) as u64,
        })
    }
}
