//! 05 §11, "where the reference falls short": one test per flaw, showing it fixed.

use futures::executor::block_on;
use qc_kit::testing::Prefixes;
use qc_promo::effect::Effect;
use qc_promo::fraud::{device_hash, jaccard, normalise_address, same_address};
use qc_promo::resolve::{resolve_with, Candidate};
use qc_promo::store::{CounterStore, Reservation, Reserved};
use qc_promo::{
    apply, Cart, Condition, Limits, MemoryCounters, PromoConfig, Reason, RedisCounters, RingAction,
    Rule, RuleBody,
};
use serde_json::{json, Value};

/// 2026-12-01T08:00:00Z: 15:00 on a Tuesday in Jakarta.
const NOW: i64 = 1_796_112_000_000;

fn cfg() -> PromoConfig {
    PromoConfig {
        utc_offset_min: 420,
        fp_secret: b"secret".to_vec(),
        ring_max_accounts: 0,
        ring_action: RingAction::Flag,
    }
}

fn rule(id: &str, body: Value) -> Rule {
    Rule {
        id: id.into(),
        body: RuleBody::parse(&body).unwrap(),
        created_at_ms: 0,
        updated_at_ms: 0,
        version: 1,
    }
}

fn cart(user: &str, v: Value) -> Cart {
    Cart::parse(&v, Some(user)).unwrap()
}

#[test]
fn an_unset_limit_is_unlimited_not_a_cap_of_zero() {
    let store = MemoryCounters::new();
    let rules = [rule(
        "r",
        json!({"name": "per user only", "conditions": {"type": "min_transaction", "min_amount": 0},
        "effect": {"type": "fixed", "value": 1000}, "limits": {"max_per_user": 1}}),
    )];
    for i in 0..5 {
        let a = block_on(apply(
            &store,
            &rules,
            &cart(&format!("u{i}"), json!({"cart_total": 10000})),
            &format!("o{i}"),
            &cfg(),
            NOW,
        ));
        assert_eq!(a.total_discount, 1000, "user {i}: no total cap was set");
    }
}

#[test]
fn the_per_user_cap_is_lifetime_not_daily() {
    let store = MemoryCounters::new();
    let rules = [rule(
        "r",
        json!({"name": "once", "conditions": {"type": "min_transaction", "min_amount": 0},
        "effect": {"type": "fixed", "value": 1000}, "limits": {"max_per_user": 1}}),
    )];
    let c = cart("u", json!({"cart_total": 10000}));
    assert_eq!(
        block_on(apply(&store, &rules, &c, "o1", &cfg(), NOW)).total_discount,
        1000
    );
    let a_year_later = NOW + 365 * 86_400_000;
    let a = block_on(apply(&store, &rules, &c, "o2", &cfg(), a_year_later));
    assert_eq!(a.rejected[0].reject_reason, Some(Reason::UserLimit));
}

#[test]
fn quota_does_not_leak_retries_count_once_and_release_gives_it_back() {
    let store = MemoryCounters::new();
    let rules = [rule(
        "r",
        json!({"name": "two", "conditions": {"type": "min_transaction", "min_amount": 0},
        "effect": {"type": "fixed", "value": 1000}, "limits": {"max_total": 1}}),
    )];
    let c = cart("u", json!({"cart_total": 10000}));
    for _ in 0..5 {
        assert_eq!(
            block_on(apply(&store, &rules, &c, "o1", &cfg(), NOW)).total_discount,
            1000
        );
    }
    assert_eq!(
        block_on(qc_promo::release(&store, &["r".to_string()], "o1", NOW)).unwrap(),
        1
    );
    assert_eq!(
        block_on(apply(
            &store,
            &rules,
            &cart("v", json!({"cart_total": 10000})),
            "o2",
            &cfg(),
            NOW
        ))
        .total_discount,
        1000
    );
}

