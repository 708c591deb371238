//! The counters port (05 §5): per rule, the total count, the count per day, each user's
//! lifetime count, each device's uses in a sliding 24 h window, and the money spent against the
//! budget, with one redemption record per redemption id. A reservation checks every boundary
//! and takes them all at once, or none; a release gives back exactly what its reservation took,
//! once. Adapters: [`MemoryCounters`] here and the Redis one (two Lua scripts); both pass
//! `conformance`, and a property test runs random operation sequences against both.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex;

use qc_kit::redis_kit::BackendError;

use crate::resolve::Reason;
use crate::rule::Limits;

/// Uses of a rule allowed per device in the window (05 §6).
pub const MAX_PER_DEVICE: i64 = 3;
/// The device window.
pub const DEVICE_WINDOW_MS: i64 = 86_400_000;

/// One reservation: every boundary of `rule_id` checked and taken at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    pub rule_id: String,
    pub redemption_id: String,
    pub user_id: String,
    /// The PROMO_TZ date of now, `YYYYMMDD` (the daily counter's key).
    pub date: String,
    /// The device's HMAC, if the cart named one.
    pub device: Option<String>,
    pub limits: Limits,
    /// Charged to the budget: discount + cashback.
    pub amount: i64,
    pub now_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    Taken,
    /// This redemption id already holds (or held) this rule.
    Duplicate,
    /// A boundary is reached: `TotalLimit`, `DailyLimit`, `UserLimit`, `DeviceLimit` or
    /// `BudgetLimit`.
    Refused(Reason),
}

/// A rule's counters as a reservation would see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub total: i64,
    pub daily: i64,
    pub user: i64,
    pub device: i64,
    pub spent: i64,
}

impl Usage {
    /// The first boundary `limits` would refuse (0 = unlimited), for a grant of `amount`.
    pub fn refusal(&self, limits: &Limits, device: bool, amount: i64) -> Option<Reason> {
        let over = |cur: i64, max: i64| max > 0 && cur >= max;
        if over(self.total, limits.max_total) {
            Some(Reason::TotalLimit)
        } else if over(self.daily, limits.max_daily) {
            Some(Reason::DailyLimit)
        } else if over(self.user, limits.max_per_user) {
            Some(Reason::UserLimit)
        } else if device && self.device >= MAX_PER_DEVICE {
            Some(Reason::DeviceLimit)
        } else if limits.budget > 0 && self.spent + amount > limits.budget {
            Some(Reason::BudgetLimit)
        } else {
            None
        }
    }
}

