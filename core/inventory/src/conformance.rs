//! The conformance suite every [`StockStore`] adapter must pass (memory in unit tests, Redis in
//! `core/inventory/tests`). Each check uses its own hub ids, so one store can run them all.

use crate::model::*;
use crate::store::StockStore;
use crate::{jobs, InventoryError};

const T0: i64 = 1_700_000_000_000;

fn hub(prefix: &str, name: &str) -> HubId {
    HubId::parse(&format!("{prefix}{name}")).unwrap()
}

fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}

fn set(hub: &HubId, s: &str, on_hand: i64, buckets: u8) -> SetStockCommand {
    SetStockCommand {
        hub_id: hub.clone(),
        sku: sku(s),
        on_hand,
        buckets,
        reason: StockSetReason::AdminSet,
        actor: "conformance".into(),
    }
}

fn hold(hub: &HubId, user: &str, items: &[(&str, u32)], ttl_s: u32) -> ReserveCommand {
    ReserveCommand {
        reservation_id: ReservationId::new_random(),
        hub_id: hub.clone(),
        cart_id: CartId::parse("cart-1").unwrap(),
        user_id: UserId::parse(user).unwrap(),
        items: items
            .iter()
            .map(|(s, q)| Item {
                sku: sku(s),
                quantity: *q,
            })
            .collect(),
        ttl_s,
        idempotency_key: None,
    }
}

async fn level<S: StockStore>(store: &S, hub: &HubId, s: &str) -> (i64, i64) {
    let l = store.stock(hub, &sku(s)).await.unwrap();
    (l.available, l.reserved)
}

/// Runs every check; panics with the check's name on the first failure.
pub async fn run_all<S: StockStore>(store: &S, prefix: &str) {
    unknown_pairs_read_as_zero(store, prefix).await;
    multi_item_hold_is_all_or_nothing(store, prefix).await;
    release_credits_once(store, prefix).await;
    confirm_deducts_once(store, prefix).await;
    expiry_by_the_clock(store, prefix).await;
    lazy_expiry_on_release(store, prefix).await;
    idempotency_key_replays(store, prefix).await;
    stock_set_respects_holds(store, prefix).await;
    buckets_drain_and_refill(store, prefix).await;
    reservation_record_and_locate(store, prefix).await;
    available_reads_many_skus_at_once(store, prefix).await;
}

/// The batch read agrees with `stock` per SKU: held units excluded, bucketed and unknown SKUs
/// included (0), in the order asked.
pub async fn available_reads_many_skus_at_once<S: StockStore>(store: &S, prefix: &str) {
    let h = hub(prefix, "many");
    store.set_stock(T0, &set(&h, "a", 7, 1)).await.unwrap();
    store.set_stock(T0, &set(&h, "b", 10, 4)).await.unwrap();
    store.set_stock(T0, &set(&h, "c", 0, 1)).await.unwrap();
    store
        .reserve(T0, &hold(&h, "u1", &[("a", 2), ("b", 3)], 60))
        .await
        .unwrap();
    let skus: Vec<Sku> = ["b", "nope", "a", "c"].iter().map(|s| sku(s)).collect();
    assert_eq!(store.available(&h, &skus).await.unwrap(), vec![7, 0, 5, 0]);
    assert!(store.available(&h, &[]).await.unwrap().is_empty());
}

pub async fn unknown_pairs_read_as_zero<S: StockStore>(store: &S, prefix: &str) {
    let h = hub(prefix, "u");
    let l = store.stock(&h, &sku("nope")).await.unwrap();
    assert_eq!(
        (l.available, l.reserved, l.buckets, l.exists),
        (0, 0, 1, false)
    );
    let err = store
        .reserve(T0, &hold(&h, "u1", &[("nope", 1)], 60))
        .await
        .unwrap_err();
    assert_eq!(err, InventoryError::SkuNotFound { sku: sku("nope") });
    assert!(
        !store.hubs().await.unwrap().contains(&h),
        "a refused hold must not register a hub"
    );
}

