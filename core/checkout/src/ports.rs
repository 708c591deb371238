//! The saga's ports (04): the catalog's prices, promos, the payment gateway and the order
//! repository (order, saga log, `dispatch_queue` row and outbox events written together).
//! Inventory is the inventory core's own port (`qc_inventory::StockStore`). Memory adapters
//! here; the gateway simulator follows 04 ("`tok_decline` → declined, `tok_timeout` → every
//! attempt times out, else success, `txn_<order_id>`").

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex;

use qc_kit::redis_kit::BackendError;
use serde_json::Value;

/// Prices from the server (04 "Prices from the server, not the client").
pub trait Catalog: Send + Sync {
    /// The unit price of `sku` at `hub`, rupiah; None if the catalog does not sell it.
    fn price(
        &self,
        hub: &str,
        sku: &str,
    ) -> impl Future<Output = Result<Option<i64>, BackendError>> + Send;
}

/// A configured price list (one price per SKU, every hub): what the service uses until the
/// Catalog service fills this port.
#[derive(Debug, Clone, Default)]
pub struct PriceList(pub BTreeMap<String, i64>);

impl Catalog for PriceList {
    async fn price(&self, _hub: &str, sku: &str) -> Result<Option<i64>, BackendError> {
        Ok(self.0.get(sku).copied())
    }
}

/// What Promo answered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PromoAnswer {
    pub discount: i64,
    pub applied: Vec<String>,
}

/// The cart Promo sees.
#[derive(Debug, Clone, PartialEq)]
pub struct PromoCall {
    pub user_id: String,
    pub order_id: String,
    pub subtotal: i64,
    /// (sku, name, unit price, quantity)
    pub items: Vec<(String, String, i64, u32)>,
    pub area: Option<String>,
}

pub trait Promos: Send + Sync {
    /// Promo's `apply` with the order id as the key; Err = unreachable (the saga goes on with no
    /// discount and releases at once).
    fn apply(&self, call: &PromoCall) -> impl Future<Output = Result<PromoAnswer, String>> + Send;
    fn release(&self, order_id: &str) -> impl Future<Output = Result<(), String>> + Send;
}

/// No promotions (discount 0).
#[derive(Debug, Clone, Default)]
pub struct NoPromos;

impl Promos for NoPromos {
    async fn apply(&self, _call: &PromoCall) -> Result<PromoAnswer, String> {
        Ok(PromoAnswer::default())
    }
    async fn release(&self, _order_id: &str) -> Result<(), String> {
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayError {
    #[error("declined")]
    Declined,
    #[error("gateway timed out")]
    Timeout,
}

pub trait PaymentGateway: Send + Sync {
    /// Charges `amount`; the same `key` never charges twice. Returns the transaction id.
    fn charge(
        &self,
        order_id: &str,
        amount: i64,
        currency: &str,
        card_token: Option<&str>,
        key: &str,
    ) -> impl Future<Output = Result<String, PayError>> + Send;
    fn refund(
        &self,
        transaction_id: &str,
        amount: i64,
        key: &str,
    ) -> impl Future<Output = Result<(), PayError>> + Send;
    /// The pause before charge attempt `attempt` (1, 2) after a timeout: 04's 200/400 ms for a
    /// gateway over the network; none for the simulator (the twin's time is virtual).
    fn backoff(&self, _attempt: usize) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// 04's gateway simulator, keeping its ledger (charges and refunds by key).
#[derive(Debug, Default)]
pub struct SimulatedGateway {
    pub charges: Mutex<BTreeMap<String, (String, i64)>>,
    pub refunds: Mutex<BTreeMap<String, (String, i64)>>,
}

impl PaymentGateway for SimulatedGateway {
    async fn charge(
        &self,
        order_id: &str,
        amount: i64,
        _currency: &str,
        card_token: Option<&str>,
        key: &str,
    ) -> Result<String, PayError> {
        let token = card_token.unwrap_or("");
        if token.starts_with("tok_decline") {
            return Err(PayError::Declined);
        }
        if token.starts_with("tok_timeout") {
            return Err(PayError::Timeout);
        }
        let mut c = self.charges.lock().unwrap_or_else(|p| p.into_inner());
        let txn = c
            .entry(key.to_string())
            .or_insert_with(|| (format!("txn_{order_id}"), amount));
        Ok(txn.0.clone())
    }

    async fn refund(&self, transaction_id: &str, amount: i64, key: &str) -> Result<(), PayError> {
        self.refunds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_string())
            .or_insert_with(|| (transaction_id.to_string(), amount));
        Ok(())
    }
}

/// 04's state machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Cancelled,
    Failed,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }
}

