//! The Promo service (05-promo, port 8095): validate / apply / release over the `qc-promo`
//! engine (counters in Redis, one Lua script per reservation and release), rules in Postgres
//! with versions and audit, cached in process and reloaded every few seconds and on
//! `NOTIFY promo_rules_changed`; `apply` is idempotent per key (a stored answer and a lease);
//! redemption rows are written to Postgres in the background.

mod handlers;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use qc_kit::config::{ConfigError, EnvReader, EnvSource};
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::SharedClock;
use qc_promo::{PgRules, PromoConfig, RedisCounters, Rule, RuleRepo};
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use tokio::sync::mpsc;

use crate::platform::config::{PlatformConfig, ServiceId};
use crate::platform::middleware::internal_only;
use crate::platform::ops::ServiceCtx;
use crate::platform::server::{assemble, open_service, BuiltService};
use crate::platform::shutdown::Shutdown;

/// The development default of `PROMO_FP_SECRET`; production refuses to start with it.
pub const DEV_FP_SECRET: &str = "dev-only-promo-fingerprint-secret";

/// `PROMO_*` settings (05).
#[derive(Debug, Clone, PartialEq)]
pub struct PromoSettings {
    pub utc_offset_min: i32,
    pub fp_secret: String,
    /// `PROMO_TEST_MODE`: a cart's `now` replaces the clock for that request.
    pub test_mode: bool,
    pub reload_ms: u64,
    pub expire_ms: u64,
    pub redis_timeout_ms: u64,
    pub ring_max_accounts: usize,
    pub ring_action: qc_promo::RingAction,
}

impl PromoSettings {
    pub fn read(r: &mut EnvReader<'_>, env_name: &str) -> Self {
        let production = env_name == "production";
        Self {
            utc_offset_min: r.number("PROMO_TZ_OFFSET_MINUTES", 420, -720, 840),
            fp_secret: r.secret("PROMO_FP_SECRET", DEV_FP_SECRET, production),
            test_mode: r.choice("PROMO_TEST_MODE", "false", &["true", "false"]) == "true",
            reload_ms: r.number("PROMO_RELOAD_MS", 5000, 50, 600_000),
            expire_ms: r.number("PROMO_EXPIRE_SWEEP_MS", 60_000, 50, 3_600_000),
            redis_timeout_ms: r.number("PROMO_REDIS_TIMEOUT_MS", 500, 10, 60_000),
            ring_max_accounts: r.number("PROMO_RING_MAX_ACCOUNTS", 3, 0, 1000),
            ring_action: qc_promo::RingAction::parse(&r.choice(
                "PROMO_RING_ACTION",
                "flag",
                &["flag", "block", "review"],
            ))
            .unwrap_or(qc_promo::RingAction::Flag),
        }
    }

    pub fn from_env(env: &EnvSource, env_name: &str) -> Result<Self, ConfigError> {
        let mut r = env.reader();
        let cfg = Self::read(&mut r, env_name);
        r.finish()?;
        Ok(cfg)
    }
}

/// A redemption row change for Postgres (05 §7).
#[derive(Debug, Clone)]
pub enum Row {
    Reserved {
        redemption_id: String,
        rule_id: String,
        user_id: String,
        discount: i64,
        cashback: i64,
        device: Option<String>,
        address: Option<String>,
        at_ms: i64,
    },
    Released {
        redemption_id: String,
        at_ms: i64,
    },
}

/// Rows waiting for Postgres; beyond it they are dropped (counted).
const ROW_QUEUE: usize = 10_000;

/// Everything the handlers share.
#[derive(Debug)]
pub struct PromoApp {
    pub counters: RedisCounters,
    pub rules: PgRules,
    /// The rules as last loaded (every few seconds, on NOTIFY, and at once after a local write).
    pub cache: RwLock<Arc<Vec<Rule>>>,
    pub engine: PromoConfig,
    pub settings: PromoSettings,
    pub clock: SharedClock,
    pub ctx: Arc<ServiceCtx>,
    pub pool: PgPool,
    pub redis: ConnectionManager,
    pub prefix: KeyPrefix,
    rows: mpsc::Sender<Row>,
}

pub const NOTIFY_CHANNEL: &str = "promo_rules_changed";

