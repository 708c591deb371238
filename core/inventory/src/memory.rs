//! The in-process adapter: the same semantics as the Lua scripts, deterministic, for the
//! simulator's default backend and fast tests. Its event log mirrors the Redis streams.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

// A fast non-cryptographic hash: the keys are the store's own ids, not attacker-chosen input.
use rustc_hash::FxHashMap as HashMap;
use std::sync::Mutex;

use crate::error::InventoryError;
use crate::model::*;
use crate::rules::{credit_bucket, spread, start_bucket};
use crate::store::{HoldPolicy, StockStore};

#[derive(Debug, Default)]
struct SkuState {
    /// Counter per bucket; `None` until stock is first set (SKU_NOT_FOUND).
    counters: Option<Vec<i64>>,
    reserved: i64,
}

impl SkuState {
    fn buckets(&self) -> u8 {
        self.counters.as_ref().map_or(1, |c| c.len() as u8)
    }
}

#[derive(Debug, Clone)]
struct Hold {
    res: Reservation,
    /// (sku, bucket taken from, quantity), in take order.
    takes: Vec<(Sku, u8, i64)>,
}

#[derive(Debug, Default)]
struct State {
    /// Per hub, per SKU (looked up by reference: no key is built to read one).
    skus: HashMap<HubId, HashMap<Sku, SkuState>>,
    holds: HashMap<ReservationId, Hold>,
    idem: HashMap<(HubId, String), ReservationId>,
    /// Per hub: (expires_at, rid), like the expiry zset.
    expiry: HashMap<HubId, BTreeSet<(i64, ReservationId)>>,
    hubs: BTreeSet<HubId>,
    /// Finished reservations, by when they are forgotten (finish + retention), in finish order:
    /// the scripts' `PEXPIRE` of a terminal record. Keeps a long run's memory bounded.
    retired: VecDeque<(i64, ReservationId)>,
    /// Recorded only when asked for ([`MemoryStore::recording_events`]): nothing drains them
    /// otherwise, and a long simulated run would keep every one.
    events: Option<BTreeMap<HubId, Vec<InventoryEvent>>>,
}

impl State {
    fn record(&mut self, hub: &HubId, ev: impl FnOnce() -> InventoryEvent) {
        if let Some(events) = &mut self.events {
            events.entry(hub.clone()).or_default().push(ev());
        }
    }

    fn sku(&self, hub: &HubId, sku: &Sku) -> Option<&SkuState> {
        self.skus.get(hub)?.get(sku)
    }

    fn sku_mut(&mut self, hub: &HubId, sku: &Sku) -> &mut SkuState {
        let skus = match self.skus.get_mut(hub) {
            Some(_) => self.skus.get_mut(hub).expect("present"),
            None => self.skus.entry(hub.clone()).or_default(),
        };
        if !skus.contains_key(sku) {
            skus.insert(sku.clone(), SkuState::default());
        }
        skus.get_mut(sku).expect("present")
    }
}

/// In-memory [`StockStore`].
#[derive(Debug, Default)]
pub struct MemoryStore {
    policy: HoldPolicy,
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new(policy: HoldPolicy) -> Self {
        Self {
            policy,
            state: Mutex::default(),
        }
    }

    /// The same store, recording the events the Redis streams would carry (for a test or a
    /// writer that drains them).
    pub fn recording_events(self) -> Self {
        self.lock().events = Some(BTreeMap::new());
        self
    }

    /// Takes the events recorded so far, per hub, in order (empty unless recording).
    pub fn drain_events(&self) -> BTreeMap<HubId, Vec<InventoryEvent>> {
        let mut s = self.lock();
        match &mut s.events {
            Some(events) => std::mem::take(events),
            None => BTreeMap::new(),
        }
    }

