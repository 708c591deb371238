//! The ETA service (07-eta, port 8097): `calculate` with the sticky cache, `GET` of the latest
//! answer, and `observe` (traffic filters and calibration) over Redis through the `qc-eta`
//! engine; prediction and observation records go to Postgres asynchronously.

mod handlers;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use qc_eta::RedisEtaStore;
use qc_kit::config::{ConfigError, EnvReader, EnvSource};
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::SharedClock;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::platform::config::{PlatformConfig, ServiceId};
use crate::platform::middleware::internal_only;
use crate::platform::ops::ServiceCtx;
use crate::platform::server::{assemble, open_service, BuiltService};
use crate::platform::shutdown::Shutdown;

/// `ETA_*` settings (07 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtaConfig {
    /// Deadline for one calculation's store reads; past it the components fall back.
    pub component_timeout_ms: u64,
    /// Bound on each Redis command.
    pub redis_timeout_ms: u64,
    /// The city's offset from UTC, for the hour bands of calibration.
    pub utc_offset_min: i32,
    /// Records waiting for Postgres; beyond it they are dropped (and counted).
    pub record_queue: usize,
    /// How long an order's answer stays sticky (07 §3).
    pub sticky_ttl_s: i64,
}

impl EtaConfig {
    pub fn read(r: &mut EnvReader<'_>) -> Self {
        Self {
            component_timeout_ms: r.number("ETA_COMPONENT_TIMEOUT_MS", 5000, 10, 60_000),
            redis_timeout_ms: r.number("ETA_REDIS_TIMEOUT_MS", 250, 10, 10_000),
            utc_offset_min: r.number("ETA_UTC_OFFSET_MINUTES", 420, -720, 840),
            record_queue: r.number("ETA_RECORD_QUEUE", 10_000, 1, 1_000_000),
            sticky_ttl_s: r.number("ETA_STICKY_TTL_S", 30, 1, 3600),
        }
    }

    pub fn from_env(env: &EnvSource) -> Result<Self, ConfigError> {
        let mut r = env.reader();
        let cfg = Self::read(&mut r);
        r.finish()?;
        Ok(cfg)
    }
}

/// A row for the analytics tables.
#[derive(Debug, Clone)]
pub enum Record {
    Prediction(Box<qc_eta::EtaResult>, String),
    Observation {
        order_id: Option<String>,
        segment: String,
        expected_s: f64,
        actual_s: f64,
        observed_at: i64,
        applied: bool,
    },
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct EtaApp {
    pub store: RedisEtaStore,
    pub clock: SharedClock,
    pub cfg: EtaConfig,
    pub ctx: Arc<ServiceCtx>,
    pub pool: PgPool,
    records: mpsc::Sender<Record>,
}

impl EtaApp {
    /// Queues a record for Postgres without waiting; a full queue drops it (counted).
    pub fn record(&self, r: Record) {
        if self.records.try_send(r).is_err() {
            self.ctx.metrics.count(
                "eta_records_dropped_total",
                "Analytics records dropped because the Postgres queue was full.",
                vec![],
                1.0,
            );
        }
    }
}

pub async fn build(
    cfg: &PlatformConfig,
    ecfg: EtaConfig,
    clock: SharedClock,
    shutdown: Shutdown,
) -> Result<(Arc<EtaApp>, BuiltService), String> {
    let store_cfg = &cfg.store;
    let (conn, pool, ctx) = open_service(ServiceId::Eta, cfg, &shutdown, 8).await?;
    let (tx, rx) = mpsc::channel(ecfg.record_queue);
    let app = Arc::new(EtaApp {
        store: RedisEtaStore::new(
            conn,
            KeyPrefix::new(store_cfg.key_prefix.clone()),
            ecfg.redis_timeout_ms,
        )
        .with_sticky_ms(ecfg.sticky_ttl_s * 1000),
        clock,
        cfg: ecfg,
        ctx: ctx.clone(),
        pool: pool.clone(),
        records: tx,
    });
    let writer = spawn_writer(pool, rx, ctx.clone(), shutdown);
    let internal = internal_only(
        Router::new().route("/eta/observe", post(handlers::observe)),
        &ctx,
    );
    let api = Router::new()
        .route("/eta/calculate", post(handlers::calculate))
        .route("/eta/{order_id}", get(handlers::latest))
        .merge(internal)
        .with_state(app.clone());
    Ok((
        app,
        BuiltService {
            ctx: ctx.clone(),
            router: assemble(ctx, api),
            jobs: vec![writer],
        },
    ))
}

/// Writes queued records; at shutdown it drains what is queued (bounded by the drain timeout).
fn spawn_writer(
    pool: PgPool,
    mut rx: mpsc::Receiver<Record>,
    ctx: Arc<ServiceCtx>,
    shutdown: Shutdown,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let r = tokio::select! {
                r = rx.recv() => r,
                _ = shutdown.wait() => {
                    rx.close();
                    rx.recv().await
                }
            };
            let Some(r) = r else { break };
            if let Err(e) = write(&pool, &r).await {
                tracing::warn!(error = %e, "eta record not written");
                ctx.metrics.count(
                    "eta_records_failed_total",
                    "Analytics records Postgres refused.",
                    vec![],
                    1.0,
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    })
}

async fn write(pool: &PgPool, r: &Record) -> Result<(), sqlx::Error> {
    match r {
        Record::Prediction(p, fp) => {
            sqlx::query(
                "INSERT INTO eta_predictions (order_id, hub_id, computed_at, p50, p80, p95, fp, segment, calibration)
                 VALUES ($1, $2, to_timestamp($3::float8 / 1000), $4, $5, $6, $7, $8, $9)",
            )
            .bind(&p.order_id)
            .bind(&p.hub_id)
            .bind(p.computed_at)
            .bind(p.eta_p50_s)
            .bind(p.eta_p80_s)
            .bind(p.eta_p95_s)
            .bind(fp)
            .bind(&p.segment)
            .bind(&p.calibration)
            .execute(pool)
            .await?;
        }
        Record::Observation {
            order_id,
            segment,
            expected_s,
            actual_s,
            observed_at,
            applied,
        } => {
            sqlx::query(
                "INSERT INTO eta_observations (order_id, segment, expected_s, actual_s, ratio, observed_at, applied)
                 VALUES ($1, $2, $3, $4, $5, to_timestamp($6::float8 / 1000), $7)",
            )
            .bind(order_id)
            .bind(segment)
            .bind(expected_s)
            .bind(actual_s)
            .bind(actual_s / expected_s.max(1e-9))
            .bind(observed_at)
            .bind(applied)
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}
