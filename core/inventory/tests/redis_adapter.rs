//! The Redis adapter against a live Redis: the shared conformance suite, and a differential
//! property test requiring memory and Redis to give identical results for random operations.

use proptest::prelude::*;
use qc_inventory::store::HoldPolicy;
use qc_inventory::*;
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::testing::{delete_prefix, isolated_store_config, redis_for_test};

async fn redis_store() -> (RedisStore, KeyPrefix) {
    let cfg = isolated_store_config();
    let conn = redis_for_test(&cfg).await;
    let prefix = KeyPrefix::new(cfg.key_prefix.clone());
    (
        RedisStore::new(conn, prefix.clone(), HoldPolicy::default(), 2000),
        prefix,
    )
}

#[tokio::test]
async fn redis_store_conforms() {
    let (store, prefix) = redis_store().await;
    conformance::run_all(&store, "r-").await;
    delete_prefix(&mut store.connection(), &prefix)
        .await
        .unwrap();
}

#[derive(Debug, Clone)]
enum Op {
    Set {
        hub: u8,
        sku: u8,
        on_hand: i64,
        buckets: u8,
    },
    Reserve {
        hub: u8,
        user: u8,
        items: Vec<(u8, u32)>,
        ttl_s: u32,
        idem: Option<u8>,
    },
    Transition {
        pick: usize,
        action: u8,
    },
    Advance {
        ms: i64,
    },
    Reap,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..2, 0u8..3, 0i64..12, prop_oneof![Just(1u8), 1u8..=4])
            .prop_map(|(hub, sku, on_hand, buckets)| Op::Set { hub, sku, on_hand, buckets }),
        5 => (0u8..2, 0u8..4, prop::collection::vec((0u8..3, 1u32..5), 1..3), 1u32..20, prop::option::of(0u8..3))
            .prop_map(|(hub, user, items, ttl_s, idem)| Op::Reserve { hub, user, items, ttl_s, idem }),
        4 => (any::<usize>(), 0u8..3).prop_map(|(pick, action)| Op::Transition { pick, action }),
        2 => (0i64..40_000).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Reap),
    ]
}

/// Applies one op to a store; returns a printable result to compare.
async fn apply<S: StockStore>(
    store: &S,
    op: &Op,
    now: i64,
    rids: &[(HubId, ReservationId)],
    ns: &str,
) -> String {
    let hub = |h: u8| HubId::parse(&format!("{ns}h{h}")).unwrap();
    let sku = |s: u8| Sku::parse(&format!("s{s}")).unwrap();
    match op {
        Op::Set {
            hub: h,
            sku: s,
            on_hand,
            buckets,
        } => {
            let cmd = SetStockCommand {
                hub_id: hub(*h),
                sku: sku(*s),
                on_hand: *on_hand,
                buckets: *buckets,
                reason: StockSetReason::AdminSet,
                actor: "prop".into(),
            };
            format!("{:?}", store.set_stock(now, &cmd).await)
        }
        Op::Reserve { .. } | Op::Advance { .. } => unreachable!("handled by the driver"),
        Op::Transition { pick, action } => {
            if rids.is_empty() {
                return "none".into();
            }
            let (h, rid) = &rids[pick % rids.len()];
            let action = [Action::Release, Action::Confirm, Action::Expire][*action as usize];
            format!("{:?}", store.transition(now, h, rid, action).await)
        }
        Op::Reap => format!("{:?}", jobs::reap_once(store, now, 3).await),
    }
}

async fn snapshot<S: StockStore>(store: &S, rids: &[(HubId, ReservationId)], ns: &str) -> String {
    let mut out = String::new();
    for h in 0..2u8 {
        let hub = HubId::parse(&format!("{ns}h{h}")).unwrap();
        for s in 0..3u8 {
            let sku = Sku::parse(&format!("s{s}")).unwrap();
            out.push_str(&format!("{:?}\n", store.stock(&hub, &sku).await.unwrap()));
        }
    }
    for (h, rid) in rids {
        out.push_str(&format!("{:?}\n", store.reservation(h, rid).await.unwrap()));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn memory_and_redis_agree(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (redis, prefix) = redis_store().await;
            let memory = MemoryStore::new(HoldPolicy::default());
            let ns = "d";
            let mut now = 1_700_000_000_000i64;
            let mut rids: Vec<(HubId, ReservationId)> = Vec::new();
            for (step, op) in ops.iter().enumerate() {
                let (a, b) = match op {
                    Op::Advance { ms } => { now += ms; continue; }
                    Op::Reserve { hub, user, items, ttl_s, idem } => {
                        let mut seen = std::collections::HashSet::new();
                        let items: Vec<Item> = items.iter().filter(|(s, _)| seen.insert(*s))
                            .map(|(s, q)| Item { sku: Sku::parse(&format!("s{s}")).unwrap(), quantity: *q }).collect();
                        let cmd = ReserveCommand {
                            reservation_id: ReservationId::new_random(),
                            hub_id: HubId::parse(&format!("{ns}h{hub}")).unwrap(),
                            cart_id: CartId::parse("c").unwrap(),
                            user_id: UserId::parse(&format!("u{user}")).unwrap(),
                            items,
                            ttl_s: *ttl_s,
                            idempotency_key: idem.map(|k| IdempotencyKey::parse(&format!("k{k}")).unwrap()),
                        };
                        let a = memory.reserve(now, &cmd).await;
                        let b = redis.reserve(now, &cmd).await;
                        if matches!(a, Ok(ReserveOutcome::Reserved { .. })) {
                            rids.push((cmd.hub_id.clone(), cmd.reservation_id.clone()));
                        }
                        (format!("{a:?}"), format!("{b:?}"))
                    }
                    other => (apply(&memory, other, now, &rids, ns).await, apply(&redis, other, now, &rids, ns).await),
                };
                prop_assert_eq!(&a, &b, "step {} {:?}", step, op);
            }
            prop_assert_eq!(snapshot(&memory, &rids, ns).await, snapshot(&redis, &rids, ns).await);
            prop_assert_eq!(memory.hubs().await.unwrap(), redis.hubs().await.unwrap());
            delete_prefix(&mut redis.connection(), &prefix).await.unwrap();
            Ok(())
        })?;
    }
}
