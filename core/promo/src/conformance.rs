//! The conformance suite every [`CounterStore`] adapter passes (memory in unit tests, Redis in
//! `tests/redis_adapter.rs`): 0 is unlimited, each boundary refuses exactly at its cap, the
//! per-user count is lifetime, the device window slides, the money budget is never overspent,
//! a redemption id is taken once and released once, and a release gives back its own day's
//! count.

use std::future::Future;

use crate::resolve::Reason;
use crate::rule::{Limits, Status};
use crate::rules::RuleRepo;
use crate::store::{
    AddressBook, CounterStore, Reservation, Reserved, RingBook, ADDRESSES_KEPT, DEVICE_WINDOW_MS,
};

const T0: i64 = 1_800_000_000_000;

fn res(rule: &str, id: &str, user: &str, limits: Limits) -> Reservation {
    Reservation {
        rule_id: rule.into(),
        redemption_id: id.into(),
        user_id: user.into(),
        date: "20270115".into(),
        device: None,
        limits,
        amount: 10_000,
        now_ms: T0,
    }
}

pub async fn run_all<S, F, Fut>(make: F)
where
    S: CounterStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    unset_limits_are_unlimited(make().await).await;
    each_boundary_refuses_at_its_cap(make().await).await;
    the_user_cap_is_lifetime_and_the_daily_cap_is_per_day(make().await).await;
    the_device_window_slides(make().await).await;
    the_budget_is_never_overspent(make().await).await;
    a_redemption_is_taken_once_and_released_once(make().await).await;
}

async fn unset_limits_are_unlimited(s: impl CounterStore) {
    let only_user = Limits {
        max_per_user: 1,
        ..Limits::default()
    };
    for i in 0..50 {
        let r = res("r1", &format!("o{i}"), &format!("u{i}"), only_user);
        assert_eq!(s.reserve(&r).await.unwrap(), Reserved::Taken, "{i}");
    }
    let u = s.usage("r1", "u1", "20270115", None, T0).await.unwrap();
    assert_eq!((u.total, u.daily, u.user, u.spent), (50, 50, 1, 500_000));
}

async fn each_boundary_refuses_at_its_cap(s: impl CounterStore) {
    let limits = Limits {
        max_total: 3,
        ..Limits::default()
    };
    for i in 0..3 {
        let r = res("r1", &format!("o{i}"), &format!("u{i}"), limits);
        assert_eq!(s.reserve(&r).await.unwrap(), Reserved::Taken);
    }
    let r = res("r1", "o9", "u9", limits);
    assert_eq!(
        s.reserve(&r).await.unwrap(),
        Reserved::Refused(Reason::TotalLimit)
    );
    // Nothing was taken by the refusal.
    assert_eq!(
        s.usage("r1", "u9", "20270115", None, T0)
            .await
            .unwrap()
            .user,
        0
    );
}

async fn the_user_cap_is_lifetime_and_the_daily_cap_is_per_day(s: impl CounterStore) {
    let per_user = Limits {
        max_per_user: 2,
        max_daily: 3,
        ..Limits::default()
    };
    let mut r = res("r1", "o1", "u1", per_user);
    assert_eq!(s.reserve(&r).await.unwrap(), Reserved::Taken);
    r.redemption_id = "o2".into();
    r.date = "20270116".into();
    assert_eq!(s.reserve(&r).await.unwrap(), Reserved::Taken);
    r.redemption_id = "o3".into();
    r.date = "20280101".into();
    assert_eq!(
        s.reserve(&r).await.unwrap(),
        Reserved::Refused(Reason::UserLimit),
        "a year later the user's cap still holds"
    );
    for i in 0..3 {
        let mut x = res("r1", &format!("d{i}"), &format!("x{i}"), per_user);
        x.date = "20270120".into();
        assert_eq!(s.reserve(&x).await.unwrap(), Reserved::Taken);
    }
    let mut x = res("r1", "d9", "x9", per_user);
    x.date = "20270120".into();
    assert_eq!(
        s.reserve(&x).await.unwrap(),
        Reserved::Refused(Reason::DailyLimit)
    );
    x.date = "20270121".into();
    assert_eq!(s.reserve(&x).await.unwrap(), Reserved::Taken, "a new day");
}

