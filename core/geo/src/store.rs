//! The port: what Geo needs from its stores (02 §4, §5): the hub registry, the cell index, the
//! per-cell winner cache and the hubs version that guards it. Adapters: [`RedisPgHubs`] (Postgres
//! registry + Redis index and cache, through [`crate::registry`]) and [`crate::MemoryHubs`]; both
//! pass [`crate::conformance`].

use std::future::Future;

use qc_kit::redis_kit::BackendError;
use redis::aio::ConnectionManager;
use sqlx::PgPool;

use crate::registry::{self, GeoKeys};
use crate::{Hub, Resolution};

/// What the Redis tier knows about one cell.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CellLookup {
    /// The cached winner's hub id.
    pub cached: Option<String>,
    /// Whether the cell index has been built (else a miss means "not indexed", not "no hub").
    pub ready: bool,
    /// Hubs whose coverage includes the cell, by id.
    pub candidates: Vec<String>,
}

pub trait HubStore: Send + Sync {
    /// Creates or replaces a hub, rewrites its part of the cell index, drops the cached winner
    /// of every cell it covered or covers now, and bumps the version. Returns (created, cells).
    fn put_hub(
        &self,
        hub: &Hub,
        res: Resolution,
        now_ms: i64,
    ) -> impl Future<Output = Result<(bool, usize), BackendError>> + Send;
    /// Every hub, by creation time then id.
    fn hubs(&self) -> impl Future<Output = Result<Vec<Hub>, BackendError>> + Send;
    /// The hubs version (0 before any write).
    fn version(&self) -> impl Future<Output = Result<i64, BackendError>> + Send;
    fn lookup(&self, cell: &str) -> impl Future<Output = Result<CellLookup, BackendError>> + Send;
    /// Caches `hub_id` as the cell's winner only if the version is still `snapshot_version`.
    fn cache_winner(
        &self,
        cell: &str,
        snapshot_version: i64,
        hub_id: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;
    /// Builds the whole index from the registry when it was never built (or was lost).
    fn bootstrap(&self, res: Resolution)
        -> impl Future<Output = Result<bool, BackendError>> + Send;
}

/// The production adapter: hubs in Postgres; index, cache and version in Redis.
#[derive(Debug, Clone)]
pub struct RedisPgHubs {
    pub conn: ConnectionManager,
    pub pool: PgPool,
    pub keys: GeoKeys,
    /// Bound on admin-path Redis calls (an index rewrite gets five times this).
    pub timeout_ms: u64,
    /// Bound on each Redis call of a lookup: past it the caller falls back to its own scan.
    pub lookup_timeout_ms: u64,
}

impl HubStore for RedisPgHubs {
    async fn put_hub(
        &self,
        hub: &Hub,
        res: Resolution,
        now_ms: i64,
    ) -> Result<(bool, usize), BackendError> {
        let h3 = registry::hub_cell(hub, res);
        let created = registry::upsert_hub(&self.pool, hub, &h3, now_ms).await?;
        let mut c = self.conn.clone();
        let cells =
            registry::reindex_hub(&mut c, &self.keys, hub, res, self.timeout_ms * 5).await?;
        registry::bump_version(&mut c, &self.keys, self.timeout_ms).await?;
        Ok((created, cells))
    }

    async fn hubs(&self) -> Result<Vec<Hub>, BackendError> {
        registry::load_hubs(&self.pool).await
    }

    async fn version(&self) -> Result<i64, BackendError> {
        registry::version(&mut self.conn.clone(), &self.keys, self.timeout_ms).await
    }

    async fn lookup(&self, cell: &str) -> Result<CellLookup, BackendError> {
        let (cached, ready, candidates) = registry::lookup(
            &mut self.conn.clone(),
            &self.keys,
            cell,
            self.lookup_timeout_ms,
        )
        .await?;
        Ok(CellLookup {
            cached,
            ready,
            candidates,
        })
    }

    async fn cache_winner(
        &self,
        cell: &str,
        snapshot_version: i64,
        hub_id: &str,
        now_ms: i64,
    ) -> Result<bool, BackendError> {
        registry::cache_winner(
            &mut self.conn.clone(),
            &self.keys,
            cell,
            snapshot_version,
            hub_id,
            now_ms,
            self.lookup_timeout_ms,
        )
        .await
    }

    async fn bootstrap(&self, res: Resolution) -> Result<bool, BackendError> {
        registry::bootstrap_index(
            &mut self.conn.clone(),
            &self.pool,
            &self.keys,
            res,
            self.timeout_ms * 5,
        )
        .await
    }
}
