//! The checkout saga (04 "Saga"), the application layer the service and the twin both run:
//! price from the catalog → reserve stock (the inventory core) → create the order → apply
//! promos → charge → confirm (the hold, then one write of the order, its `dispatch_queue` row
//! and its outbox events). A failure compensates the executed steps in reverse, each up to three
//! times; all compensated → `cancelled`, else `failed`. Every step is logged on the order.

use qc_inventory::{
    Action, CartId, HubId, IdempotencyKey, InventoryError, Item, ReservationId, ReservationStatus,
    ReserveCommand, ReserveOutcome, Sku, StockStore, TransitionOutcome, UserId,
};
use qc_kit::SharedClock;
use serde_json::json;
use std::sync::Arc;

use crate::ports::{
    Catalog, Confirmation, OrderRecord, OrderRepo, OrderStatus, PayError, PaymentGateway,
    PromoCall, Promos,
};
use crate::request::CheckoutRequest;

/// Attempts per compensation, and per charge when the gateway times out.
const ATTEMPTS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Price,
    ReserveInventory,
    CreateOrder,
    ApplyPromo,
    ChargePayment,
    ConfirmOrder,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Price => "price",
            Step::ReserveInventory => "reserve_inventory",
            Step::CreateOrder => "create_order",
            Step::ApplyPromo => "apply_promo",
            Step::ChargePayment => "charge_payment",
            Step::ConfirmOrder => "confirm_order",
        }
    }
}

/// Why a checkout did not confirm (the service maps each to 04's status and code).
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// 409 `INSUFFICIENT_STOCK` / `SKU_NOT_FOUND` (Inventory's refusal, passed through).
    Stock(InventoryError),
    /// 409 `SKU_NOT_FOUND`: the catalog does not sell it.
    UnknownSku(String),
    /// 402 `PAYMENT_FAILED`.
    Declined,
    /// 503 `PAYMENT_UNAVAILABLE`.
    GatewayTimeout,
    /// 409 `RESERVATION_EXPIRED` (after one re-reservation).
    ReservationExpired,
    /// 503 `UNAVAILABLE`.
    Unavailable(String),
    /// 503 `UNAVAILABLE`: the saga ran past its deadline before charging.
    Deadline,
    /// 409 `RESERVATION_MISMATCH`: the cart hold named is not this checkout's (another user,
    /// hub or items; not found; already confirmed or released).
    CartHold(String),
    /// The key already made an order: answer from it (the durable idempotency guard).
    Existing(Box<OrderRecord>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SagaError {
    pub failure: Failure,
    pub step: Step,
    pub order_id: String,
    /// Every executed step was compensated (the order is `cancelled`, not `failed`).
    pub compensated: bool,
}

/// The saga over its ports.
#[derive(Debug)]
pub struct Checkout<I, P, G, R, C> {
    pub inventory: I,
    pub promos: P,
    pub gateway: G,
    pub orders: R,
    pub catalog: C,
    /// `CHECKOUT_RESERVATION_TTL_SECS`.
    pub hold_ttl_s: u32,
    pub hooks: SagaHooks,
}

/// A hook called with the name of each saga point reached.
pub type Failpoint = Arc<dyn Fn(&str) + Send + Sync>;

/// The saga's deadline (04: 20 s) and a test failpoint.
#[derive(Clone, Default)]
pub struct SagaHooks {
    /// The clock the deadline is read from, and the deadline in ms from the saga's start. The
    /// deadline is checked before promo and before the charge: past it, the saga stops and
    /// compensates (503). Once charged, it always goes on to confirm (recovery would roll it
    /// forward anyway).
    pub deadline: Option<(SharedClock, i64)>,
    /// Called at each of [`POINTS`] with its name (crash tests: the service parks there under
    /// `CHECKOUT_FAILPOINT` so the test can `kill -9` it).
    pub failpoint: Option<Failpoint>,
}

impl std::fmt::Debug for SagaHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaHooks")
            .field("deadline_ms", &self.deadline.as_ref().map(|d| d.1))
            .field("failpoint", &self.failpoint.is_some())
            .finish()
    }
}