pub async fn multi_item_hold_is_all_or_nothing<S: StockStore>(store: &S, prefix: &str) {
    let h = hub(prefix, "aon");
    store.set_stock(T0, &set(&h, "a", 10, 1)).await.unwrap();
    store.set_stock(T0, &set(&h, "b", 2, 1)).await.unwrap();
    let err = store
        .reserve(T0, &hold(&h, "u1", &[("a", 5), ("b", 3)], 60))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        InventoryError::InsufficientStock {
            sku: sku("b"),
            available: 2,
            requested: 3
        }
    );
    assert_eq!(
        level(store, &h, "a").await,
        (10, 0),
        "first item untouched after refusal"
    );
    let ok = store
        .reserve(T0, &hold(&h, "u1", &[("a", 5), ("b", 2)], 60))
        .await
        .unwrap();
    match ok {
        ReserveOutcome::Reserved {
            expires_at_ms,
            remaining,
        } => {
            assert_eq!(expires_at_ms, T0 + 60_000);
            assert_eq!(remaining, vec![5, 0]);
        }
        other => panic!("expected a hold, got {other:?}"),
    }
    assert_eq!(level(store, &h, "a").await, (5, 5));
    assert_eq!(level(store, &h, "b").await, (0, 2));
    assert_eq!(
        store
            .hubs()
            .await
            .unwrap()
            .iter()
            .filter(|x| **x == h)
            .count(),
        1
    );
}

pub async fn release_credits_once<S: StockStore>(store: &S, prefix: &str) {
    let h = hub(prefix, "rel");
    store.set_stock(T0, &set(&h, "a", 3, 1)).await.unwrap();
    let cmd = hold(&h, "u1", &[("a", 2)], 60);
    store.reserve(T0, &cmd).await.unwrap();
    let rid = &cmd.reservation_id;
    assert_eq!(
        store
            .transition(T0 + 1, &h, rid, Action::Release)
            .await
            .unwrap(),
        TransitionOutcome::Done
    );
    assert_eq!(level(store, &h, "a").await, (3, 0));
    assert_eq!(
        store
            .transition(T0 + 2, &h, rid, Action::Release)
            .await
            .unwrap(),
        TransitionOutcome::Already(ReservationStatus::Released)
    );
    assert_eq!(level(store, &h, "a").await, (3, 0), "no second credit");
    assert_eq!(
        store
            .transition(T0 + 3, &h, rid, Action::Confirm)
            .await
            .unwrap(),
        TransitionOutcome::InvalidState(ReservationStatus::Released)
    );
    let ghost = ReservationId::new_random();
    assert_eq!(
        store
            .transition(T0, &h, &ghost, Action::Release)
            .await
            .unwrap(),
        TransitionOutcome::NotFound
    );
}

pub async fn confirm_deducts_once<S: StockStore>(store: &S, prefix: &str) {
    let h = hub(prefix, "conf");
    store.set_stock(T0, &set(&h, "a", 3, 1)).await.unwrap();
    let cmd = hold(&h, "u1", &[("a", 2)], 60);
    store.reserve(T0, &cmd).await.unwrap();
    let rid = &cmd.reservation_id;
    assert_eq!(
        store
            .transition(T0 + 1, &h, rid, Action::Confirm)
            .await
            .unwrap(),
        TransitionOutcome::Done
    );
    let l = store.stock(&h, &sku("a")).await.unwrap();
    assert_eq!((l.available, l.reserved, l.on_hand()), (1, 0, 1));
    assert_eq!(
        store
            .transition(T0 + 2, &h, rid, Action::Confirm)
            .await
            .unwrap(),
        TransitionOutcome::Already(ReservationStatus::Confirmed)
    );
    assert_eq!(
        store.stock(&h, &sku("a")).await.unwrap().on_hand(),
        1,
        "no second deduction"
    );
    assert_eq!(
        store
            .transition(T0 + 3, &h, rid, Action::Release)
            .await
            .unwrap(),
        TransitionOutcome::InvalidState(ReservationStatus::Confirmed)
    );
    // A confirmed hold stays confirmed even long after its expiry.
    assert_eq!(
        store
            .transition(T0 + 10_000_000, &h, rid, Action::Expire)
            .await
            .unwrap(),
        TransitionOutcome::Skip(ReservationStatus::Confirmed)
    );
}