impl PromoApp {
    pub fn rules_snapshot(&self) -> Arc<Vec<Rule>> {
        self.cache.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reloads the cache from Postgres.
    pub async fn reload(&self) -> Result<usize, qc_kit::redis_kit::BackendError> {
        let rules = self.rules.list().await?;
        let n = rules.len();
        *self.cache.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(rules);
        Ok(n)
    }

    /// After a local write: the cache at once, other instances by NOTIFY.
    pub async fn rules_changed(&self) {
        if let Err(e) = self.reload().await {
            tracing::warn!(error = %e, "promo rules not reloaded after a write");
        }
        if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
            .bind(NOTIFY_CHANNEL)
            .execute(&self.pool)
            .await
        {
            tracing::warn!(error = %e, "promo rules change not announced");
        }
    }

    /// Queues a row for the writer without waiting; a full queue drops it (counted).
    pub fn record(&self, row: Row) {
        if self.rows.try_send(row).is_err() {
            self.ctx.metrics.count(
                "promo_rows_dropped_total",
                "Redemption rows dropped because the Postgres queue was full.",
                vec![],
                1.0,
            );
        }
    }

    pub fn key(&self, rest: &str) -> String {
        self.prefix.key(&format!("promo:{rest}"))
    }
}

pub async fn build(
    cfg: &PlatformConfig,
    settings: PromoSettings,
    clock: SharedClock,
    shutdown: Shutdown,
) -> Result<(Arc<PromoApp>, BuiltService), String> {
    let store_cfg = &cfg.store;
    let (conn, pool, ctx) = open_service(ServiceId::Promo, cfg, &shutdown, 8).await?;
    let prefix = KeyPrefix::new(store_cfg.key_prefix.clone());
    let (rows, rows_rx) = mpsc::channel(ROW_QUEUE);
    let app = Arc::new(PromoApp {
        counters: RedisCounters::new(conn.clone(), prefix.clone(), settings.redis_timeout_ms),
        rules: PgRules::new(pool.clone()),
        cache: RwLock::new(Arc::new(Vec::new())),
        engine: PromoConfig {
            utc_offset_min: settings.utc_offset_min,
            fp_secret: settings.fp_secret.as_bytes().to_vec(),
            ring_max_accounts: settings.ring_max_accounts,
            ring_action: settings.ring_action,
        },
        settings,
        clock,
        ctx: ctx.clone(),
        pool: pool.clone(),
        redis: conn,
        prefix,
        rows,
    });
    app.reload()
        .await
        .map_err(|e| format!("loading promo rules: {e}"))?;
    let jobs = vec![
        tokio::spawn(reload_loop(app.clone(), shutdown.clone())),
        tokio::spawn(expire_loop(app.clone(), shutdown.clone())),
        tokio::spawn(rebuild_loop(app.clone(), shutdown.clone())),
        tokio::spawn(write_rows(pool.clone(), rows_rx, ctx.clone(), shutdown)),
    ];
    let api = routes(app.clone());
    let prefixed = Router::new().nest("/api/v1/promo", routes(app.clone()));
    Ok((
        app,
        BuiltService {
            ctx: ctx.clone(),
            router: assemble(ctx, api.merge(prefixed)),
            jobs,
        },
    ))
}

fn routes(app: Arc<PromoApp>) -> Router {
    let internal = internal_only(
        Router::new()
            .route("/apply", post(handlers::apply))
            .route("/release", post(handlers::release))
            .route(
                "/admin/rules",
                post(handlers::create_rule).get(handlers::list_rules),
            )
            .route(
                "/admin/rules/{id}",
                get(handlers::get_rule).put(handlers::replace_rule),
            )
            .route("/admin/rules/{id}/usage", get(handlers::usage)),
        &app.ctx,
    );
    Router::new()
        .route("/validate", post(handlers::validate))
        .merge(internal)
        .with_state(app)
}

/// Reloads every `PROMO_RELOAD_MS`, and at once on `NOTIFY promo_rules_changed`.
async fn reload_loop(app: Arc<PromoApp>, shutdown: Shutdown) {
    let mut listener = match sqlx::postgres::PgListener::connect_with(&app.pool).await {
        Ok(mut l) => match l.listen(NOTIFY_CHANNEL).await {
            Ok(()) => Some(l),
            Err(e) => {
                tracing::warn!(error = %e, "promo: LISTEN failed; reloading on the timer only");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "promo: no listener; reloading on the timer only");
            None
        }
    };
    let period = Duration::from_millis(app.settings.reload_ms);
    loop {
        let notified = async {
            match listener.as_mut() {
                Some(l) => l.recv().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(period) => {}
            _ = notified => {}
        }
        if let Err(e) = app.reload().await {
            tracing::warn!(error = %e, "promo rules not reloaded");
        }
    }
}

/// Restores missing counters from Postgres's redemptions (05 §9): every rule whose total key is
/// gone (Redis restarted without persistence) gets its total, money spent and per-user counts
/// back from the held redemptions. Rows are written a moment after an apply, so a loss within
/// that moment can undercount by the rows still queued. Returns the rules restored.
pub async fn rebuild_counters(app: &PromoApp) -> Result<usize, String> {
    let mut restored = 0;
    for rule in app.rules_snapshot().iter() {
        let (total, spent): (i64, i64) = sqlx::query_as(
            "SELECT count(*), COALESCE(sum(discount_amount + cashback_amount), 0)::bigint
             FROM promo_redemptions WHERE rule_id = $1 AND status = 'reserved'",
        )
        .bind(&rule.id)
        .fetch_one(&app.pool)
        .await
        .map_err(|e| e.to_string())?;
        let users: Vec<(String, i64)> = sqlx::query_as(
            "SELECT user_id, count(*) FROM promo_redemptions
             WHERE rule_id = $1 AND status = 'reserved' GROUP BY user_id",
        )
        .bind(&rule.id)
        .fetch_all(&app.pool)
        .await
        .map_err(|e| e.to_string())?;
        if app
            .counters
            .rebuild(&rule.id, total, spent, &users)
            .await
            .map_err(|e| e.to_string())?
        {
            restored += 1;
        }
    }
    Ok(restored)
}

/// At start and hourly.
async fn rebuild_loop(app: Arc<PromoApp>, shutdown: Shutdown) {
    loop {
        match rebuild_counters(&app).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                rules = n,
                "promo counters missing in Redis restored from Postgres"
            ),
            Err(e) => tracing::warn!(error = %e, "promo counter rebuild failed"),
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}

/// Marks rules past their `end_at` expired.
async fn expire_loop(app: Arc<PromoApp>, shutdown: Shutdown) {
    let period = Duration::from_millis(app.settings.expire_ms);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(period) => {}
        }
        match app.rules.expire_due(app.clock.now_ms()).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(expired = n, "promo rules expired");
                app.rules_changed().await;
            }
            Err(e) => tracing::warn!(error = %e, "promo expiry sweep failed"),
        }
    }
}