/// The points a failpoint can stop at, in saga order: after the hold, after the pending order
/// row, after promo, after the charge is recorded, after the hold is confirmed, after the
/// confirming write (before the answer).
pub const POINTS: [&str; 6] = [
    "reserved",
    "order_created",
    "promo_applied",
    "charged",
    "hold_confirmed",
    "confirmed",
];

impl SagaHooks {
    fn at(&self, point: &str) {
        if let Some(f) = &self.failpoint {
            f(point);
        }
    }

    fn past_deadline(&self, started_ms: i64) -> bool {
        self.deadline
            .as_ref()
            .is_some_and(|(clock, ms)| clock.now_ms() - started_ms > *ms)
    }
}

/// The events a confirmation writes, in order.
pub const CONFIRM_EVENTS: [&str; 2] = ["order.confirmed", "payment.charged"];

/// The `dispatch_queue` row and outbox events of a confirmed order (04 step 5).
pub fn confirmation(order: &OrderRecord) -> Confirmation {
    Confirmation {
        dispatch_payload: json!({"customer_id": order.user_id,
            "items": order.items.iter().map(|(s, n, q, _)| json!({"product_id": s, "name": n.clone().unwrap_or_default(), "quantity": q})).collect::<Vec<_>>(),
            "delivery_location": {"lat": order.lat, "lng": order.lng}, "total": order.total}),
        priority: order.priority,
        events: vec![
            (
                CONFIRM_EVENTS[0].into(),
                json!({"order_id": order.order_id, "user_id": order.user_id, "hub_id": order.hub_id, "total": order.total}),
            ),
            (
                CONFIRM_EVENTS[1].into(),
                json!({"order_id": order.order_id, "amount": order.total, "transaction_id": order.transaction_id}),
            ),
        ],
    }
}

/// What one recovery pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovered {
    /// Charged orders confirmed after all.
    pub rolled_forward: usize,
    /// Orders undone and cancelled (or failed, if an undo failed).
    pub compensated: usize,
}

/// What has been done so far (for the compensations).
#[derive(Debug, Default)]
struct Done {
    reservation: Option<ReservationId>,
    order: bool,
    promo: bool,
    charge: Option<(String, i64)>,
}

fn inv_invalid(e: InventoryError) -> Failure {
    Failure::Unavailable(e.to_string())
}

