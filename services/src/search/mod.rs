//! The Search service (08 §2, port 8098): an in-memory index (`qc_search::index`, tantivy)
//! built from Catalog's change feed and swapped in whole, autocomplete, stock from Inventory's
//! keys (`StockStore::available`, one MGET), and admin writes proxied to Catalog. `/ready` and
//! every search answer 503 until the first build.
//!
//! The follower pulls `GET {CATALOG_URL}/internal/changes` after its last `seq` whenever
//! `catalog:changed` is published, and at least every `SEARCH_POLL_MS`; every
//! `SEARCH_REBUILD_S` it reads the feed from the start into a fresh index.

mod handlers;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::Router;
use futures::StreamExt;
use qc_catalog::HubPrice;
use qc_inventory::store::HoldPolicy;
use qc_inventory::RedisStore;
use qc_kit::config::{ConfigError, EnvReader, EnvSource};
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::SharedClock;
use qc_search::app::{Followed, Snapshot};
use qc_search::index::Doc;
use qc_search::rank::Weights;
use serde_json::Value;
use tokio::sync::Notify;

use crate::platform::config::{PlatformConfig, ServiceId};
use crate::platform::middleware::internal_only;
use crate::platform::ops::ServiceCtx;
use crate::platform::server::{assemble, open_service, BuiltService};
use crate::platform::shutdown::Shutdown;

/// `SEARCH_*` settings (08).
#[derive(Debug, Clone, PartialEq)]
pub struct SearchSettings {
    pub catalog_url: String,
    pub weights: Weights,
    pub poll_ms: u64,
    pub rebuild_s: u64,
}

impl SearchSettings {
    pub fn from_env(env: &EnvSource) -> Result<Self, ConfigError> {
        let mut r = env.reader();
        let s = Self::read(&mut r);
        r.finish()?;
        Ok(s)
    }

    pub fn read(r: &mut EnvReader<'_>) -> Self {
        let d = Weights::default();
        let weights = Weights {
            relevance: r.number("SEARCH_W_RELEVANCE", d.relevance, 0.0, 1.0),
            stock: r.number("SEARCH_W_STOCK", d.stock, 0.0, 1.0),
            margin: r.number("SEARCH_W_MARGIN", d.margin, 0.0, 1.0),
            popularity: r.number("SEARCH_W_POPULARITY", d.popularity, 0.0, 1.0),
        };
        // The service refuses to start when they do not sum to 1 (08 §6).
        let sum = weights
            .checked()
            .map(|_| String::new())
            .unwrap_or_else(|e| e);
        r.checked("SEARCH_W_SUM", "", |_| {
            if sum.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "SEARCH_W_RELEVANCE + _STOCK + _MARGIN + _POPULARITY: {sum}"
                ))
            }
        });
        Self {
            catalog_url: r.string("CATALOG_URL", "http://127.0.0.1:8100"),
            weights,
            poll_ms: r.number("SEARCH_POLL_MS", 2000, 10, 600_000),
            rebuild_s: r.number("SEARCH_REBUILD_S", 300, 1, 86_400),
        }
    }
}

#[derive(Debug)]
pub struct SearchApp {
    pub settings: SearchSettings,
    pub snapshot: RwLock<Option<Arc<Snapshot>>>,
    /// The follower's view of the catalog.
    products: Mutex<Followed>,
    pub stock: RedisStore,
    pub http: reqwest::Client,
    pub clock: SharedClock,
    pub ctx: Arc<ServiceCtx>,
    nudge: Notify,
    syncing: tokio::sync::Mutex<()>,
    internal_token: Option<String>,
}

