//! Promotions in the twin (issue #12): a share of honest shoppers' orders and every fraud-ring
//! order try the rules' promos. The checkout saga applies them (its promos port, [`TwinPromos`],
//! calls the production `qc_promo::apply`) and releases them when the order does not go through
//! (`qc_promo::release`). The twin only decides who shops with which phone and address, and
//! measures: redemptions, budget spent vs budget, discount per order, rings caught and honest
//! shoppers flagged. The counters are the memory adapter, or Redis (the real scripts) in live
//! mode.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use qc_kit::redis_kit::BackendError;
use qc_promo::store::{AddressBook, RingBook};
use qc_promo::{
    Cart, CounterStore, MemoryCounters, PromoConfig, RedisCounters, Reservation, Reserved,
    RingAction, Rule, RuleBody, Usage,
};
use rand::Rng;
use serde_json::json;

pub use reports::summary::PromoInfo;

use crate::rng::{fnv, Stream, Streams, FNV_OFFSET};
use crate::scenario::Promo;

/// The built-in rules when a scenario names none: a new-user offer with a per-user cap and a
/// money budget, a lunch-time percentage with a total cap, and free delivery above a minimum,
/// the first two in one exclusivity group.
pub fn default_rules() -> Vec<serde_json::Value> {
    vec![
        json!({"name": "New user 20k", "priority": 10, "exclusivity_group": "welcome",
               "conditions": {"type": "first_n_order", "max_orders": 1},
               "effect": {"type": "fixed", "value": 20000},
               "limits": {"max_per_user": 1, "budget": 4000000}}),
        json!({"name": "Lunch 10%", "priority": 5, "exclusivity_group": "welcome",
               "conditions": {"type": "and", "conditions": [
                   {"type": "time_slot", "start": "11:00", "end": "14:00"},
                   {"type": "min_transaction", "min_amount": 50000}]},
               "effect": {"type": "percentage", "value": 10, "max_discount": 15000},
               "limits": {"max_total": 300, "budget": 3000000}}),
        json!({"name": "Free delivery", "priority": 1, "stackable": true,
               "conditions": {"type": "min_transaction", "min_amount": 75000},
               "effect": {"type": "free_shipping", "value": 10000},
               "limits": {"budget": 2000000}}),
    ]
}

/// Promo's counters in a run: the memory adapter, or Redis in live mode. Delegation only.
pub enum TwinCounters {
    Memory(MemoryCounters),
    Redis(RedisCounters),
}

impl CounterStore for TwinCounters {
    async fn reserve(&self, r: &Reservation) -> Result<Reserved, BackendError> {
        match self {
            Self::Memory(s) => s.reserve(r).await,
            Self::Redis(s) => s.reserve(r).await,
        }
    }

    async fn release(&self, rule: &str, id: &str, now_ms: i64) -> Result<bool, BackendError> {
        match self {
            Self::Memory(s) => s.release(rule, id, now_ms).await,
            Self::Redis(s) => s.release(rule, id, now_ms).await,
        }
    }

    async fn usage(
        &self,
        rule: &str,
        user: &str,
        date: &str,
        device: Option<&str>,
        now_ms: i64,
    ) -> Result<Usage, BackendError> {
        match self {
            Self::Memory(s) => s.usage(rule, user, date, device, now_ms).await,
            Self::Redis(s) => s.usage(rule, user, date, device, now_ms).await,
        }
    }
}

impl AddressBook for TwinCounters {
    async fn recent_addresses(&self, rule: &str) -> Result<Vec<(String, String)>, BackendError> {
        match self {
            Self::Memory(s) => s.recent_addresses(rule).await,
            Self::Redis(s) => s.recent_addresses(rule).await,
        }
    }

    async fn record_address(&self, rule: &str, user: &str, a: &str) -> Result<(), BackendError> {
        match self {
            Self::Memory(s) => s.record_address(rule, user, a).await,
            Self::Redis(s) => s.record_address(rule, user, a).await,
        }
    }
}