/// Writes redemption rows in order; at shutdown it drains what is queued.
async fn write_rows(
    pool: PgPool,
    mut rx: mpsc::Receiver<Row>,
    ctx: Arc<ServiceCtx>,
    shutdown: Shutdown,
) {
    loop {
        let row = tokio::select! {
            r = rx.recv() => r,
            _ = shutdown.wait() => {
                rx.close();
                rx.recv().await
            }
        };
        let Some(row) = row else { break };
        let r = match &row {
            Row::Reserved {
                redemption_id,
                rule_id,
                user_id,
                discount,
                cashback,
                device,
                address,
                at_ms,
            } => sqlx::query(
                "INSERT INTO promo_redemptions (redemption_id, rule_id, user_id, discount_amount,
                     cashback_amount, device_hash, address, status, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'reserved', to_timestamp($8::float8 / 1000))
                 ON CONFLICT (rule_id, redemption_id) DO NOTHING",
            )
            .bind(redemption_id)
            .bind(rule_id)
            .bind(user_id)
            .bind(discount)
            .bind(cashback)
            .bind(device)
            .bind(address)
            .bind(at_ms)
            .execute(&pool)
            .await,
            Row::Released {
                redemption_id,
                at_ms,
            } => {
                sqlx::query(
                    "UPDATE promo_redemptions SET status = 'released',
                     released_at = to_timestamp($2::float8 / 1000)
                 WHERE redemption_id = $1 AND status = 'reserved'",
                )
                .bind(redemption_id)
                .bind(at_ms)
                .execute(&pool)
                .await
            }
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "promo redemption row not written");
            ctx.metrics.count(
                "promo_rows_failed_total",
                "Redemption rows Postgres refused.",
                vec![],
                1.0,
            );
        }
    }
}