fn doc_of(item: &Value) -> Option<(Doc, bool)> {
    let s = |k: &str| item[k].as_str().unwrap_or_default().to_string();
    let time = |v: &Value| {
        v.as_str()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
    };
    let sku = item["sku"].as_str()?.to_string();
    let hub_prices = item["hub_prices"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| {
                    Some(HubPrice {
                        hub_id: h["hub_id"].as_str()?.to_string(),
                        sku: sku.clone(),
                        price: h["price"].as_i64()?,
                        valid_from_ms: time(&h["valid_from"])?,
                        valid_to_ms: time(&h["valid_to"]),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Some((
        Doc {
            sku: sku.clone(),
            name: s("name"),
            description: s("description"),
            category: s("category"),
            brand: s("brand"),
            price: item["price"].as_i64().unwrap_or(0),
            margin_pct: item["margin_pct"].as_f64().unwrap_or(0.0),
            popularity: item["popularity_score"].as_f64().unwrap_or(0.0),
            tags: item["tags"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            image_url: s("image_url"),
            hub_prices,
        },
        item["active"].as_bool().unwrap_or(false),
    ))
}

impl SearchApp {
    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn feed_page(&self, after: i64) -> Result<(Vec<Value>, i64), String> {
        let mut req = self
            .http
            .get(format!(
                "{}/internal/changes",
                self.settings.catalog_url.trim_end_matches('/')
            ))
            .query(&[("after", after.to_string()), ("limit", "1000".into())]);
        if let Some(t) = &self.internal_token {
            req = req.header("X-Internal-Token", t);
        }
        let r = req.send().await.map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("catalog feed answered {}", r.status()));
        }
        let v: Value = r.json().await.map_err(|e| e.to_string())?;
        let items = v["data"]["items"].as_array().cloned().unwrap_or_default();
        Ok((items, v["data"]["last_seq"].as_i64().unwrap_or(after)))
    }

    /// Pulls the feed after the last seq (from 0 when `full`) and, if anything changed (or
    /// nothing was built yet), builds and swaps in a new snapshot. Returns the products read.
    pub async fn sync(&self, full: bool) -> Result<usize, String> {
        // One sync at a time (the follower and an admin write): snapshots only move forward.
        let _one = self.syncing.lock().await;
        let from = if full {
            0
        } else {
            self.products
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .seq()
        };
        // Read the feed first; the product map is touched only when something changed.
        let mut changes: Vec<Value> = Vec::new();
        let mut seq = from;
        loop {
            let (items, last) = self.feed_page(seq).await?;
            if items.is_empty() {
                break;
            }
            changes.extend(items);
            seq = last;
        }
        let read = changes.len();
        if read == 0 && self.current().is_some() && !full {
            return Ok(0);
        }
        let (live, seq) = {
            let mut f = self.products.lock().unwrap_or_else(|p| p.into_inner());
            if full {
                *f = Followed::default();
            }
            f.apply(changes.iter().filter_map(doc_of), seq);
            (f.live(), f.seq())
        };
        let snap = tokio::task::block_in_place(|| Snapshot::build(live, seq))?;
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(snap));
        self.ctx.warming.store(false, Ordering::SeqCst);
        Ok(read)
    }
}

pub async fn build(
    cfg: &PlatformConfig,
    settings: SearchSettings,
    clock: SharedClock,
    shutdown: Shutdown,
) -> Result<(Arc<SearchApp>, BuiltService), String> {
    let (conn, _pool, ctx) = open_service(ServiceId::Search, cfg, &shutdown, 1).await?;
    ctx.warming.store(true, Ordering::SeqCst);
    let prefix = KeyPrefix::new(cfg.store.key_prefix.clone());
    let app = Arc::new(SearchApp {
        settings,
        snapshot: RwLock::new(None),
        products: Mutex::new(Followed::default()),
        stock: RedisStore::new(
            conn.clone(),
            prefix.clone(),
            HoldPolicy::default(),
            cfg.store.redis_timeout_ms,
        ),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("http client: {e}"))?,
        clock,
        ctx: ctx.clone(),
        nudge: Notify::new(),
        syncing: tokio::sync::Mutex::new(()),
        internal_token: cfg.internal_api_token.clone(),
    });
    let jobs = vec![
        tokio::spawn(follow(app.clone(), shutdown.clone())),
        tokio::spawn(listen(
            app.clone(),
            cfg.store.redis_url.clone(),
            prefix.key("catalog:changed"),
            shutdown,
        )),
    ];
    let admin = internal_only(
        Router::new().route("/admin/products", post(handlers::admin_product)),
        &ctx,
    );
    let api = Router::new()
        .route("/search", get(handlers::search))
        .route("/autocomplete", get(handlers::autocomplete))
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

/// The feed follower: on every nudge and at least every `SEARCH_POLL_MS`; a full rebuild every
/// `SEARCH_REBUILD_S`.
async fn follow(app: Arc<SearchApp>, shutdown: Shutdown) {
    let poll = Duration::from_millis(app.settings.poll_ms);
    let rebuild = Duration::from_secs(app.settings.rebuild_s);
    let mut last_full = Instant::now();
    loop {
        let full = last_full.elapsed() >= rebuild;
        match app.sync(full).await {
            Ok(_) if full => last_full = Instant::now(),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "search could not read the catalog feed"),
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = app.nudge.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// `catalog:changed` wakes the follower (lossy: the poll covers a missed message).
async fn listen(app: Arc<SearchApp>, redis_url: String, channel: String, shutdown: Shutdown) {
    loop {
        let sub = async {
            let client = redis::Client::open(redis_url.as_str())?;
            let mut p = client.get_async_pubsub().await?;
            p.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(p)
        };
        match tokio::select! { r = sub => r, _ = shutdown.wait() => return } {
            Ok(mut p) => {
                let mut messages = p.on_message();
                loop {
                    tokio::select! {
                        _ = shutdown.wait() => return,
                        m = messages.next() => match m {
                            Some(_) => app.nudge.notify_one(),
                            None => break,
                        },
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "search cannot subscribe to catalog:changed"),
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
