//! The application layer (05 §4, §6): `validate` (read-only: which rules a cart could get),
//! `apply` (resolution with an atomic reservation per applied rule, the address check for
//! per-user rules, device counting) and `release` (the compensation). The service's handlers and
//! the simulator's shoppers both call these; rules come from the caller (the service's cache of
//! Postgres, or the scenario).

use qc_kit::redis_kit::BackendError;

use crate::cart::Cart;
use crate::effect::{Effect, Grant};
use crate::fraud::{device_hash, normalise_address, same_address};
use crate::resolve::{Candidate, Reason, Resolver};
use crate::rule::RuleBody;
use crate::store::{AddressBook, CounterStore, Reservation, Reserved, RingBook};
use crate::tree::{EvalContext, Minute};

/// A stored rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: String,
    pub body: RuleBody,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub version: i64,
}

/// What happens to a cart whose account is in a ring (`PROMO_RING_ACTION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingAction {
    /// Apply as usual; the answer carries the flag.
    Flag,
    /// No promo (`FRAUD_RING`).
    Block,
    /// No promo until reviewed (`REVIEW_REQUIRED`).
    Review,
}

impl RingAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RingAction::Flag => "flag",
            RingAction::Block => "block",
            RingAction::Review => "review",
        }
    }

    pub fn parse(s: &str) -> Option<RingAction> {
        match s {
            "flag" => Some(RingAction::Flag),
            "block" => Some(RingAction::Block),
            "review" => Some(RingAction::Review),
            _ => None,
        }
    }
}

/// What the engine needs besides rules and stores.
#[derive(Debug, Clone, PartialEq)]
pub struct PromoConfig {
    /// PROMO_TZ as an offset from UTC (Asia/Jakarta: +420, no daylight saving).
    pub utc_offset_min: i32,
    /// `PROMO_FP_SECRET`: the device HMAC key.
    pub fp_secret: Vec<u8>,
    /// `PROMO_RING_MAX_ACCOUNTS`: a component of more accounts than this (linked by devices or
    /// addresses) is a ring; 0 turns the check off.
    pub ring_max_accounts: usize,
    pub ring_action: RingAction,
}

/// A fraud signal raised on a cart, with what was done about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FraudFlag {
    /// Accounts in the ring (counted up to one past the limit).
    pub accounts: usize,
    pub action: RingAction,
}

/// One rule's answer (05 §2 EvalResult).
#[derive(Debug, Clone, PartialEq)]
pub struct EvalResult {
    pub rule_id: String,
    pub rule_name: String,
    pub effect: Effect,
    pub discount_amount: i64,
    pub cashback_amount: i64,
    pub approved: bool,
    pub reject_reason: Option<Reason>,
}

/// `/apply`'s answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub applied: Vec<EvalResult>,
    pub rejected: Vec<EvalResult>,
    pub subtotal: i64,
    pub total_discount: i64,
    pub final_amount: i64,
    pub total_cashback: i64,
    pub redemption_id: String,
    /// Set when the account is in a ring.
    pub fraud: Option<FraudFlag>,
}

/// Local minute of day, weekday (0 = Sunday) and `YYYYMMDD` of `now_ms` at `offset_min`.
pub fn local_time(now_ms: i64, offset_min: i32) -> (Minute, u8, String) {
    let local_s = now_ms.div_euclid(1000) + i64::from(offset_min) * 60;
    let days = local_s.div_euclid(86_400);
    let minute = (local_s.rem_euclid(86_400) / 60) as u16;
    // 1970-01-01 was a Thursday (4).
    let weekday = ((days + 4).rem_euclid(7)) as u8;
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (Minute(minute), weekday, format!("{y:04}{m:02}{d:02}"))
}

fn result(rule: &Rule, grant: Grant, reason: Option<Reason>) -> EvalResult {
    EvalResult {
        rule_id: rule.id.clone(),
        rule_name: rule.body.name.clone(),
        effect: rule.body.effect,
        discount_amount: grant.discount,
        cashback_amount: grant.cashback,
        approved: reason.is_none(),
        reject_reason: reason,
    }
}