async fn the_device_window_slides(s: impl CounterStore) {
    let mut r = res("r1", "o0", "u0", Limits::default());
    r.device = Some("dev".into());
    for i in 0..3 {
        r.redemption_id = format!("o{i}");
        r.user_id = format!("u{i}");
        r.now_ms = T0 + i * 1000;
        assert_eq!(s.reserve(&r).await.unwrap(), Reserved::Taken);
    }
    r.redemption_id = "o3".into();
    r.now_ms = T0 + DEVICE_WINDOW_MS - 1;
    assert_eq!(
        s.reserve(&r).await.unwrap(),
        Reserved::Refused(Reason::DeviceLimit)
    );
    // The first use leaves the window.
    r.now_ms = T0 + DEVICE_WINDOW_MS;
    assert_eq!(s.reserve(&r).await.unwrap(), Reserved::Taken);
    let u = s
        .usage("r1", "u0", "20270115", Some("dev"), r.now_ms)
        .await
        .unwrap();
    assert_eq!(u.device, 3);
}

async fn the_budget_is_never_overspent(s: impl CounterStore) {
    let limits = Limits {
        budget: 25_000,
        ..Limits::default()
    };
    let mut r = res("r1", "o1", "u1", limits);
    assert_eq!(s.reserve(&r).await.unwrap(), Reserved::Taken);
    r.redemption_id = "o2".into();
    assert_eq!(s.reserve(&r).await.unwrap(), Reserved::Taken);
    r.redemption_id = "o3".into();
    assert_eq!(
        s.reserve(&r).await.unwrap(),
        Reserved::Refused(Reason::BudgetLimit),
        "20,000 spent: 10,000 more would pass 25,000"
    );
    r.amount = 5_000;
    assert_eq!(
        s.reserve(&r).await.unwrap(),
        Reserved::Taken,
        "exactly the budget"
    );
    let u = s.usage("r1", "u1", "20270115", None, T0).await.unwrap();
    assert_eq!(u.spent, 25_000);
    assert!(s.release("r1", "o1", T0).await.unwrap());
    assert_eq!(
        s.usage("r1", "u1", "20270115", None, T0)
            .await
            .unwrap()
            .spent,
        15_000
    );
}

async fn a_redemption_is_taken_once_and_released_once(s: impl CounterStore) {
    let mut r = res("r1", "o1", "u1", Limits::default());
    r.device = Some("dev".into());
    assert_eq!(s.reserve(&r).await.unwrap(), Reserved::Taken);
    assert_eq!(s.reserve(&r).await.unwrap(), Reserved::Duplicate);
    let before = s
        .usage("r1", "u1", "20270115", Some("dev"), T0)
        .await
        .unwrap();
    assert_eq!(
        (before.total, before.daily, before.user, before.device),
        (1, 1, 1, 1)
    );
    // Released on another day: the count comes off the day it was taken.
    assert!(s.release("r1", "o1", T0 + 86_400_000).await.unwrap());
    assert!(!s.release("r1", "o1", T0).await.unwrap(), "only once");
    assert!(!s.release("r1", "never", T0).await.unwrap());
    let after = s
        .usage("r1", "u1", "20270115", Some("dev"), T0)
        .await
        .unwrap();
    assert_eq!(
        (
            after.total,
            after.daily,
            after.user,
            after.device,
            after.spent
        ),
        (0, 0, 0, 0, 0)
    );
    // A released redemption id is not taken again (Checkout would use a new order id).
    assert_eq!(s.reserve(&r).await.unwrap(), Reserved::Duplicate);
}

/// The address book keeps the newest [`ADDRESSES_KEPT`] per rule, newest first.
pub async fn address_book_conforms(s: impl AddressBook) {
    for i in 0..(ADDRESSES_KEPT + 5) {
        s.record_address("r1", &format!("u{i}"), &format!("Jl. Melati {i}"))
            .await
            .unwrap();
    }
    s.record_address("r2", "x", "Jl. Mawar 1").await.unwrap();
    let seen = s.recent_addresses("r1").await.unwrap();
    assert_eq!(seen.len(), ADDRESSES_KEPT);
    let last = ADDRESSES_KEPT + 4;
    assert_eq!(seen[0], (format!("u{last}"), format!("Jl. Melati {last}")));
    assert_eq!(seen[ADDRESSES_KEPT - 1].0, "u5");
    assert_eq!(s.recent_addresses("r2").await.unwrap().len(), 1);
    assert!(s.recent_addresses("none").await.unwrap().is_empty());
}