#[tokio::test]
async fn every_key_of_a_rule_shares_its_hash_tag() {
    let prefixes = Prefixes::default();
    let (mut conn, prefix) = prefixes.fresh().await;
    let store = RedisCounters::new(conn.clone(), prefix.clone(), 2000);
    let r = Reservation {
        rule_id: "rule-7".into(),
        redemption_id: "o1".into(),
        user_id: "u1".into(),
        date: "20261201".into(),
        device: Some(device_hash(b"k", "phone")),
        limits: Limits {
            max_total: 5,
            max_daily: 5,
            max_per_user: 1,
            budget: 100_000,
        },
        amount: 1000,
        now_ms: NOW,
    };
    assert_eq!(store.reserve(&r).await.unwrap(), Reserved::Taken);
    let keys = qc_kit::testing::keys_under(&mut conn, &prefix)
        .await
        .unwrap();
    assert!(keys.len() >= 6, "{keys:?}");
    for k in &keys {
        assert!(
            k.contains("promo:{rule-7}:"),
            "{k} is outside the rule's slot"
        );
    }
    prefixes.cleanup().await;
}

#[test]
fn resolution_is_deterministic_and_a_capped_best_member_does_not_lose_the_group() {
    let c = |id: &str, p: i64, pct: i64| Candidate {
        rule_id: id.into(),
        priority: p,
        created_at_ms: 0,
        group: Some("g".into()),
        stackable: false,
        max_stackable: 0,
        effect: Effect::Percentage {
            bp: pct * 100,
            max_discount: 0,
        },
    };
    let answers: Vec<_> = (0..10)
        .map(|k| {
            let mut cands = vec![c("a", 1, 10), c("b", 1, 20), c("c", 1, 15)];
            cands.rotate_left(k % 3);
            let r = resolve_with(cands, 100_000, 0, |x, _| {
                if x.rule_id == "b" {
                    Err(Reason::TotalLimit)
                } else {
                    Ok(())
                }
            });
            (r.total_discount(), r.applied.len())
        })
        .collect();
    assert!(
        answers.iter().all(|a| *a == (15_000, 1)),
        "{answers:?}: the next best member wins"
    );
}

#[test]
fn an_ungrouped_non_stackable_rule_applies_and_higher_priority_wins() {
    let store = MemoryCounters::new();
    let rules = [
        rule(
            "low",
            json!({"name": "low", "priority": 1, "conditions": {"type": "min_transaction", "min_amount": 0},
            "effect": {"type": "fixed", "value": 9000}}),
        ),
        rule(
            "high",
            json!({"name": "high", "priority": 9, "conditions": {"type": "min_transaction", "min_amount": 0},
            "effect": {"type": "fixed", "value": 1000}}),
        ),
    ];
    let a = block_on(apply(
        &store,
        &rules,
        &cart("u", json!({"cart_total": 10000})),
        "o",
        &cfg(),
        NOW,
    ));
    assert_eq!(
        (a.applied[0].rule_id.as_str(), a.total_discount),
        ("high", 1000)
    );
    assert_eq!(a.rejected[0].reject_reason, Some(Reason::NotStackable));
}

#[test]
fn money_is_integer_bounded_and_the_discount_never_exceeds_the_subtotal() {
    for bad in [
        json!({"type": "percentage", "value": 150}),
        json!({"type": "percentage", "value": -5}),
        json!({"type": "fixed", "value": 10.5}),
        json!({"type": "cashback", "value": 0}),
    ] {
        assert!(Effect::parse(&bad).is_err(), "{bad}");
    }
    let store = MemoryCounters::new();
    let rules = [
        rule(
            "a",
            json!({"name": "a", "conditions": {"type": "min_transaction", "min_amount": 0},
            "effect": {"type": "fixed", "value": 8000}, "stackable": true}),
        ),
        rule(
            "b",
            json!({"name": "b", "conditions": {"type": "min_transaction", "min_amount": 0},
            "effect": {"type": "percentage", "value": 100}, "stackable": true}),
        ),
        rule(
            "ship",
            json!({"name": "ship", "conditions": {"type": "min_transaction", "min_amount": 0},
            "effect": {"type": "free_shipping"}, "stackable": true}),
        ),
        rule(
            "cb",
            json!({"name": "cb", "conditions": {"type": "min_transaction", "min_amount": 0},
            "effect": {"type": "cashback", "value": 3000}, "stackable": true}),
        ),
    ];
    let a = block_on(apply(
        &store,
        &rules,
        &cart("u", json!({"cart_total": 10000, "shipping_fee": 9000})),
        "o",
        &cfg(),
        NOW,
    ));
    assert_eq!(
        (a.total_discount, a.final_amount, a.total_cashback),
        (10_000, 0, 3_000)
    );
    // Free shipping is not always 0: alone, it is the fee.
    let ship = [rules[2].clone()];
    let s = block_on(apply(
        &MemoryCounters::new(),
        &ship,
        &cart("u", json!({"cart_total": 10000, "shipping_fee": 9000})),
        "o",
        &cfg(),
        NOW,
    ));
    assert_eq!(s.total_discount, 9_000);
    // Cashback does not cut the payable.
    let cb = [rules[3].clone()];
    let c = block_on(apply(
        &MemoryCounters::new(),
        &cb,
        &cart("u", json!({"cart_total": 10000})),
        "o",
        &cfg(),
        NOW,
    ));
    assert_eq!((c.final_amount, c.total_cashback), (10_000, 3_000));
}

