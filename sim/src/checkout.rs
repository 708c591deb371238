//! Checkout in the twin (issue #13): every paying shopper's order is the JSON a client sends,
//! run through the production `qc_checkout::flow::checkout` (the key's stored answer or lease,
//! the saga taking over the cart's hold, promo, charge, confirm with the `dispatch_queue` row
//! and outbox events; compensations) and the production outbox relay. Memory adapters, or in
//! live mode the Postgres order repository, Redis idempotency and the Redis event stream. The
//! twin only decides what shoppers do (decline, gateway down, retry, double tap) and measures.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;

use qc_checkout::flow::{self, Answer};
use qc_checkout::idempotency::{
    request_hash, Begin, IdempotencyStore, MemoryIdempotency, RedisIdempotency, Stored,
};
use qc_checkout::outbox::{relay_once, EventSink, MemorySink, Outbox, OutboxEvent, RedisSink};
use qc_checkout::ports::{Confirmation, PayError};
use qc_checkout::{
    Checkout, CheckoutRequest, MemoryOrders, OrderRecord, OrderRepo, OrderStatus, PaymentGateway,
    PgOrders, PriceList, SimulatedGateway,
};
use qc_inventory::StockStore;
use qc_kit::redis_kit::BackendError;
use reports::summary::CheckoutInfo;
use serde_json::Value;

use crate::promo::TwinPromos;

/// The order repository of a run. Delegation only.
pub enum TwinOrders {
    Memory(MemoryOrders),
    Pg(PgOrders),
}

macro_rules! both {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Self::Memory($s) => $e,
            Self::Pg($s) => $e,
        }
    };
}

impl OrderRepo for TwinOrders {
    async fn create(&self, o: &OrderRecord) -> Result<Option<OrderRecord>, BackendError> {
        both!(self, r => r.create(o).await)
    }
    async fn get(&self, id: &str) -> Result<Option<OrderRecord>, BackendError> {
        both!(self, r => r.get(id).await)
    }
    async fn by_key(&self, user: &str, key: &str) -> Result<Option<OrderRecord>, BackendError> {
        both!(self, r => r.by_key(user, key).await)
    }
    async fn step(
        &self,
        id: &str,
        step: &str,
        action: &str,
        ok: bool,
        at: i64,
    ) -> Result<(), BackendError> {
        both!(self, r => r.step(id, step, action, ok, at).await)
    }
    async fn update(&self, o: &OrderRecord) -> Result<(), BackendError> {
        both!(self, r => r.update(o).await)
    }
    async fn queued(&self, id: &str) -> Result<Option<(Value, u8)>, BackendError> {
        both!(self, r => r.queued(id).await)
    }
    async fn events(&self, id: &str) -> Result<Vec<String>, BackendError> {
        both!(self, r => r.events(id).await)
    }
    async fn claim_stale(
        &self,
        now: i64,
        idle: i64,
        limit: usize,
    ) -> Result<Vec<OrderRecord>, BackendError> {
        both!(self, r => r.claim_stale(now, idle, limit).await)
    }
    async fn confirm(
        &self,
        o: &OrderRecord,
        c: &Confirmation,
        at: i64,
    ) -> Result<(), BackendError> {
        both!(self, r => r.confirm(o, c, at).await)
    }
}

impl Outbox for TwinOrders {
    async fn claim_due(&self, now: i64, limit: usize) -> Result<Vec<OutboxEvent>, BackendError> {
        both!(self, r => r.claim_due(now, limit).await)
    }
    async fn mark_sent(&self, id: &str, now: i64) -> Result<(), BackendError> {
        both!(self, r => r.mark_sent(id, now).await)
    }
    async fn mark_failed(
        &self,
        id: &str,
        attempts: i32,
        next: i64,
        dead: bool,
        error: &str,
    ) -> Result<(), BackendError> {
        both!(self, r => r.mark_failed(id, attempts, next, dead, error).await)
    }
}

/// The idempotency store of a run.
pub enum TwinIdem {
    Memory(MemoryIdempotency),
    Redis(RedisIdempotency),
}

impl IdempotencyStore for TwinIdem {
    async fn begin(
        &self,
        user: &str,
        key: &str,
        token: &str,
        now: i64,
    ) -> Result<Begin, BackendError> {
        match self {
            Self::Memory(s) => s.begin(user, key, token, now).await,
            Self::Redis(s) => s.begin(user, key, token, now).await,
        }
    }
    async fn finish(
        &self,
        user: &str,
        key: &str,
        token: &str,
        outcome: Option<&Stored>,
        now: i64,
    ) -> Result<(), BackendError> {
        match self {
            Self::Memory(s) => s.finish(user, key, token, outcome, now).await,
            Self::Redis(s) => s.finish(user, key, token, outcome, now).await,
        }
    }
}

