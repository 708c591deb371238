//! The Redis adapter of [`CounterStore`] (05 §5): every key of a rule under its tag
//! `{<rule_id>}`; a reservation is `lua/promo_reserve.lua`, a release reads the redemption's
//! record and runs `lua/promo_release.lua` on the keys it names (its own day's counter, its
//! device's window), which gives back only if the record is still the one read.

use qc_kit::redis_kit::{bounded, BackendError, KeyPrefix};
use qc_kit::scripts::{PROMO_RELEASE, PROMO_RESERVE};
use redis::aio::ConnectionManager;
use serde_json::json;

use crate::resolve::Reason;
use crate::store::{
    AddressBook, CounterStore, Reservation, Reserved, RingBook, Usage, ADDRESSES_KEPT,
    DEVICE_WINDOW_MS, MAX_PER_DEVICE,
};

/// Retention (GC only): a day's counter 2 days, a redemption record 7 days.
pub const DAILY_TTL_MS: i64 = 172_800_000;
pub const REDEEM_TTL_MS: i64 = 604_800_000;

#[derive(Debug, Clone)]
pub struct RedisCounters {
    conn: ConnectionManager,
    prefix: KeyPrefix,
    timeout_ms: u64,
}

struct Keys {
    total: String,
    daily: String,
    user: String,
    fp: String,
    redeem: String,
    spent: String,
}

impl Keys {
    fn all(&self) -> [&String; 6] {
        [
            &self.total,
            &self.daily,
            &self.user,
            &self.fp,
            &self.redeem,
            &self.spent,
        ]
    }
}

fn unreadable(e: impl std::fmt::Display) -> BackendError {
    BackendError::Redis(format!("unreadable redemption record: {e}").into())
}

impl RedisCounters {
    pub fn new(conn: ConnectionManager, prefix: KeyPrefix, timeout_ms: u64) -> Self {
        Self {
            conn,
            prefix,
            timeout_ms,
        }
    }

    fn key(&self, rule_id: &str, rest: &str) -> String {
        self.prefix.key(&format!("promo:{{{rule_id}}}:{rest}"))
    }

    fn keys(
        &self,
        rule_id: &str,
        redemption_id: &str,
        date: &str,
        user: &str,
        device: Option<&str>,
    ) -> Keys {
        Keys {
            total: self.key(rule_id, "total"),
            daily: self.key(rule_id, &format!("daily:{date}")),
            user: self.key(rule_id, &format!("user:{user}")),
            fp: self.key(rule_id, &format!("fp:{}", device.unwrap_or("-"))),
            redeem: self.key(rule_id, &format!("redeem:{redemption_id}")),
            spent: self.key(rule_id, "spent"),
        }
    }

    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// After a Redis loss: restores a rule's counters from its held redemptions (Postgres's
    /// record), only where the key is missing (`SET NX`): the total, the money spent and each
    /// user's lifetime count. Returns whether the total was missing (and so restored).
    pub async fn rebuild(
        &self,
        rule_id: &str,
        total: i64,
        spent: i64,
        users: &[(String, i64)],
    ) -> Result<bool, BackendError> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.key(rule_id, "total"))
            .arg(total)
            .arg("NX")
            .cmd("SET")
            .arg(self.key(rule_id, "spent"))
            .arg(spent)
            .arg("NX")
            .ignore();
        for (user, n) in users {
            pipe.cmd("SET")
                .arg(self.key(rule_id, &format!("user:{user}")))
                .arg(*n)
                .arg("NX")
                .ignore();
        }
        let (restored,): (Option<String>,) =
            bounded(self.timeout_ms, pipe.query_async(&mut self.conn.clone())).await?;
        Ok(restored.is_some())
    }
}

fn reason(code: &str) -> Reason {
    match code {
        "TOTAL_LIMIT" => Reason::TotalLimit,
        "DAILY_LIMIT" => Reason::DailyLimit,
        "USER_LIMIT" => Reason::UserLimit,
        "DEVICE_LIMIT" => Reason::DeviceLimit,
        "BUDGET_LIMIT" => Reason::BudgetLimit,
        _ => Reason::CounterUnavailable,
    }
}

impl CounterStore for RedisCounters {
    async fn reserve(&self, r: &Reservation) -> Result<Reserved, BackendError> {
        let k = self.keys(
            &r.rule_id,
            &r.redemption_id,
            &r.date,
            &r.user_id,
            r.device.as_deref(),
        );
        let record = json!({"date": r.date, "user": r.user_id, "device": r.device,
                            "amount": r.amount})
        .to_string();
        let mut inv = PROMO_RESERVE.prepare_invoke();
        for key in k.all() {
            inv.key(key);
        }
        inv.arg(r.now_ms)
            .arg(r.limits.max_total)
            .arg(r.limits.max_daily)
            .arg(r.limits.max_per_user)
            .arg(if r.device.is_some() {
                MAX_PER_DEVICE
            } else {
                0
            })
            .arg(r.limits.budget)
            .arg(r.amount)
            .arg(DAILY_TTL_MS)
            .arg(DEVICE_WINDOW_MS)
            .arg(REDEEM_TTL_MS)
            .arg(record)
            .arg(&r.redemption_id);
        let (code, what): (i64, String) =
            bounded(self.timeout_ms, inv.invoke_async(&mut self.conn.clone())).await?;
        Ok(match code {
            1 => Reserved::Taken,
            2 => Reserved::Duplicate,
            _ => Reserved::Refused(reason(&what)),
        })
    }

