//! The Geo service (02-geo, port 8092): serviceability through a two-level cache (in process,
//! then Redis), the H3 cell index, and a full scan of the in-memory hub snapshot when Redis is
//! unavailable; plus the hub admin API. Pure rules live in `qc-geo`.

mod handlers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use qc_geo::{best, evaluate, Candidate, Hub, Point, Resolution, Weights};
use qc_kit::config::{ConfigError, EnvReader, EnvSource};
use qc_kit::redis_kit::{BackendError, KeyPrefix};
use qc_kit::SharedClock;
use tokio::task::JoinHandle;

use crate::platform::config::{PlatformConfig, ServiceId};
use crate::platform::middleware::internal_only;
use crate::platform::ops::ServiceCtx;
use crate::platform::server::{assemble, open_stores, BuiltService};
use crate::platform::shutdown::Shutdown;
use qc_geo::registry::GeoKeys;
use qc_geo::{CellLookup, HubStore, RedisPgHubs};

/// `GEO_*` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GeoConfig {
    pub weights: Weights,
    pub resolution: Resolution,
    pub snapshot_reload_s: u64,
    pub version_check_ms: u64,
    /// Bound on each Redis call of a lookup: past it the lookup falls back to the scan.
    pub lookup_timeout_ms: u64,
}

impl GeoConfig {
    pub fn read(r: &mut EnvReader<'_>) -> Result<Self, String> {
        let (d, s, k) = (
            r.number("GEO_W_DISTANCE", 0.4, 0.0, 1.0),
            r.number("GEO_W_STOCK", 0.4, 0.0, 1.0),
            r.number("GEO_W_RIDER", 0.2, 0.0, 1.0),
        );
        let res = r.number("GEO_H3_RESOLUTION", 9u8, 0, 15);
        Ok(Self {
            weights: Weights::new(d, s, k).map_err(|e| format!("GEO_W_*: {e}"))?,
            resolution: Resolution::try_from(res).map_err(|e| format!("GEO_H3_RESOLUTION: {e}"))?,
            snapshot_reload_s: r.number("GEO_SNAPSHOT_RELOAD_SECONDS", 30, 1, 3600),
            version_check_ms: r.number("GEO_VERSION_CHECK_MS", 2000, 100, 60_000),
            lookup_timeout_ms: r.number("GEO_LOOKUP_TIMEOUT_MS", 200, 10, 5000),
        })
    }

    pub fn from_env(env: &EnvSource) -> Result<Self, String> {
        let mut r = env.reader();
        let cfg = Self::read(&mut r);
        r.finish().map_err(|e: ConfigError| e.to_string())?;
        cfg
    }
}

/// All hubs at one hubs-version.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub version: i64,
    pub hubs: Vec<Hub>,
    by_id: HashMap<String, usize>,
}

impl Snapshot {
    pub fn new(version: i64, hubs: Vec<Hub>) -> Self {
        let by_id = hubs
            .iter()
            .enumerate()
            .map(|(i, h)| (h.id.clone(), i))
            .collect();
        Self {
            version,
            hubs,
            by_id,
        }
    }
    pub fn get(&self, id: &str) -> Option<&Hub> {
        self.by_id.get(id).map(|i| &self.hubs[*i])
    }
}

/// Which step of the lookup chain answered (02 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Cache,
    Index,
    Scan,
    None,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Cache => "cache",
            Tier::Index => "index",
            Tier::Scan => "scan",
            Tier::None => "none",
        }
    }
}

/// A serviceability answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub cell: String,
    pub hub: Option<Hub>,
    pub distance_km: f64,
    pub score: f64,
    pub tier: Tier,
    pub cache_hit: bool,
}

const L1_MAX: usize = 100_000;

#[derive(Debug)]
pub struct GeoApp {
    pub cfg: GeoConfig,
    /// Registry, cell index and winner cache (Postgres + Redis).
    pub store: RedisPgHubs,
    pub clock: SharedClock,
    pub ctx: Arc<ServiceCtx>,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Level 1: cell → (snapshot version, winning hub id).
    l1: Mutex<HashMap<String, (i64, String)>>,
}

