//! The checkout saga over the inventory core's memory store, the gateway simulator and the
//! memory order repository: the happy path writes the order, its dispatch row and its events
//! together; every failure compensates in reverse and leaves nothing held or charged.

use std::collections::BTreeMap;

use futures::executor::block_on;
use qc_checkout::ports::Confirmation;
use qc_checkout::{
    Checkout, CheckoutRequest, Failure, MemoryOrders, NoPromos, OrderRecord, OrderRepo,
    OrderStatus, PriceList, PromoAnswer, PromoCall, Promos, SimulatedGateway, Step,
};
use qc_inventory::store::HoldPolicy;
use qc_inventory::{HubId, MemoryStore, SetStockCommand, Sku, StockSetReason, StockStore};
use serde_json::json;

const NOW: i64 = 1_800_000_000_000;

fn order_id(i: u32) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

fn shop<P: Promos>(
    promos: P,
) -> Checkout<MemoryStore, P, SimulatedGateway, MemoryOrders, PriceList> {
    let inventory = MemoryStore::new(HoldPolicy::default());
    for (sku, q) in [("milk", 10), ("bread", 5)] {
        block_on(inventory.set_stock(
            NOW,
            &SetStockCommand {
                hub_id: HubId::parse("h1").unwrap(),
                sku: Sku::parse(sku).unwrap(),
                on_hand: q,
                buckets: 1,
                reason: StockSetReason::AdminSet,
                actor: "test".into(),
            },
        ))
        .unwrap();
    }
    Checkout {
        inventory,
        promos,
        gateway: SimulatedGateway::default(),
        orders: MemoryOrders::new(),
        catalog: PriceList(BTreeMap::from([
            ("milk".into(), 18_500),
            ("bread".into(), 15_000),
        ])),
        hold_ttl_s: 900,
        hooks: Default::default(),
    }
}

fn request(token: &str, milk: u32) -> CheckoutRequest {
    CheckoutRequest::parse(&json!({"user_id": "u1", "hub_id": "h1",
        "items": [{"sku": "milk", "quantity": milk, "unit_price": 1}, {"sku": "bread", "quantity": 1}],
        "payment": {"method": "card", "card_token": token},
        "delivery_location": {"lat": -6.2, "lng": 106.8}}))
    .unwrap()
}

fn available<P: Promos>(
    c: &Checkout<MemoryStore, P, SimulatedGateway, MemoryOrders, PriceList>,
    sku: &str,
) -> (i64, i64) {
    let s = block_on(
        c.inventory
            .stock(&HubId::parse("h1").unwrap(), &Sku::parse(sku).unwrap()),
    )
    .unwrap();
    (s.available, s.reserved)
}

#[test]
fn a_checkout_confirms_with_server_prices_and_writes_order_dispatch_row_and_events_together() {
    let c = shop(NoPromos);
    let o = block_on(c.run(&request("tok_ok", 2), "key-1", &order_id(1), NOW)).unwrap();
    assert_eq!(
        (o.status, o.subtotal, o.total),
        (OrderStatus::Confirmed, 52_000, 52_000),
        "the client's unit_price 1 is ignored"
    );
    assert_eq!(
        o.transaction_id.as_deref(),
        Some(format!("txn_{}", order_id(1)).as_str())
    );
    assert_eq!(available(&c, "milk"), (8, 0), "the hold was confirmed");
    let q = c.orders.dispatch_queue();
    assert_eq!(q[&order_id(1)].0["total"], 52_000);
    let events: Vec<String> = c.orders.outbox().into_iter().map(|e| e.1).collect();
    assert_eq!(events, ["order.confirmed", "payment.charged"]);
    let stored = block_on(c.orders.get(&order_id(1))).unwrap().unwrap();
    let steps: Vec<&str> = stored.timeline.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(
        steps,
        [
            "create_order",
            "reserve_inventory",
            "apply_promo",
            "charge_payment",
            "confirm_order"
        ]
    );
}

