//! Ops endpoints (00-platform): `/health`, `/ready`, `/metrics`, and the service context they read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use qc_kit::redis_kit::bounded;
use redis::aio::ConnectionManager;
use serde_json::{json, Map, Value};
use sqlx::PgPool;

use super::config::ServiceId;
use super::data;
use super::error::ApiError;
use super::metrics::Metrics;
use super::shutdown::Shutdown;

const DEPENDENCY_TIMEOUT_MS: u64 = 1000;

/// What every handler of a service can reach: identity, metrics, readiness and dependencies.
#[derive(Debug)]
pub struct ServiceCtx {
    pub id: ServiceId,
    pub metrics: Metrics,
    pub started: AtomicBool,
    /// A service that must build something before it can answer (Search's first index) holds
    /// `/ready` at 503 while this is set.
    pub warming: AtomicBool,
    pub shutdown: Shutdown,
    pub redis: Option<ConnectionManager>,
    pub postgres: Option<PgPool>,
    pub internal_token: Option<String>,
}

impl ServiceCtx {
    pub fn new(
        id: ServiceId,
        shutdown: Shutdown,
        redis: Option<ConnectionManager>,
        postgres: Option<PgPool>,
        internal_token: Option<String>,
    ) -> Self {
        Self {
            id,
            metrics: Metrics::new(id.name()),
            started: AtomicBool::new(false),
            warming: AtomicBool::new(false),
            shutdown,
            redis,
            postgres,
            internal_token,
        }
    }

    pub fn mark_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }
}

pub fn routes(ctx: Arc<ServiceCtx>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(ctx)
}

async fn health(State(ctx): State<Arc<ServiceCtx>>) -> Response {
    data(
        StatusCode::OK,
        json!({"status": "ok", "service": ctx.id.name()}),
    )
}

async fn ready(State(ctx): State<Arc<ServiceCtx>>) -> Response {
    let mut checks = Map::new();
    let mut ok = true;
    if let Some(conn) = &ctx.redis {
        let mut c = conn.clone();
        let r: Result<String, _> = bounded(
            DEPENDENCY_TIMEOUT_MS,
            redis::cmd("PING").query_async(&mut c),
        )
        .await;
        ok &= r.is_ok();
        checks.insert(
            "redis".into(),
            Value::String(r.map_or_else(|e| e.to_string(), |_| "ok".into())),
        );
    }
    if let Some(pool) = &ctx.postgres {
        let r = qc_kit::pg::ping(pool, DEPENDENCY_TIMEOUT_MS).await;
        ok &= r.is_ok();
        checks.insert(
            "postgres".into(),
            Value::String(r.map_or_else(|e| e.to_string(), |_| "ok".into())),
        );
    }
    let phase = if ctx.shutdown.is_triggered() {
        Some("shutting down")
    } else if !ctx.started.load(Ordering::SeqCst) {
        Some("starting")
    } else if ctx.warming.load(Ordering::SeqCst) {
        Some("building its index")
    } else {
        None
    };
    match phase {
        None if ok => data(StatusCode::OK, json!({"status": "ready", "checks": checks})),
        _ => ApiError::unavailable(phase.unwrap_or("a dependency is unavailable"))
            .with_details(json!({"checks": checks}))
            .into_response(),
    }
}

async fn metrics(State(ctx): State<Arc<ServiceCtx>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ctx.metrics.render(),
    )
        .into_response()
}