    fn retention_ms(&self) -> i64 {
        i64::from(self.policy.retention_s) * 1000
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied operation: every mutation
        // below validates first, then writes.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn reservation_event(res: &Reservation, status: ReservationStatus, at_ms: i64) -> InventoryEvent {
    InventoryEvent::Reservation {
        status,
        at_ms,
        reservation_id: res.reservation_id.clone(),
        cart_id: res.cart_id.clone(),
        user_id: res.user_id.clone(),
        created_at: res.created_at,
        expires_at: res.expires_at,
        items: res.items.clone(),
    }
}

impl State {
    /// Forgets the finished reservations whose retention ended by `now_ms`.
    fn forget_retired(&mut self, now_ms: i64) {
        while let Some((due, _)) = self.retired.front() {
            if *due > now_ms {
                break;
            }
            let (_, rid) = self.retired.pop_front().expect("checked");
            if self
                .holds
                .get(&rid)
                .is_some_and(|h| h.res.status != ReservationStatus::Reserved)
            {
                self.holds.remove(&rid);
            }
        }
    }

    fn finish(
        &mut self,
        rid: &ReservationId,
        status: ReservationStatus,
        now_ms: i64,
        credit: bool,
        retention_ms: i64,
    ) {
        let Some(mut h) = self.holds.remove(rid) else {
            return;
        };
        let hub = h.res.hub_id.clone();
        for (sku, bucket, qty) in &h.takes {
            let st = self.sku_mut(&hub, sku);
            if credit {
                let n = st.buckets();
                let counters = st.counters.get_or_insert_with(|| vec![0]);
                counters[credit_bucket(*bucket, n) as usize] += qty;
            }
            st.reserved -= qty;
        }
        h.res.status = status;
        match status {
            ReservationStatus::Confirmed => h.res.confirmed_at = Some(now_ms),
            ReservationStatus::Released => h.res.released_at = Some(now_ms),
            ReservationStatus::Expired => h.res.expired_at = Some(now_ms),
            ReservationStatus::Reserved => {}
        }
        let exp = h.res.expires_at;
        if let Some(z) = self.expiry.get_mut(&hub) {
            z.remove(&(exp, rid.clone()));
        }
        self.record(&hub, || reservation_event(&h.res, status, now_ms));
        self.holds.insert(rid.clone(), h);
        self.retired.push_back((now_ms + retention_ms, rid.clone()));
    }
}

impl StockStore for MemoryStore {
    async fn set_stock(
        &self,
        now_ms: i64,
        cmd: &SetStockCommand,
    ) -> Result<StockSetResult, InventoryError> {
        let mut s = self.lock();
        let st = s.sku_mut(&cmd.hub_id, &cmd.sku);
        let counter = cmd.on_hand - st.reserved;
        st.counters = Some(spread(counter, cmd.buckets));
        let reserved = st.reserved;
        s.hubs.insert(cmd.hub_id.clone());
        s.record(&cmd.hub_id, || InventoryEvent::StockSet {
            reason: cmd.reason,
            at_ms: now_ms,
            sku: cmd.sku.clone(),
            on_hand: cmd.on_hand,
            buckets: cmd.buckets,
            actor: cmd.actor.clone(),
        });
        Ok(StockSetResult { counter, reserved })
    }

    async fn stock(&self, hub: &HubId, sku: &Sku) -> Result<StockLevel, InventoryError> {
        let s = self.lock();
        Ok(match s.sku(hub, sku) {
            None => StockLevel {
                available: 0,
                reserved: 0,
                counter_sum: 0,
                buckets: 1,
                exists: false,
            },
            Some(st) => {
                let c = st.counters.as_deref().unwrap_or(&[]);
                StockLevel {
                    available: c.iter().map(|v| (*v).max(0)).sum(),
                    reserved: st.reserved,
                    counter_sum: c.iter().sum(),
                    buckets: st.buckets(),
                    exists: st.counters.is_some(),
                }
            }
        })
    }

