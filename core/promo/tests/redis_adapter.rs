//! The Redis counters against a live Redis: the shared conformance suite (a fresh prefix per
//! check); concurrent reservations never pass a cap or the budget; and random sequences of
//! reservations and releases give the same answers and counters on Redis as in memory.

use std::sync::Arc;

use proptest::prelude::*;
use qc_kit::testing::Prefixes;
use qc_promo::store::{CounterStore, MemoryCounters, Reservation, Reserved};
use qc_promo::{conformance, Limits, RedisCounters};

const T0: i64 = 1_800_000_000_000;

#[tokio::test]
async fn redis_counters_conform() {
    let prefixes = Prefixes::default();
    conformance::run_all(|| async {
        let (conn, prefix) = prefixes.fresh().await;
        RedisCounters::new(conn, prefix, 2000)
    })
    .await;
    let (conn, prefix) = prefixes.fresh().await;
    conformance::address_book_conforms(RedisCounters::new(conn, prefix, 2000)).await;
    let (conn, prefix) = prefixes.fresh().await;
    conformance::rings_conform(RedisCounters::new(conn, prefix, 2000)).await;
    prefixes.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_reservations_take_exactly_the_cap_and_never_pass_the_budget() {
    let prefixes = Prefixes::default();
    let (conn, prefix) = prefixes.fresh().await;
    let store = Arc::new(RedisCounters::new(conn, prefix, 5000));
    for (rule, limits, amount) in [
        (
            "capped",
            Limits {
                max_total: 100,
                ..Limits::default()
            },
            1_000,
        ),
        (
            "budget",
            Limits {
                budget: 1_000_000,
                ..Limits::default()
            },
            7_000,
        ),
    ] {
        let tasks: Vec<_> = (0..1000)
            .map(|i| {
                let s = store.clone();
                tokio::spawn(async move {
                    let r = Reservation {
                        rule_id: rule.into(),
                        redemption_id: format!("o{i}"),
                        user_id: format!("u{i}"),
                        date: "20270115".into(),
                        device: None,
                        limits,
                        amount,
                        now_ms: T0,
                    };
                    s.reserve(&r).await.unwrap()
                })
            })
            .collect();
        let mut taken = 0;
        for t in tasks {
            if t.await.unwrap() == Reserved::Taken {
                taken += 1;
            }
        }
        let u = store.usage(rule, "u0", "20270115", None, T0).await.unwrap();
        match rule {
            "capped" => assert_eq!((taken, u.total), (100, 100)),
            _ => {
                assert_eq!(taken, 1_000_000 / 7_000, "as many as fit");
                assert!(u.spent <= 1_000_000 && u.spent == taken * 7_000, "{u:?}");
            }
        }
    }
    prefixes.cleanup().await;
}

#[derive(Debug, Clone)]
enum Op {
    Reserve {
        id: u8,
        user: u8,
        device: Option<u8>,
        day: u8,
        amount: i64,
        at_s: i64,
    },
    Release {
        id: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..30, 0u8..5, proptest::option::of(0u8..3), 0u8..3, 0i64..20_000, 0i64..200_000)
            .prop_map(|(id, user, device, day, amount, at_s)| Op::Reserve { id, user, device, day, amount, at_s }),
        1 => (0u8..30).prop_map(|id| Op::Release { id }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn redis_and_memory_agree_on_random_sequences(ops in prop::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let prefixes = Prefixes::default();
            let (conn, prefix) = prefixes.fresh().await;
            let redis = RedisCounters::new(conn, prefix, 5000);
            let memory = MemoryCounters::new();
            let limits = Limits { max_total: 20, max_daily: 8, max_per_user: 4, budget: 150_000 };
            // Time only moves forward, as the clock does.
            let mut now = T0;
            for op in ops {
                match op {
                    Op::Reserve { id, user, device, day, amount, at_s } => {
                        now = now.max(T0 + at_s * 1000);
                        let r = Reservation {
                            rule_id: "r".into(),
                            redemption_id: format!("o{id}"),
                            user_id: format!("u{user}"),
                            date: format!("2027011{day}"),
                            device: device.map(|d| format!("dev{d}")),
                            limits,
                            amount,
                            now_ms: now,
                        };
                        let (a, b) = (redis.reserve(&r).await.unwrap(), memory.reserve(&r).await.unwrap());
                        assert_eq!(a, b, "{r:?}");
                    }
                    Op::Release { id } => {
                        let id = format!("o{id}");
                        let (a, b) = (redis.release("r", &id, now).await.unwrap(), memory.release("r", &id, now).await.unwrap());
                        assert_eq!(a, b, "release {id}");
                    }
                }
                for (user, day, device) in [(0, 0, Some("dev0")), (1, 1, None), (4, 2, Some("dev2"))] {
                    let (user, date) = (format!("u{user}"), format!("2027011{day}"));
                    assert_eq!(
                        redis.usage("r", &user, &date, device, now).await.unwrap(),
                        memory.usage("r", &user, &date, device, now).await.unwrap()
                    );
                }
            }
            prefixes.cleanup().await;
        });
    }
}