#[test]
fn a_decline_compensates_in_reverse_and_leaves_nothing_held_or_charged() {
    let c = shop(NoPromos);
    let e = block_on(c.run(&request("tok_decline", 2), "key-1", &order_id(1), NOW)).unwrap_err();
    assert_eq!(
        (e.failure.clone(), e.step, e.compensated),
        (Failure::Declined, Step::ChargePayment, true)
    );
    assert_eq!(available(&c, "milk"), (10, 0), "the hold was released");
    assert!(c.gateway.charges.lock().unwrap().is_empty());
    let o = block_on(c.orders.get(&order_id(1))).unwrap().unwrap();
    assert_eq!(
        (
            o.status,
            o.payment_status.as_str(),
            o.failed_step.as_deref()
        ),
        (OrderStatus::Cancelled, "declined", Some("charge_payment"))
    );
    assert!(c.orders.dispatch_queue().is_empty() && c.orders.outbox().is_empty());
    let timeout =
        block_on(c.run(&request("tok_timeout", 1), "key-2", &order_id(2), NOW)).unwrap_err();
    assert_eq!(timeout.failure, Failure::GatewayTimeout);
    assert_eq!(available(&c, "milk"), (10, 0));
}

#[test]
fn out_of_stock_cancels_the_attempt_and_unknown_skus_stop_before_anything_is_written() {
    let c = shop(NoPromos);
    let e = block_on(c.run(&request("tok_ok", 11), "key-1", &order_id(1), NOW)).unwrap_err();
    assert!(matches!(e.failure, Failure::Stock(_)), "{e:?}");
    // The pending row comes before the hold (crash safety), so a stockout leaves a cancelled
    // attempt on record, with nothing held, charged, queued or announced.
    let o = block_on(c.orders.get(&order_id(1))).unwrap().unwrap();
    assert_eq!(
        (o.status, o.failed_step.as_deref()),
        (OrderStatus::Cancelled, Some("reserve_inventory"))
    );
    assert!(c.orders.dispatch_queue().is_empty() && c.orders.outbox().is_empty());
    assert!(c.gateway.charges.lock().unwrap().is_empty());
    let mut r = request("tok_ok", 1);
    r.lines[1].sku = "caviar".into();
    let e = block_on(c.run(&r, "key-2", &order_id(2), NOW)).unwrap_err();
    assert_eq!(
        (e.failure, e.step),
        (Failure::UnknownSku("caviar".into()), Step::Price)
    );
    assert_eq!(block_on(c.orders.get(&order_id(2))).unwrap(), None);
    assert_eq!(available(&c, "milk"), (10, 0));
}

#[test]
fn the_same_key_makes_one_order_and_holds_stock_once() {
    let c = shop(NoPromos);
    let first = block_on(c.run(&request("tok_ok", 2), "key-1", &order_id(1), NOW)).unwrap();
    // A retry that lost its idempotency record runs again under a new order id.
    let e = block_on(c.run(&request("tok_ok", 2), "key-1", &order_id(2), NOW)).unwrap_err();
    match e.failure {
        Failure::Existing(o) => assert_eq!(o.order_id, first.order_id),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        available(&c, "milk"),
        (8, 0),
        "the second hold was released"
    );
    assert_eq!(c.gateway.charges.lock().unwrap().len(), 1);
}

/// A promo service that answers with a fixed discount, or is down; it counts releases.
#[derive(Default)]
struct FakePromos {
    down: bool,
    releases: std::sync::Mutex<Vec<String>>,
}

impl Promos for FakePromos {
    async fn apply(&self, call: &PromoCall) -> Result<PromoAnswer, String> {
        if self.down {
            return Err("unreachable".into());
        }
        Ok(PromoAnswer {
            discount: call.subtotal + 1_000,
            applied: vec!["r1".into()],
        })
    }
    async fn release(&self, order_id: &str) -> Result<(), String> {
        self.releases.lock().unwrap().push(order_id.to_string());
        Ok(())
    }
}

#[test]
fn promos_discount_within_the_subtotal_are_released_on_failure_and_skipped_when_down() {
    // A discount above the subtotal is clamped: a free order is not charged.
    let c = shop(FakePromos::default());
    let o = block_on(c.run(&request("tok_ok", 1), "key-1", &order_id(1), NOW)).unwrap();
    assert_eq!((o.discount, o.total, o.transaction_id), (33_500, 0, None));
    assert!(c.gateway.charges.lock().unwrap().is_empty());
    // Down: no discount, and the release goes out at once.
    let c = shop(FakePromos {
        down: true,
        ..FakePromos::default()
    });
    let o = block_on(c.run(&request("tok_ok", 1), "key-1", &order_id(1), NOW)).unwrap();
    assert_eq!(o.discount, 0);
    assert_eq!(*c.promos.releases.lock().unwrap(), [order_id(1)]);
}

