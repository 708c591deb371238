//! The Checkout service (04-checkout, port 8094): `POST /api/v1/checkout` runs the `qc-checkout`
//! saga (stock through the inventory core's Redis scripts, orders in Postgres with their
//! `dispatch_queue` row and outbox events, promos over Promo's HTTP API, payments through the
//! gateway port — 04's simulator until a real gateway is configured), idempotent per user and
//! key; payment webhooks; order reads with an ownership check; the outbox relay loop.

mod handlers;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use qc_checkout::idempotency::RedisIdempotency;
use qc_checkout::outbox::{relay_once, RedisSink};
use qc_checkout::ports::PayError;
use qc_checkout::saga::SagaHooks;
use qc_checkout::{
    Checkout, PaymentGateway, PgOrders, PriceList, PromoAnswer, PromoCall, Promos, SimulatedGateway,
};
use qc_inventory::store::HoldPolicy;
use qc_inventory::RedisStore;
use qc_kit::config::{ConfigError, EnvReader, EnvSource};
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::SharedClock;
use serde_json::json;

use crate::platform::config::{PlatformConfig, ServiceId};
use crate::platform::ops::ServiceCtx;
use crate::platform::server::{assemble, open_service, BuiltService};
use crate::platform::shutdown::Shutdown;

/// `CHECKOUT_*` settings (04).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckoutSettings {
    pub hold_ttl_s: u32,
    /// `WEBHOOK_SECRET` (≥ 16 bytes; production refuses the development value).
    pub webhook_secret: String,
    /// Where Promo is; empty = no promotions.
    pub promo_url: Option<String>,
    /// `CHECKOUT_PRICES`: the price list (JSON `{"sku": rupiah}`, inline or `@path`) the catalog
    /// port reads until the Catalog service fills it.
    pub prices: BTreeMap<String, i64>,
    pub saga_deadline_ms: u64,
    pub relay_ms: u64,
    /// `CHECKOUT_PAYMENT_GATEWAY_URL`; unset: 04's simulator in process.
    pub gateway_url: Option<String>,
    /// `CATALOG_URL`: prices from the Catalog service (the hub's price in force, else the
    /// base); unset: `CHECKOUT_PRICES`.
    pub catalog_url: Option<String>,
    /// `CHECKOUT_RECOVERY_MS` (30 s) and `CHECKOUT_RECOVERY_IDLE_MS` (60 s): how often saga
    /// recovery runs and how long a pending order must have been idle to be taken over.
    pub recovery_ms: u64,
    pub recovery_idle_ms: u64,
    /// `CHECKOUT_FAILPOINT` (ENV=test only): the saga point (`qc_checkout::saga::POINTS`) where
    /// the process prints `FAILPOINT <point>` to stderr and stops working, so a
    /// crash test can `kill -9` it there.
    pub failpoint: Option<String>,
}

pub const DEV_WEBHOOK_SECRET: &str = "dev-only-webhook-secret-0123";

fn parse_prices(v: &str) -> Result<BTreeMap<String, i64>, String> {
    let text = match v.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?,
        None => v.to_string(),
    };
    let map: BTreeMap<String, i64> =
        serde_json::from_str(&text).map_err(|e| format!("expected {{\"sku\": rupiah}}: {e}"))?;
    if map
        .values()
        .any(|p| !(0..=qc_checkout::request::MAX_UNIT_PRICE).contains(p))
    {
        return Err("prices must be within 0..=100000000".into());
    }
    Ok(map)
}

