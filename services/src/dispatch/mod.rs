//! The Dispatch service (06-dispatch, port 8096): HTTP API over the [`Dispatcher`] on Postgres
//! (the authority for every order, driver and offer change), the `dispatch_queue` claimer, and
//! the leader's loops (batch timer, offer sweeper, reassignment scheduler) under a Redis lease.
//! Redis also carries what other services read: Tracking's assignment key and `dispatch.events`.

mod eta_client;
mod handlers;
mod jobs;
mod notify;
pub mod tracking_client;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use qc_dispatch::{BatchTimer, DispatchPolicy, Dispatcher, HubPoints, Matcher, PgRepo};
use qc_geo::Point;
use qc_kit::config::{ConfigError, EnvReader, EnvSource};
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::SharedClock;
use redis::aio::ConnectionManager;
use sqlx::PgPool;

use crate::platform::config::{PlatformConfig, ServiceId};
use crate::platform::middleware::internal_only;
use crate::platform::ops::ServiceCtx;
use crate::platform::server::{assemble, open_service, BuiltService};
use crate::platform::shutdown::Shutdown;

pub use jobs::{
    expire_overdue_once, flush_if_due, poll_queue_once, reassign_once, sweep_once, LeaderState,
};

/// `DISPATCH_*` settings (06 §5, §7) and where Geo is.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchConfig {
    pub window_ms: i64,
    pub min_orders: usize,
    pub policy: DispatchPolicy,
    pub poll_ms: u64,
    pub claim_batch: usize,
    pub leader_lease_ms: i64,
    pub geo_url: String,
    /// Where the ETA service is; empty turns the calls off.
    pub eta_url: Option<String>,
    /// Where the Tracking service is; empty turns the status posts off.
    pub tracking_url: Option<String>,
}

impl DispatchConfig {
    pub fn read(r: &mut EnvReader<'_>) -> Self {
        let matcher = match r
            .choice(
                "DISPATCH_MATCHER",
                "greedy",
                &["greedy", "hungarian", "optimal"],
            )
            .as_str()
        {
            "greedy" => Matcher::Greedy,
            _ => Matcher::Optimal,
        };
        Self {
            window_ms: r.number("DISPATCH_WINDOW_MS", 5000, 10, 600_000),
            min_orders: r.number("DISPATCH_MIN_ORDERS", 3, 1, 250),
            policy: DispatchPolicy {
                offer_timeout_ms: r.number("DISPATCH_OFFER_TIMEOUT_S", 30i64, 1, 3600) * 1000,
                max_batch: r.number("DISPATCH_MAX_BATCH", 50, 1, 250),
                matcher,
                deadline_ms: r.number("DISPATCH_DEADLINE_S", 3600i64, 60, 86_400) * 1000,
            },
            poll_ms: r.number("DISPATCH_POLL_MS", 500, 10, 60_000),
            claim_batch: r.number("DISPATCH_CLAIM_BATCH", 50, 1, 1000),
            leader_lease_ms: r.number("DISPATCH_LEADER_LEASE_MS", 10_000, 300, 600_000),
            geo_url: r.checked("GEO_URL", "http://127.0.0.1:8092", http_url),
            eta_url: Some(r.checked("ETA_URL", "http://127.0.0.1:8097", |v| {
                if v.is_empty() {
                    Ok(())
                } else {
                    http_url(v)
                }
            }))
            .filter(|v| !v.is_empty()),
            tracking_url: Some(r.checked("TRACKING_URL", "http://127.0.0.1:8099", |v| {
                if v.is_empty() {
                    Ok(())
                } else {
                    http_url(v)
                }
            }))
            .filter(|v| !v.is_empty()),
        }
    }

    pub fn from_env(env: &EnvSource) -> Result<Self, ConfigError> {
        let mut r = env.reader();
        let cfg = Self::read(&mut r);
        r.finish()?;
        Ok(cfg)
    }
}

fn http_url(v: &str) -> Result<(), String> {
    if v.starts_with("http://") || v.starts_with("https://") {
        Ok(())
    } else {
        Err("must be an http(s) URL".into())
    }
}

/// Hub pickup points from Geo (`GET /admin/hubs/{id}`), kept 5 min; a failed look-up is
/// remembered for 30 s so a down Geo costs one call per hub, not one per tick.
#[derive(Debug, Default)]
pub struct HubCache {
    entries: Mutex<HashMap<String, (Option<Point>, i64)>>,
}

const HUB_TTL_MS: i64 = 5 * 60_000;
const HUB_MISS_TTL_MS: i64 = 30_000;

/// Everything the handlers and loops share.
pub struct DispatchApp {
    pub dispatcher: Dispatcher<PgRepo>,
    pub pool: PgPool,
    pub redis: ConnectionManager,
    pub prefix: KeyPrefix,
    pub clock: SharedClock,
    pub cfg: DispatchConfig,
    pub ctx: Arc<ServiceCtx>,
    pub instance: String,
    pub redis_timeout_ms: u64,
    pub hubs: HubCache,
    pub http: reqwest::Client,
    pub internal_token: Option<String>,
    pub leader: LeaderState,
    pub timer: Mutex<BatchTimer>,
    pub tracking: tracking_client::TrackingPoster,
}