/// A repository whose confirmation write fails: the saga reports it, and (the money being
/// taken and the hold confirmed) leaves the pending order for recovery to roll forward.
struct BrokenConfirm(MemoryOrders);

impl OrderRepo for BrokenConfirm {
    async fn by_key(
        &self,
        user: &str,
        key: &str,
    ) -> Result<Option<OrderRecord>, qc_kit::redis_kit::BackendError> {
        self.0.by_key(user, key).await
    }
    async fn create(
        &self,
        o: &OrderRecord,
    ) -> Result<Option<OrderRecord>, qc_kit::redis_kit::BackendError> {
        self.0.create(o).await
    }
    async fn get(&self, id: &str) -> Result<Option<OrderRecord>, qc_kit::redis_kit::BackendError> {
        self.0.get(id).await
    }
    async fn step(
        &self,
        id: &str,
        s: &str,
        a: &str,
        ok: bool,
        at: i64,
    ) -> Result<(), qc_kit::redis_kit::BackendError> {
        self.0.step(id, s, a, ok, at).await
    }
    async fn update(&self, o: &OrderRecord) -> Result<(), qc_kit::redis_kit::BackendError> {
        self.0.update(o).await
    }
    async fn queued(
        &self,
        id: &str,
    ) -> Result<Option<(serde_json::Value, u8)>, qc_kit::redis_kit::BackendError> {
        self.0.queued(id).await
    }
    async fn events(&self, id: &str) -> Result<Vec<String>, qc_kit::redis_kit::BackendError> {
        self.0.events(id).await
    }
    async fn claim_stale(
        &self,
        now: i64,
        idle: i64,
        limit: usize,
    ) -> Result<Vec<OrderRecord>, qc_kit::redis_kit::BackendError> {
        self.0.claim_stale(now, idle, limit).await
    }
    async fn confirm(
        &self,
        _o: &OrderRecord,
        _c: &Confirmation,
        _at: i64,
    ) -> Result<(), qc_kit::redis_kit::BackendError> {
        Err(qc_kit::redis_kit::BackendError::Postgres(
            "down".to_string().into(),
        ))
    }
}

#[test]
fn a_lost_confirmation_write_leaves_a_pending_order_for_recovery() {
    let base = shop(NoPromos);
    let c = Checkout {
        inventory: base.inventory,
        promos: NoPromos,
        gateway: base.gateway,
        orders: BrokenConfirm(MemoryOrders::new()),
        catalog: base.catalog,
        hold_ttl_s: 900,
        hooks: Default::default(),
    };
    let e = block_on(c.run(&request("tok_ok", 1), "key-1", &order_id(1), NOW)).unwrap_err();
    assert_eq!((e.step, e.compensated), (Step::ConfirmOrder, false));
    let o = block_on(c.orders.get(&order_id(1))).unwrap().unwrap();
    assert_eq!(o.status, OrderStatus::Pending, "recovery rolls it forward");
}

/// A promo service so slow that the saga's clock passes its deadline while it answers.
struct SlowPromos(std::sync::Arc<qc_kit::ManualClock>, i64);

impl Promos for SlowPromos {
    async fn apply(&self, _call: &PromoCall) -> Result<PromoAnswer, String> {
        self.0.advance_ms(self.1);
        Ok(PromoAnswer::default())
    }
    async fn release(&self, _order_id: &str) -> Result<(), String> {
        Ok(())
    }
}

