//! The conformance suite every [`OrderRepo`] passes (memory in unit tests, Postgres in
//! `tests/pg_orders.rs`): one order per `(user, key)`, round trips, the saga log, and a
//! confirmation that writes the dispatch row and the events once; the outbox the relay drives.

use serde_json::json;

use crate::outbox::{Outbox, CLAIM_MS, MAX_ATTEMPTS};
use crate::ports::{Confirmation, OrderRecord, OrderRepo, OrderStatus};
use crate::webhook::{Applied, PaymentEvent, PaymentEvents};

const T0: i64 = 1_800_000_000_000;

fn order(id: &str, key: &str) -> OrderRecord {
    OrderRecord {
        order_id: id.into(),
        user_id: "u1".into(),
        idempotency_key: key.into(),
        hub_id: "h1".into(),
        status: OrderStatus::Pending,
        payment_status: "none".into(),
        items: vec![
            ("milk".into(), Some("Milk".into()), 2, 18_500),
            ("bread".into(), None, 1, 15_000),
        ],
        subtotal: 52_000,
        discount: 0,
        total: 52_000,
        reservation_id: Some("5f0c8a4e-1b7e-4d1a-9a63-2f8f1c3b4d5e".into()),
        transaction_id: None,
        applied_promos: Vec::new(),
        lat: -6.2,
        lng: 106.8,
        priority: 2,
        failed_step: None,
        created_at_ms: T0,
        updated_at_ms: T0,
        timeline: Vec::new(),
    }
}

pub async fn orders_conform(repo: impl OrderRepo) {
    let a = order("00000000-0000-4000-8000-000000000001", "key-1");
    assert_eq!(repo.create(&a).await.unwrap(), None);
    assert_eq!(repo.get(&a.order_id).await.unwrap().as_ref(), Some(&a));
    // The same (user, key) under another order id: the existing order comes back.
    let b = order("00000000-0000-4000-8000-000000000002", "key-1");
    let existing = repo.create(&b).await.unwrap().expect("the key is taken");
    assert_eq!(existing.order_id, a.order_id);
    assert_eq!(repo.get(&b.order_id).await.unwrap(), None);
    assert_eq!(repo.get("not-a-uuid").await.unwrap(), None);
    let found = repo.by_key(&a.user_id, "key-1").await.unwrap();
    assert_eq!(found.map(|o| o.order_id), Some(a.order_id.clone()));
    assert_eq!(repo.by_key(&a.user_id, "key-2").await.unwrap(), None);
    assert_eq!(repo.by_key("someone-else", "key-1").await.unwrap(), None);

    repo.step(&a.order_id, "reserve_inventory", "execute", true, T0)
        .await
        .unwrap();
    repo.step(&a.order_id, "charge_payment", "execute", false, T0 + 1)
        .await
        .unwrap();
    let mut cancelled = a.clone();
    cancelled.status = OrderStatus::Cancelled;
    cancelled.payment_status = "declined".into();
    cancelled.failed_step = Some("charge_payment".into());
    repo.update(&cancelled).await.unwrap();
    let got = repo.get(&a.order_id).await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.failed_step.as_deref()),
        (OrderStatus::Cancelled, Some("charge_payment"))
    );
    assert_eq!(
        got.timeline
            .iter()
            .map(|t| (t.0.as_str(), t.2))
            .collect::<Vec<_>>(),
        [("reserve_inventory", true), ("charge_payment", false)]
    );

    let c = order("00000000-0000-4000-8000-000000000003", "key-3");
    repo.create(&c).await.unwrap();
    let mut confirmed = c.clone();
    confirmed.status = OrderStatus::Confirmed;
    confirmed.payment_status = "charged".into();
    confirmed.transaction_id = Some("txn_3".into());
    confirmed.applied_promos = vec!["r1".into()];
    let conf = Confirmation {
        dispatch_payload: json!({"customer_id": "u1", "total": 52000}),
        priority: 2,
        events: vec![
            ("order.confirmed".into(), json!({"order_id": c.order_id})),
            ("payment.charged".into(), json!({"amount": 52000})),
        ],
    };
    repo.confirm(&confirmed, &conf, T0 + 5).await.unwrap();
    // A retried confirmation writes nothing twice.
    repo.confirm(&confirmed, &conf, T0 + 6).await.unwrap();
    let got = repo.get(&c.order_id).await.unwrap().unwrap();
    assert_eq!(
        (
            got.status,
            got.transaction_id.as_deref(),
            got.applied_promos.clone()
        ),
        (
            OrderStatus::Confirmed,
            Some("txn_3"),
            vec!["r1".to_string()]
        )
    );
    assert_eq!(
        repo.queued(&c.order_id).await.unwrap(),
        Some((json!({"customer_id": "u1", "total": 52000}), 2))
    );
    assert_eq!(
        repo.events(&c.order_id).await.unwrap(),
        ["order.confirmed", "payment.charged"]
    );
    assert_eq!(repo.queued(&a.order_id).await.unwrap(), None);
}