/// Rings: accounts linked through shared signals form one component, counted up to the cap;
/// a signal seen again by the same account links nothing new.
pub async fn rings_conform(s: impl RingBook) {
    let sig = |x: &str| vec![x.to_string()];
    assert_eq!(s.link("a1", &sig("dev:1"), 10).await.unwrap(), 1);
    assert_eq!(s.link("a2", &sig("dev:1"), 10).await.unwrap(), 2);
    assert_eq!(s.link("a3", &sig("addr:x"), 10).await.unwrap(), 1);
    assert_eq!(
        s.link("a3", &sig("dev:1"), 10).await.unwrap(),
        3,
        "joined through the phone"
    );
    assert_eq!(s.link("a4", &sig("addr:x"), 10).await.unwrap(), 4);
    assert_eq!(
        s.link("a4", &sig("addr:x"), 3).await.unwrap(),
        3,
        "counted up to the cap"
    );
    assert_eq!(s.link("b1", &[], 10).await.unwrap(), 1, "no signal, alone");
    assert_eq!(
        s.link("b2", &["dev:9".to_string(), "addr:y".to_string()], 10)
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.link("a1", &[], 10).await.unwrap(), 4);
}

fn rule(id: &str, priority: i64, end_at: Option<&str>) -> crate::engine::Rule {
    let body = serde_json::json!({"name": format!("rule {id}"), "priority": priority,
        "conditions": {"type": "and", "conditions": [
            {"type": "min_transaction", "min_amount": 50000},
            {"type": "time_slot", "start": "22:00", "end": "02:00", "days": [5, 6]}]},
        "effect": {"type": "percentage", "value": 12.5, "max_discount": 20000},
        "limits": {"max_total": 100, "max_per_user": 1, "budget": 5000000},
        "stackable": true, "exclusivity_group": "weekend", "max_stackable": 2,
        "start_at": "2026-12-01T00:00:00Z", "end_at": end_at});
    crate::engine::Rule {
        id: id.into(),
        body: crate::rule::RuleBody::parse(&body).unwrap(),
        created_at_ms: T0,
        updated_at_ms: T0,
        version: 1,
    }
}

/// Rules: stored and read back unchanged, listed by priority desc then id, replaced with a new
/// version and an audit row, expired past `end_at` (terminal), ids unique.
pub async fn rules_conform(repo: impl RuleRepo) {
    let (a, b, c) = (
        rule("r-a", 1, None),
        rule("r-b", 5, Some("2027-01-01T00:00:00Z")),
        rule("r-c", 5, None),
    );
    for r in [&a, &b, &c] {
        repo.create(r).await.unwrap();
    }
    assert!(repo.create(&a).await.is_err(), "ids are unique");
    assert_eq!(repo.get("r-a").await.unwrap().as_ref(), Some(&a));
    assert_eq!(repo.get("nope").await.unwrap(), None);
    let ids: Vec<String> = repo
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["r-b", "r-c", "r-a"]);
    let mut body = a.body.clone();
    body.priority = 9;
    body.status = Status::Inactive;
    let replaced = repo
        .replace("r-a", &body, T0 + 1000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (replaced.version, replaced.updated_at_ms, &replaced.body),
        (2, T0 + 1000, &body)
    );
    assert_eq!(replaced.created_at_ms, T0);
    assert_eq!(repo.replace("nope", &body, T0).await.unwrap(), None);
    let audit = repo.audit("r-a").await.unwrap();
    assert_eq!(
        audit
            .iter()
            .map(|x| (x.version, x.action.as_str()))
            .collect::<Vec<_>>(),
        [(1, "create"), (2, "replace")]
    );
    assert_eq!(audit[1].body["priority"], 9);
    // 2027-01-01 has passed at T0 (2027-01-15).
    assert_eq!(repo.expire_due(T0).await.unwrap(), 1);
    assert_eq!(repo.expire_due(T0).await.unwrap(), 0, "terminal");
    let expired = repo.get("r-b").await.unwrap().unwrap();
    assert_eq!((expired.body.status, expired.version), (Status::Expired, 2));
    assert_eq!(repo.audit("r-b").await.unwrap()[1].action, "expire");
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_memory_store_conforms() {
        futures::executor::block_on(super::run_all(|| async {
            crate::store::MemoryCounters::new()
        }));
        futures::executor::block_on(super::address_book_conforms(
            crate::store::MemoryCounters::new(),
        ));
        futures::executor::block_on(super::rules_conform(crate::rules::MemoryRules::new()));
        futures::executor::block_on(super::rings_conform(crate::store::MemoryCounters::new()));
    }
}