impl RingBook for TwinCounters {
    async fn link(
        &self,
        account: &str,
        signals: &[String],
        cap: usize,
    ) -> Result<usize, BackendError> {
        match self {
            Self::Memory(s) => s.link(account, signals, cap).await,
            Self::Redis(s) => s.link(account, signals, cap).await,
        }
    }
}

/// Promo's production parts in a run: the counters and the rules with the engine's settings.
pub struct PromoCore {
    counters: TwinCounters,
    rules: Vec<Rule>,
    engine: PromoConfig,
}

/// The checkout saga's promos port in the twin: the production engine over the run's counters,
/// with the cart the twin's shopper brings (device, address, order history) registered per
/// order id before the saga runs. Orders with no cart get no promo.
#[derive(Default)]
pub struct TwinPromos {
    core: Option<Arc<PromoCore>>,
    /// The virtual clock, set before each saga.
    pub now_ms: AtomicI64,
    carts: Mutex<BTreeMap<String, Cart>>,
    outcomes: Mutex<BTreeMap<String, qc_promo::Applied>>,
    released: Mutex<BTreeMap<String, usize>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TwinPromos {
    pub fn new(core: Option<Arc<PromoCore>>) -> Self {
        Self {
            core,
            ..Self::default()
        }
    }

    /// The shopper's cart for order `order_id` (their next saga's promo call uses it).
    pub fn bring(&self, order_id: &str, cart: Cart) {
        locked(&self.carts).insert(order_id.to_string(), cart);
    }

    /// What promo answered order `order_id`, and how many rules its release gave back.
    pub fn take(&self, order_id: &str) -> (Option<qc_promo::Applied>, usize) {
        locked(&self.carts).remove(order_id);
        (
            locked(&self.outcomes).remove(order_id),
            locked(&self.released).remove(order_id).unwrap_or(0),
        )
    }
}

impl qc_checkout::Promos for TwinPromos {
    async fn apply(
        &self,
        call: &qc_checkout::PromoCall,
    ) -> Result<qc_checkout::PromoAnswer, String> {
        let cart = locked(&self.carts).get(&call.order_id).cloned();
        let (Some(core), Some(cart)) = (&self.core, cart) else {
            return Ok(qc_checkout::PromoAnswer::default());
        };
        let now = self.now_ms.load(Ordering::Relaxed);
        let out = qc_promo::apply(
            &core.counters,
            &core.rules,
            &cart,
            &call.order_id,
            &core.engine,
            now,
        )
        .await;
        let answer = qc_checkout::PromoAnswer {
            discount: out.total_discount,
            applied: out.applied.iter().map(|r| r.rule_id.clone()).collect(),
        };
        locked(&self.outcomes).insert(call.order_id.clone(), out);
        Ok(answer)
    }