#[test]
fn past_the_deadline_before_the_charge_the_saga_stops_and_undoes_everything() {
    let clock = std::sync::Arc::new(qc_kit::ManualClock::new(NOW));
    let base = shop(NoPromos);
    let c = Checkout {
        inventory: base.inventory,
        promos: SlowPromos(clock.clone(), 25_000),
        gateway: base.gateway,
        orders: base.orders,
        catalog: base.catalog,
        hold_ttl_s: 900,
        hooks: qc_checkout::saga::SagaHooks {
            deadline: Some((clock.clone(), 20_000)),
            failpoint: None,
        },
    };
    let e = block_on(c.run(&request("tok_ok", 2), "key-1", &order_id(1), NOW)).unwrap_err();
    assert_eq!(
        (e.failure, e.step, e.compensated),
        (Failure::Deadline, Step::ChargePayment, true)
    );
    assert!(
        c.gateway.charges.lock().unwrap().is_empty(),
        "never charged"
    );
    let s = block_on(
        c.inventory
            .stock(&HubId::parse("h1").unwrap(), &Sku::parse("milk").unwrap()),
    )
    .unwrap();
    assert_eq!((s.available, s.reserved), (10, 0), "the hold was released");
    let o = block_on(c.orders.get(&order_id(1))).unwrap().unwrap();
    assert_eq!(o.status, OrderStatus::Cancelled);
    // Within the deadline the same saga confirms.
    clock.set_ms(NOW);
    let quick = Checkout {
        promos: SlowPromos(clock.clone(), 15_000),
        inventory: c.inventory,
        gateway: c.gateway,
        orders: c.orders,
        catalog: c.catalog,
        hold_ttl_s: c.hold_ttl_s,
        hooks: c.hooks,
    };
    assert!(block_on(quick.run(&request("tok_ok", 2), "key-2", &order_id(2), NOW)).is_ok());
}

#[test]
fn a_cart_hold_is_taken_over_once_and_only_by_its_own_checkout() {
    use qc_inventory::{CartId, Item, ReservationId, ReserveCommand, UserId};
    let c = shop(NoPromos);
    let hold = |user: &str, rid: u32| ReserveCommand {
        reservation_id: ReservationId::parse(&order_id(100 + rid)).unwrap(),
        hub_id: HubId::parse("h1").unwrap(),
        cart_id: CartId::parse("cart").unwrap(),
        user_id: UserId::parse(user).unwrap(),
        items: vec![
            Item {
                sku: Sku::parse("milk").unwrap(),
                quantity: 2,
            },
            Item {
                sku: Sku::parse("bread").unwrap(),
                quantity: 1,
            },
        ],
        ttl_s: 900,
        idempotency_key: None,
    };
    block_on(c.inventory.reserve(NOW, &hold("u1", 1))).unwrap();
    block_on(c.inventory.reserve(NOW, &hold("u2", 2))).unwrap();
    assert_eq!(available(&c, "milk"), (6, 4));

    // Another user's hold, or other quantities: refused, nothing written or released.
    let mut r = request("tok_ok", 2);
    r.reservation_id = Some(order_id(102));
    let e = block_on(c.run(&r, "k-other", &order_id(1), NOW)).unwrap_err();
    assert!(matches!(e.failure, Failure::CartHold(_)), "{e:?}");
    let mut r = request("tok_ok", 3);
    r.reservation_id = Some(order_id(101));
    let e = block_on(c.run(&r, "k-more", &order_id(2), NOW)).unwrap_err();
    assert!(matches!(e.failure, Failure::CartHold(_)), "{e:?}");
    assert_eq!(available(&c, "milk"), (6, 4));
    assert_eq!(block_on(c.orders.get(&order_id(1))).unwrap(), None);

    // Its own checkout confirms that hold: the stock is held once, then sold.
    let mut r = request("tok_ok", 2);
    r.reservation_id = Some(order_id(101));
    let o = block_on(c.run(&r, "k-1", &order_id(3), NOW)).unwrap();
    assert_eq!(o.reservation_id.as_deref(), Some(order_id(101).as_str()));
    assert_eq!(
        available(&c, "milk"),
        (6, 2),
        "u2's hold remains; u1's was sold"
    );
    // A confirmed hold cannot be taken over again.
    let e = block_on(c.run(&r, "k-2", &order_id(4), NOW)).unwrap_err();
    assert!(matches!(e.failure, Failure::CartHold(_)), "{e:?}");
    // A declined checkout releases the cart hold it took over.
    let mut r = request("tok_decline", 2);
    r.user_id = "u2".into();
    r.reservation_id = Some(order_id(102));
    let e = block_on(c.run(&r, "k-3", &order_id(5), NOW)).unwrap_err();
    assert_eq!(e.failure, Failure::Declined);
    assert_eq!(available(&c, "milk"), (8, 0));
}