pub trait CounterStore: Send + Sync {
    /// Atomically: a known redemption id → `Duplicate`; a boundary reached → `Refused`; else
    /// every counter taken and the redemption recorded.
    fn reserve(
        &self,
        r: &Reservation,
    ) -> impl Future<Output = Result<Reserved, BackendError>> + Send;
    /// Gives back what the redemption took, exactly once: true if it did now, false if it was
    /// already released or never held.
    fn release(
        &self,
        rule_id: &str,
        redemption_id: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;
    /// The counters for a read-only check (`/validate`, `/usage`).
    fn usage(
        &self,
        rule_id: &str,
        user_id: &str,
        date: &str,
        device: Option<&str>,
        now_ms: i64,
    ) -> impl Future<Output = Result<Usage, BackendError>> + Send;
}

/// Addresses kept per rule for the address check (05 §6).
pub const ADDRESSES_KEPT: usize = 500;

/// The recent addresses of a rule's redemptions (the address check of per-user rules).
pub trait AddressBook: Send + Sync {
    /// The newest [`ADDRESSES_KEPT`] `(user_id, address)`, newest first.
    fn recent_addresses(
        &self,
        rule_id: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, BackendError>> + Send;
    fn record_address(
        &self,
        rule_id: &str,
        user_id: &str,
        address: &str,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
}

/// Accounts linked by shared signals (device hashes, normalised addresses): the rings of 05's
/// fraud signals. Shared by every rule.
pub trait RingBook: Send + Sync {
    /// Records that `account` used each of `signals`; returns how many accounts its component
    /// holds, counting no further than `cap`.
    fn link(
        &self,
        account: &str,
        signals: &[String],
        cap: usize,
    ) -> impl Future<Output = Result<usize, BackendError>> + Send;
}

#[derive(Debug, Clone)]
struct Redeemed {
    date: String,
    user: String,
    device: Option<String>,
    amount: i64,
    released: bool,
}

#[derive(Debug, Default)]
struct RuleCounters {
    total: i64,
    daily: HashMap<String, i64>,
    users: HashMap<String, i64>,
    /// Device → redemption id → use time.
    devices: HashMap<String, BTreeMap<String, i64>>,
    spent: i64,
    redeemed: HashMap<String, Redeemed>,
    /// Newest first.
    addresses: std::collections::VecDeque<(String, String)>,
}

impl RuleCounters {
    fn device_uses(&mut self, device: &str, now_ms: i64) -> i64 {
        let Some(uses) = self.devices.get_mut(device) else {
            return 0;
        };
        uses.retain(|_, at| *at > now_ms - DEVICE_WINDOW_MS);
        uses.len() as i64
    }
}

/// In-process adapter (the simulator's and the tests').
#[derive(Debug, Default)]
pub struct MemoryCounters {
    rules: Mutex<HashMap<String, RuleCounters>>,
    rings: Mutex<crate::fraud::Rings>,
}

impl MemoryCounters {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, rule_id: &str, f: impl FnOnce(&mut RuleCounters) -> T) -> T {
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        f(rules.entry(rule_id.to_string()).or_default())
    }
}

impl CounterStore for MemoryCounters {
    async fn reserve(&self, r: &Reservation) -> Result<Reserved, BackendError> {
        Ok(self.with(&r.rule_id, |c| {
            if c.redeemed.contains_key(&r.redemption_id) {
                return Reserved::Duplicate;
            }
            let usage = Usage {
                total: c.total,
                daily: c.daily.get(&r.date).copied().unwrap_or(0),
                user: c.users.get(&r.user_id).copied().unwrap_or(0),
                device: r
                    .device
                    .as_deref()
                    .map_or(0, |d| c.device_uses(d, r.now_ms)),
                spent: c.spent,
            };
            if let Some(why) = usage.refusal(&r.limits, r.device.is_some(), r.amount) {
                return Reserved::Refused(why);
            }
            c.total += 1;
            *c.daily.entry(r.date.clone()).or_default() += 1;
            *c.users.entry(r.user_id.clone()).or_default() += 1;
            if let Some(d) = &r.device {
                c.devices
                    .entry(d.clone())
                    .or_default()
                    .insert(r.redemption_id.clone(), r.now_ms);
            }
            c.spent += r.amount;
            c.redeemed.insert(
                r.redemption_id.clone(),
                Redeemed {
                    date: r.date.clone(),
                    user: r.user_id.clone(),
                    device: r.device.clone(),
                    amount: r.amount,
                    released: false,
                },
            );
            Reserved::Taken
        }))
    }

    async fn release(
        &self,
        rule_id: &str,
        redemption_id: &str,
        _now_ms: i64,
    ) -> Result<bool, BackendError> {
        Ok(self.with(rule_id, |c| {
            let Some(red) = c
                .redeemed
                .get(redemption_id)
                .filter(|r| !r.released)
                .cloned()
            else {
                return false;
            };
            let down = |n: &mut i64| *n = (*n - 1).max(0);
            down(&mut c.total);
            if let Some(n) = c.daily.get_mut(&red.date) {
                down(n);
            }
            if let Some(n) = c.users.get_mut(&red.user) {
                down(n);
            }
            if let Some(uses) = red.device.as_ref().and_then(|d| c.devices.get_mut(d)) {
                uses.remove(redemption_id);
            }
            c.spent = (c.spent - red.amount).max(0);
            if let Some(r) = c.redeemed.get_mut(redemption_id) {
                r.released = true;
            }
            true
        }))
    }

    async fn usage(
        &self,
        rule_id: &str,
        user_id: &str,
        date: &str,
        device: Option<&str>,
        now_ms: i64,
    ) -> Result<Usage, BackendError> {
        Ok(self.with(rule_id, |c| Usage {
            total: c.total,
            daily: c.daily.get(date).copied().unwrap_or(0),
            user: c.users.get(user_id).copied().unwrap_or(0),
            device: device.map_or(0, |d| c.device_uses(d, now_ms)),
            spent: c.spent,
        }))
    }
}

impl AddressBook for MemoryCounters {
    async fn recent_addresses(&self, rule_id: &str) -> Result<Vec<(String, String)>, BackendError> {
        Ok(self.with(rule_id, |c| c.addresses.iter().cloned().collect()))
    }

    async fn record_address(
        &self,
        rule_id: &str,
        user_id: &str,
        address: &str,
    ) -> Result<(), BackendError> {
        self.with(rule_id, |c| {
            c.addresses
                .push_front((user_id.to_string(), address.to_string()));
            c.addresses.truncate(ADDRESSES_KEPT);
        });
        Ok(())
    }
}

impl RingBook for MemoryCounters {
    async fn link(
        &self,
        account: &str,
        signals: &[String],
        cap: usize,
    ) -> Result<usize, BackendError> {
        let mut rings = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        for s in signals {
            rings.observe(account, s);
        }
        Ok(rings.component_size(account).min(cap))
    }
}