/// 04's gateway simulator, which the twin can take down for one checkout (every attempt then
/// times out).
#[derive(Debug, Default)]
pub struct TwinGateway {
    pub ledger: SimulatedGateway,
    pub down: AtomicBool,
}

impl PaymentGateway for TwinGateway {
    async fn charge(
        &self,
        order_id: &str,
        amount: i64,
        currency: &str,
        card_token: Option<&str>,
        key: &str,
    ) -> Result<String, PayError> {
        if self.down.load(Ordering::Relaxed) {
            return Err(PayError::Timeout);
        }
        self.ledger
            .charge(order_id, amount, currency, card_token, key)
            .await
    }
    async fn refund(&self, txn: &str, amount: i64, key: &str) -> Result<(), PayError> {
        self.ledger.refund(txn, amount, key).await
    }
}

/// Where relayed events go: memory, or the run's Redis stream. Records each event's lag.
pub struct TwinSink {
    target: SinkTarget,
    /// The virtual clock, set before each relay pass.
    now_ms: AtomicI64,
    lags: Mutex<Vec<i64>>,
}

enum SinkTarget {
    Memory(MemorySink),
    Redis(RedisSink),
}

impl EventSink for TwinSink {
    async fn publish(&self, e: &OutboxEvent) -> Result<(), String> {
        match &self.target {
            SinkTarget::Memory(s) => s.publish(e).await?,
            SinkTarget::Redis(s) => s.publish(e).await?,
        }
        let lag = self.now_ms.load(Ordering::Relaxed) - e.created_at_ms;
        self.lags
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(lag);
        Ok(())
    }
}

pub type TwinSaga<'a, S> = Checkout<&'a S, TwinPromos, TwinGateway, TwinOrders, PriceList>;

/// Checkout's production parts in a run, and what the twin measured of them.
pub struct CheckoutTwin<'a, S: StockStore> {
    pub saga: TwinSaga<'a, S>,
    pub idem: TwinIdem,
    pub sink: TwinSink,
    pub info: CheckoutInfo,
    /// Confirmed order ids, for the end-of-run audit.
    pub confirmed_ids: Vec<String>,
}

impl<'a, S: StockStore> CheckoutTwin<'a, S> {
    /// Memory adapters; `prices` is the catalog the saga prices from.
    pub fn new(store: &'a S, prices: PriceList, hold_ttl_s: u32) -> Self {
        Self {
            saga: Checkout {
                inventory: store,
                promos: TwinPromos::new(None),
                gateway: TwinGateway::default(),
                orders: TwinOrders::Memory(MemoryOrders::new()),
                catalog: prices,
                hold_ttl_s,
                hooks: Default::default(),
            },
            idem: TwinIdem::Memory(MemoryIdempotency::default()),
            sink: TwinSink {
                target: SinkTarget::Memory(MemorySink::default()),
                now_ms: AtomicI64::new(0),
                lags: Mutex::new(Vec::new()),
            },
            info: CheckoutInfo::default(),
            confirmed_ids: Vec::new(),
        }
    }

    /// Live mode: orders in Postgres, keys and the event stream in Redis (before any order).
    pub fn go_live(
        &mut self,
        pool: sqlx::PgPool,
        conn: redis::aio::ConnectionManager,
        prefix: qc_kit::redis_kit::KeyPrefix,
    ) {
        self.saga.orders = TwinOrders::Pg(PgOrders::new(pool));
        self.sink.target = SinkTarget::Redis(RedisSink {
            conn: conn.clone(),
            stream: prefix.key("checkout:events"),
            timeout_ms: 5000,
        });
        self.idem = TwinIdem::Redis(RedisIdempotency {
            conn,
            prefix,
            timeout_ms: 5000,
            scope: "checkout",
        });
    }

    /// One checkout call as a client makes it: `body` under `key`, the saga (if it runs) as
    /// order `order_id`, the gateway down for this call or not.
    pub async fn call(
        &self,
        body: &Value,
        key: &str,
        token: &str,
        order_id: &str,
        gateway_down: bool,
        now_ms: i64,
    ) -> Result<Answer, String> {
        let req = CheckoutRequest::parse(body).map_err(|e| e.to_string())?;
        self.saga
            .gateway
            .down
            .store(gateway_down, Ordering::Relaxed);
        self.saga.promos.now_ms.store(now_ms, Ordering::Relaxed);
        flow::checkout(
            &self.saga,
            &self.idem,
            &req,
            key,
            &request_hash(body),
            token,
            order_id,
            now_ms,
        )
        .await
        .map_err(|e| e.to_string())
    }