/// Payment events: applied once, a replay is "already processed", an unknown order or a wrong
/// amount changes nothing and does not mark the event, so its retry is processed later.
pub async fn payment_events_conform(repo: impl OrderRepo + PaymentEvents) {
    let o = order("00000000-0000-4000-8000-000000000009", "key-9");
    let ev = |txn: &str, ok: bool, amount: i64| PaymentEvent {
        transaction_id: txn.into(),
        order_id: o.order_id.clone(),
        succeeded: ok,
        amount,
        currency: "IDR".into(),
    };
    // The order does not exist yet (the webhook outran the saga): 404, nothing kept.
    assert_eq!(
        repo.apply_payment_event(&ev("t1", true, 52_000), T0)
            .await
            .unwrap(),
        Applied::UnknownOrder
    );
    repo.create(&o).await.unwrap();
    let mut confirmed = o.clone();
    confirmed.status = OrderStatus::Confirmed;
    confirmed.payment_status = "charged".into();
    repo.update(&confirmed).await.unwrap();
    assert_eq!(
        repo.apply_payment_event(&ev("t1", true, 51_000), T0)
            .await
            .unwrap(),
        Applied::AmountMismatch
    );
    assert_eq!(
        repo.get(&o.order_id).await.unwrap().unwrap().payment_status,
        "charged",
        "unchanged"
    );
    // The gateway's retry of t1 is processed now, once.
    assert_eq!(
        repo.apply_payment_event(&ev("t1", true, 52_000), T0)
            .await
            .unwrap(),
        Applied::Done
    );
    assert_eq!(
        repo.apply_payment_event(&ev("t1", true, 52_000), T0)
            .await
            .unwrap(),
        Applied::AlreadyProcessed
    );
    assert_eq!(
        repo.get(&o.order_id).await.unwrap().unwrap().payment_status,
        "confirmed"
    );
    // A later failure event marks the payment failed.
    assert_eq!(
        repo.apply_payment_event(&ev("t2", false, 52_000), T0)
            .await
            .unwrap(),
        Applied::Done
    );
    assert_eq!(
        repo.get(&o.order_id).await.unwrap().unwrap().payment_status,
        "failed"
    );
    assert_eq!(
        repo.events(&o.order_id).await.unwrap(),
        ["payment.confirmed", "payment.failed"]
    );
    // A success on a cancelled order: the money must go back.
    let c = order("00000000-0000-4000-8000-000000000010", "key-10");
    repo.create(&c).await.unwrap();
    let mut cancelled = c.clone();
    cancelled.status = OrderStatus::Cancelled;
    repo.update(&cancelled).await.unwrap();
    let refund = PaymentEvent {
        order_id: c.order_id.clone(),
        ..ev("t3", true, 52_000)
    };
    assert_eq!(
        repo.apply_payment_event(&refund, T0).await.unwrap(),
        Applied::Done
    );
    assert_eq!(
        repo.get(&c.order_id).await.unwrap().unwrap().payment_status,
        "refund_pending"
    );
    assert_eq!(
        repo.events(&c.order_id).await.unwrap(),
        ["payment.refund_required"]
    );
}

/// The outbox side of a repository: a confirmation's events come out in the order written,
/// once claimed they stay off other relays until the claim lapses, a failure is retried when
/// due, a dead or sent event never comes back.
pub async fn outbox_conforms(repo: impl OrderRepo + Outbox) {
    let mut o = order("00000000-0000-4000-8000-000000000021", "key-21");
    repo.create(&o).await.unwrap();
    o.status = OrderStatus::Confirmed;
    let c = Confirmation {
        dispatch_payload: json!({"total": 1}),
        priority: 1,
        events: vec![
            ("order.confirmed".into(), json!({"n": 1})),
            ("payment.charged".into(), json!({"n": 2})),
        ],
    };
    repo.confirm(&o, &c, T0).await.unwrap();
    assert!(
        repo.claim_due(T0 - 1, 10).await.unwrap().is_empty(),
        "not due"
    );
    let due = repo.claim_due(T0, 10).await.unwrap();
    let kinds: Vec<&str> = due.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        kinds,
        ["order.confirmed", "payment.charged"],
        "in the order written"
    );
    assert!(due
        .iter()
        .all(|e| e.aggregate_id == o.order_id && e.created_at_ms == T0));
    assert_eq!(due[1].payload, json!({"n": 2}));
    assert!(
        repo.claim_due(T0 + 1, 10).await.unwrap().is_empty(),
        "claimed: other relays skip them"
    );
    repo.mark_sent(&due[0].event_id, T0 + 1).await.unwrap();
    repo.mark_failed(&due[1].event_id, 1, T0 + 5_000, false, "down")
        .await
        .unwrap();
    let again = repo.claim_due(T0 + 5_000, 10).await.unwrap();
    assert_eq!(
        again.len(),
        1,
        "the failed one is due again, the sent one is not"
    );
    assert_eq!(
        (again[0].event_id.as_str(), again[0].attempts),
        (due[1].event_id.as_str(), 1)
    );
    repo.mark_failed(&again[0].event_id, MAX_ATTEMPTS, T0 + 10_000, true, "down")
        .await
        .unwrap();
    assert!(
        repo.claim_due(T0 + CLAIM_MS * 10, 10)
            .await
            .unwrap()
            .is_empty(),
        "dead and sent events never come back"
    );
    // A repeated confirmation writes no second set of events.
    repo.confirm(&o, &c, T0 + 1).await.unwrap();
    assert_eq!(repo.events(&o.order_id).await.unwrap().len(), 2);
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_memory_repository_conforms() {
        futures::executor::block_on(super::orders_conform(crate::ports::MemoryOrders::new()));
        futures::executor::block_on(super::payment_events_conform(
            crate::ports::MemoryOrders::new(),
        ));
        futures::executor::block_on(super::outbox_conforms(crate::ports::MemoryOrders::new()));
    }
}
