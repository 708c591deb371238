//! The store port (03 "Redis keys", "Lua scripts"): every step of the pipeline that must be
//! atomic is one call here. Adapters: [`MemoryFlash`] (the twin, tests) and
//! `redis_store::RedisFlash` (one Lua script per call, every key of a sale under its tag
//! `{<product_id>}`); both pass `conformance`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex;

use qc_kit::redis_kit::BackendError;

use crate::bot::Signals;
use crate::model::{
    primary_bucket, split, QueueView, Reservation, Reserve, ReserveCmd, SaleConfig, Status,
    StockView, Transition,
};

/// How far back the bot signals look, and how many requests they keep.
pub const SIGNAL_WINDOW_MS: i64 = 60_000;
pub const SIGNAL_KEEP: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    Ready {
        epoch: i64,
    },
    /// Units are reserved and `force` was not given.
    Active,
}

type R<T> = Result<T, BackendError>;

pub trait FlashStore: Send + Sync {
    /// (Re)initialises a sale: stock into buckets, counters 0, epoch + 1, the waiting room,
    /// passes, slots and per-user counts cleared.
    fn init(&self, cfg: &SaleConfig, force: bool) -> impl Future<Output = R<Init>> + Send;
    fn stock(&self, product_id: &str) -> impl Future<Output = R<Option<StockView>>> + Send;
    /// The sale's slot pool size (None: no such sale).
    fn max_slots(&self, product_id: &str) -> impl Future<Output = R<Option<u32>>> + Send;
    fn products(&self) -> impl Future<Output = R<Vec<String>>> + Send;
    /// A sliding-window limiter: counts this hit and answers true if fewer than `burst` hits
    /// fell in the last `window_ms`; false (nothing counted) when full.
    fn hit(
        &self,
        key: &str,
        now_ms: i64,
        window_ms: i64,
        burst: u32,
    ) -> impl Future<Output = R<bool>> + Send;
    /// Records a request of `user` from `device`; the user's requests and devices in the last
    /// [`SIGNAL_WINDOW_MS`] (at most [`SIGNAL_KEEP`] requests).
    fn observe(
        &self,
        user: &str,
        device: &str,
        now_ms: i64,
    ) -> impl Future<Output = R<Signals>> + Send;
    /// Spends a token's nonce: true the first time, false ever after (until `until_ms`).
    fn spend_nonce(
        &self,
        nonce: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> impl Future<Output = R<bool>> + Send;
    /// Takes (or refreshes) `user`'s slot; false when `max` live slots are taken.
    fn slot(
        &self,
        product_id: &str,
        user: &str,
        max: u32,
        now_ms: i64,
    ) -> impl Future<Output = R<bool>> + Send;
    fn free_slot(&self, product_id: &str, user: &str) -> impl Future<Output = R<()>> + Send;
    /// Live slots.
    fn slots_used(&self, product_id: &str, now_ms: i64) -> impl Future<Output = R<u64>> + Send;
    fn reserve(&self, cmd: &ReserveCmd) -> impl Future<Output = R<Reserve>> + Send;
    /// Joins the waiting room at `score` (kept if already there); the user's place.
    fn enqueue(
        &self,
        product_id: &str,
        user: &str,
        score: i64,
    ) -> impl Future<Output = R<QueueView>> + Send;
    fn queue(
        &self,
        product_id: &str,
        user: &str,
        now_ms: i64,
    ) -> impl Future<Output = R<QueueView>> + Send;
    /// Grants passes to the head of the waiting room: as many as units not yet promised to
    /// live passes, at most `batch`; the users admitted.
    fn admit(
        &self,
        product_id: &str,
        now_ms: i64,
        batch: u32,
        pass_ms: i64,
    ) -> impl Future<Output = R<Vec<String>>> + Send;
    fn confirm(
        &self,
        reservation_id: &str,
        user: &str,
        now_ms: i64,
    ) -> impl Future<Output = R<Transition>> + Send;
    /// Release by its owner (`user`), or expiry by the reaper (`None`, `Status::Expired`).
    fn release(
        &self,
        reservation_id: &str,
        user: Option<&str>,
        to: Status,
        now_ms: i64,
    ) -> impl Future<Output = R<Transition>> + Send;
    /// Reservations of `product_id` still reserved whose `expires_at` ≤ `before_ms`, oldest first.
    fn overdue(
        &self,
        product_id: &str,
        before_ms: i64,
        limit: usize,
    ) -> impl Future<Output = R<Vec<String>>> + Send;
    fn reservation(
        &self,
        reservation_id: &str,
    ) -> impl Future<Output = R<Option<Reservation>>> + Send;
    /// Drops waiting users who joined at or before `before_ms`; how many.
    fn cleanup(&self, product_id: &str, before_ms: i64) -> impl Future<Output = R<u64>> + Send;
}

/// A sorted set: member → score, and (score, member) order.
#[derive(Debug, Default, Clone)]
struct ZSet {
    score: HashMap<String, i64>,
    order: BTreeMap<(i64, String), ()>,
}

impl ZSet {
    fn add(&mut self, m: &str, s: i64) {
        self.rem(m);
        self.score.insert(m.to_string(), s);
        self.order.insert((s, m.to_string()), ());
    }
    fn add_nx(&mut self, m: &str, s: i64) {
        if !self.score.contains_key(m) {
            self.add(m, s);
        }
    }
    fn rem(&mut self, m: &str) {
        if let Some(s) = self.score.remove(m) {
            self.order.remove(&(s, m.to_string()));
        }
    }
    fn len(&self) -> u64 {
        self.score.len() as u64
    }
    fn rank(&self, m: &str) -> Option<u64> {
        let s = *self.score.get(m)?;
        Some(self.order.range(..(s, m.to_string())).count() as u64)
    }
    /// Removes every member with score ≤ `max`.
    fn trim_to(&mut self, max: i64) -> u64 {
        let gone: Vec<(i64, String)> = self
            .order
            .range(..=(max, String::from("\u{10ffff}")))
            .map(|(k, _)| k.clone())
            .collect();
        for (_, m) in &gone {
            self.rem(m);
        }
        gone.len() as u64
    }
    fn pop_min(&mut self, k: usize) -> Vec<String> {
        let out: Vec<String> = self.order.keys().take(k).map(|(_, m)| m.clone()).collect();
        for m in &out {
            self.rem(m);
        }
        out
    }
}

#[derive(Debug, Default)]
struct Sale {
    cfg: Option<SaleConfig>,
    epoch: i64,
    buckets: Vec<i64>,
    total: i64,
    reserved_qty: i64,
    confirmed_qty: i64,
    waiting: ZSet,
    admit: ZSet,
    slot: ZSet,
    exp: ZSet,
    user: HashMap<String, i64>,
}

#[derive(Debug, Clone)]
struct Res {
    r: Reservation,
    alloc: Vec<(usize, i64)>,
    epoch: i64,
}

#[derive(Debug, Default)]
struct State {
    sales: HashMap<String, Sale>,
    res: HashMap<String, Res>,
    windows: HashMap<String, Vec<i64>>,
    requests: HashMap<String, Vec<i64>>,
    devices: HashMap<String, HashMap<String, i64>>,
    nonces: HashMap<String, i64>,
}

/// The in-memory adapter: one lock, the same rules as the scripts.
#[derive(Debug, Default)]
pub struct MemoryFlash {
    s: Mutex<State>,
}

impl MemoryFlash {
    pub fn new() -> Self {
        Self::default()
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.s.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn view(pid: &str, s: &Sale) -> Option<StockView> {
    let c = s.cfg.as_ref()?;
    Some(StockView {
        product_id: pid.to_string(),
        initial_stock: c.total_stock,
        remaining: s.total,
        reserved_qty: s.reserved_qty,
        confirmed_qty: s.confirmed_qty,
        queue_length: s.waiting.len(),
        epoch: s.epoch,
        opens_at_ms: c.opens_at_ms,
    })
}

fn place(s: &Sale, user: &str, now_ms: i64) -> QueueView {
    let total_in_queue = s.waiting.len();
    match s.waiting.rank(user) {
        Some(r) => QueueView {
            status: "queued",
            position: r + 1,
            total_in_queue,
        },
        None if s.admit.score.get(user).is_some_and(|e| *e > now_ms) => QueueView {
            status: "admitted",
            position: 0,
            total_in_queue,
        },
        None => QueueView {
            status: "not_in_queue",
            position: 0,
            total_in_queue,
        },
    }
}

impl FlashStore for MemoryFlash {
    async fn init(&self, cfg: &SaleConfig, force: bool) -> R<Init> {
        let mut st = self.lock();
        let s = st.sales.entry(cfg.product_id.clone()).or_default();
        if s.reserved_qty > 0 && !force {
            return Ok(Init::Active);
        }
        let epoch = s.epoch + 1;
        *s = Sale {
            cfg: Some(cfg.clone()),
            epoch,
            buckets: split(cfg.total_stock, cfg.bucket_count),
            total: cfg.total_stock,
            ..Sale::default()
        };
        Ok(Init::Ready { epoch })
    }

    async fn stock(&self, product_id: &str) -> R<Option<StockView>> {
        Ok(self
            .lock()
            .sales
            .get(product_id)
            .and_then(|s| view(product_id, s)))
    }

    async fn max_slots(&self, product_id: &str) -> R<Option<u32>> {
        Ok(self
            .lock()
            .sales
            .get(product_id)
            .and_then(|s| s.cfg.as_ref())
            .map(|c| c.max_slots))
    }

    async fn products(&self) -> R<Vec<String>> {
        let mut v: Vec<String> = self.lock().sales.keys().cloned().collect();
        v.sort();
        Ok(v)
    }

    async fn hit(&self, key: &str, now_ms: i64, window_ms: i64, burst: u32) -> R<bool> {
        let mut st = self.lock();
        let w = st.windows.entry(key.to_string()).or_default();
        w.retain(|t| *t > now_ms - window_ms);
        if w.len() >= burst as usize {
            return Ok(false);
        }
        w.push(now_ms);
        Ok(true)
    }

    async fn observe(&self, user: &str, device: &str, now_ms: i64) -> R<Signals> {
        let mut st = self.lock();
        let from = now_ms - SIGNAL_WINDOW_MS;
        let times = st.requests.entry(user.to_string()).or_default();
        times.push(now_ms);
        times.retain(|t| *t > from);
        times.sort_unstable();
        if times.len() > SIGNAL_KEEP {
            times.drain(..times.len() - SIGNAL_KEEP);
        }
        let times_ms = times.clone();
        let devs = st.devices.entry(user.to_string()).or_default();
        devs.insert(device.to_string(), now_ms);
        devs.retain(|_, t| *t > from);
        Ok(Signals {
            times_ms,
            devices: devs.len() as u32,
            account_age_days: None,
        })
    }

    async fn spend_nonce(&self, nonce: &str, until_ms: i64, now_ms: i64) -> R<bool> {
        let mut st = self.lock();
        st.nonces.retain(|_, u| *u > now_ms - 60_000);
        if st.nonces.contains_key(nonce) {
            return Ok(false);
        }
        st.nonces.insert(nonce.to_string(), until_ms);
        Ok(true)
    }

    async fn slot(&self, product_id: &str, user: &str, max: u32, now_ms: i64) -> R<bool> {
        let mut st = self.lock();
        let s = st.sales.entry(product_id.to_string()).or_default();
        s.slot.trim_to(now_ms);
        if s.slot.score.contains_key(user) {
            s.slot.add(user, now_ms + crate::model::SLOT_LEASE_MS);
            return Ok(true);
        }
        if s.slot.len() >= u64::from(max) {
            return Ok(false);
        }
        s.slot.add(user, now_ms + crate::model::SLOT_LEASE_MS);
        Ok(true)
    }

    async fn free_slot(&self, product_id: &str, user: &str) -> R<()> {
        if let Some(s) = self.lock().sales.get_mut(product_id) {
            s.slot.rem(user);
        }
        Ok(())
    }

    async fn slots_used(&self, product_id: &str, now_ms: i64) -> R<u64> {
        let mut st = self.lock();
        Ok(st.sales.get_mut(product_id).map_or(0, |s| {
            s.slot.trim_to(now_ms);
            s.slot.len()
        }))
    }

    async fn reserve(&self, c: &ReserveCmd) -> R<Reserve> {
        let mut st = self.lock();
        let Some(s) = st.sales.get_mut(&c.product_id) else {
            return Ok(Reserve::NotFound);
        };
        let Some(cfg) = s.cfg.clone() else {
            return Ok(Reserve::NotFound);
        };
        if c.now_ms < cfg.opens_at_ms {
            return Ok(Reserve::Queue);
        }
        let qty = i64::from(c.quantity);
        s.admit.trim_to(c.now_ms);
        let has_pass = s.admit.score.contains_key(&c.user_id);
        let held = s.user.get(&c.user_id).copied().unwrap_or(0);
        if cfg.per_user_limit > 0 && held + qty > i64::from(cfg.per_user_limit) {
            return Ok(Reserve::LimitExceeded);
        }
        let free = if has_pass {
            s.total
        } else {
            s.total - s.admit.len() as i64
        };
        if (!has_pass && s.waiting.len() > 0) || free < qty {
            return Ok(Reserve::Queue);
        }
        let n = s.buckets.len();
        let first = primary_bucket(&c.device, n as u32) as usize;
        let mut need = qty;
        let mut alloc = Vec::new();
        for k in 0..n {
            let i = (first + k) % n;
            let take = s.buckets[i].min(need);
            if take > 0 {
                s.buckets[i] -= take;
                alloc.push((i, take));
                need -= take;
            }
            if need == 0 {
                break;
            }
        }
        s.total -= qty;
        s.reserved_qty += qty;
        *s.user.entry(c.user_id.clone()).or_default() += qty;
        s.admit.rem(&c.user_id);
        s.waiting.rem(&c.user_id);
        let expires_at_ms = c.now_ms + i64::from(cfg.reservation_ttl_s) * 1000;
        s.exp.add(&c.reservation_id, expires_at_ms);
        let remaining = s.total;
        let epoch = s.epoch;
        st.res.insert(
            c.reservation_id.clone(),
            Res {
                r: Reservation {
                    id: c.reservation_id.clone(),
                    product_id: c.product_id.clone(),
                    user_id: c.user_id.clone(),
                    device: c.device.clone(),
                    quantity: c.quantity,
                    status: Status::Reserved,
                    expires_at_ms,
                    order_id: c.order_id.clone(),
                },
                alloc,
                epoch,
            },
        );
        Ok(Reserve::Reserved {
            remaining,
            expires_at_ms,
        })
    }

    async fn enqueue(&self, product_id: &str, user: &str, score: i64) -> R<QueueView> {
        let mut st = self.lock();
        let s = st.sales.entry(product_id.to_string()).or_default();
        s.waiting.add_nx(user, score);
        Ok(place(s, user, i64::MIN))
    }

    async fn queue(&self, product_id: &str, user: &str, now_ms: i64) -> R<QueueView> {
        let st = self.lock();
        Ok(match st.sales.get(product_id) {
            Some(s) => place(s, user, now_ms),
            None => QueueView {
                status: "not_in_queue",
                position: 0,
                total_in_queue: 0,
            },
        })
    }

    async fn admit(
        &self,
        product_id: &str,
        now_ms: i64,
        batch: u32,
        pass_ms: i64,
    ) -> R<Vec<String>> {
        let mut st = self.lock();
        let Some(s) = st.sales.get_mut(product_id) else {
            return Ok(Vec::new());
        };
        s.admit.trim_to(now_ms);
        let open = s.total - s.admit.len() as i64;
        let k = open
            .min(i64::from(batch))
            .min(s.waiting.len() as i64)
            .max(0) as usize;
        let users = s.waiting.pop_min(k);
        for u in &users {
            s.admit.add(u, now_ms + pass_ms);
        }
        Ok(users)
    }

    async fn confirm(&self, reservation_id: &str, user: &str, now_ms: i64) -> R<Transition> {
        let mut st = self.lock();
        let State { sales, res, .. } = &mut *st;
        let Some(r) = res.get_mut(reservation_id) else {
            return Ok(Transition::NotFound);
        };
        if r.r.user_id != user {
            return Ok(Transition::NotOwner);
        }
        match r.r.status {
            Status::Confirmed => {
                return Ok(Transition::Already {
                    order_id: r.r.order_id.clone(),
                })
            }
            Status::Released | Status::Expired => return Ok(Transition::Conflict(r.r.status)),
            Status::Reserved if now_ms > r.r.expires_at_ms => {
                return Ok(Transition::Conflict(Status::Expired))
            }
            Status::Reserved => {}
        }
        r.r.status = Status::Confirmed;
        let q = i64::from(r.r.quantity);
        if let Some(s) = sales
            .get_mut(&r.r.product_id)
            .filter(|s| s.epoch == r.epoch)
        {
            s.exp.rem(reservation_id);
            s.reserved_qty -= q;
            s.confirmed_qty += q;
            s.slot.rem(user);
        }
        Ok(Transition::Done {
            product_id: r.r.product_id.clone(),
            user_id: r.r.user_id.clone(),
            quantity: r.r.quantity,
            order_id: r.r.order_id.clone(),
        })
    }

    async fn release(
        &self,
        reservation_id: &str,
        user: Option<&str>,
        to: Status,
        _now_ms: i64,
    ) -> R<Transition> {
        let mut st = self.lock();
        let State { sales, res, .. } = &mut *st;
        let Some(r) = res.get_mut(reservation_id) else {
            return Ok(Transition::NotFound);
        };
        if user.is_some_and(|u| u != r.r.user_id) {
            return Ok(Transition::NotOwner);
        }
        match r.r.status {
            Status::Confirmed => return Ok(Transition::Conflict(Status::Confirmed)),
            Status::Released | Status::Expired => {
                return Ok(Transition::Already {
                    order_id: r.r.order_id.clone(),
                })
            }
            Status::Reserved => {}
        }
        r.r.status = to;
        let q = i64::from(r.r.quantity);
        if let Some(s) = sales
            .get_mut(&r.r.product_id)
            .filter(|s| s.epoch == r.epoch)
        {
            for (i, n) in &r.alloc {
                s.buckets[*i] += n;
            }
            s.total += q;
            s.exp.rem(reservation_id);
            s.reserved_qty -= q;
            *s.user.entry(r.r.user_id.clone()).or_default() -= q;
            s.slot.rem(&r.r.user_id);
        }
        Ok(Transition::Done {
            product_id: r.r.product_id.clone(),
            user_id: r.r.user_id.clone(),
            quantity: r.r.quantity,
            order_id: r.r.order_id.clone(),
        })
    }

    async fn overdue(&self, product_id: &str, before_ms: i64, limit: usize) -> R<Vec<String>> {
        let st = self.lock();
        Ok(st.sales.get(product_id).map_or_else(Vec::new, |s| {
            s.exp
                .order
                .keys()
                .take_while(|(t, _)| *t <= before_ms)
                .take(limit)
                .map(|(_, m)| m.clone())
                .collect()
        }))
    }

    async fn reservation(&self, reservation_id: &str) -> R<Option<Reservation>> {
        Ok(self.lock().res.get(reservation_id).map(|r| r.r.clone()))
    }

    async fn cleanup(&self, product_id: &str, before_ms: i64) -> R<u64> {
        Ok(self
            .lock()
            .sales
            .get_mut(product_id)
            .map_or(0, |s| s.waiting.trim_to(before_ms)))
    }
}
