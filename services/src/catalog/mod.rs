//! The Catalog service (08 §3, port 8100): products, categories and hub prices in Postgres
//! through `qc-catalog`, the change feed Search follows, and a `PUBLISH catalog:changed <seq>`
//! after every committed write (a lossy nudge; the feed is the truth). Writes need
//! `X-Internal-Token` when `INTERNAL_API_TOKEN` is set.

mod handlers;

use std::sync::Arc;

use axum::routing::{get, post, put};
use axum::Router;
use qc_catalog::PgCatalog;
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::SharedClock;
use redis::aio::ConnectionManager;

use crate::platform::config::{PlatformConfig, ServiceId};
use crate::platform::middleware::internal_only;
use crate::platform::ops::ServiceCtx;
use crate::platform::server::{assemble, open_service, BuiltService};
use crate::platform::shutdown::Shutdown;

#[derive(Debug)]
pub struct CatalogApp {
    pub repo: PgCatalog,
    pub clock: SharedClock,
    pub ctx: Arc<ServiceCtx>,
    pub redis: ConnectionManager,
    pub prefix: KeyPrefix,
    pub redis_timeout_ms: u64,
}

impl CatalogApp {
    /// The pub/sub channel Search listens on.
    pub fn channel(&self) -> String {
        self.prefix.key("catalog:changed")
    }
}

pub async fn build(
    cfg: &PlatformConfig,
    clock: SharedClock,
    shutdown: Shutdown,
) -> Result<(Arc<CatalogApp>, BuiltService), String> {
    let (conn, pool, ctx) = open_service(ServiceId::Catalog, cfg, &shutdown, 8).await?;
    let app = Arc::new(CatalogApp {
        repo: PgCatalog::new(pool),
        clock,
        ctx: ctx.clone(),
        redis: conn,
        prefix: KeyPrefix::new(cfg.store.key_prefix.clone()),
        redis_timeout_ms: cfg.store.redis_timeout_ms,
    });
    let writes = internal_only(
        Router::new()
            .route("/categories", post(handlers::create_category))
            .route("/products", post(handlers::create_product))
            .route(
                "/products/{sku}",
                put(handlers::put_product)
                    .patch(handlers::patch_product)
                    .delete(handlers::delete_product),
            )
            .route("/products/{sku}/prices/{hub_id}", put(handlers::put_price))
            .route("/internal/changes", get(handlers::changes)),
        &ctx,
    );
    let api = Router::new()
        .route("/categories", get(handlers::categories))
        .route("/products", get(handlers::list_products))
        .route("/products/{sku}", get(handlers::get_product))
        .route("/products/{sku}/price", get(handlers::price))
        .merge(writes)
        .with_state(app.clone());
    Ok((
        app,
        BuiltService {
            ctx: ctx.clone(),
            router: assemble(ctx, api),
            jobs: Vec::new(),
        },
    ))
}
