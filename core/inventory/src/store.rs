//! The port: the atomic stock operations the inventory domain needs, in domain types.
//! Every adapter ([`crate::MemoryStore`], [`crate::RedisStore`]) passes [`crate::conformance`].

use std::future::Future;

use crate::error::InventoryError;
use crate::model::*;

/// Timing rules every adapter applies the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldPolicy {
    /// A hold lapses only after `expires_at + grace`.
    pub grace_s: u32,
    /// How long terminal records stay readable (GC, not business expiry).
    pub retention_s: u32,
}

impl Default for HoldPolicy {
    fn default() -> Self {
        Self {
            grace_s: 30,
            retention_s: 86_400,
        }
    }
}

pub trait StockStore: Send + Sync {
    /// Sets on-hand (held units included): counter := on_hand − reserved.
    fn set_stock(
        &self,
        now_ms: i64,
        cmd: &SetStockCommand,
    ) -> impl Future<Output = Result<StockSetResult, InventoryError>> + Send;

    /// The read contract (01 §3); an unknown pair reads as zeros with one bucket.
    fn stock(
        &self,
        hub: &HubId,
        sku: &Sku,
    ) -> impl Future<Output = Result<StockLevel, InventoryError>> + Send;

    /// Holds every item or none. Domain refusals (`InsufficientStock`, `SkuNotFound`) are errors.
    fn reserve(
        &self,
        now_ms: i64,
        cmd: &ReserveCommand,
    ) -> impl Future<Output = Result<ReserveOutcome, InventoryError>> + Send;

    /// Release, confirm or expire one hold; lazily expires a hold past `expires_at + grace`.
    fn transition(
        &self,
        now_ms: i64,
        hub: &HubId,
        rid: &ReservationId,
        action: Action,
    ) -> impl Future<Output = Result<TransitionOutcome, InventoryError>> + Send;

    fn reservation(
        &self,
        hub: &HubId,
        rid: &ReservationId,
    ) -> impl Future<Output = Result<Option<Reservation>, InventoryError>> + Send;

    /// The hub a reservation belongs to, when the caller did not say.
    fn locate(
        &self,
        rid: &ReservationId,
    ) -> impl Future<Output = Result<Option<HubId>, InventoryError>> + Send;

    /// Up to `limit` holds with `expires_at + grace < now_ms`, oldest first.
    fn due_expiries(
        &self,
        now_ms: i64,
        hub: &HubId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ReservationId>, InventoryError>> + Send;

    /// Every hub that has had stock set, sorted.
    fn hubs(&self) -> impl Future<Output = Result<Vec<HubId>, InventoryError>> + Send;

    fn policy(&self) -> HoldPolicy;

    /// Units available of each of `skus` at `hub` (0 for an unknown pair), for readers such as
    /// Search. The Redis store reads them in one MGET (plus one for bucketed SKUs).
    fn available(
        &self,
        hub: &HubId,
        skus: &[Sku],
    ) -> impl Future<Output = Result<Vec<i64>, InventoryError>> + Send {
        async move {
            let mut out = Vec::with_capacity(skus.len());
            for s in skus {
                out.push(self.stock(hub, s).await?.available);
            }
            Ok(out)
        }
    }
}

/// A borrowed store is a store (the twin lends its one store to the checkout saga).
impl<T: StockStore> StockStore for &T {
    fn set_stock(
        &self,
        now_ms: i64,
        cmd: &SetStockCommand,
    ) -> impl Future<Output = Result<StockSetResult, InventoryError>> + Send {
        (**self).set_stock(now_ms, cmd)
    }
    fn stock(
        &self,
        hub: &HubId,
        sku: &Sku,
    ) -> impl Future<Output = Result<StockLevel, InventoryError>> + Send {
        (**self).stock(hub, sku)
    }
    fn reserve(
        &self,
        now_ms: i64,
        cmd: &ReserveCommand,
    ) -> impl Future<Output = Result<ReserveOutcome, InventoryError>> + Send {
        (**self).reserve(now_ms, cmd)
    }
    fn transition(
        &self,
        now_ms: i64,
        hub: &HubId,
        rid: &ReservationId,
        action: Action,
    ) -> impl Future<Output = Result<TransitionOutcome, InventoryError>> + Send {
        (**self).transition(now_ms, hub, rid, action)
    }
    fn reservation(
        &self,
        hub: &HubId,
        rid: &ReservationId,
    ) -> impl Future<Output = Result<Option<Reservation>, InventoryError>> + Send {
        (**self).reservation(hub, rid)
    }
    fn locate(
        &self,
        rid: &ReservationId,
    ) -> impl Future<Output = Result<Option<HubId>, InventoryError>> + Send {
        (**self).locate(rid)
    }
    fn due_expiries(
        &self,
        now_ms: i64,
        hub: &HubId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ReservationId>, InventoryError>> + Send {
        (**self).due_expiries(now_ms, hub, limit)
    }
    fn hubs(&self) -> impl Future<Output = Result<Vec<HubId>, InventoryError>> + Send {
        (**self).hubs()
    }
    fn policy(&self) -> HoldPolicy {
        (**self).policy()
    }
    fn available(
        &self,
        hub: &HubId,
        skus: &[Sku],
    ) -> impl Future<Output = Result<Vec<i64>, InventoryError>> + Send {
        (**self).available(hub, skus)
    }
}
