//! Assembling a service's router with the platform layers, and running services until a
//! graceful shutdown (00-platform "Graceful shutdown").

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::DefaultBodyLimit;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower_http::catch_panic::CatchPanicLayer;

use super::config::ServiceId;
use super::error::{method_not_allowed, route_not_found, ApiError};
use super::middleware::{observe, panic_response};
use super::ops::{self, ServiceCtx};
use super::shutdown::Shutdown;

pub const BODY_LIMIT_BYTES: usize = 1 << 20;

/// A service ready to run: its full router, its context and its background loops.
#[derive(Debug)]
pub struct BuiltService {
    pub ctx: Arc<ServiceCtx>,
    pub router: Router,
    pub jobs: Vec<JoinHandle<()>>,
}

/// The service's API routes plus ops endpoints, envelope fallbacks, body limit, panic
/// recovery and the request middleware.
pub fn assemble(ctx: Arc<ServiceCtx>, api: Router) -> Router {
    api.merge(ops::routes(ctx.clone()))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn_with_state(ctx, observe))
}

/// Answers on a service's port while it is still connecting to its stores: `/health` 200,
/// `/ready` and every other route 503 `UNAVAILABLE` ("starting").
#[derive(Debug)]
pub struct StartingServer {
    stop: Shutdown,
    task: JoinHandle<std::io::Result<()>>,
}

impl StartingServer {
    /// Serves on a duplicate of `listener`'s socket; returns the listener for the real server.
    pub fn start(id: ServiceId, listener: TcpListener) -> std::io::Result<(TcpListener, Self)> {
        let original = listener.into_std()?;
        let duplicate = original.try_clone()?;
        let ctx = Arc::new(ServiceCtx::new(id, Shutdown::new(), None, None, None));
        let router = ops::routes(ctx.clone())
            .fallback(|| async { ApiError::unavailable("starting") })
            .layer(axum::middleware::from_fn_with_state(ctx, observe));
        let stop = Shutdown::new();
        let task = tokio::spawn(serve_until(
            TcpListener::from_std(duplicate)?,
            router,
            stop.clone(),
        ));
        Ok((TcpListener::from_std(original)?, Self { stop, task }))
    }

    /// Stops answering (requests in flight finish); the real server takes the socket over.
    pub async fn finish(self) {
        self.stop.trigger();
        let _ = self.task.await;
    }
}

/// Opens a service's stores: Redis (with every Lua script loaded) and Postgres (created if
/// missing, migrated), with messages that say how to start a missing one.
pub async fn open_stores(
    store: &qc_kit::config::StoreConfig,
    pg_connections: u32,
) -> Result<(redis::aio::ConnectionManager, sqlx::PgPool), String> {
    let conn = qc_kit::redis_kit::connect(&store.redis_url, store.redis_timeout_ms)
        .await
        .map_err(|e| format!("{e} (is Redis running? scripts/ensure-stores.sh starts one)"))?;
    let pool = qc_kit::pg::connect_and_migrate(store, pg_connections)
        .await
        .map_err(|e| format!("{e} (is Postgres running? scripts/ensure-stores.sh starts one)"))?;
    let mut c = conn.clone();
    qc_kit::scripts::preload(&mut c)
        .await
        .map_err(|e| format!("loading Lua scripts: {e}"))?;
    Ok((conn, pool))
}

/// A service's stores (see [`open_stores`]) and its context over them.
pub async fn open_service(
    id: ServiceId,
    cfg: &super::config::PlatformConfig,
    shutdown: &Shutdown,
    pg_connections: u32,
) -> Result<(redis::aio::ConnectionManager, sqlx::PgPool, Arc<ServiceCtx>), String> {
    let (conn, pool) = open_stores(&cfg.store, pg_connections).await?;
    let ctx = Arc::new(ServiceCtx::new(
        id,
        shutdown.clone(),
        Some(conn.clone()),
        Some(pool.clone()),
        cfg.internal_api_token.clone(),
    ));
    Ok((conn, pool, ctx))
}

/// Binds `addr` with a message naming it on failure.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// Serves one router (with peer addresses) until `shutdown`, then lets in-flight requests finish.
pub async fn serve_until(
    listener: TcpListener,
    router: Router,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.wait().await })
    .await
}

/// Serves every listener until `shutdown`, then drains within `timeout`.
/// Returns the exit code: 0 after a clean drain, 1 if the drain was cut short.
pub async fn run(
    services: Vec<(BuiltService, TcpListener)>,
    shutdown: Shutdown,
    timeout: Duration,
) -> i32 {
    let mut servers = Vec::new();
    let mut jobs = Vec::new();
    for (svc, listener) in services {
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::info!(service = svc.ctx.id.name(), addr, "listening");
        svc.ctx.mark_started();
        let sd = shutdown.clone();
        let app = svc
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        servers.push(tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { sd.wait().await })
                .await
        }));
        jobs.extend(svc.jobs);
    }
    shutdown.wait().await;
    tracing::info!("shutdown begun: not ready, no new connections, draining");
    let deadline = Instant::now() + timeout;
    let mut clean = true;
    for task in servers.into_iter().chain(jobs_as_results(jobs)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::error!(error = %e, "server error during shutdown");
                clean = false;
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "task failed during shutdown");
                clean = false;
            }
            Err(_) => {
                tracing::error!("drain cut short by SHUTDOWN_TIMEOUT_SECS");
                clean = false;
                break;
            }
        }
    }
    tracing::info!(clean, "shutdown complete");
    i32::from(!clean)
}

fn jobs_as_results(
    jobs: Vec<JoinHandle<()>>,
) -> impl Iterator<Item = JoinHandle<std::io::Result<()>>> {
    jobs.into_iter()
        .map(|j| tokio::spawn(async move { j.await.map_err(std::io::Error::other) }))
}