pub async fn expiry_by_the_clock<S: StockStore>(store: &S, prefix: &str) {
    let h = hub(prefix, "exp");
    let grace_ms = i64::from(store.policy().grace_s) * 1000;
    store.set_stock(T0, &set(&h, "a", 5, 1)).await.unwrap();
    let cmd = hold(&h, "u1", &[("a", 4)], 10);
    store.reserve(T0, &cmd).await.unwrap();
    let rid = &cmd.reservation_id;
    let due_at = T0 + 10_000 + grace_ms;
    assert!(
        store.due_expiries(due_at, &h, 10).await.unwrap().is_empty(),
        "not due at the boundary"
    );
    assert_eq!(
        store
            .transition(due_at, &h, rid, Action::Expire)
            .await
            .unwrap(),
        TransitionOutcome::NotDue
    );
    // now == expires_at + grace is still in time for a confirm.
    assert_eq!(
        store
            .transition(due_at, &h, rid, Action::Confirm)
            .await
            .unwrap(),
        TransitionOutcome::Done
    );
    let cmd2 = hold(&h, "u2", &[("a", 1)], 10);
    store.reserve(T0, &cmd2).await.unwrap();
    let rid2 = &cmd2.reservation_id;
    assert_eq!(
        store.due_expiries(due_at + 1, &h, 10).await.unwrap(),
        vec![rid2.clone()]
    );
    let report = jobs::reap_once(store, due_at + 1, 100).await.unwrap();
    assert!(report.expired >= 1);
    assert_eq!(
        level(store, &h, "a").await,
        (1, 0),
        "expired units are back"
    );
    assert_eq!(
        store
            .transition(due_at + 2, &h, rid2, Action::Confirm)
            .await
            .unwrap(),
        TransitionOutcome::Expired
    );
    assert_eq!(
        store
            .transition(due_at + 2, &h, rid2, Action::Release)
            .await
            .unwrap(),
        TransitionOutcome::Already(ReservationStatus::Expired)
    );
    assert_eq!(
        level(store, &h, "a").await,
        (1, 0),
        "no double credit after expiry"
    );
    assert!(store
        .due_expiries(due_at + 100_000, &h, 10)
        .await
        .unwrap()
        .is_empty());
}

pub async fn lazy_expiry_on_release<S: StockStore>(store: &S, prefix: &str) {
    let h = hub(prefix, "lazy");
    let grace_ms = i64::from(store.policy().grace_s) * 1000;
    store.set_stock(T0, &set(&h, "a", 2, 1)).await.unwrap();
    let cmd = hold(&h, "u1", &[("a", 2)], 5);
    store.reserve(T0, &cmd).await.unwrap();
    let late = T0 + 5_000 + grace_ms + 1;
    assert_eq!(
        store
            .transition(late, &h, &cmd.reservation_id, Action::Release)
            .await
            .unwrap(),
        TransitionOutcome::Expired
    );
    assert_eq!(level(store, &h, "a").await, (2, 0));
    let r = store
        .reservation(&h, &cmd.reservation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.status, r.expired_at),
        (ReservationStatus::Expired, Some(late))
    );
    let report = jobs::reap_once(store, late + 1, 100).await.unwrap();
    assert_eq!(
        report.expired, 0,
        "the reaper finds nothing left to expire on this hub"
    );
    assert_eq!(level(store, &h, "a").await, (2, 0));
}

pub async fn idempotency_key_replays<S: StockStore>(store: &S, prefix: &str) {
    let h = hub(prefix, "idem");
    store.set_stock(T0, &set(&h, "a", 5, 1)).await.unwrap();
    let mut first = hold(&h, "u1", &[("a", 2)], 60);
    first.idempotency_key = Some(IdempotencyKey::parse("order-42").unwrap());
    store.reserve(T0, &first).await.unwrap();
    let mut again = first.clone();
    again.reservation_id = ReservationId::new_random();
    assert_eq!(
        store.reserve(T0 + 5, &again).await.unwrap(),
        ReserveOutcome::Replay {
            reservation_id: first.reservation_id.clone()
        }
    );
    assert_eq!(level(store, &h, "a").await, (3, 2), "one hold only");
}

pub async fn stock_set_respects_holds<S: StockStore>(store: &S, prefix: &str) {
    let h = hub(prefix, "set");
    store.set_stock(T0, &set(&h, "a", 10, 1)).await.unwrap();
    let cmd = hold(&h, "u1", &[("a", 4)], 60);
    store.reserve(T0, &cmd).await.unwrap();
    let r = store.set_stock(T0 + 1, &set(&h, "a", 6, 1)).await.unwrap();
    assert_eq!((r.counter, r.reserved), (2, 4));
    let r = store.set_stock(T0 + 2, &set(&h, "a", 1, 1)).await.unwrap();
    assert_eq!(
        (r.counter, r.reserved),
        (-3, 4),
        "counter may go negative, blocking holds"
    );
    assert_eq!(level(store, &h, "a").await, (0, 4));
    assert!(store
        .reserve(T0 + 3, &hold(&h, "u2", &[("a", 1)], 60))
        .await
        .is_err());
    store
        .transition(T0 + 4, &h, &cmd.reservation_id, Action::Release)
        .await
        .unwrap();
    let l = store.stock(&h, &sku("a")).await.unwrap();
    assert_eq!(
        (l.available, l.reserved, l.on_hand()),
        (1, 0, 1),
        "release never over-credits"
    );
}