impl GeoApp {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reloads hubs from Postgres, tagged with the version read just before.
    pub async fn reload(&self) -> Result<(), BackendError> {
        let version = self.store.version().await?;
        let hubs = self.store.hubs().await?;
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Snapshot::new(version, hubs));
        Ok(())
    }

    /// Reloads when another instance changed a hub.
    pub async fn refresh_if_changed(&self) -> Result<bool, BackendError> {
        let v = self.store.version().await?;
        if v != self.snapshot().version {
            self.reload().await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Forgets the in-process cache (tests; a version change makes old entries unusable anyway).
    pub fn clear_l1(&self) {
        self.l1.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn answer(
        &self,
        cell: String,
        c: Option<Candidate<'_>>,
        tier: Tier,
        cache_hit: bool,
    ) -> Answer {
        match c {
            Some(c) => Answer {
                cell,
                hub: Some(c.hub.clone()),
                distance_km: c.distance_km,
                score: c.score,
                tier,
                cache_hit,
            },
            None => Answer {
                cell,
                hub: None,
                distance_km: 0.0,
                score: 0.0,
                tier: Tier::None,
                cache_hit: false,
            },
        }
    }

    fn remember(&self, cell: &str, version: i64, hub_id: &str) {
        let mut l1 = self.l1.lock().unwrap_or_else(|p| p.into_inner());
        if l1.len() >= L1_MAX {
            l1.clear();
        }
        l1.insert(cell.to_string(), (version, hub_id.to_string()));
    }

    /// In-process cache, then Redis cache, then the cell index, then a scan of the snapshot.
    pub async fn serviceability(&self, p: Point) -> Answer {
        let cell = p.cell(self.cfg.resolution).to_string();
        let snap = self.snapshot();
        let w = self.cfg.weights;
        let l1 = self
            .l1
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&cell)
            .cloned();
        if let Some((version, id)) = l1 {
            if version == snap.version {
                if let Some(c) = snap.get(&id).and_then(|h| evaluate(p, h, w)) {
                    return self.answer(cell, Some(c), Tier::Cache, true);
                }
            }
        }
        match self.store.lookup(&cell).await {
            Ok(CellLookup {
                cached,
                ready,
                candidates,
            }) => {
                if let Some(c) = cached
                    .as_deref()
                    .and_then(|id| snap.get(id))
                    .and_then(|h| evaluate(p, h, w))
                {
                    self.remember(&cell, snap.version, &c.hub.id);
                    return self.answer(cell, Some(c), Tier::Cache, true);
                }
                let (winner, tier) = if ready {
                    (
                        best(p, candidates.iter().filter_map(|id| snap.get(id)), w),
                        Tier::Index,
                    )
                } else {
                    (best(p, &snap.hubs, w), Tier::Scan)
                };
                if let Some(c) = &winner {
                    let now = self.clock.now_ms();
                    if matches!(
                        self.store
                            .cache_winner(&cell, snap.version, &c.hub.id, now)
                            .await,
                        Ok(true)
                    ) {
                        self.remember(&cell, snap.version, &c.hub.id);
                    }
                }
                self.answer(cell, winner, tier, false)
            }
            Err(e) => {
                tracing::debug!(error = %e, "geo lookup falls back to the snapshot scan");
                let winner = best(p, &snap.hubs, w);
                self.answer(cell, winner, Tier::Scan, false)
            }
        }
    }

    /// Writes a hub: Postgres, index, cache invalidation, version bump, snapshot reload.
    pub async fn put_hub(&self, hub: &Hub) -> Result<(bool, usize), BackendError> {
        let (created, cells) = self
            .store
            .put_hub(hub, self.cfg.resolution, self.clock.now_ms())
            .await?;
        self.reload().await?;
        Ok((created, cells))
    }
}

/// Connects, bootstraps the index when missing, loads the snapshot, assembles the service.
pub async fn build(
    cfg: &PlatformConfig,
    geo: GeoConfig,
    clock: SharedClock,
    shutdown: Shutdown,
    spawn_jobs: bool,
) -> Result<(Arc<GeoApp>, BuiltService), String> {
    let store_cfg = &cfg.store;
    let (conn, pool) = open_stores(store_cfg, 8).await?;
    let store = RedisPgHubs {
        conn: conn.clone(),
        pool: pool.clone(),
        keys: GeoKeys::new(KeyPrefix::new(store_cfg.key_prefix.clone())),
        timeout_ms: store_cfg.redis_timeout_ms,
        lookup_timeout_ms: geo.lookup_timeout_ms,
    };
    if store
        .bootstrap(geo.resolution)
        .await
        .map_err(|e| format!("building the cell index: {e}"))?
    {
        tracing::info!("geo cell index built from Postgres");
    }
    let ctx = Arc::new(ServiceCtx::new(
        ServiceId::Geo,
        shutdown.clone(),
        Some(conn.clone()),
        Some(pool.clone()),
        cfg.internal_api_token.clone(),
    ));
    let app = Arc::new(GeoApp {
        cfg: geo,
        store,
        clock,
        ctx: ctx.clone(),
        snapshot: RwLock::new(Arc::new(Snapshot::default())),
        l1: Mutex::new(HashMap::new()),
    });
    app.reload()
        .await
        .map_err(|e| format!("loading hubs: {e}"))?;
    let jobs = if spawn_jobs {
        vec![spawn_refresh(app.clone(), shutdown)]
    } else {
        Vec::new()
    };
    let admin = internal_only(
        Router::new()
            .route(
                "/admin/hubs",
                post(handlers::put_hub).get(handlers::list_hubs),
            )
            .route("/admin/hubs/{id}", get(handlers::get_hub)),
        &ctx,
    );
    let api = Router::new()
        .route("/serviceability", get(handlers::serviceability))
        .merge(admin)
        .with_state(app.clone());
    Ok((
        app,
        BuiltService {
            ctx: ctx.clone(),
            router: assemble(ctx, api),
            jobs,
        },
    ))
}

/// Version check every `version_check_ms`, full reload every `snapshot_reload_s`.
fn spawn_refresh(app: Arc<GeoApp>, sd: Shutdown) -> JoinHandle<()> {
    tokio::spawn(async move {
        let every = Duration::from_millis(app.cfg.version_check_ms);
        let full_every = (app.cfg.snapshot_reload_s * 1000 / app.cfg.version_check_ms).max(1);
        let mut tick: u64 = 0;
        loop {
            tokio::select! {
                _ = sd.wait() => return,
                _ = tokio::time::sleep(every) => {}
            }
            tick += 1;
            let r = if tick.is_multiple_of(full_every) {
                app.reload().await.map(|_| true)
            } else {
                app.refresh_if_changed().await
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, "geo snapshot refresh failed; serving the last snapshot");
            }
        }
    })
}