    async fn release(
        &self,
        rule_id: &str,
        redemption_id: &str,
        _now_ms: i64,
    ) -> Result<bool, BackendError> {
        let redeem = self.key(rule_id, &format!("redeem:{redemption_id}"));
        let record: Option<String> = bounded(
            self.timeout_ms,
            redis::cmd("GET")
                .arg(&redeem)
                .query_async(&mut self.conn.clone()),
        )
        .await?;
        let Some(record) = record.filter(|v| v != "released") else {
            return Ok(false);
        };
        let v: serde_json::Value = serde_json::from_str(&record).map_err(unreadable)?;
        let field = |f: &str| v[f].as_str().ok_or_else(|| unreadable(f));
        let k = self.keys(
            rule_id,
            redemption_id,
            field("date")?,
            field("user")?,
            v["device"].as_str(),
        );
        let amount = v["amount"].as_i64().ok_or_else(|| unreadable("amount"))?;
        let mut inv = PROMO_RELEASE.prepare_invoke();
        for key in k.all() {
            inv.key(key);
        }
        inv.arg(&record).arg(redemption_id).arg(amount);
        let released: i64 =
            bounded(self.timeout_ms, inv.invoke_async(&mut self.conn.clone())).await?;
        Ok(released == 1)
    }

    async fn usage(
        &self,
        rule_id: &str,
        user_id: &str,
        date: &str,
        device: Option<&str>,
        now_ms: i64,
    ) -> Result<Usage, BackendError> {
        let k = self.keys(rule_id, "-", date, user_id, device);
        let mut pipe = redis::pipe();
        pipe.cmd("MGET")
            .arg(&k.total)
            .arg(&k.daily)
            .arg(&k.user)
            .arg(&k.spent)
            .cmd("ZCOUNT")
            .arg(&k.fp)
            .arg(format!("({}", now_ms - DEVICE_WINDOW_MS))
            .arg("+inf");
        let (counts, device_uses): (Vec<Option<i64>>, i64) =
            bounded(self.timeout_ms, pipe.query_async(&mut self.conn.clone())).await?;
        let n = |i: usize| counts.get(i).copied().flatten().unwrap_or(0);
        Ok(Usage {
            total: n(0),
            daily: n(1),
            user: n(2),
            device: if device.is_some() { device_uses } else { 0 },
            spent: n(3),
        })
    }
}

/// `promo:{<rule_id>}:addr`: a list of `user_id\taddress`, newest first, trimmed to 500.
impl AddressBook for RedisCounters {
    async fn recent_addresses(&self, rule_id: &str) -> Result<Vec<(String, String)>, BackendError> {
        let v: Vec<String> = bounded(
            self.timeout_ms,
            redis::cmd("LRANGE")
                .arg(self.key(rule_id, "addr"))
                .arg(0)
                .arg(ADDRESSES_KEPT as i64 - 1)
                .query_async(&mut self.conn.clone()),
        )
        .await?;
        Ok(v.into_iter()
            .filter_map(|e| {
                let (u, a) = e.split_once('\t')?;
                Some((u.to_string(), a.to_string()))
            })
            .collect())
    }

    async fn record_address(
        &self,
        rule_id: &str,
        user_id: &str,
        address: &str,
    ) -> Result<(), BackendError> {
        let key = self.key(rule_id, "addr");
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("LPUSH")
            .arg(&key)
            .arg(format!("{user_id}\t{address}"))
            .ignore()
            .cmd("LTRIM")
            .arg(&key)
            .arg(0)
            .arg(ADDRESSES_KEPT as i64 - 1)
            .ignore();
        bounded(self.timeout_ms, pipe.query_async(&mut self.conn.clone())).await
    }
}

/// Rings as two families of sets: `promo:ring:sig:<signal>` (its accounts) and
/// `promo:ring:acct:<account>` (its signals); a component is counted by a breadth-first walk
/// that stops at `cap` accounts.
impl RingBook for RedisCounters {
    async fn link(
        &self,
        account: &str,
        signals: &[String],
        cap: usize,
    ) -> Result<usize, BackendError> {
        let sig = |s: &str| self.prefix.key(&format!("promo:ring:sig:{s}"));
        let acct = |a: &str| self.prefix.key(&format!("promo:ring:acct:{a}"));
        if !signals.is_empty() {
            let mut pipe = redis::pipe();
            for s in signals {
                pipe.cmd("SADD").arg(sig(s)).arg(account).ignore();
                pipe.cmd("SADD").arg(acct(account)).arg(s).ignore();
            }
            let () = bounded(self.timeout_ms, pipe.query_async(&mut self.conn.clone())).await?;
        }
        let mut seen_accounts = std::collections::BTreeSet::from([account.to_string()]);
        let mut seen_signals = std::collections::BTreeSet::new();
        let mut frontier = vec![account.to_string()];
        while let Some(a) = frontier.pop() {
            if seen_accounts.len() >= cap {
                break;
            }
            let sigs: Vec<String> = bounded(
                self.timeout_ms,
                redis::cmd("SMEMBERS")
                    .arg(acct(&a))
                    .query_async(&mut self.conn.clone()),
            )
            .await?;
            for s in sigs {
                if !seen_signals.insert(s.clone()) {
                    continue;
                }
                let accts: Vec<String> = bounded(
                    self.timeout_ms,
                    redis::cmd("SMEMBERS")
                        .arg(sig(&s))
                        .query_async(&mut self.conn.clone()),
                )
                .await?;
                for x in accts {
                    if seen_accounts.insert(x.clone()) {
                        frontier.push(x);
                    }
                }
            }
        }
        Ok(seen_accounts.len().min(cap))
    }
}