/// The rules that are live at `now_ms` and whose tree holds for `cart`, in step-1 order.
fn matching<'r>(rules: &'r [Rule], cart: &Cart, cfg: &PromoConfig, now_ms: i64) -> Vec<&'r Rule> {
    let (minute, weekday, _) = local_time(now_ms, cfg.utc_offset_min);
    let ctx = EvalContext {
        cart_total: cart.subtotal,
        area: cart.area.as_deref(),
        categories: &cart.categories,
        user_order_count: cart.user_order_count,
        minute,
        weekday,
    };
    let mut out: Vec<&Rule> = rules
        .iter()
        .filter(|r| r.body.live_at(now_ms) && r.body.conditions.eval(&ctx))
        .collect();
    out.sort_by(|a, b| {
        b.body
            .priority
            .cmp(&a.body.priority)
            .then(a.created_at_ms.cmp(&b.created_at_ms))
            .then(a.id.cmp(&b.id))
    });
    out
}

/// `/validate`: every matching rule whose counters are not exhausted, with its grant on the
/// whole subtotal. Writes nothing; a store failure leaves out rules with limits (fail closed).
pub async fn validate<S: CounterStore>(
    store: &S,
    rules: &[Rule],
    cart: &Cart,
    cfg: &PromoConfig,
    now_ms: i64,
) -> Vec<EvalResult> {
    let (_, _, date) = local_time(now_ms, cfg.utc_offset_min);
    let device = cart
        .device_id
        .as_deref()
        .map(|d| device_hash(&cfg.fp_secret, d));
    let mut out = Vec::new();
    for rule in matching(rules, cart, cfg, now_ms) {
        let grant = rule
            .body
            .effect
            .grant(cart.subtotal, cart.shipping_fee, cart.subtotal);
        if grant.is_zero() {
            continue;
        }
        let limits = rule.body.limits;
        if limits.any() || device.is_some() {
            match store
                .usage(&rule.id, &cart.user_id, &date, device.as_deref(), now_ms)
                .await
            {
                Ok(u)
                    if u.refusal(&limits, device.is_some(), grant.discount + grant.cashback)
                        .is_none() => {}
                Ok(_) => continue,
                Err(_) if !limits.any() => {}
                Err(_) => continue,
            }
        }
        out.push(result(rule, grant, None));
    }
    out
}

/// `/apply`: resolution with one atomic reservation per rule about to be applied. A retry
/// with the same `redemption_id` finds its reservations taken (`Duplicate`) and does not count
/// twice; the service keeps the first answer to return it (05 §2).
pub async fn apply<S: CounterStore + AddressBook + RingBook>(
    store: &S,
    rules: &[Rule],
    cart: &Cart,
    redemption_id: &str,
    cfg: &PromoConfig,
    now_ms: i64,
) -> Applied {
    let (_, _, date) = local_time(now_ms, cfg.utc_offset_min);
    let device = cart
        .device_id
        .as_deref()
        .map(|d| device_hash(&cfg.fp_secret, d));
    let fraud = ring_check(store, cart, device.as_deref(), cfg).await;
    let blocked = fraud.and_then(|f| match f.action {
        RingAction::Flag => None,
        RingAction::Block => Some(Reason::FraudRing),
        RingAction::Review => Some(Reason::ReviewRequired),
    });
    let matched = matching(rules, cart, cfg, now_ms);
    if let Some(why) = blocked {
        return Applied {
            applied: Vec::new(),
            rejected: matched
                .iter()
                .map(|r| result(r, Grant::default(), Some(why)))
                .collect(),
            subtotal: cart.subtotal,
            total_discount: 0,
            final_amount: cart.subtotal,
            total_cashback: 0,
            redemption_id: redemption_id.to_string(),
            fraud,
        };
    }
    let candidates: Vec<Candidate> = matched
        .iter()
        .map(|r| Candidate {
            rule_id: r.id.clone(),
            priority: r.body.priority,
            created_at_ms: r.created_at_ms,
            group: r.body.exclusivity_group.clone(),
            stackable: r.body.stackable,
            max_stackable: r.body.max_stackable,
            effect: r.body.effect,
        })
        .collect();
    let rule_of = |id: &str| {
        *matched
            .iter()
            .find(|r| r.id == id)
            .expect("candidates come from the matched rules")
    };
    let mut res = Resolver::new(candidates, cart.subtotal, cart.shipping_fee);
    while let Some((i, grant)) = res.next_reservation() {
        let rule = rule_of(&res.candidates()[i].rule_id);
        let outcome = reserve_one(
            store,
            rule,
            cart,
            redemption_id,
            &date,
            &device,
            grant,
            now_ms,
        )
        .await;
        res.reserved(outcome);
    }
    let cands = res.candidates();
    let applied = res
        .applied
        .iter()
        .map(|(i, g)| result(rule_of(&cands[*i].rule_id), *g, None))
        .collect();
    let rejected = res
        .rejected
        .iter()
        .map(|(i, why)| result(rule_of(&cands[*i].rule_id), Grant::default(), Some(*why)))
        .collect();
    Applied {
        applied,
        rejected,
        subtotal: cart.subtotal,
        total_discount: res.total_discount(),
        final_amount: res.final_amount(),
        total_cashback: res.total_cashback(),
        redemption_id: redemption_id.to_string(),
        fraud,
    }
}