    async fn reserve(
        &self,
        now_ms: i64,
        cmd: &ReserveCommand,
    ) -> Result<ReserveOutcome, InventoryError> {
        let mut s = self.lock();
        s.forget_retired(now_ms);
        if let Some(key) = &cmd.idempotency_key {
            if let Some(rid) = s.idem.get(&(cmd.hub_id.clone(), key.as_str().to_string())) {
                return Ok(ReserveOutcome::Replay {
                    reservation_id: rid.clone(),
                });
            }
        }
        for it in &cmd.items {
            let st = s.sku(&cmd.hub_id, &it.sku);
            let Some(counters) = st.and_then(|st| st.counters.as_ref()) else {
                return Err(InventoryError::SkuNotFound {
                    sku: it.sku.clone(),
                });
            };
            let available: i64 = counters.iter().map(|v| (*v).max(0)).sum();
            if available < i64::from(it.quantity) {
                return Err(InventoryError::InsufficientStock {
                    sku: it.sku.clone(),
                    available,
                    requested: it.quantity,
                });
            }
        }
        let mut remaining = Vec::with_capacity(cmd.items.len());
        let mut takes = Vec::new();
        for it in &cmd.items {
            let st = s.sku_mut(&cmd.hub_id, &it.sku);
            let counters = st.counters.as_mut().expect("validated");
            let n = counters.len() as u8;
            let qty = i64::from(it.quantity);
            if n == 1 {
                counters[0] -= qty;
                takes.push((it.sku.clone(), 0u8, qty));
                remaining.push(counters[0]);
            } else {
                let start = start_bucket(&it.sku, &cmd.user_id, n);
                let mut left = qty;
                for step in 0..n {
                    if left == 0 {
                        break;
                    }
                    let b = (start + step) % n;
                    let take = left.min(counters[b as usize].max(0));
                    if take > 0 {
                        counters[b as usize] -= take;
                        left -= take;
                        takes.push((it.sku.clone(), b, take));
                    }
                }
                remaining.push(counters.iter().map(|v| (*v).max(0)).sum());
            }
            st.reserved += qty;
        }
        let expires_at_ms = now_ms + i64::from(cmd.ttl_s) * 1000;
        let mut items = cmd.items.clone();
        items.sort_by(|a, b| a.sku.cmp(&b.sku));
        let res = Reservation {
            reservation_id: cmd.reservation_id.clone(),
            hub_id: cmd.hub_id.clone(),
            cart_id: cmd.cart_id.clone(),
            user_id: cmd.user_id.clone(),
            status: ReservationStatus::Reserved,
            items,
            created_at: now_ms,
            expires_at: expires_at_ms,
            confirmed_at: None,
            released_at: None,
            expired_at: None,
        };
        s.record(&cmd.hub_id, || {
            let mut ev = reservation_event(&res, ReservationStatus::Reserved, now_ms);
            if let InventoryEvent::Reservation { items, .. } = &mut ev {
                // The stream keeps request order, as the script does.
                *items = cmd.items.clone();
            }
            ev
        });
        let rid = cmd.reservation_id.clone();
        match s.expiry.get_mut(&cmd.hub_id) {
            Some(z) => {
                z.insert((expires_at_ms, rid));
            }
            None => {
                s.expiry
                    .insert(cmd.hub_id.clone(), BTreeSet::from([(expires_at_ms, rid)]));
            }
        }
        if let Some(key) = &cmd.idempotency_key {
            s.idem.insert(
                (cmd.hub_id.clone(), key.as_str().to_string()),
                cmd.reservation_id.clone(),
            );
        }
        s.holds
            .insert(cmd.reservation_id.clone(), Hold { res, takes });
        Ok(ReserveOutcome::Reserved {
            expires_at_ms,
            remaining,
        })
    }

    async fn transition(
        &self,
        now_ms: i64,
        hub: &HubId,
        rid: &ReservationId,
        action: Action,
    ) -> Result<TransitionOutcome, InventoryError> {
        use ReservationStatus::*;
        let mut s = self.lock();
        s.forget_retired(now_ms);
        let Some(hold) = s.holds.get(rid).filter(|h| &h.res.hub_id == hub) else {
            return Ok(TransitionOutcome::NotFound);
        };
        let status = hold.res.status;
        let grace_ms = i64::from(self.policy.grace_s) * 1000;
        if status == Reserved && now_ms > hold.res.expires_at + grace_ms {
            s.finish(rid, Expired, now_ms, true, self.retention_ms());
            return Ok(TransitionOutcome::Expired);
        }
        Ok(match (action, status) {
            (Action::Expire, Reserved) => TransitionOutcome::NotDue,
            (Action::Expire, st) => {
                let exp = hold.res.expires_at;
                if let Some(z) = s.expiry.get_mut(hub) {
                    z.remove(&(exp, rid.clone()));
                }
                TransitionOutcome::Skip(st)
            }
            (Action::Release, Released | Expired) => TransitionOutcome::Already(status),
            (Action::Release, Confirmed) => TransitionOutcome::InvalidState(status),
            (Action::Release, Reserved) => {
                s.finish(rid, Released, now_ms, true, self.retention_ms());
                TransitionOutcome::Done
            }
            (Action::Confirm, Confirmed) => TransitionOutcome::Already(status),
            (Action::Confirm, Released) => TransitionOutcome::InvalidState(status),
            (Action::Confirm, Expired) => TransitionOutcome::Expired,
            (Action::Confirm, Reserved) => {
                s.finish(rid, Confirmed, now_ms, false, self.retention_ms());
                TransitionOutcome::Done
            }
        })
    }