    async fn release(&self, order_id: &str) -> Result<(), String> {
        let Some(core) = &self.core else {
            return Ok(());
        };
        let ids: Vec<String> = core.rules.iter().map(|r| r.id.clone()).collect();
        let now = self.now_ms.load(Ordering::Relaxed);
        let n = qc_promo::release(&core.counters, &ids, order_id, now)
            .await
            .map_err(|e| e.to_string())?;
        *locked(&self.released)
            .entry(order_id.to_string())
            .or_default() += n;
        Ok(())
    }
}

/// Who placed an order, as promo sees them.
#[derive(Debug, Clone)]
pub struct Shopper {
    user: String,
    device: String,
    address: String,
    /// The ring, for a ring account.
    ring: Option<usize>,
}

/// The shoppers' promo side and the promo core they talk to.
pub struct PromoTwin {
    cfg: Promo,
    core: Arc<PromoCore>,
    choose: Stream,
    /// Orders each account has placed with a promo try (`user_order_count`; the twin does not
    /// track the rest of a shopper's history).
    orders_completed: BTreeMap<String, i64>,
    info: PromoInfo,
    /// Each ring's accounts that tried a promo.
    rings_active: BTreeMap<usize, BTreeSet<String>>,
    rings_flagged: BTreeSet<usize>,
    honest_applied: BTreeSet<String>,
    honest_flagged: BTreeSet<String>,
}

fn rule_id(i: usize) -> String {
    format!("promo-{i}")
}

impl PromoTwin {
    pub fn new(cfg: &Promo, streams: &Streams, start_ms: i64) -> Self {
        let bodies: Vec<serde_json::Value> = if cfg.rules.is_empty() {
            default_rules()
        } else {
            cfg.rules
                .iter()
                .map(|r| serde_json::to_value(r).expect("a TOML table is JSON"))
                .collect()
        };
        let rules = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| Rule {
                id: rule_id(i),
                body: RuleBody::parse(b).expect("validated with the scenario"),
                created_at_ms: start_ms,
                updated_at_ms: start_ms,
                version: 1,
            })
            .collect();
        Self {
            cfg: cfg.clone(),
            core: Arc::new(PromoCore {
                counters: TwinCounters::Memory(MemoryCounters::new()),
                rules,
                engine: PromoConfig {
                    // The twin's clock is the city's local time (as ETA's is).
                    utc_offset_min: crate::eta::SIM_UTC_OFFSET_MIN,
                    fp_secret: b"twin-device-secret".to_vec(),
                    ring_max_accounts: cfg.ring_max_accounts,
                    ring_action: RingAction::parse(&cfg.ring_action).expect("validated"),
                },
            }),
            choose: streams.stream("promo-shoppers"),
            orders_completed: BTreeMap::new(),
            info: PromoInfo::default(),
            rings_active: BTreeMap::new(),
            rings_flagged: BTreeSet::new(),
            honest_applied: BTreeSet::new(),
            honest_flagged: BTreeSet::new(),
        }
    }

    /// Live mode: the counters in Redis (before any order; hand [`PromoTwin::core`] to the
    /// checkout saga after).
    pub fn use_redis(&mut self, counters: RedisCounters) {
        let core = &*self.core;
        self.core = Arc::new(PromoCore {
            counters: TwinCounters::Redis(counters),
            rules: core.rules.clone(),
            engine: core.engine.clone(),
        });
    }

    /// The production parts, for the checkout saga's promos port.
    pub fn core(&self) -> Arc<PromoCore> {
        self.core.clone()
    }

    /// A SKU's shelf price: fixed per SKU, within the catalog's range, a multiple of 500.
    pub fn price(sku: usize, min: i64, max: i64) -> i64 {
        let span = (max - min).max(0) as u64 / 500 + 1;
        min + (fnv(FNV_OFFSET, &(sku as u64).to_le_bytes()) % span) as i64 * 500
    }

    /// Who shops: a ring account (`order_share` of orders when rings exist), else honest
    /// shopper `user` (living at a shared address with `user ^ 1` for `household_share`).
    fn shopper(&mut self, user: u32) -> Option<Shopper> {
        let r = &self.cfg.rings;
        if r.count > 0 && self.choose.random::<f64>() < r.order_share {
            let ring = self.choose.random_range(0..r.count) as usize;
            let acc = self.choose.random_range(0..r.accounts);
            return Some(Shopper {
                user: format!("ring{ring}-a{acc}"),
                device: format!("ring{ring}-phone{}", acc % r.devices),
                // Phones and addresses interleave, so one ring is one component.
                address: format!("Jl. Ring {ring} Blok {}", (acc / r.devices) % r.addresses),
                ring: Some(ring),
            });
        }
        if self.choose.random::<f64>() >= self.cfg.share {
            return None;
        }
        let household = self.choose.random::<f64>() < self.cfg.household_share;
        let home = if household { user & !1 } else { user };
        Some(Shopper {
            user: format!("u{user}"),
            device: format!("phone-u{user}"),
            address: format!("Jl. Melati {home}"),
            ring: None,
        })
    }