impl CheckoutSettings {
    pub fn read(r: &mut EnvReader<'_>, env_name: &str) -> Self {
        let production = env_name == "production";
        let prices = r.checked("CHECKOUT_PRICES", "{}", |v| parse_prices(v).map(|_| ()));
        Self {
            hold_ttl_s: r.number("CHECKOUT_RESERVATION_TTL_SECS", 900, 60, 3600),
            webhook_secret: r.secret("WEBHOOK_SECRET", DEV_WEBHOOK_SECRET, production),
            promo_url: Some(r.string("PROMO_URL", "http://127.0.0.1:8095"))
                .filter(|u| !u.is_empty()),
            prices: parse_prices(&prices).unwrap_or_default(),
            saga_deadline_ms: r.number("CHECKOUT_SAGA_DEADLINE_MS", 20_000, 100, 120_000),
            relay_ms: r.number("CHECKOUT_RELAY_MS", 1000, 10, 60_000),
            gateway_url: Some(r.string("CHECKOUT_PAYMENT_GATEWAY_URL", ""))
                .filter(|u| !u.is_empty()),
            catalog_url: Some(r.string("CATALOG_URL", "")).filter(|u| !u.is_empty()),
            recovery_ms: r.number("CHECKOUT_RECOVERY_MS", 30_000, 10, 3_600_000),
            recovery_idle_ms: r.number("CHECKOUT_RECOVERY_IDLE_MS", 60_000, 100, 3_600_000),
            failpoint: Some(r.checked("CHECKOUT_FAILPOINT", "", |v| {
                if v.is_empty() {
                    Ok(())
                } else if env_name != "test" {
                    Err("a test hook: only with ENV=test".into())
                } else if qc_checkout::saga::POINTS.contains(&v) {
                    Ok(())
                } else {
                    Err(format!("one of {:?}", qc_checkout::saga::POINTS))
                }
            }))
            .filter(|v| !v.is_empty()),
        }
    }

    pub fn from_env(env: &EnvSource, env_name: &str) -> Result<Self, ConfigError> {
        let mut r = env.reader();
        let cfg = Self::read(&mut r, env_name);
        r.finish()?;
        Ok(cfg)
    }
}

/// Promo over its HTTP API (04 step 3): 300 ms and one retry with the same key.
#[derive(Debug, Clone)]
pub struct HttpPromos {
    base: Option<String>,
    http: reqwest::Client,
    internal_token: Option<String>,
}

