//! The Inventory service (01-inventory, port 8091): HTTP API over the inventory core, plus the
//! reaper, the Postgres event writer and reconciliation loops.

mod handlers;
mod jobs;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use qc_inventory::pg::EventWriter;
use qc_inventory::redis_store::InventoryKeys;
use qc_inventory::store::HoldPolicy;
use qc_inventory::RedisStore;
use qc_kit::config::{ConfigError, EnvReader, EnvSource};
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::SharedClock;
use sqlx::PgPool;

use crate::platform::config::{PlatformConfig, ServiceId};
use crate::platform::middleware::internal_only;
use crate::platform::ops::ServiceCtx;
use crate::platform::server::{assemble, open_service, BuiltService};
use crate::platform::shutdown::Shutdown;

pub use jobs::JobReport;

/// `INVENTORY_*` settings (01 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryConfig {
    pub reservation_ttl_s: u32,
    pub grace_s: u32,
    pub reaper_interval_s: u64,
    pub reaper_batch: usize,
    pub retention_s: u32,
    pub reconcile_interval_s: u64,
}

impl InventoryConfig {
    pub fn read(r: &mut EnvReader<'_>) -> Self {
        Self {
            reservation_ttl_s: r.number("INVENTORY_RESERVATION_TTL_SECONDS", 900, 1, 3600),
            grace_s: r.number("INVENTORY_RESERVATION_GRACE_SECONDS", 30, 0, 3600),
            reaper_interval_s: r.number("INVENTORY_REAPER_INTERVAL_SECONDS", 5, 1, 3600),
            reaper_batch: r.number("INVENTORY_REAPER_BATCH", 100, 1, 10_000),
            retention_s: r.number("INVENTORY_RETENTION_SECONDS", 86_400, 60, 30 * 86_400),
            reconcile_interval_s: r.number("INVENTORY_RECONCILE_INTERVAL_SECONDS", 60, 1, 86_400),
        }
    }

    pub fn from_env(env: &EnvSource) -> Result<Self, ConfigError> {
        let mut r = env.reader();
        let cfg = Self::read(&mut r);
        r.finish()?;
        Ok(cfg)
    }

    pub fn policy(&self) -> HoldPolicy {
        HoldPolicy {
            grace_s: self.grace_s,
            retention_s: self.retention_s,
        }
    }
}

/// Everything the handlers and loops share.
#[derive(Debug)]
pub struct InventoryApp {
    pub store: RedisStore,
    pub clock: SharedClock,
    pub cfg: InventoryConfig,
    pub ctx: Arc<ServiceCtx>,
    pub pool: PgPool,
    pub keys: InventoryKeys,
    pub instance: String,
    pub redis_url: String,
}

impl InventoryApp {
    /// A writer on a connection of its own (its blocking reads must not stall requests).
    pub async fn event_writer(&self) -> Result<EventWriter, String> {
        let conn = qc_kit::redis_kit::connect(&self.redis_url, self.store.timeout_ms() + 2000)
            .await
            .map_err(|e| e.to_string())?;
        Ok(EventWriter::new(
            conn,
            self.pool.clone(),
            self.keys.clone(),
            self.instance.clone(),
            self.store.timeout_ms() + 2000,
        ))
    }
}

/// Connects to Redis and Postgres (applying migrations), rebuilds Redis from Postgres when it
/// came back empty, and assembles the service. With `spawn_jobs` false the caller drives the
/// loops itself (tests with a manual clock).
pub async fn build(
    cfg: &PlatformConfig,
    inv: InventoryConfig,
    clock: SharedClock,
    shutdown: Shutdown,
    spawn_jobs: bool,
) -> Result<(Arc<InventoryApp>, BuiltService), String> {
    let store_cfg = &cfg.store;
    let (conn, pool, ctx) = open_service(ServiceId::Inventory, cfg, &shutdown, 16).await?;
    let prefix = KeyPrefix::new(store_cfg.key_prefix.clone());
    let keys = InventoryKeys::new(prefix.clone());
    let app = Arc::new(InventoryApp {
        store: RedisStore::new(conn, prefix, inv.policy(), store_cfg.redis_timeout_ms),
        clock,
        cfg: inv,
        ctx: ctx.clone(),
        pool,
        keys,
        instance: cfg.instance_id.clone(),
        redis_url: store_cfg.redis_url.clone(),
    });
    jobs::restore_if_empty(&app)
        .await
        .map_err(|e| format!("rebuilding Redis from Postgres: {e}"))?;
    let jobs = if spawn_jobs {
        jobs::spawn_all(app.clone(), shutdown)
    } else {
        Vec::new()
    };
    let router = assemble(ctx.clone(), routes(app.clone()));
    Ok((app, BuiltService { ctx, router, jobs }))
}

fn routes(app: Arc<InventoryApp>) -> Router {
    let admin = internal_only(
        Router::new()
            .route("/admin/stock", post(handlers::set_stock))
            .route("/admin/cycle-count", post(handlers::cycle_count)),
        &app.ctx,
    );
    Router::new()
        .route("/stock/{hub_id}/{sku}", get(handlers::stock))
        .route("/reserve", post(handlers::reserve))
        .route("/release", post(handlers::release))
        .route("/confirm", post(handlers::confirm))
        .route("/reservations/{id}", get(handlers::reservation))
        .merge(admin)
        .with_state(app)
}

pub use jobs::{reap_once, reconcile_once, restore_if_empty};