impl std::fmt::Debug for DispatchApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatchApp")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl DispatchApp {
    /// `dispatch:{dispatch}:<rest>` under the deployment prefix (06 §3).
    pub fn key(&self, rest: &str) -> String {
        self.prefix.key(&format!("dispatch:{{dispatch}}:{rest}"))
    }

    pub fn is_leader(&self) -> bool {
        self.leader.held.load(Ordering::SeqCst)
    }

    /// Pickup points for `hub_ids`, asking Geo for those not cached.
    pub async fn hub_points(&self, hub_ids: &[String]) -> HubPoints {
        let now = self.clock.now_ms();
        let missing: Vec<String> = {
            let cache = self.hubs.entries.lock().unwrap_or_else(|p| p.into_inner());
            hub_ids
                .iter()
                .filter(|id| cache.get(*id).is_none_or(|(_, until)| *until <= now))
                .cloned()
                .collect()
        };
        for id in missing {
            let found = self.fetch_hub(&id).await;
            let ttl = if found.is_some() {
                HUB_TTL_MS
            } else {
                HUB_MISS_TTL_MS
            };
            self.hubs
                .entries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, (found, now + ttl));
        }
        let cache = self.hubs.entries.lock().unwrap_or_else(|p| p.into_inner());
        hub_ids
            .iter()
            .filter_map(|id| cache.get(id).and_then(|(p, _)| *p).map(|p| (id.clone(), p)))
            .collect()
    }

    async fn fetch_hub(&self, id: &str) -> Option<Point> {
        let url = format!("{}/admin/hubs/{id}", self.cfg.geo_url.trim_end_matches('/'));
        let mut req = self.http.get(&url);
        if let Some(t) = &self.internal_token {
            req = req.header("X-Internal-Token", t);
        }
        let res = async {
            let body: serde_json::Value = req.send().await?.error_for_status()?.json().await?;
            Ok::<_, reqwest::Error>(body)
        }
        .await;
        match res {
            Ok(body) => {
                let d = &body["data"];
                let p = Point::new(d["lat"].as_f64()?, d["lng"].as_f64()?).ok();
                if p.is_none() {
                    tracing::warn!(hub_id = id, "geo answered without usable coordinates");
                }
                p
            }
            Err(e) => {
                tracing::warn!(hub_id = id, error = %e, "hub look-up at geo failed; using delivery points");
                None
            }
        }
    }
}

/// Connects to Postgres (migrated) and Redis and assembles the service. With `spawn_jobs`
/// false the caller drives the loops itself (tests with a manual clock).
pub async fn build(
    cfg: &PlatformConfig,
    dcfg: DispatchConfig,
    clock: SharedClock,
    shutdown: Shutdown,
    spawn_jobs: bool,
) -> Result<(Arc<DispatchApp>, BuiltService), String> {
    let store_cfg = &cfg.store;
    let (conn, pool, ctx) = open_service(ServiceId::Dispatch, cfg, &shutdown, 16).await?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(200))
        .timeout(Duration::from_secs(1))
        .build()
        .map_err(|e| format!("http client: {e}"))?;
    let (tracking, tracking_worker) = tracking_client::start(
        dcfg.tracking_url.clone(),
        http.clone(),
        cfg.internal_api_token.clone(),
        ctx.clone(),
        shutdown.clone(),
    );
    let app = Arc::new(DispatchApp {
        dispatcher: Dispatcher::new(PgRepo::new(pool.clone()), dcfg.policy),
        pool,
        redis: conn,
        prefix: KeyPrefix::new(store_cfg.key_prefix.clone()),
        clock,
        timer: Mutex::new(BatchTimer::new(dcfg.window_ms, dcfg.min_orders)),
        cfg: dcfg,
        ctx: ctx.clone(),
        instance: cfg.instance_id.clone(),
        redis_timeout_ms: store_cfg.redis_timeout_ms,
        hubs: HubCache::default(),
        http,
        internal_token: cfg.internal_api_token.clone(),
        leader: LeaderState::default(),
        tracking,
    });
    let mut jobs = if spawn_jobs {
        jobs::spawn_all(app.clone(), shutdown)
    } else {
        Vec::new()
    };
    jobs.extend(tracking_worker);
    let router = assemble(ctx.clone(), routes(app.clone()));
    Ok((app, BuiltService { ctx, router, jobs }))
}

fn routes(app: Arc<DispatchApp>) -> Router {
    let internal = internal_only(
        Router::new().route("/dispatch/order", post(handlers::create_order)),
        &app.ctx,
    );
    Router::new()
        .route("/dispatch/orders/{id}", get(handlers::order))
        .route("/dispatch/driver/register", post(handlers::register))
        .route("/dispatch/driver/location", post(handlers::location))
        .route("/dispatch/driver/state", post(handlers::driver_state))
        .route("/dispatch/driver/accept", post(handlers::accept))
        .route("/dispatch/driver/reject", post(handlers::reject))
        .route("/dispatch/drivers/{id}", get(handlers::driver))
        .route(
            "/dispatch/drivers/{id}/events",
            get(handlers::driver_events),
        )
        .route("/dispatch/assignments/{id}", get(handlers::assignment))
        .merge(internal)
        .with_state(app)
}

/// Marks leadership (used by the lease loop and by tests that drive the loops by hand).
pub fn set_leader(app: &DispatchApp, held: bool) {
    app.leader.held.store(held, Ordering::SeqCst);
}