impl HttpPromos {
    async fn post(&self, path: &str, body: serde_json::Value) -> Result<serde_json::Value, String> {
        let Some(base) = &self.base else {
            return Err("no PROMO_URL".into());
        };
        let mut last = String::new();
        for _ in 0..2 {
            let mut req = self
                .http
                .post(format!("{}/api/v1/promo{path}", base.trim_end_matches('/')))
                .json(&body);
            if let Some(t) = &self.internal_token {
                req = req.header("X-Internal-Token", t);
            }
            match req.send().await {
                Ok(r) if r.status().is_success() || r.status().as_u16() == 404 => {
                    return r.json().await.map_err(|e| e.to_string());
                }
                Ok(r) => last = format!("promo answered {}", r.status()),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }
}

impl Promos for HttpPromos {
    async fn apply(&self, call: &PromoCall) -> Result<PromoAnswer, String> {
        if self.base.is_none() {
            return Ok(PromoAnswer::default());
        }
        let body = json!({"user_id": call.user_id, "idempotency_key": call.order_id,
            "cart": {"user_id": call.user_id, "cart_total": call.subtotal, "area": call.area,
                     "cart_items": call.items.iter().map(|(s, n, p, q)| json!({"id": s, "name": n, "price": p, "quantity": q})).collect::<Vec<_>>()}});
        let v = self.post("/apply", body).await?;
        let d = &v["data"];
        Ok(PromoAnswer {
            discount: d["total_discount"].as_i64().unwrap_or(0),
            applied: d["applied_rules"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r["rule_id"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    async fn release(&self, order_id: &str) -> Result<(), String> {
        if self.base.is_none() {
            return Ok(());
        }
        self.post("/release", json!({"redemption_id": order_id}))
            .await
            .map(|_| ())
    }
}

pub type Saga = Checkout<RedisStore, HttpPromos, Gateway, PgOrders, Prices>;

/// Where prices come from: the Catalog service, or the configured price list.
#[derive(Debug)]
pub enum Prices {
    List(PriceList),
    Catalog(CatalogPrices),
}

impl qc_checkout::Catalog for Prices {
    async fn price(
        &self,
        hub: &str,
        sku: &str,
    ) -> Result<Option<i64>, qc_kit::redis_kit::BackendError> {
        match self {
            Prices::List(l) => l.price(hub, sku).await,
            Prices::Catalog(c) => c.price(hub, sku).await,
        }
    }
}

/// Catalog's price lookup over HTTP (08 §3 `GET /products/{sku}/price?hub_id=`): 404 = not
/// sold (unknown or inactive); 300 ms and one retry.
#[derive(Debug, Clone)]
pub struct CatalogPrices {
    pub base: String,
    pub http: reqwest::Client,
    pub internal_token: Option<String>,
}

impl qc_checkout::Catalog for CatalogPrices {
    async fn price(
        &self,
        hub: &str,
        sku: &str,
    ) -> Result<Option<i64>, qc_kit::redis_kit::BackendError> {
        use qc_kit::redis_kit::{BackendError, Cause};
        let url = format!("{}/products/{sku}/price", self.base.trim_end_matches('/'));
        let mut last = Cause::from("no attempt");
        for _ in 0..2 {
            let mut req = self.http.get(&url).query(&[("hub_id", hub)]);
            if let Some(t) = &self.internal_token {
                req = req.header("X-Internal-Token", t);
            }
            match req.send().await {
                Ok(r) if r.status().as_u16() == 404 => return Ok(None),
                Ok(r) if r.status().is_success() => {
                    let v: serde_json::Value = r
                        .json()
                        .await
                        .map_err(|e| BackendError::Service(Cause::context("catalog price", e)))?;
                    return v["data"]["price"].as_i64().map(Some).ok_or_else(|| {
                        BackendError::Service("catalog price: no data.price".into())
                    });
                }
                Ok(r) => last = Cause::from(format!("catalog answered {}", r.status())),
                Err(e) => last = Cause::context("catalog price", e),
            }
        }
        Err(BackendError::Service(last))
    }
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct CheckoutApp {
    pub saga: Saga,
    pub idem: RedisIdempotency,
    pub settings: CheckoutSettings,
    pub clock: SharedClock,
    pub ctx: Arc<ServiceCtx>,
    pub pool: sqlx::PgPool,
}

pub async fn build(
    cfg: &PlatformConfig,
    settings: CheckoutSettings,
    clock: SharedClock,
    shutdown: Shutdown,
) -> Result<(Arc<CheckoutApp>, BuiltService), String> {
    let store_cfg = &cfg.store;
    let (conn, pool, ctx) = open_service(ServiceId::Checkout, cfg, &shutdown, 16).await?;
    let prefix = KeyPrefix::new(store_cfg.key_prefix.clone());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .map_err(|e| format!("http client: {e}"))?;
    let app = Arc::new(CheckoutApp {
        saga: Checkout {
            inventory: RedisStore::new(
                conn.clone(),
                prefix.clone(),
                HoldPolicy::default(),
                store_cfg.redis_timeout_ms,
            ),
            promos: HttpPromos {
                base: settings.promo_url.clone(),
                http: http.clone(),
                internal_token: cfg.internal_api_token.clone(),
            },
            gateway: match &settings.gateway_url {
                Some(url) => Gateway::Http(HttpGateway::new(url.clone())?),
                None => Gateway::Simulated(SimulatedGateway::default()),
            },
            orders: PgOrders::new(pool.clone()),
            catalog: match &settings.catalog_url {
                Some(url) => Prices::Catalog(CatalogPrices {
                    base: url.clone(),
                    http: http.clone(),
                    internal_token: cfg.internal_api_token.clone(),
                }),
                None => Prices::List(PriceList(settings.prices.clone())),
            },
            hold_ttl_s: settings.hold_ttl_s,
            hooks: SagaHooks {
                deadline: Some((clock.clone(), settings.saga_deadline_ms as i64)),
                failpoint: settings.failpoint.clone().map(failpoint),
            },
        },
        idem: RedisIdempotency {
            conn: conn.clone(),
            prefix: prefix.clone(),
            timeout_ms: store_cfg.redis_timeout_ms,
            scope: "checkout",
        },
        settings,
        clock,
        ctx: ctx.clone(),
        pool: pool.clone(),
    });
    let sink = RedisSink {
        conn,
        stream: prefix.key("checkout:events"),
        timeout_ms: store_cfg.redis_timeout_ms,
    };
    let relay = tokio::spawn(relay_loop(app.clone(), sink, shutdown.clone()));
    let recovery = tokio::spawn(recovery_loop(app.clone(), shutdown));
    let api = Router::new()
        .route("/api/v1/checkout", post(handlers::checkout))
        .route("/api/v1/webhook/payment", post(handlers::webhook))
        .route("/api/v1/orders/{id}", get(handlers::order))
        .with_state(app.clone());
    Ok((
        app,
        BuiltService {
            ctx: ctx.clone(),
            router: assemble(ctx, api),
            jobs: vec![relay, recovery],
        },
    ))
}

/// The crash-test hook: at `point`, say so on stderr and park this worker thread for good (the
/// test kills the process with SIGKILL next).
fn failpoint(point: String) -> qc_checkout::saga::Failpoint {
    Arc::new(move |at: &str| {
        if at == point {
            eprintln!("FAILPOINT {at}");
            loop {
                std::thread::park();
            }
        }
    })
}

/// The outbox relay, every `CHECKOUT_RELAY_MS`.
async fn relay_loop(app: Arc<CheckoutApp>, sink: RedisSink, shutdown: Shutdown) {
    let period = Duration::from_millis(app.settings.relay_ms);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(period) => {}
        }
        match relay_once(&app.saga.orders, &sink, app.clock.now_ms(), 100).await {
            Ok(p) if p.dead > 0 => tracing::error!(
                dead = p.dead,
                "checkout outbox events dead after 10 failures"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "checkout outbox relay failed"),
        }
    }
}

/// Saga recovery every `CHECKOUT_RECOVERY_MS`: pending orders idle for
/// `CHECKOUT_RECOVERY_IDLE_MS` are rolled forward or undone (04).
async fn recovery_loop(app: Arc<CheckoutApp>, shutdown: Shutdown) {
    let period = Duration::from_millis(app.settings.recovery_ms);
    let idle = app.settings.recovery_idle_ms as i64;
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(period) => {}
        }
        match app.saga.recover_once(app.clock.now_ms(), idle, 50).await {
            Ok(r) if r.rolled_forward + r.compensated > 0 => tracing::warn!(
                rolled_forward = r.rolled_forward,
                compensated = r.compensated,
                "checkout sagas recovered"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "checkout saga recovery failed"),
        }
    }
}

/// The payment gateway (04 "Payment gateway"): 04's simulator in process, or a gateway over
/// HTTP (`CHECKOUT_PAYMENT_GATEWAY_URL`).
#[derive(Debug)]
pub enum Gateway {
    Simulated(SimulatedGateway),
    Http(HttpGateway),
}

impl PaymentGateway for Gateway {
    async fn charge(
        &self,
        order_id: &str,
        amount: i64,
        currency: &str,
        card_token: Option<&str>,
        key: &str,
    ) -> Result<String, PayError> {
        match self {
            Gateway::Simulated(g) => g.charge(order_id, amount, currency, card_token, key).await,
            Gateway::Http(g) => g.charge(order_id, amount, currency, card_token, key).await,
        }
    }

    async fn refund(&self, txn: &str, amount: i64, key: &str) -> Result<(), PayError> {
        match self {
            Gateway::Simulated(g) => g.refund(txn, amount, key).await,
            Gateway::Http(g) => g.refund(txn, amount, key).await,
        }
    }

    async fn backoff(&self, attempt: usize) {
        if let Gateway::Http(_) = self {
            // 200 ms, 400 ms, ±20 % (jitter from the clock's sub-millisecond noise is enough
            // to spread retries of concurrent sagas).
            let base = 200u64 << (attempt.saturating_sub(1)).min(4);
            let jitter = u64::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0),
            ) % (base * 2 / 5 + 1);
            tokio::time::sleep(Duration::from_millis(base - base / 5 + jitter)).await;
        }
    }
}

/// A gateway over HTTP: `POST /charges` and `/refunds` with `Idempotency-Key`, 2 s each. A 402
/// is a decline; no answer in time is a timeout (the saga retries those with the same key).
#[derive(Debug, Clone)]
pub struct HttpGateway {
    pub base: String,
    pub http: reqwest::Client,
}

impl HttpGateway {
    pub fn new(base: String) -> Result<Self, String> {
        Ok(Self {
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .map_err(|e| format!("http client: {e}"))?,
        })
    }

    async fn post(
        &self,
        path: &str,
        key: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, PayError> {
        let r = self
            .http
            .post(format!("{}{path}", self.base.trim_end_matches('/')))
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .map_err(|_| PayError::Timeout)?;
        match r.status().as_u16() {
            200..=299 => r.json().await.map_err(|_| PayError::Timeout),
            402 => Err(PayError::Declined),
            _ => Err(PayError::Timeout),
        }
    }
}

impl PaymentGateway for HttpGateway {
    async fn charge(
        &self,
        order_id: &str,
        amount: i64,
        currency: &str,
        card_token: Option<&str>,
        key: &str,
    ) -> Result<String, PayError> {
        let v = self
            .post(
                "/charges",
                key,
                json!({"order_id": order_id, "amount": amount, "currency": currency, "card_token": card_token}),
            )
            .await?;
        v["transaction_id"]
            .as_str()
            .map(str::to_string)
            .ok_or(PayError::Timeout)
    }

    async fn refund(&self, txn: &str, amount: i64, key: &str) -> Result<(), PayError> {
        self.post(
            "/refunds",
            key,
            json!({"transaction_id": txn, "amount": amount}),
        )
        .await
        .map(|_| ())
    }
}

/// 04's gateway simulator as its own small HTTP server (tests, local runs): `POST /charges`
/// (`tok_decline…` → 402, `tok_timeout…` → no answer for 3 s, else 200 `{transaction_id}`) and
/// `POST /refunds`, both keyed by `Idempotency-Key`.
pub fn gateway_simulator(sim: Arc<SimulatedGateway>) -> Router {
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    async fn charge(
        State(sim): State<Arc<SimulatedGateway>>,
        headers: HeaderMap,
        axum::Json(b): axum::Json<serde_json::Value>,
    ) -> axum::response::Response {
        let key = key_of(&headers);
        let token = b["card_token"].as_str().map(str::to_string);
        if token
            .as_deref()
            .is_some_and(|t| t.starts_with("tok_timeout"))
        {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        match sim
            .charge(
                b["order_id"].as_str().unwrap_or_default(),
                b["amount"].as_i64().unwrap_or(0),
                b["currency"].as_str().unwrap_or("IDR"),
                token.as_deref(),
                &key,
            )
            .await
        {
            Ok(txn) => {
                axum::Json(json!({"transaction_id": txn, "status": "succeeded"})).into_response()
            }
            Err(_) => (
                StatusCode::PAYMENT_REQUIRED,
                axum::Json(json!({"status": "declined"})),
            )
                .into_response(),
        }
    }
    async fn refund(
        State(sim): State<Arc<SimulatedGateway>>,
        headers: HeaderMap,
        axum::Json(b): axum::Json<serde_json::Value>,
    ) -> axum::response::Response {
        let key = key_of(&headers);
        let _ = sim
            .refund(
                b["transaction_id"].as_str().unwrap_or_default(),
                b["amount"].as_i64().unwrap_or(0),
                &key,
            )
            .await;
        axum::Json(json!({"status": "refunded"})).into_response()
    }
    fn key_of(headers: &HeaderMap) -> String {
        headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }
    Router::new()
        .route("/charges", post(charge))
        .route("/refunds", post(refund))
        .with_state(sim)
}