pub async fn buckets_drain_and_refill<S: StockStore>(store: &S, prefix: &str) {
    let h = hub(prefix, "bkt");
    store.set_stock(T0, &set(&h, "a", 10, 4)).await.unwrap();
    let l = store.stock(&h, &sku("a")).await.unwrap();
    assert_eq!((l.available, l.buckets), (10, 4));
    let mut rids = Vec::new();
    for (i, q) in [3u32, 4, 2].into_iter().enumerate() {
        let cmd = hold(&h, &format!("user{i}"), &[("a", q)], 60);
        match store.reserve(T0, &cmd).await.unwrap() {
            ReserveOutcome::Reserved { remaining, .. } => {
                let l = store.stock(&h, &sku("a")).await.unwrap();
                assert_eq!(remaining, vec![l.available]);
            }
            other => panic!("{other:?}"),
        }
        rids.push(cmd.reservation_id);
    }
    assert_eq!(level(store, &h, "a").await, (1, 9));
    assert!(store
        .reserve(T0, &hold(&h, "x", &[("a", 2)], 60))
        .await
        .is_err());
    // Change the layout while units are held; releases must still conserve on-hand.
    store.set_stock(T0 + 1, &set(&h, "a", 10, 3)).await.unwrap();
    store
        .transition(T0 + 2, &h, &rids[0], Action::Release)
        .await
        .unwrap();
    store.set_stock(T0 + 3, &set(&h, "a", 10, 1)).await.unwrap();
    store
        .transition(T0 + 4, &h, &rids[1], Action::Release)
        .await
        .unwrap();
    store
        .transition(T0 + 5, &h, &rids[2], Action::Confirm)
        .await
        .unwrap();
    let l = store.stock(&h, &sku("a")).await.unwrap();
    assert_eq!(
        (l.available, l.reserved, l.on_hand(), l.buckets),
        (8, 0, 8, 1)
    );
}

pub async fn reservation_record_and_locate<S: StockStore>(store: &S, prefix: &str) {
    let h = hub(prefix, "rec");
    store.set_stock(T0, &set(&h, "b", 5, 1)).await.unwrap();
    store.set_stock(T0, &set(&h, "a", 5, 1)).await.unwrap();
    let cmd = hold(&h, "u9", &[("b", 2), ("a", 1)], 30);
    store.reserve(T0, &cmd).await.unwrap();
    let r = store
        .reservation(&h, &cmd.reservation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, ReservationStatus::Reserved);
    assert_eq!(
        r.items,
        vec![
            Item {
                sku: sku("a"),
                quantity: 1
            },
            Item {
                sku: sku("b"),
                quantity: 2
            }
        ]
    );
    assert_eq!(
        (r.created_at, r.expires_at, r.confirmed_at),
        (T0, T0 + 30_000, None)
    );
    assert_eq!(r.user_id.as_str(), "u9");
    assert_eq!(
        store.locate(&cmd.reservation_id).await.unwrap(),
        Some(h.clone())
    );
    assert_eq!(
        store.locate(&ReservationId::new_random()).await.unwrap(),
        None
    );
    let other = hub(prefix, "elsewhere");
    assert_eq!(
        store
            .reservation(&other, &cmd.reservation_id)
            .await
            .unwrap(),
        None
    );
    store
        .transition(T0 + 7, &h, &cmd.reservation_id, Action::Confirm)
        .await
        .unwrap();
    let r = store
        .reservation(&h, &cmd.reservation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.status, r.confirmed_at),
        (ReservationStatus::Confirmed, Some(T0 + 7))
    );
}

#[cfg(test)]
mod tests {
    use crate::store::HoldPolicy;
    use crate::MemoryStore;

    #[tokio::test]
    async fn memory_store_conforms() {
        let store = MemoryStore::new(HoldPolicy::default());
        super::run_all(&store, "m-").await;
    }
}
