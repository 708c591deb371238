//! Harness for end-to-end tests: a service on a real loopback socket over live Redis and
//! Postgres, isolated by a fresh key prefix and schema, driven by a manual clock.

pub mod tracking;

use std::sync::Arc;

use qc_kit::config::{EnvSource, StoreConfig};
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::testing::{delete_prefix, isolated_store_config};
use qc_kit::ManualClock;
use qc_services::inventory::{self, InventoryApp, InventoryConfig};
use qc_services::platform::config::PlatformConfig;
use qc_services::platform::server::serve_until;
use qc_services::platform::shutdown::Shutdown;
use serde_json::Value;
use tokio::task::JoinHandle;

pub const T0_MS: i64 = 1_800_000_000_000;

/// An inventory service under test.
pub struct TestInventory {
    pub app: Arc<InventoryApp>,
    pub base: String,
    pub clock: Arc<ManualClock>,
    pub cfg: PlatformConfig,
    pub http: reqwest::Client,
    shutdown: Shutdown,
    server: JoinHandle<std::io::Result<()>>,
}

impl TestInventory {
    /// Fresh prefix and schema, default inventory settings.
    pub async fn start() -> Self {
        Self::start_with(isolated_store_config(), |_| {}).await
    }

    /// On the given stores (e.g. a restarted service on the same prefix), after `tweak`.
    pub async fn start_with(store: StoreConfig, tweak: impl FnOnce(&mut PlatformConfig)) -> Self {
        let mut cfg =
            PlatformConfig::from_env(&EnvSource::from_pairs([("INSTANCE_ID", "test")])).unwrap();
        cfg.store = store;
        tweak(&mut cfg);
        let inv = InventoryConfig::from_env(&EnvSource::from_pairs([])).unwrap();
        let clock = Arc::new(ManualClock::new(T0_MS));
        let shutdown = Shutdown::new();
        let (app, svc) = inventory::build(&cfg, inv, clock.clone(), shutdown.clone(), false)
            .await
            .unwrap_or_else(|e| panic!("inventory did not start: {e}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        svc.ctx.mark_started();
        let server = tokio::spawn(serve_until(listener, svc.router, shutdown.clone()));
        Self {
            app,
            base: format!("http://{addr}"),
            clock,
            cfg,
            http: reqwest::Client::new(),
            shutdown,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        split(r).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        split(self.http.get(self.url(path)).send().await.unwrap()).await
    }

    pub async fn set_stock(&self, hub: &str, sku: &str, quantity: i64) {
        let (s, b) = self
            .post(
                "/admin/stock",
                serde_json::json!({"hub_id": hub, "sku": sku, "quantity": quantity}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
    }

    /// (available, reserved) as GET /stock reports it.
    pub async fn stock(&self, hub: &str, sku: &str) -> (i64, i64) {
        let (s, b) = self.get(&format!("/stock/{hub}/{sku}")).await;
        assert_eq!(s, 200, "{b}");
        (
            b["data"]["available"].as_i64().unwrap(),
            b["data"]["reserved"].as_i64().unwrap(),
        )
    }

    pub fn prefix(&self) -> KeyPrefix {
        KeyPrefix::new(self.cfg.store.key_prefix.clone())
    }

    /// Writes every pending stream event to Postgres.
    pub async fn drain_writer(&self) {
        let mut w = self.app.event_writer().await.unwrap();
        w.drain().await.unwrap();
    }

    /// Stops the server (keeping the data).
    pub async fn stop(self) {
        self.shutdown.trigger();
        let _ = self.server.await;
    }

    /// Stops the server and removes its keys and schema.
    pub async fn finish(self) {
        let store = self.cfg.store.clone();
        let mut conn = self.app.store.connection();
        self.stop().await;
        delete_prefix(&mut conn, &KeyPrefix::new(store.key_prefix.clone()))
            .await
            .unwrap();
        qc_kit::pg::drop_schema(&store).await.unwrap();
    }
}

/// Serves a built service on a fresh loopback port until `shutdown`; its base URL and the
/// server task.
pub async fn serve_loopback(
    svc: qc_services::platform::server::BuiltService,
    shutdown: &Shutdown,
) -> (String, JoinHandle<std::io::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    svc.ctx.mark_started();
    let server = tokio::spawn(serve_until(listener, svc.router, shutdown.clone()));
    (base, server)
}

/// JSON calls to one service's base URL, answered as (status, body).
#[derive(Debug, Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            base: base.into(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .expect("an HTTP client"),
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.http.post(format!("{}{path}", self.base)).json(&body);
        split(r.send().await.unwrap()).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.http.put(format!("{}{path}", self.base)).json(&body);
        split(r.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        split(
            self.http
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap(),
        )
        .await
    }
}

pub async fn split(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// The error code of an envelope.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no envelope>")
}

/// Every key under the prefix with its content, to assert that nothing changed.
pub async fn redis_snapshot(t: &TestInventory) -> std::collections::BTreeMap<String, String> {
    redis_snapshot_of(t.app.store.connection(), &t.prefix()).await
}

/// Every key under `prefix` with its content (any service's keys).
pub async fn redis_snapshot_of(
    mut conn: redis::aio::ConnectionManager,
    prefix: &KeyPrefix,
) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for key in qc_kit::testing::keys_under(&mut conn, prefix)
        .await
        .unwrap()
    {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let content = match kind.as_str() {
            "string" => redis::cmd("GET")
                .arg(&key)
                .query_async::<Option<String>>(&mut conn)
                .await
                .unwrap()
                .unwrap_or_default(),
            "hash" => {
                let m: std::collections::BTreeMap<String, String> = redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                format!("{m:?}")
            }
            "zset" => {
                let v: Vec<String> = redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                format!("{v:?}")
            }
            "set" => {
                let mut v: Vec<String> = redis::cmd("SMEMBERS")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                v.sort();
                format!("{v:?}")
            }
            "stream" => {
                let n: i64 = redis::cmd("XLEN")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                format!("len {n}")
            }
            other => other.to_string(),
        };
        out.insert(key, format!("{kind}: {content}"));
    }
    out
}

/// Row counts and on-hand total of the inventory tables.
pub async fn pg_snapshot(t: &TestInventory) -> (i64, i64, i64, i64, i64) {
    let one = |sql: &'static str| {
        let pool = t.app.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    (
        one("SELECT count(*) FROM inventory_stock").await,
        one("SELECT COALESCE(sum(on_hand), 0)::bigint FROM inventory_stock").await,
        one("SELECT count(*) FROM reservations").await,
        one("SELECT count(*) FROM reservation_items").await,
        one("SELECT count(*) FROM stock_movements").await,
    )
}

/// A throw-away `redis-server` on `port` (for outage tests), ready when this returns.
pub fn start_redis(port: u16) -> std::process::Child {
    let child = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("redis-server on PATH (scripts/test.sh installs it)");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server did not start on {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}