    /// The cart shopper `user` brings to a checkout of `subtotal` rupiah, if they try a promo.
    pub fn cart_for(&mut self, user: u32, subtotal: i64) -> Option<(Shopper, Cart)> {
        let who = self.shopper(user)?;
        let done = self.orders_completed.get(&who.user).copied().unwrap_or(0);
        let cart = Cart::parse(
            &json!({"cart_total": subtotal, "area": "Jakarta", "shipping_fee": 10000,
                    "user_order_count": done, "device_id": who.device, "address": who.address}),
            Some(&who.user),
        )
        .ok()?;
        Some((who, cart))
    }

    /// What promo did in one saga of shopper `who`: `out` is its answer (None if the saga
    /// stopped before promo), `released` the rules its release gave back, `confirmed` whether
    /// the order went through (only then does it count in the shopper's order history).
    pub fn record(
        &mut self,
        who: Shopper,
        out: Option<qc_promo::Applied>,
        released: usize,
        confirmed: bool,
    ) {
        if confirmed {
            *self.orders_completed.entry(who.user.clone()).or_default() += 1;
        }
        let Some(out) = out else { return };
        self.info.orders_tried += 1;
        match who.ring {
            Some(r) => {
                self.rings_active
                    .entry(r)
                    .or_default()
                    .insert(who.user.clone());
                if out.fraud.is_some() {
                    self.rings_flagged.insert(r);
                }
            }
            None => {
                self.honest_applied.insert(who.user.clone());
                if out.fraud.is_some() {
                    self.honest_flagged.insert(who.user.clone());
                }
            }
        }
        if out.fraud.is_some() {
            self.info.orders_flagged += 1;
        }
        if !out.applied.is_empty() {
            self.info.redemptions += out.applied.len() as u64;
            self.info.orders_discounted += 1;
            self.info.discount_total += out.total_discount;
        }
        self.info.releases += released as u64;
    }

    pub fn summarise<X: crate::backend::Exec>(&self, exec: &mut X, now_ms: i64) -> PromoInfo {
        let mut info = self.info.clone();
        for r in &self.core.rules {
            let usage = exec
                .run(
                    "promo.usage",
                    self.core.counters.usage(&r.id, "-", "-", None, now_ms),
                )
                .unwrap_or_default();
            let budget = r.body.limits.budget;
            info.rules.push(reports::summary::PromoRuleInfo {
                rule: r.body.name.clone(),
                redemptions: usage.total,
                spent: usage.spent,
                budget,
                overspend: if budget > 0 {
                    (usage.spent - budget).max(0)
                } else {
                    0
                },
            });
        }
        info.overspend = info.rules.iter().map(|r| r.overspend).sum();
        info.discount_per_order = if info.orders_discounted > 0 {
            (info.discount_total as f64 / info.orders_discounted as f64).round()
        } else {
            0.0
        };
        info.rings = self.cfg.rings.count as u64;
        info.rings_active = self.rings_active.len() as u64;
        // A ring can be told from a household only once more of its accounts than the limit
        // have shopped: those are the ones to catch.
        let detectable: BTreeSet<usize> = self
            .rings_active
            .iter()
            .filter(|(_, accounts)| accounts.len() > self.cfg.ring_max_accounts)
            .map(|(r, _)| *r)
            .collect();
        info.rings_detectable = detectable.len() as u64;
        info.rings_caught = self.rings_flagged.intersection(&detectable).count() as u64;
        info.rings_caught_share = ratio(info.rings_caught, info.rings_detectable);
        info.honest_shoppers = self.honest_applied.len() as u64;
        info.honest_flagged = self.honest_flagged.len() as u64;
        info.honest_flagged_share = ratio(info.honest_flagged, info.honest_shoppers);
        info
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        (a as f64 / b as f64 * 10_000.0).round() / 10_000.0
    }
}
