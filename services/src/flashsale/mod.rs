//! The Flash sale service (03, port 8093): the handlers render `qc_flashsale::app` answers; the
//! store is Redis (`RedisFlash`, one Lua script per step), confirmed orders and their outbox are
//! in Postgres; the reaper (10 s), admission (500 ms, each admitted user published on
//! `flash:queue:<pid>:<uid>`) and waiting-room cleanup (30 s) run under leases, one instance
//! per tick.

mod handlers;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use qc_flashsale::bot::BotPolicy;
use qc_flashsale::model::{ADMIT_EVERY_MS, REAP_EVERY_MS};
use qc_flashsale::orders::PgOrders;
use qc_flashsale::{FlashSale, Policy, RedisFlash};
use qc_kit::config::{ConfigError, EnvReader, EnvSource};
use qc_kit::idempotency::RedisIdempotency;
use qc_kit::lease::Lease;
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::SharedClock;
use redis::aio::ConnectionManager;

use crate::platform::config::{PlatformConfig, ServiceId};
use crate::platform::middleware::internal_only;
use crate::platform::ops::ServiceCtx;
use crate::platform::server::{assemble, open_service, BuiltService};
use crate::platform::shutdown::Shutdown;

/// The development default of `HMAC_SECRET`; production refuses it (and anything under 32 bytes).
pub const DEV_SECRET: &str = "dev-only-flash-sale-hmac-secret-32b";
const CLEANUP_EVERY_MS: i64 = 30_000;

/// `HMAC_SECRET` and the `FLASH_*` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FlashSettings {
    pub secret: String,
    pub policy: Policy,
    /// `FLASH_JOBS=off`: this instance runs no reaper, admission or cleanup (another instance,
    /// or a test driving them by hand, does).
    pub jobs: bool,
}

impl FlashSettings {
    pub fn read(r: &mut EnvReader<'_>, env_name: &str) -> Self {
        let production = env_name == "production";
        let secret = r.checked("HMAC_SECRET", DEV_SECRET, |v| {
            if production && v == DEV_SECRET {
                Err("set a secret of your own in production".into())
            } else if v.len() < 32 {
                Err("at least 32 bytes".into())
            } else {
                Ok(())
            }
        });
        let d = Policy::default();
        let b = BotPolicy::default();
        Self {
            secret,
            jobs: r.choice("FLASH_JOBS", "on", &["on", "off"]) == "on",
            policy: Policy {
                device_burst: r.number("FLASH_DEVICE_BURST", d.device_burst, 1, 100_000),
                user_burst: r.number("FLASH_USER_BURST", d.user_burst, 1, 100_000),
                window_ms: r.number("FLASH_RATE_WINDOW_MS", d.window_ms, 10, 3_600_000),
                proof_bits: r.number("FLASH_PROOF_BITS", d.proof_bits, 0, 24),
                bot: BotPolicy {
                    block_at: r.number("FLASH_BOT_BLOCK", b.block_at, 0.01, 1.0),
                    rate_cap_per_s: r.number("FLASH_BOT_RATE_CAP", b.rate_cap_per_s, 0.1, 1000.0),
                    ..b
                },
            },
        }
    }

    pub fn from_env(env: &EnvSource, env_name: &str) -> Result<Self, ConfigError> {
        let mut r = env.reader();
        let s = Self::read(&mut r, env_name);
        r.finish()?;
        Ok(s)
    }
}

pub type Core = FlashSale<RedisFlash, RedisIdempotency, PgOrders>;

pub struct FlashApp {
    pub core: Core,
    pub clock: SharedClock,
    pub ctx: Arc<ServiceCtx>,
    pub conn: ConnectionManager,
    pub prefix: KeyPrefix,
    pub redis_url: String,
    pub timeout_ms: u64,
    instance: String,
}

impl FlashApp {
    /// The pub/sub channel of one waiting user.
    pub fn channel(&self, product: &str, user: &str) -> String {
        self.prefix.key(&format!("flash:queue:{product}:{user}"))
    }