impl<I, P, G, R, C> Checkout<I, P, G, R, C>
where
    I: StockStore,
    P: Promos,
    G: PaymentGateway,
    R: OrderRepo,
    C: Catalog,
{
    /// Runs the saga for `req` under the client's `key`, as order `order_id` (a UUID the caller
    /// generated first; it is also the hold's id), at `now_ms`. Ok: the confirmed order.
    pub async fn run(
        &self,
        req: &CheckoutRequest,
        key: &str,
        order_id: &str,
        now_ms: i64,
    ) -> Result<OrderRecord, SagaError> {
        let fail = |step, failure, compensated| SagaError {
            failure,
            step,
            order_id: order_id.to_string(),
            compensated,
        };
        // Prices from the catalog, before anything is held.
        let mut items = Vec::with_capacity(req.lines.len());
        for l in &req.lines {
            match self.catalog.price(&req.hub_id, &l.sku).await {
                Ok(Some(p)) => items.push((l.sku.clone(), l.name.clone(), l.quantity, p)),
                Ok(None) => {
                    return Err(fail(Step::Price, Failure::UnknownSku(l.sku.clone()), true))
                }
                Err(e) => return Err(fail(Step::Price, Failure::Unavailable(e.to_string()), true)),
            }
        }
        let subtotal: i64 = items.iter().map(|(_, _, q, p)| i64::from(*q) * p).sum();
        let hub = HubId::parse(&req.hub_id).map_err(|e| fail(Step::Price, inv_invalid(e), true))?;
        let mut done = Done::default();
        // The hold's id is the order's (a replayed reserve answers it too), or the cart's hold
        // being taken over, so the pending row names it before anything is held: a crash at
        // any point leaves a row recovery finds.
        let adopted = match &req.reservation_id {
            Some(r) => match self.cart_hold(req, &hub, r).await {
                Ok(rid) => Some(rid),
                Err(f) => {
                    // A retry of a checkout that took the hold over finds it gone: the key's
                    // order answers (the durable guard), else the mismatch does.
                    let existing = self.orders.by_key(&req.user_id, key).await;
                    return Err(match existing {
                        Ok(Some(o)) => {
                            fail(Step::CreateOrder, Failure::Existing(Box::new(o)), true)
                        }
                        _ => fail(Step::ReserveInventory, f, true),
                    });
                }
            },
            None => None,
        };
        let rid = match &adopted {
            Some(r) => r.clone(),
            None => ReservationId::parse(order_id)
                .map_err(|e| fail(Step::Price, inv_invalid(e), true))?,
        };

        // create_order first (a deliberate reordering of 04's steps 1 and 2, see ARCHITECTURE):
        // a crash between the hold and the row would strand stock with no order to find it by.
        let mut order = OrderRecord {
            order_id: order_id.to_string(),
            user_id: req.user_id.clone(),
            idempotency_key: key.to_string(),
            hub_id: req.hub_id.clone(),
            status: OrderStatus::Pending,
            payment_status: "none".into(),
            items: items.clone(),
            subtotal,
            discount: 0,
            total: subtotal,
            reservation_id: Some(rid.to_string()),
            transaction_id: None,
            applied_promos: Vec::new(),
            lat: req.lat,
            lng: req.lng,
            priority: req.priority,
            failed_step: None,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            timeline: Vec::new(),
        };
        match self.orders.create(&order).await {
            Ok(None) => done.order = true,
            // The durable guard: the key already made an order; nothing is held yet.
            Ok(Some(existing)) => {
                return Err(fail(
                    Step::CreateOrder,
                    Failure::Existing(Box::new(existing)),
                    true,
                ))
            }
            Err(e) => {
                return Err(fail(
                    Step::CreateOrder,
                    Failure::Unavailable(e.to_string()),
                    true,
                ))
            }
        }
        self.log(order_id, Step::CreateOrder, "execute", true, now_ms)
            .await;
        self.hooks.at("order_created");

        // reserve_inventory (a cart hold taken over needs nothing more)
        let reserved = match adopted {
            Some(_) => Ok(rid.clone()),
            None => self.reserve(req, order_id, order_id, now_ms).await,
        };
        match reserved {
            Ok(_) => done.reservation = Some(rid.clone()),
            Err(f) => {
                self.log(order_id, Step::ReserveInventory, "execute", false, now_ms)
                    .await;
                // A refusal holds nothing; after an error the hold may exist: release it.
                if !matches!(f, Failure::Stock(_)) {
                    done.reservation = Some(rid.clone());
                }
                let ok = self
                    .compensate(&hub, &mut order, &done, Step::ReserveInventory, now_ms)
                    .await;
                return Err(fail(Step::ReserveInventory, f, ok));
            }
        }
        self.log(order_id, Step::ReserveInventory, "execute", true, now_ms)
            .await;
        self.hooks.at("reserved");
        if self.hooks.past_deadline(now_ms) {
            let ok = self
                .compensate(&hub, &mut order, &done, Step::ApplyPromo, now_ms)
                .await;
            return Err(fail(Step::ApplyPromo, Failure::Deadline, ok));
        }

        // 3. apply_promo: unreachable → no discount, and the release goes out at once.
        let call = PromoCall {
            user_id: req.user_id.clone(),
            order_id: order_id.to_string(),
            subtotal,
            items: items
                .iter()
                .map(|(s, n, q, p)| (s.clone(), n.clone().unwrap_or_default(), *p, *q))
                .collect(),
            area: req.area.clone(),
        };
        match self.promos.apply(&call).await {
            Ok(a) => {
                order.discount = a.discount.clamp(0, subtotal);
                order.applied_promos = a.applied;
                done.promo = !order.applied_promos.is_empty();
                self.log(order_id, Step::ApplyPromo, "execute", true, now_ms)
                    .await;
            }
            Err(_) => {
                let _ = self.promos.release(order_id).await;
                self.log(order_id, Step::ApplyPromo, "execute", false, now_ms)
                    .await;
            }
        }
        order.total = subtotal - order.discount;
        // Recorded as it happens, so recovery after a crash knows what to undo.
        let _ = self.orders.update(&order).await;
        self.hooks.at("promo_applied");
        if self.hooks.past_deadline(now_ms) {
            let ok = self
                .compensate(&hub, &mut order, &done, Step::ChargePayment, now_ms)
                .await;
            return Err(fail(Step::ChargePayment, Failure::Deadline, ok));
        }

        // 4. charge_payment (skipped for a free order).
        if order.total > 0 {
            let mut outcome = Err(PayError::Timeout);
            for attempt in 0..ATTEMPTS {
                if attempt > 0 {
                    self.gateway.backoff(attempt).await;
                }
                outcome = self
                    .gateway
                    .charge(
                        order_id,
                        order.total,
                        &req.currency,
                        req.card_token.as_deref(),
                        order_id,
                    )
                    .await;
                if outcome != Err(PayError::Timeout) {
                    break;
                }
            }
            match outcome {
                Ok(txn) => {
                    order.transaction_id = Some(txn.clone());
                    order.payment_status = "charged".into();
                    done.charge = Some((txn, order.total));
                    // A charge not on record would be a charge without an order after a crash.
                    let _ = self.orders.update(&order).await;
                    self.log(order_id, Step::ChargePayment, "execute", true, now_ms)
                        .await;
                    self.hooks.at("charged");
                }
                Err(e) => {
                    self.log(order_id, Step::ChargePayment, "execute", false, now_ms)
                        .await;
                    if e == PayError::Declined {
                        order.payment_status = "declined".into();
                    }
                    let ok = self
                        .compensate(&hub, &mut order, &done, Step::ChargePayment, now_ms)
                        .await;
                    let f = match e {
                        PayError::Declined => Failure::Declined,
                        PayError::Timeout => Failure::GatewayTimeout,
                    };
                    return Err(fail(Step::ChargePayment, f, ok));
                }
            }
        }

        // 5. confirm_order: the hold (re-reserved once if it lapsed), then one write.
        let confirmed = match self.confirm_hold(req, &hub, &rid, order_id, now_ms).await {
            Ok(Some(new_rid)) => {
                done.reservation = Some(new_rid.clone());
                order.reservation_id = Some(new_rid.to_string());
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(f) => Err(f),
        };
        if let Err(f) = confirmed {
            self.log(order_id, Step::ConfirmOrder, "execute", false, now_ms)
                .await;
            let ok = self
                .compensate(&hub, &mut order, &done, Step::ConfirmOrder, now_ms)
                .await;
            return Err(fail(Step::ConfirmOrder, f, ok));
        }
        self.hooks.at("hold_confirmed");
        order.status = OrderStatus::Confirmed;
        let c = confirmation(&order);
        // The hold is confirmed and the money taken: this write is retried, and recovery rolls
        // forward if it never lands (04).
        let mut written = Err(String::new());
        for _ in 0..ATTEMPTS {
            written = self
                .orders
                .confirm(&order, &c, now_ms)
                .await
                .map_err(|e| e.to_string());
            if written.is_ok() {
                break;
            }
        }
        if let Err(e) = written {
            return Err(fail(Step::ConfirmOrder, Failure::Unavailable(e), false));
        }
        self.log(order_id, Step::ConfirmOrder, "execute", true, now_ms)
            .await;
        self.hooks.at("confirmed");
        Ok(order)
    }

    /// Saga recovery (04 "Background jobs"), the job function: pending orders idle for
    /// `idle_ms` (a process died mid-saga) are finished. A charged one is rolled forward (the
    /// hold confirmed, re-reserved once if it lapsed, and the order written with its dispatch
    /// row and events); if its stock is gone, it is refunded and cancelled. Any other is undone
    /// (promo released, hold released) and cancelled.
    pub async fn recover_once(
        &self,
        now_ms: i64,
        idle_ms: i64,
        limit: usize,
    ) -> Result<Recovered, qc_kit::redis_kit::BackendError> {
        let mut out = Recovered::default();
        for mut order in self.orders.claim_stale(now_ms, idle_ms, limit).await? {
            let hub = match HubId::parse(&order.hub_id) {
                Ok(h) => h,
                Err(_) => continue,
            };
            let rid = order
                .reservation_id
                .as_deref()
                .and_then(|r| ReservationId::parse(r).ok());
            let charged = order.payment_status == "charged" && order.transaction_id.is_some();
            if charged {
                let req = CheckoutRequest {
                    user_id: order.user_id.clone(),
                    hub_id: order.hub_id.clone(),
                    lines: order
                        .items
                        .iter()
                        .map(|(s, n, q, _)| crate::request::Line {
                            sku: s.clone(),
                            name: n.clone(),
                            quantity: *q,
                        })
                        .collect(),
                    method: String::new(),
                    card_token: None,
                    currency: "IDR".into(),
                    lat: order.lat,
                    lng: order.lng,
                    area: None,
                    priority: order.priority,
                    reservation_id: None,
                };
                let held = match &rid {
                    Some(r) => {
                        self.confirm_hold(&req, &hub, r, &order.order_id.clone(), now_ms)
                            .await
                    }
                    None => Err(Failure::ReservationExpired),
                };
                if let Ok(new) = held {
                    if let Some(n) = new {
                        order.reservation_id = Some(n.to_string());
                    }
                    order.status = OrderStatus::Confirmed;
                    let c = confirmation(&order);
                    self.orders.confirm(&order, &c, now_ms).await?;
                    self.log(&order.order_id, Step::ConfirmOrder, "execute", true, now_ms)
                        .await;
                    out.rolled_forward += 1;
                    continue;
                }
            }
            let done = Done {
                reservation: rid,
                order: true,
                // Promo's release is idempotent (nothing held answers 404): always sent.
                promo: true,
                charge: if charged {
                    order.transaction_id.clone().map(|t| (t, order.total))
                } else {
                    None
                },
            };
            let step = if charged {
                Step::ConfirmOrder
            } else {
                Step::ChargePayment
            };
            self.compensate(&hub, &mut order, &done, step, now_ms).await;
            out.compensated += 1;
        }
        Ok(out)
    }

    /// Checks that cart hold `r` is this checkout's: this user's, at this hub, for exactly the
    /// requested items, and still held (or lapsed, which confirm handles by holding again).
    async fn cart_hold(
        &self,
        req: &CheckoutRequest,
        hub: &HubId,
        r: &str,
    ) -> Result<ReservationId, Failure> {
        let rid = ReservationId::parse(r).map_err(|e| Failure::CartHold(e.to_string()))?;
        let Some(hold) = self
            .inventory
            .reservation(hub, &rid)
            .await
            .map_err(|e| Failure::Unavailable(e.to_string()))?
        else {
            return Err(Failure::CartHold("no such hold at this hub".into()));
        };
        let mut want: Vec<(&str, u32)> = req
            .lines
            .iter()
            .map(|l| (l.sku.as_str(), l.quantity))
            .collect();
        want.sort_unstable();
        let have: Vec<(&str, u32)> = hold
            .items
            .iter()
            .map(|i| (i.sku.as_str(), i.quantity))
            .collect();
        if hold.user_id.as_str() != req.user_id {
            return Err(Failure::CartHold("the hold is another user's".into()));
        }
        if have != want {
            return Err(Failure::CartHold(
                "the hold is for other items or quantities".into(),
            ));
        }
        match hold.status {
            ReservationStatus::Reserved | ReservationStatus::Expired => Ok(rid),
            other => Err(Failure::CartHold(format!("the hold is {}", other.as_str()))),
        }
    }

    async fn log(&self, order_id: &str, step: Step, action: &str, ok: bool, now_ms: i64) {
        // The saga log is best effort beside the order's own status.
        let _ = self
            .orders
            .step(order_id, step.as_str(), action, ok, now_ms)
            .await;
    }

    async fn reserve(
        &self,
        req: &CheckoutRequest,
        order_id: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<ReservationId, Failure> {
        let items = req
            .lines
            .iter()
            .map(|l| {
                Ok(Item {
                    sku: Sku::parse(&l.sku)?,
                    quantity: l.quantity,
                })
            })
            .collect::<Result<Vec<_>, InventoryError>>()
            .map_err(inv_invalid)?;
        let rid = ReservationId::parse(order_id)
            .ok()
            .filter(|_| key == order_id)
            .unwrap_or_else(|| {
                ReservationId::from_uuid(uuid::Uuid::new_v5(
                    &uuid::Uuid::NAMESPACE_OID,
                    key.as_bytes(),
                ))
            });
        let cmd = ReserveCommand {
            reservation_id: rid.clone(),
            hub_id: HubId::parse(&req.hub_id).map_err(inv_invalid)?,
            cart_id: CartId::parse(order_id).map_err(inv_invalid)?,
            user_id: UserId::parse(&req.user_id).map_err(inv_invalid)?,
            items,
            ttl_s: self.hold_ttl_s,
            idempotency_key: Some(IdempotencyKey::parse(key).map_err(inv_invalid)?),
        };
        match self.inventory.reserve(now_ms, &cmd).await {
            Ok(ReserveOutcome::Reserved { .. }) => Ok(rid),
            Ok(ReserveOutcome::Replay { reservation_id }) => Ok(reservation_id),
            Err(
                e @ (InventoryError::InsufficientStock { .. } | InventoryError::SkuNotFound { .. }),
            ) => Err(Failure::Stock(e)),
            Err(e) => Err(Failure::Unavailable(e.to_string())),
        }
    }

    /// Confirms the hold; if it lapsed, reserves again once (key `<order_id>:retry`) and
    /// confirms that. Ok(Some(id)) when a new hold was taken.
    async fn confirm_hold(
        &self,
        req: &CheckoutRequest,
        hub: &HubId,
        rid: &ReservationId,
        order_id: &str,
        now_ms: i64,
    ) -> Result<Option<ReservationId>, Failure> {
        let confirm = |r: ReservationId| async move {
            self.inventory
                .transition(now_ms, hub, &r, Action::Confirm)
                .await
                .map_err(|e| Failure::Unavailable(e.to_string()))
        };
        match confirm(rid.clone()).await? {
            TransitionOutcome::Done | TransitionOutcome::Already(_) => return Ok(None),
            TransitionOutcome::Expired | TransitionOutcome::NotFound => {}
            other => return Err(Failure::Unavailable(format!("confirm answered {other:?}"))),
        }
        let retry = self
            .reserve(req, order_id, &format!("{order_id}:retry"), now_ms)
            .await
            .map_err(|f| match f {
                Failure::Stock(_) => Failure::ReservationExpired,
                other => other,
            })?;
        match confirm(retry.clone()).await? {
            TransitionOutcome::Done | TransitionOutcome::Already(_) => Ok(Some(retry)),
            _ => Err(Failure::ReservationExpired),
        }
    }

    /// Undoes the executed steps in reverse (each up to three times); true if all succeeded.
    async fn compensate(
        &self,
        hub: &HubId,
        order: &mut OrderRecord,
        done: &Done,
        failed: Step,
        now_ms: i64,
    ) -> bool {
        order.failed_step = Some(failed.as_str().to_string());
        let mut all_ok = true;
        if let Some((txn, amount)) = &done.charge {
            let key = format!("refund:{}", order.order_id);
            let mut ok = false;
            for _ in 0..ATTEMPTS {
                if self.gateway.refund(txn, *amount, &key).await.is_ok() {
                    ok = true;
                    break;
                }
            }
            if ok {
                order.payment_status = "refunded".into();
            }
            all_ok &= ok;
            self.log(
                &order.order_id,
                Step::ChargePayment,
                "compensate",
                ok,
                now_ms,
            )
            .await;
        }
        if done.promo {
            let mut ok = false;
            for _ in 0..ATTEMPTS {
                if self.promos.release(&order.order_id).await.is_ok() {
                    ok = true;
                    break;
                }
            }
            all_ok &= ok;
            self.log(&order.order_id, Step::ApplyPromo, "compensate", ok, now_ms)
                .await;
        }
        if let Some(rid) = &done.reservation {
            let mut ok = false;
            for _ in 0..ATTEMPTS {
                match self
                    .inventory
                    .transition(now_ms, hub, rid, Action::Release)
                    .await
                {
                    // Released now, already released or expired, or never held: nothing held.
                    Ok(_) => {
                        ok = true;
                        break;
                    }
                    Err(_) => continue,
                }
            }
            all_ok &= ok;
            if done.order {
                self.log(
                    &order.order_id,
                    Step::ReserveInventory,
                    "compensate",
                    ok,
                    now_ms,
                )
                .await;
            }
        }
        if done.order {
            order.status = if all_ok {
                OrderStatus::Cancelled
            } else {
                OrderStatus::Failed
            };
            let _ = self.orders.update(order).await;
        }
        all_ok
    }
}