#[test]
fn malformed_trees_are_refused_not_true() {
    for t in [
        json!({"type": "not"}),
        json!({"type": "not", "conditions": [{"type": "area", "areas": ["a"]}]}),
        json!({"type": "and", "conditions": []}),
        json!({"type": "or", "conditions": []}),
        json!({"type": "category", "categories": []}),
        json!({"type": "area", "areas": []}),
        json!({"type": "AND", "children": []}),
    ] {
        assert!(Condition::parse(&t).is_err(), "{t}");
    }
}

#[test]
fn evaluation_is_strict_time_slots_local_first_n_strict_and_totals_from_items() {
    let store = MemoryCounters::new();
    let rules = [
        rule(
            "lunch",
            json!({"name": "lunch", "conditions": {"type": "time_slot", "start": "14:00", "end": "16:00"},
            "effect": {"type": "fixed", "value": 1000}, "stackable": true}),
        ),
        rule(
            "first2",
            json!({"name": "first two", "conditions": {"type": "first_n_order", "max_orders": 2},
            "effect": {"type": "fixed", "value": 500}, "stackable": true}),
        ),
    ];
    // 08:00 UTC is 15:00 in Jakarta: the slot holds (in UTC it would not).
    let a = block_on(apply(
        &store,
        &rules,
        &cart("u", json!({"cart_total": 10000, "user_order_count": 2})),
        "o",
        &cfg(),
        NOW,
    ));
    assert_eq!(
        a.applied
            .iter()
            .map(|r| r.rule_id.as_str())
            .collect::<Vec<_>>(),
        ["lunch"],
        "2 orders done: not among the first 2"
    );
    assert!(
        Condition::parse(&json!({"type": "time_slot", "start": "25:00", "end": "10:00"})).is_err()
    );
    let lying = Cart::parse(
        &json!({"cart_total": 999999, "cart_items": [{"id": "a", "price": 1000, "quantity": 1}]}),
        Some("u"),
    );
    assert!(
        lying.is_err(),
        "a cart_total the items contradict is refused"
    );
}

#[test]
fn fraud_code_runs_hmac_devices_and_bigrams_with_spaces() {
    assert_ne!(
        device_hash(b"k1", "d"),
        device_hash(b"k2", "d"),
        "keyed, not FNV"
    );
    let store = MemoryCounters::new();
    let rules = [rule(
        "r",
        json!({"name": "r", "conditions": {"type": "min_transaction", "min_amount": 0},
        "effect": {"type": "fixed", "value": 1000}}),
    )];
    // An empty device id is no device: it shares no window with other empty ones.
    for i in 0..5 {
        let a = block_on(apply(
            &store,
            &rules,
            &cart(
                &format!("u{i}"),
                json!({"cart_total": 10000, "device_id": ""}),
            ),
            &format!("o{i}"),
            &cfg(),
            NOW,
        ));
        assert_eq!(a.total_discount, 1000);
    }
    assert!(jaccard(&normalise_address("Blok A"), &normalise_address("Blok B")) < 1.0);
    assert_eq!(jaccard("", ""), 0.0);
    assert!(
        !same_address("Jl. Sudirman No. 5", "Jl. Sudirman No. 15"),
        "the doc's 0.917 would have flagged it"
    );
}