/// An order as the repository holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRecord {
    pub order_id: String,
    pub user_id: String,
    pub idempotency_key: String,
    pub hub_id: String,
    pub status: OrderStatus,
    pub payment_status: String,
    /// (sku, name, quantity, unit price)
    pub items: Vec<(String, Option<String>, u32, i64)>,
    pub subtotal: i64,
    pub discount: i64,
    pub total: i64,
    pub reservation_id: Option<String>,
    pub transaction_id: Option<String>,
    pub applied_promos: Vec<String>,
    pub lat: f64,
    pub lng: f64,
    pub priority: u8,
    pub failed_step: Option<String>,
    pub created_at_ms: i64,
    /// When the order last changed (the memory adapter's clock for recovery; Postgres keeps
    /// its own `updated_at`).
    pub updated_at_ms: i64,
    /// (step, action, ok, at)
    pub timeline: Vec<(String, String, bool, i64)>,
}

/// The event rows written with a confirmation (and the `dispatch_queue` payload).
#[derive(Debug, Clone, PartialEq)]
pub struct Confirmation {
    pub dispatch_payload: Value,
    pub priority: u8,
    /// (event type, payload)
    pub events: Vec<(String, Value)>,
}

pub trait OrderRepo: Send + Sync {
    /// Stores a new pending order; if `(user_id, idempotency_key)` exists, returns that order
    /// instead (the durable idempotency guard).
    fn create(
        &self,
        order: &OrderRecord,
    ) -> impl Future<Output = Result<Option<OrderRecord>, BackendError>> + Send;
    fn get(
        &self,
        order_id: &str,
    ) -> impl Future<Output = Result<Option<OrderRecord>, BackendError>> + Send;
    /// The order a user's idempotency key made, if any (the durable guard, read).
    fn by_key(
        &self,
        user_id: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<OrderRecord>, BackendError>> + Send;
    /// Appends to the saga log.
    fn step(
        &self,
        order_id: &str,
        step: &str,
        action: &str,
        ok: bool,
        at_ms: i64,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
    /// Writes the mutable fields of `order` (status, payment, promo, ids).
    fn update(&self, order: &OrderRecord) -> impl Future<Output = Result<(), BackendError>> + Send;
    /// The order's `dispatch_queue` payload and priority, if it has a row.
    fn queued(
        &self,
        order_id: &str,
    ) -> impl Future<Output = Result<Option<(Value, u8)>, BackendError>> + Send;
    /// The order's outbox event types, in the order written.
    fn events(
        &self,
        order_id: &str,
    ) -> impl Future<Output = Result<Vec<String>, BackendError>> + Send;
    /// Pending orders not updated for `idle_ms`, oldest first, claimed (their update time moved
    /// to now, so another recovery pass does not take them at the same time).
    fn claim_stale(
        &self,
        now_ms: i64,
        idle_ms: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OrderRecord>, BackendError>> + Send;
    /// In one transaction: the order confirmed, its `dispatch_queue` row and its outbox events.
    fn confirm(
        &self,
        order: &OrderRecord,
        c: &Confirmation,
        at_ms: i64,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
}

#[derive(Debug, Default)]
struct Book {
    orders: HashMap<String, OrderRecord>,
    by_key: HashMap<(String, String), String>,
    /// order id → (payload, priority)
    /// order id → (payload as JSON text, as the table keeps it; priority)
    dispatch_queue: BTreeMap<String, (String, u8)>,
    /// Payment events applied, by transaction id.
    processed: std::collections::BTreeSet<String>,
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// In-process order repository (the twin's, and the tests').
#[derive(Debug, Default)]
pub struct MemoryOrders {
    book: Mutex<Book>,
    /// The outbox rows, relayed by `outbox::relay_once` over this repository.
    events: crate::outbox::MemoryOutbox,
}

impl MemoryOrders {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `dispatch_queue` rows, by order id.
    pub fn dispatch_queue(&self) -> BTreeMap<String, (Value, u8)> {
        self.lock()
            .dispatch_queue
            .iter()
            .map(|(k, (p, n))| (k.clone(), (parse(p), *n)))
            .collect()
    }

    /// The outbox events in the order written: (order id, event type, payload).
    pub fn outbox(&self) -> Vec<(String, String, Value)> {
        self.events
            .events()
            .into_iter()
            .map(|(e, _)| (e.aggregate_id, e.event_type, e.payload))
            .collect()
    }

    /// Adds an outbox row with the Postgres adapter's deterministic id (once per id).
    fn add_event(&self, order_id: &str, i: usize, kind: &str, payload: &Value, at_ms: i64) {
        let id = uuid::Uuid::parse_str(order_id)
            .map(|o| uuid::Uuid::new_v5(&o, format!("{i}:{kind}").as_bytes()).to_string())
            .unwrap_or_else(|_| format!("{order_id}:{i}:{kind}"));
        self.events.add(
            crate::outbox::OutboxEvent {
                event_id: id,
                aggregate_id: order_id.to_string(),
                event_type: kind.to_string(),
                payload: payload.clone(),
                created_at_ms: at_ms,
                attempts: 0,
            },
            at_ms,
        );
    }
}

impl crate::outbox::Outbox for MemoryOrders {
    async fn claim_due(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<crate::outbox::OutboxEvent>, BackendError> {
        self.events.claim_due(now_ms, limit).await
    }

    async fn mark_sent(&self, event_id: &str, now_ms: i64) -> Result<(), BackendError> {
        self.events.mark_sent(event_id, now_ms).await
    }

    async fn mark_failed(
        &self,
        event_id: &str,
        attempts: i32,
        next_ms: i64,
        dead: bool,
        error: &str,
    ) -> Result<(), BackendError> {
        self.events
            .mark_failed(event_id, attempts, next_ms, dead, error)
            .await
    }
}

impl OrderRepo for MemoryOrders {
    async fn create(&self, order: &OrderRecord) -> Result<Option<OrderRecord>, BackendError> {
        let mut b = self.lock();
        let key = (order.user_id.clone(), order.idempotency_key.clone());
        if let Some(existing) = b.by_key.get(&key).and_then(|id| b.orders.get(id)) {
            return Ok(Some(existing.clone()));
        }
        b.by_key.insert(key, order.order_id.clone());
        b.orders.insert(order.order_id.clone(), order.clone());
        Ok(None)
    }

    async fn get(&self, order_id: &str) -> Result<Option<OrderRecord>, BackendError> {
        Ok(self.lock().orders.get(order_id).cloned())
    }

    async fn by_key(&self, user_id: &str, key: &str) -> Result<Option<OrderRecord>, BackendError> {
        let b = self.lock();
        Ok(b.by_key
            .get(&(user_id.to_string(), key.to_string()))
            .and_then(|id| b.orders.get(id))
            .cloned())
    }

    async fn step(
        &self,
        order_id: &str,
        step: &str,
        action: &str,
        ok: bool,
        at_ms: i64,
    ) -> Result<(), BackendError> {
        if let Some(o) = self.lock().orders.get_mut(order_id) {
            o.timeline
                .push((step.to_string(), action.to_string(), ok, at_ms));
        }
        Ok(())
    }

    async fn update(&self, order: &OrderRecord) -> Result<(), BackendError> {
        if let Some(o) = self.lock().orders.get_mut(&order.order_id) {
            let timeline = std::mem::take(&mut o.timeline);
            *o = order.clone();
            o.timeline = timeline;
        }
        Ok(())
    }

    async fn queued(&self, order_id: &str) -> Result<Option<(Value, u8)>, BackendError> {
        Ok(self
            .lock()
            .dispatch_queue
            .get(order_id)
            .map(|(p, n)| (parse(p), *n)))
    }

    async fn claim_stale(
        &self,
        now_ms: i64,
        idle_ms: i64,
        limit: usize,
    ) -> Result<Vec<OrderRecord>, BackendError> {
        let mut b = self.lock();
        let mut stale: Vec<&mut OrderRecord> = b
            .orders
            .values_mut()
            .filter(|o| o.status == OrderStatus::Pending && o.updated_at_ms <= now_ms - idle_ms)
            .collect();
        stale.sort_by(|a, b| (a.created_at_ms, &a.order_id).cmp(&(b.created_at_ms, &b.order_id)));
        Ok(stale
            .into_iter()
            .take(limit)
            .map(|o| {
                o.updated_at_ms = now_ms;
                o.clone()
            })
            .collect())
    }

    async fn events(&self, order_id: &str) -> Result<Vec<String>, BackendError> {
        Ok(self
            .outbox()
            .into_iter()
            .filter(|e| e.0 == order_id)
            .map(|e| e.1)
            .collect())
    }

    async fn confirm(
        &self,
        order: &OrderRecord,
        c: &Confirmation,
        at_ms: i64,
    ) -> Result<(), BackendError> {
        let mut b = self.lock();
        if let Some(o) = b.orders.get_mut(&order.order_id) {
            let timeline = std::mem::take(&mut o.timeline);
            *o = order.clone();
            o.timeline = timeline;
        }
        // Once per order, as the Postgres adapter's deterministic event ids make it.
        if !b.dispatch_queue.contains_key(&order.order_id) {
            b.dispatch_queue.insert(
                order.order_id.clone(),
                (c.dispatch_payload.to_string(), c.priority),
            );
            drop(b);
            for (i, (t, p)) in c.events.iter().enumerate() {
                self.add_event(&order.order_id, i, t, p, at_ms);
            }
        }
        Ok(())
    }
}

impl crate::webhook::PaymentEvents for MemoryOrders {
    async fn apply_payment_event(
        &self,
        e: &crate::webhook::PaymentEvent,
        now_ms: i64,
    ) -> Result<crate::webhook::Applied, BackendError> {
        use crate::webhook::Applied;
        let mut b = self.lock();
        if b.processed.contains(&e.transaction_id) {
            return Ok(Applied::AlreadyProcessed);
        }
        let Some(o) = b.orders.get_mut(&e.order_id) else {
            return Ok(Applied::UnknownOrder);
        };
        if o.total != e.amount || e.currency != "IDR" {
            return Ok(Applied::AmountMismatch);
        }
        let (payment, event) = crate::webhook::transition(o.status.as_str(), e.succeeded);
        o.payment_status = payment.to_string();
        let payload = serde_json::json!({"order_id": e.order_id, "transaction_id": e.transaction_id,
                                         "amount": e.amount});
        b.processed.insert(e.transaction_id.clone());
        drop(b);
        // The Postgres adapter's id for a webhook's event.
        let id = uuid::Uuid::parse_str(&e.order_id)
            .map(|o| {
                uuid::Uuid::new_v5(
                    &o,
                    format!("webhook:{}:{event}", e.transaction_id).as_bytes(),
                )
                .to_string()
            })
            .unwrap_or_else(|_| format!("webhook:{}:{event}", e.transaction_id));
        self.events.add(
            crate::outbox::OutboxEvent {
                event_id: id,
                aggregate_id: e.order_id.clone(),
                event_type: event.to_string(),
                payload,
                created_at_ms: now_ms,
                attempts: 0,
            },
            now_ms,
        );
        Ok(Applied::Done)
    }
}