    /// Counts one answer (a retry when `retry`).
    pub fn record(&mut self, a: &Answer, retry: bool) {
        let i = &mut self.info;
        i.calls += 1;
        i.retries += u64::from(retry);
        i.replays += u64::from(a.replayed);
        match &a.saga {
            Some(Ok(o)) => {
                i.sagas += 1;
                i.confirmed += 1;
                i.events += qc_checkout::saga::CONFIRM_EVENTS.len() as u64;
                self.confirmed_ids.push(o.order_id.clone());
            }
            Some(Err(e)) if !matches!(e.failure, qc_checkout::Failure::Existing(_)) => {
                i.sagas += 1;
                *i.failed_by_step
                    .entry(e.step.as_str().to_string())
                    .or_default() += 1;
                *i.failed_by_code
                    .entry(a.code().unwrap_or("?").to_string())
                    .or_default() += 1;
                if e.compensated {
                    i.compensated += 1;
                } else {
                    i.compensation_failures += 1;
                }
            }
            _ => {}
        }
    }

    /// One relay pass at `now_ms`; true while events are still waiting.
    pub async fn relay(&self, now_ms: i64) -> Result<bool, String> {
        self.sink.now_ms.store(now_ms, Ordering::Relaxed);
        relay_once(&self.saga.orders, &self.sink, now_ms, 1000)
            .await
            .map_err(|e| e.to_string())?;
        let sent = self
            .sink
            .lags
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        Ok((sent as u64) < self.info.events)
    }

    /// The end-of-run audit over the gateway's ledger and the order repository: charges with
    /// neither a confirmed order nor a refund, and confirmed orders without a dispatch row.
    pub async fn audit(&self) -> Result<(u64, u64), String> {
        let e = |e: BackendError| e.to_string();
        let charges = self
            .saga
            .gateway
            .ledger
            .charges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let refunds = self
            .saga
            .gateway
            .ledger
            .refunds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut orphan = 0;
        for (order_id, (txn, amount)) in &charges {
            let o = self.saga.orders.get(order_id).await.map_err(e)?;
            let ok = o.is_some_and(|o| {
                o.status == OrderStatus::Confirmed
                    && o.transaction_id.as_deref() == Some(txn.as_str())
                    && o.total == *amount
            });
            if !ok && !refunds.contains_key(&format!("refund:{order_id}")) {
                orphan += 1;
            }
        }
        let mut unqueued = 0;
        for id in &self.confirmed_ids {
            if self.saga.orders.queued(id).await.map_err(e)?.is_none() {
                unqueued += 1;
            }
        }
        Ok((orphan, unqueued))
    }

    /// The `checkout` section of `summary.json`.
    pub fn summarise(&self, audit: (u64, u64)) -> CheckoutInfo {
        let mut info = self.info.clone();
        info.conversion = if info.sagas > 0 {
            (info.confirmed as f64 / info.sagas as f64 * 10_000.0).round() / 10_000.0
        } else {
            0.0
        };
        let mut lags = self
            .sink
            .lags
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        lags.sort_unstable();
        info.events_sent = lags.len() as u64;
        info.outbox_lag_p50_ms = lags.get(lags.len() / 2).copied().unwrap_or(0);
        info.outbox_lag_max_ms = lags.last().copied().unwrap_or(0);
        (
            info.charges_without_order,
            info.confirmed_without_dispatch_row,
        ) = audit;
        info
    }
}

/// The JSON a shopper's app sends to check out order `lines` (sku, quantity) from `hub`.
#[allow(clippy::too_many_arguments)]
pub fn body(
    user: &str,
    hub: &str,
    lines: &[(String, u32)],
    card_token: &str,
    lat: f64,
    lng: f64,
    reservation_id: Option<&str>,
) -> Value {
    let mut b = serde_json::json!({"user_id": user, "hub_id": hub,
        "items": lines.iter().map(|(s, q)| serde_json::json!({"sku": s, "quantity": q})).collect::<Vec<_>>(),
        "payment": {"method": "card", "card_token": card_token},
        "delivery_location": {"lat": lat, "lng": lng}});
    if let Some(r) = reservation_id {
        b["reservation_id"] = Value::String(r.to_string());
    }
    b
}

/// Prices per SKU name, as the catalog port reads them.
pub fn price_list(skus: &[String], price: impl Fn(usize) -> i64) -> PriceList {
    PriceList(
        skus.iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), price(i)))
            .collect::<BTreeMap<_, _>>(),
    )
}