/// Links the account to its device and address and flags it when its ring is too big. A store
/// failure raises no flag (the caps still hold).
async fn ring_check<S: RingBook>(
    store: &S,
    cart: &Cart,
    device: Option<&str>,
    cfg: &PromoConfig,
) -> Option<FraudFlag> {
    if cfg.ring_max_accounts == 0 || cart.user_id.is_empty() {
        return None;
    }
    let mut signals: Vec<String> = device.map(|d| format!("dev:{d}")).into_iter().collect();
    if let Some(a) = cart
        .address
        .as_deref()
        .map(normalise_address)
        .filter(|a| !a.is_empty())
    {
        signals.push(format!("addr:{a}"));
    }
    let accounts = store
        .link(&cart.user_id, &signals, cfg.ring_max_accounts + 1)
        .await
        .ok()?;
    (accounts > cfg.ring_max_accounts).then_some(FraudFlag {
        accounts,
        action: cfg.ring_action,
    })
}

#[allow(clippy::too_many_arguments)]
async fn reserve_one<S: CounterStore + AddressBook>(
    store: &S,
    rule: &Rule,
    cart: &Cart,
    redemption_id: &str,
    date: &str,
    device: &Option<String>,
    grant: Grant,
    now_ms: i64,
) -> Result<(), Reason> {
    let limits = rule.body.limits;
    // The address check guards per-user caps against one person with many accounts.
    let address = cart.address.as_deref().filter(|_| limits.max_per_user > 0);
    if let Some(addr) = address {
        match store.recent_addresses(&rule.id).await {
            Ok(seen) => {
                if seen
                    .iter()
                    .any(|(user, a)| *user != cart.user_id && same_address(a, addr))
                {
                    return Err(Reason::FraudAddress);
                }
            }
            Err(_) => return Err(Reason::CounterUnavailable),
        }
    }
    let r = Reservation {
        rule_id: rule.id.clone(),
        redemption_id: redemption_id.to_string(),
        user_id: cart.user_id.clone(),
        date: date.to_string(),
        device: device.clone(),
        limits,
        amount: grant.discount + grant.cashback,
        now_ms,
    };
    match store.reserve(&r).await {
        // A retry of the same redemption: it already holds this rule.
        Ok(Reserved::Taken) | Ok(Reserved::Duplicate) => {
            if let Some(addr) = address {
                // Best effort: a lost address weakens the next check, never this answer.
                let _ = store.record_address(&rule.id, &cart.user_id, addr).await;
            }
            Ok(())
        }
        Ok(Reserved::Refused(why)) => Err(why),
        // Fail closed for rules with limits; others apply without a record.
        Err(_) if limits.any() => Err(Reason::CounterUnavailable),
        Err(_) => Ok(()),
    }
}