    async fn reservation(
        &self,
        hub: &HubId,
        rid: &ReservationId,
    ) -> Result<Option<Reservation>, InventoryError> {
        Ok(self
            .lock()
            .holds
            .get(rid)
            .filter(|h| &h.res.hub_id == hub)
            .map(|h| h.res.clone()))
    }

    async fn locate(&self, rid: &ReservationId) -> Result<Option<HubId>, InventoryError> {
        Ok(self.lock().holds.get(rid).map(|h| h.res.hub_id.clone()))
    }

    async fn due_expiries(
        &self,
        now_ms: i64,
        hub: &HubId,
        limit: usize,
    ) -> Result<Vec<ReservationId>, InventoryError> {
        let cutoff = now_ms - i64::from(self.policy.grace_s) * 1000;
        let s = self.lock();
        Ok(s.expiry.get(hub).map_or_else(Vec::new, |z| {
            z.iter()
                .take_while(|(exp, _)| *exp < cutoff)
                .take(limit)
                .map(|(_, rid)| rid.clone())
                .collect()
        }))
    }

    async fn hubs(&self) -> Result<Vec<HubId>, InventoryError> {
        Ok(self.lock().hubs.iter().cloned().collect())
    }

    fn policy(&self) -> HoldPolicy {
        self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(hub: &HubId) -> ReserveCommand {
        ReserveCommand {
            reservation_id: ReservationId::new_random(),
            hub_id: hub.clone(),
            cart_id: CartId::parse("c").unwrap(),
            user_id: UserId::parse("u").unwrap(),
            items: vec![Item {
                sku: Sku::parse("s").unwrap(),
                quantity: 1,
            }],
            ttl_s: 60,
            idempotency_key: None,
        }
    }

    /// Like the scripts' PEXPIRE: a finished record stays readable for the retention, then is
    /// forgotten at the next operation; a live hold is never forgotten.
    #[tokio::test]
    async fn finished_records_are_forgotten_after_the_retention() {
        let policy = HoldPolicy {
            grace_s: 0,
            retention_s: 100,
        };
        let store = MemoryStore::new(policy);
        let hub = HubId::parse("h").unwrap();
        let set = SetStockCommand {
            hub_id: hub.clone(),
            sku: Sku::parse("s").unwrap(),
            on_hand: 10,
            buckets: 1,
            reason: StockSetReason::AdminSet,
            actor: "t".into(),
        };
        store.set_stock(0, &set).await.unwrap();
        let (done, live) = (cmd(&hub), cmd(&hub));
        store.reserve(0, &done).await.unwrap();
        store.reserve(0, &live).await.unwrap();
        let rid = &done.reservation_id;
        let confirm = store.transition(1_000, &hub, rid, Action::Confirm).await;
        assert_eq!(confirm.unwrap(), TransitionOutcome::Done);
        store.reserve(100_999, &cmd(&hub)).await.unwrap();
        assert!(store.reservation(&hub, rid).await.unwrap().is_some());
        let again = store.transition(101_000, &hub, rid, Action::Confirm).await;
        assert_eq!(
            again.unwrap(),
            TransitionOutcome::NotFound,
            "forgotten once its retention ended"
        );
        assert!(store.reservation(&hub, rid).await.unwrap().is_none());
        let live = store.reservation(&hub, &live.reservation_id).await.unwrap();
        assert_eq!(live.unwrap().status, ReservationStatus::Reserved);
    }
}
