//! The Postgres order repository against a live Postgres (a fresh schema): the shared
//! conformance suite.

use qc_checkout::{conformance, PgOrders};
use qc_kit::testing::isolated_store_config;

#[tokio::test]
async fn postgres_orders_conform() {
    let cfg = isolated_store_config();
    let pool = qc_kit::pg::connect_and_migrate(&cfg, 2)
        .await
        .unwrap_or_else(|e| panic!("{e}\nstart Postgres with scripts/test.sh"));
    conformance::orders_conform(PgOrders::new(pool.clone())).await;
    conformance::payment_events_conform(PgOrders::new(pool.clone())).await;
    pool.close().await;
    qc_kit::pg::drop_schema(&cfg).await.unwrap();
    // The outbox suite on an empty outbox of its own.
    let cfg = isolated_store_config();
    let pool = qc_kit::pg::connect_and_migrate(&cfg, 2).await.unwrap();
    conformance::outbox_conforms(PgOrders::new(pool.clone())).await;
    pool.close().await;
    qc_kit::pg::drop_schema(&cfg).await.unwrap();
}

/// The saga over the real adapters: the inventory core's Redis scripts and the Postgres
/// repository. A confirmed checkout holds and confirms stock and writes the order, its
/// `dispatch_queue` row and its events; a declined one leaves Redis as it was and a cancelled order.
#[tokio::test]
async fn the_saga_over_redis_and_postgres_confirms_or_leaves_nothing_held() {
    use std::collections::BTreeMap;

    use qc_checkout::{Checkout, CheckoutRequest, Failure, NoPromos, OrderRepo, OrderStatus};
    use qc_checkout::{PriceList, SimulatedGateway};
    use qc_inventory::store::HoldPolicy;
    use qc_inventory::{HubId, RedisStore, SetStockCommand, Sku, StockSetReason, StockStore};
    use qc_kit::redis_kit::KeyPrefix;
    use qc_kit::testing::{delete_prefix, redis_for_test};

    const NOW: i64 = 1_800_000_000_000;
    let cfg = isolated_store_config();
    let pool = qc_kit::pg::connect_and_migrate(&cfg, 2).await.unwrap();
    let mut conn = redis_for_test(&cfg).await;
    let prefix = KeyPrefix::new(cfg.key_prefix.clone());
    let inventory = RedisStore::new(conn.clone(), prefix.clone(), HoldPolicy::default(), 2000);
    let hub = HubId::parse("h1").unwrap();
    inventory
        .set_stock(
            NOW,
            &SetStockCommand {
                hub_id: hub.clone(),
                sku: Sku::parse("milk").unwrap(),
                on_hand: 10,
                buckets: 1,
                reason: StockSetReason::AdminSet,
                actor: "test".into(),
            },
        )
        .await
        .unwrap();
    let c = Checkout {
        inventory,
        promos: NoPromos,
        gateway: SimulatedGateway::default(),
        orders: PgOrders::new(pool.clone()),
        catalog: PriceList(BTreeMap::from([("milk".into(), 18_500)])),
        hold_ttl_s: 900,
        hooks: Default::default(),
    };
    let req = |token: &str| {
        CheckoutRequest::parse(&serde_json::json!({"user_id": "u1", "hub_id": "h1",
            "items": [{"sku": "milk", "quantity": 3}],
            "payment": {"method": "card", "card_token": token},
            "delivery_location": {"lat": -6.2, "lng": 106.8}}))
        .unwrap()
    };
    let ok_id = "00000000-0000-4000-8000-000000000001";
    let o = c.run(&req("tok_ok"), "k1", ok_id, NOW).await.unwrap();
    assert_eq!((o.status, o.total), (OrderStatus::Confirmed, 55_500));
    let s = c
        .inventory
        .stock(&hub, &Sku::parse("milk").unwrap())
        .await
        .unwrap();
    assert_eq!((s.available, s.reserved), (7, 0));
    assert!(c.orders.queued(ok_id).await.unwrap().is_some());
    assert_eq!(c.orders.events(ok_id).await.unwrap().len(), 2);

    // The relay: with the stream down the events wait; once it is back they reach the Redis
    // stream, each with its outbox id as `event_id`.
    use qc_checkout::outbox::{relay_once, MemorySink, RedisSink};
    let down = MemorySink::default();
    *down.down.lock().unwrap() = true;
    let p = relay_once(&c.orders, &down, NOW, 100).await.unwrap();
    assert_eq!((p.sent, p.failed), (0, 2));
    let stream = format!("{}checkout:events", cfg.key_prefix);
    let sink = RedisSink {
        conn: conn.clone(),
        stream: stream.clone(),
        timeout_ms: 2000,
    };
    assert_eq!(
        relay_once(&c.orders, &sink, NOW + 1, 100)
            .await
            .unwrap()
            .sent,
        0,
        "not due yet"
    );
    let p = relay_once(&c.orders, &sink, NOW + 600_000, 100)
        .await
        .unwrap();
    assert_eq!(p.sent, 2);
    let entries: Vec<(String, std::collections::HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(&stream)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let types: Vec<&str> = entries
        .iter()
        .map(|(_, f)| f["event_type"].as_str())
        .collect();
    assert_eq!(types, ["order.confirmed", "payment.charged"]);
    let ids: std::collections::BTreeSet<&str> = entries
        .iter()
        .map(|(_, f)| f["event_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 2, "one id per event (consumers dedupe on it)");
    assert_eq!(
        relay_once(&c.orders, &sink, NOW + 1_200_000, 100)
            .await
            .unwrap()
            .sent,
        0,
        "sent once"
    );

    let bad_id = "00000000-0000-4000-8000-000000000002";
    let e = c
        .run(&req("tok_decline"), "k2", bad_id, NOW)
        .await
        .unwrap_err();
    assert_eq!(e.failure, Failure::Declined);
    let s = c
        .inventory
        .stock(&hub, &Sku::parse("milk").unwrap())
        .await
        .unwrap();
    assert_eq!(
        (s.available, s.reserved),
        (7, 0),
        "the declined hold was released"
    );
    let stored = c.orders.get(bad_id).await.unwrap().unwrap();
    assert_eq!(stored.status, OrderStatus::Cancelled);
    assert!(c.orders.queued(bad_id).await.unwrap().is_none());

    delete_prefix(&mut conn, &prefix).await.unwrap();
    pool.close().await;
    qc_kit::pg::drop_schema(&cfg).await.unwrap();
}

#[tokio::test]
async fn redis_idempotency_conforms() {
    let cfg = isolated_store_config();
    let mut conn = qc_kit::testing::redis_for_test(&cfg).await;
    let prefix = qc_kit::redis_kit::KeyPrefix::new(cfg.key_prefix.clone());
    qc_checkout::idempotency::idempotency_conforms(qc_checkout::idempotency::RedisIdempotency {
        conn: conn.clone(),
        prefix: prefix.clone(),
        timeout_ms: 2000,
        scope: "checkout",
    })
    .await;
    qc_kit::testing::delete_prefix(&mut conn, &prefix)
        .await
        .unwrap();
}

/// Saga recovery over Redis and Postgres: a checkout that died after holding stock and
/// creating its order is undone; one that died after charging is rolled forward (the hold
/// confirmed, the dispatch row and events written). Nothing is held without an order and no
/// charge is left without one.
#[tokio::test]
async fn recovery_undoes_an_uncharged_checkout_and_rolls_a_charged_one_forward() {
    use std::collections::BTreeMap;

    use qc_checkout::ports::PaymentGateway;
    use qc_checkout::{
        Checkout, NoPromos, OrderRecord, OrderRepo, OrderStatus, PriceList, SimulatedGateway,
    };
    use qc_inventory::store::HoldPolicy;
    use qc_inventory::{
        CartId, HubId, IdempotencyKey, Item, RedisStore, ReservationId, ReserveCommand,
        SetStockCommand, Sku, StockSetReason, StockStore, UserId,
    };
    use qc_kit::redis_kit::KeyPrefix;
    use qc_kit::testing::{delete_prefix, redis_for_test};

    const NOW: i64 = 1_800_000_000_000;
    let cfg = isolated_store_config();
    let pool = qc_kit::pg::connect_and_migrate(&cfg, 2).await.unwrap();
    let mut conn = redis_for_test(&cfg).await;
    let prefix = KeyPrefix::new(cfg.key_prefix.clone());
    let hub = HubId::parse("h1").unwrap();
    let milk = Sku::parse("milk").unwrap();
    let c = Checkout {
        inventory: RedisStore::new(conn.clone(), prefix.clone(), HoldPolicy::default(), 2000),
        promos: NoPromos,
        gateway: SimulatedGateway::default(),
        orders: PgOrders::new(pool.clone()),
        catalog: PriceList(BTreeMap::from([("milk".into(), 10_000)])),
        hold_ttl_s: 900,
        hooks: Default::default(),
    };
    c.inventory
        .set_stock(
            NOW,
            &SetStockCommand {
                hub_id: hub.clone(),
                sku: milk.clone(),
                on_hand: 10,
                buckets: 1,
                reason: StockSetReason::AdminSet,
                actor: "t".into(),
            },
        )
        .await
        .unwrap();
    // Two checkouts that died mid-saga: both hold 2 milk and have a pending order.
    let mut pending = Vec::new();
    for (i, charged) in [(1u32, false), (2, true)] {
        let id = format!("00000000-0000-4000-8000-00000000000{i}");
        c.inventory
            .reserve(
                NOW,
                &ReserveCommand {
                    reservation_id: ReservationId::parse(&id).unwrap(),
                    hub_id: hub.clone(),
                    cart_id: CartId::parse(&id).unwrap(),
                    user_id: UserId::parse("u1").unwrap(),
                    items: vec![Item {
                        sku: milk.clone(),
                        quantity: 2,
                    }],
                    ttl_s: 900,
                    idempotency_key: Some(IdempotencyKey::parse(&id).unwrap()),
                },
            )
            .await
            .unwrap();
        let mut o = OrderRecord {
            order_id: id.clone(),
            user_id: "u1".into(),
            idempotency_key: format!("k{i}"),
            hub_id: "h1".into(),
            status: OrderStatus::Pending,
            payment_status: "none".into(),
            items: vec![("milk".into(), None, 2, 10_000)],
            subtotal: 20_000,
            discount: 0,
            total: 20_000,
            reservation_id: Some(id.clone()),
            transaction_id: None,
            applied_promos: Vec::new(),
            lat: -6.2,
            lng: 106.8,
            priority: 1,
            failed_step: None,
            created_at_ms: NOW,
            updated_at_ms: NOW,
            timeline: Vec::new(),
        };
        c.orders.create(&o).await.unwrap();
        if charged {
            let txn = c
                .gateway
                .charge(&id, 20_000, "IDR", Some("tok_ok"), &id)
                .await
                .unwrap();
            o.payment_status = "charged".into();
            o.transaction_id = Some(txn);
            c.orders.update(&o).await.unwrap();
        }
        pending.push(id);
    }
    let s = c.inventory.stock(&hub, &milk).await.unwrap();
    assert_eq!((s.available, s.reserved), (6, 4));
    // Not idle long enough yet.
    assert_eq!(
        c.recover_once(NOW + 30_000, 60_000, 50).await.unwrap(),
        Default::default()
    );
    let r = c.recover_once(NOW + 61_000, 60_000, 50).await.unwrap();
    assert_eq!((r.rolled_forward, r.compensated), (1, 1));
    let undone = c.orders.get(&pending[0]).await.unwrap().unwrap();
    assert_eq!(undone.status, OrderStatus::Cancelled);
    let forward = c.orders.get(&pending[1]).await.unwrap().unwrap();
    assert_eq!(forward.status, OrderStatus::Confirmed);
    assert!(
        c.orders.queued(&pending[1]).await.unwrap().is_some(),
        "dispatch row written"
    );
    assert_eq!(c.orders.events(&pending[1]).await.unwrap().len(), 2);
    let s = c.inventory.stock(&hub, &milk).await.unwrap();
    assert_eq!(
        (s.available, s.reserved),
        (8, 0),
        "one hold released, one confirmed"
    );
    assert!(
        c.gateway.refunds.lock().unwrap().is_empty(),
        "the charged order kept its charge"
    );
    assert_eq!(
        c.recover_once(NOW + 200_000, 60_000, 50).await.unwrap(),
        Default::default(),
        "done once"
    );
    delete_prefix(&mut conn, &prefix).await.unwrap();
    pool.close().await;
    qc_kit::pg::drop_schema(&cfg).await.unwrap();
}

/// At least once, deduped: a relay that dies after `XADD` but before marking the event sent
/// leaves it to be published again (by itself or another relay once the claim lapses), so
/// the stream holds it twice; a consumer group member hands each `event_id` to its handler
/// once. A handler that fails leaves its entry pending, and the next pass takes it again.
#[tokio::test]
async fn a_relay_crash_repeats_events_on_the_stream_and_the_consumer_handles_each_once() {
    use qc_checkout::outbox::EventSink;
    use qc_checkout::outbox::{
        relay_once, Consumed, MemoryOutbox, Outbox, OutboxEvent, RedisSink, StreamConsumer,
        CLAIM_MS,
    };
    use qc_kit::testing::{delete_prefix, redis_for_test};

    const NOW: i64 = 1_800_000_000_000;
    let cfg = isolated_store_config();
    let mut conn = redis_for_test(&cfg).await;
    let prefix = qc_kit::redis_kit::KeyPrefix::new(cfg.key_prefix.clone());
    let outbox = MemoryOutbox::default();
    for (i, t) in ["order.confirmed", "payment.charged", "order.confirmed"]
        .iter()
        .enumerate()
    {
        outbox.add(
            OutboxEvent {
                event_id: format!("ev-{i}"),
                aggregate_id: format!("order-{}", i / 2),
                event_type: t.to_string(),
                payload: serde_json::json!({"n": i}),
                created_at_ms: NOW,
                attempts: 0,
            },
            NOW,
        );
    }
    let sink = RedisSink {
        conn: conn.clone(),
        stream: prefix.key("checkout:events"),
        timeout_ms: 2000,
    };
    // The first relay claims and publishes, then dies before marking anything sent.
    for e in outbox.claim_due(NOW, 100).await.unwrap() {
        sink.publish(&e).await.unwrap();
    }
    assert_eq!(
        relay_once(&outbox, &sink, NOW + 1, 100).await.unwrap().sent,
        0,
        "claimed"
    );
    let p = relay_once(&outbox, &sink, NOW + CLAIM_MS + 1, 100)
        .await
        .unwrap();
    assert_eq!(
        p.sent, 3,
        "the claim lapsed: published again and marked sent"
    );
    let len: usize = redis::cmd("XLEN")
        .arg(&sink.stream)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 6, "every event twice on the stream");

    let consumer = StreamConsumer {
        conn: conn.clone(),
        stream: sink.stream.clone(),
        group: "notifications".into(),
        consumer: "n-1".into(),
        seen_prefix: prefix.key("checkout:consumed:notifications:"),
        timeout_ms: 2000,
    };
    let handled = std::sync::Mutex::new(Vec::new());
    // The handler fails on ev-1 once: that entry stays pending and is taken again.
    let fail_once = std::sync::atomic::AtomicBool::new(true);
    let handler = |e: OutboxEvent| {
        let r =
            if e.event_id == "ev-1" && fail_once.swap(false, std::sync::atomic::Ordering::SeqCst) {
                Err("downstream unavailable".to_string())
            } else {
                handled.lock().unwrap().push(e.event_id.clone());
                Ok(())
            };
        async move { r }
    };
    let first = consumer.consume_once(10, handler).await;
    assert!(first.is_err(), "stops at the failing event");
    let mut total = Consumed::default();
    for _ in 0..4 {
        let c = consumer.consume_once(10, handler).await.unwrap();
        total.handled += c.handled;
        total.duplicates += c.duplicates;
    }
    assert_eq!(
        *handled.lock().unwrap(),
        ["ev-0", "ev-1", "ev-2"],
        "each once, in order"
    );
    assert_eq!((total.handled, total.duplicates), (2, 3));
    let pending: (i64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg(&sink.stream)
        .arg("notifications")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(pending.0, 0, "everything acknowledged");
    delete_prefix(&mut conn, &prefix).await.unwrap();
}