/// `/release`: gives back what `redemption_id` holds on each of `rule_ids`, once. Returns how
/// many rules were released now.
pub async fn release<S: CounterStore>(
    store: &S,
    rule_ids: &[String],
    redemption_id: &str,
    now_ms: i64,
) -> Result<usize, BackendError> {
    let mut n = 0;
    for id in rule_ids {
        if store.release(id, redemption_id, now_ms).await? {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryCounters;
    use futures::executor::block_on;
    use serde_json::json;

    const NOW: i64 = 1_796_112_000_000; // 2026-12-01T08:00:00Z = 15:00 in Jakarta, a Tuesday

    fn rule(id: &str, body: serde_json::Value) -> Rule {
        Rule {
            id: id.into(),
            body: RuleBody::parse(&body).unwrap(),
            created_at_ms: 0,
            updated_at_ms: 0,
            version: 1,
        }
    }

    fn cfg() -> PromoConfig {
        PromoConfig {
            utc_offset_min: 420,
            fp_secret: b"test-secret".to_vec(),
            ring_max_accounts: 3,
            ring_action: RingAction::Block,
        }
    }

    fn cart(user: &str, total: i64, address: Option<&str>) -> Cart {
        let mut c = json!({"cart_total": total, "area": "Jakarta"});
        if let Some(a) = address {
            c["address"] = json!(a);
        }
        Cart::parse(&c, Some(user)).unwrap()
    }

    #[test]
    fn a_ring_of_accounts_sharing_phones_and_an_address_is_blocked_and_a_household_is_not() {
        let store = MemoryCounters::new();
        let rules = vec![rule(
            "new",
            json!({"name": "New user", "conditions": {"type": "first_n_order", "max_orders": 1},
            "effect": {"type": "fixed", "value": 20000}, "limits": {"max_per_user": 1}}),
        )];
        let with = |user: &str, device: &str, address: &str| {
            Cart::parse(
                &json!({"cart_total": 50000, "device_id": device, "address": address}),
                Some(user),
            )
            .unwrap()
        };
        // A household: two accounts, two phones, one address.
        for (u, d) in [("h1", "hp-1"), ("h2", "hp-2")] {
            let a = block_on(apply(
                &store,
                &rules,
                &with(u, d, "Jl. Mawar 2"),
                &format!("o-{u}"),
                &cfg(),
                NOW,
            ));
            assert_eq!(a.fraud, None, "{u}");
        }
        // A ring: four accounts over two phones and two addresses, all linked.
        let ring = [
            ("r1", "p-1", "Jl. Melati 7"),
            ("r2", "p-1", "Jl. Kenanga 9"),
            ("r3", "p-2", "Jl. Kenanga 9"),
            ("r4", "p-2", "Jl Melati 7"),
        ];
        let mut last = None;
        for (u, d, addr) in ring {
            last = Some(block_on(apply(
                &store,
                &rules,
                &with(u, d, addr),
                &format!("o-{u}"),
                &cfg(),
                NOW,
            )));
        }
        let last = last.unwrap();
        assert_eq!(
            last.fraud.map(|f| (f.accounts, f.action)),
            Some((4, RingAction::Block))
        );
        assert_eq!(
            (last.total_discount, last.rejected[0].reject_reason),
            (0, Some(Reason::FraudRing))
        );
        // Flagging only: the promo applies and the answer says why it is flagged.
        let flag = PromoConfig {
            ring_action: RingAction::Flag,
            ..cfg()
        };
        let a = block_on(apply(
            &store,
            &rules,
            &with("r5", "p-2", "x"),
            "o-r5",
            &flag,
            NOW,
        ));
        assert_eq!(
            (a.total_discount, a.fraud.map(|f| f.action)),
            (20_000, Some(RingAction::Flag))
        );
    }

    #[test]
    fn local_time_is_jakartas() {
        let (m, wd, date) = local_time(NOW, 420);
        assert_eq!((m, wd, date.as_str()), (Minute(15 * 60), 2, "20261201"));
        let (m, wd, date) = local_time(NOW + 10 * 3_600_000, 420);
        assert_eq!((m, wd, date.as_str()), (Minute(60), 3, "20261202"));
    }

    #[test]
    fn apply_resolves_reserves_and_a_retry_counts_once() {
        let store = MemoryCounters::new();
        let rules = vec![
            rule(
                "lunch",
                json!({"name": "Lunch", "conditions": {"type": "time_slot", "start": "11:00", "end": "16:00"},
                "effect": {"type": "percentage", "value": 10}, "limits": {"max_total": 1}, "stackable": true}),
            ),
            rule(
                "ship",
                json!({"name": "Ship", "conditions": {"type": "area", "areas": ["jakarta"]},
                "effect": {"type": "fixed", "value": 5000}, "stackable": true}),
            ),
            rule(
                "night",
                json!({"name": "Night", "conditions": {"type": "time_slot", "start": "22:00", "end": "02:00"},
                "effect": {"type": "fixed", "value": 9000}, "stackable": true}),
            ),
        ];
        let c = cart("u1", 100_000, None);
        let v = block_on(validate(&store, &rules, &c, &cfg(), NOW));
        assert_eq!(
            v.iter().map(|r| r.rule_id.as_str()).collect::<Vec<_>>(),
            ["lunch", "ship"]
        );
        let a = block_on(apply(&store, &rules, &c, "o1", &cfg(), NOW));
        assert_eq!((a.total_discount, a.final_amount), (15_000, 85_000));
        let again = block_on(apply(&store, &rules, &c, "o1", &cfg(), NOW));
        assert_eq!(
            again.total_discount, 15_000,
            "the retry holds the same reservations"
        );
        let other = block_on(apply(
            &store,
            &rules,
            &cart("u2", 100_000, None),
            "o2",
            &cfg(),
            NOW,
        ));
        assert_eq!(other.total_discount, 5_000);
        assert_eq!(other.rejected[0].reject_reason, Some(Reason::TotalLimit));
        let ids: Vec<String> = rules.iter().map(|r| r.id.clone()).collect();
        assert_eq!(block_on(release(&store, &ids, "o1", NOW)).unwrap(), 2);
        assert_eq!(
            block_on(release(&store, &ids, "o1", NOW)).unwrap(),
            0,
            "once"
        );
        let third = block_on(apply(
            &store,
            &rules,
            &cart("u3", 100_000, None),
            "o3",
            &cfg(),
            NOW,
        ));
        assert_eq!(third.total_discount, 15_000, "the released quota is back");
    }

    #[test]
    fn another_account_at_the_same_address_is_refused_a_per_user_promo() {
        let store = MemoryCounters::new();
        let rules = vec![rule(
            "new",
            json!({"name": "New user", "conditions": {"type": "first_n_order", "max_orders": 1},
            "effect": {"type": "fixed", "value": 20000}, "limits": {"max_per_user": 1}}),
        )];
        let a = block_on(apply(
            &store,
            &rules,
            &cart("u1", 50_000, Some("Jl. Sudirman No. 5")),
            "o1",
            &cfg(),
            NOW,
        ));
        assert_eq!(a.total_discount, 20_000);
        let b = block_on(apply(
            &store,
            &rules,
            &cart("u2", 50_000, Some("JL. SUDIRMAN NO.5")),
            "o2",
            &cfg(),
            NOW,
        ));
        assert_eq!(b.rejected[0].reject_reason, Some(Reason::FraudAddress));
        let c = block_on(apply(
            &store,
            &rules,
            &cart("u3", 50_000, Some("Jl. Sudirman No. 15")),
            "o3",
            &cfg(),
            NOW,
        ));
        assert_eq!(
            c.total_discount, 20_000,
            "a neighbour is not the same address"
        );
    }
}