    /// Runs `job` if this instance takes `flash:job:<name>` for this tick.
    async fn under_lease(&self, name: &str, ttl_ms: i64) -> bool {
        let lease = Lease::new(
            self.prefix.key(&format!("flash:job:{name}")),
            self.instance.clone(),
            ttl_ms,
        );
        let now = self.clock.now_ms();
        match lease
            .acquire(&mut self.conn.clone(), now, self.timeout_ms)
            .await
        {
            Ok(got) => got,
            Err(e) => {
                tracing::warn!(error = %e, job = name, "flash sale job lease unavailable");
                false
            }
        }
    }

    /// One admission tick: passes granted, each admitted user told on their channel.
    pub async fn admit_tick(&self) -> Result<usize, String> {
        let admitted = self
            .core
            .admit_once(self.clock.now_ms())
            .await
            .map_err(|e| e.to_string())?;
        let mut n = 0;
        for (pid, users) in admitted {
            for u in users {
                n += 1;
                let _: Result<i64, _> = redis::cmd("PUBLISH")
                    .arg(self.channel(&pid, &u))
                    .arg(r#"{"status":"admitted","position":0}"#)
                    .query_async(&mut self.conn.clone())
                    .await;
            }
        }
        Ok(n)
    }
}

pub async fn build(
    cfg: &PlatformConfig,
    settings: FlashSettings,
    clock: SharedClock,
    shutdown: Shutdown,
) -> Result<(Arc<FlashApp>, BuiltService), String> {
    let (conn, pool, ctx) = open_service(ServiceId::FlashSale, cfg, &shutdown, 8).await?;
    let prefix = KeyPrefix::new(cfg.store.key_prefix.clone());
    let timeout_ms = cfg.store.redis_timeout_ms;
    let app = Arc::new(FlashApp {
        core: FlashSale::new(
            RedisFlash::new(conn.clone(), prefix.clone(), timeout_ms),
            RedisIdempotency {
                conn: conn.clone(),
                prefix: prefix.clone(),
                timeout_ms,
                scope: "flash",
            },
            PgOrders { pool },
            settings.secret.clone().into_bytes(),
            settings.policy,
        ),
        clock,
        ctx: ctx.clone(),
        conn,
        prefix,
        redis_url: cfg.store.redis_url.clone(),
        timeout_ms,
        instance: cfg.instance_id.clone(),
    });
    let jobs = if settings.jobs {
        vec![
            tokio::spawn(every(
                app.clone(),
                "reaper",
                REAP_EVERY_MS,
                shutdown.clone(),
            )),
            tokio::spawn(every(
                app.clone(),
                "admission",
                ADMIT_EVERY_MS,
                shutdown.clone(),
            )),
            tokio::spawn(every(app.clone(), "cleanup", CLEANUP_EVERY_MS, shutdown)),
        ]
    } else {
        Vec::new()
    };
    let admin = internal_only(
        Router::new()
            .route("/admin/flash-sale/init-product", post(handlers::init))
            .route("/admin/flash-sale/stock", get(handlers::stock)),
        &ctx,
    );
    let api = Router::new()
        .route("/flash-sale/token", get(handlers::token))
        .route("/flash-sale/checkout", post(handlers::checkout))
        .route("/flash-sale/confirm", post(handlers::confirm))
        .route("/flash-sale/release", post(handlers::release))
        .route("/flash-sale/queue-status", get(handlers::queue_status))
        .route("/flash-sale/queue-stream", get(handlers::queue_stream))
        .route("/flash-sale/slot-status", get(handlers::slot_status))
        .merge(admin)
        .layer(axum::middleware::map_response(handlers::no_store))
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

/// A job loop: every `every_ms`, under its lease, until shutdown.
async fn every(app: Arc<FlashApp>, name: &'static str, every_ms: i64, shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(Duration::from_millis(every_ms as u64)) => {}
        }
        if !app.under_lease(name, every_ms).await {
            continue;
        }
        let now = app.clock.now_ms();
        let r = match name {
            "reaper" => app
                .core
                .reap_once(now)
                .await
                .map(|n| n as usize)
                .map_err(|e| e.to_string()),
            "admission" => app.admit_tick().await,
            _ => app
                .core
                .cleanup_once(now)
                .await
                .map(|n| n as usize)
                .map_err(|e| e.to_string()),
        };
        match r {
            Ok(n) if n > 0 => tracing::info!(job = name, n, "flash sale job"),
            Ok(_) => {}
            Err(e) => tracing::warn!(job = name, error = %e, "flash sale job failed"),
        }
    }
}
