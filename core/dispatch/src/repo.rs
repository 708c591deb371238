//! The port: how Dispatch reads and writes its records. Adapters only store and compare; every
//! rule lives in [`crate::Dispatcher`], which reads rows, decides, and commits one [`Write`].
//! A commit is all or nothing, and each updated row is compared-and-set on its `version`, so two
//! instances deciding from the same rows cannot both win. Adapters: [`crate::MemoryRepo`] and
//! [`crate::PgRepo`], both checked by [`crate::conformance`].

use std::future::Future;

use qc_kit::redis_kit::BackendError;

use crate::model::{Assignment, Driver, DriverEvent, Order};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoError {
    /// A row changed since it was read, an inserted key exists, or a second live assignment
    /// for an order or driver was refused. The caller re-reads and decides again.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("store unavailable: {0}")]
    Backend(#[source] BackendError),
}

/// A row to write: `Insert` must not exist yet (it is stored with version 1); `Update` replaces
/// the stored row only if the stored version is `row.version - 1`.
#[derive(Debug, Clone, PartialEq)]
pub enum Row<T> {
    Insert(T),
    Update(T),
}

impl<T> Row<T> {
    pub fn get(&self) -> &T {
        self.parts().0
    }

    /// The row and whether it is an insert.
    pub fn parts(&self) -> (&T, bool) {
        match self {
            Row::Insert(t) => (t, true),
            Row::Update(t) => (t, false),
        }
    }
}

/// One atomic change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Write {
    pub orders: Vec<Row<Order>>,
    pub drivers: Vec<Row<Driver>>,
    pub assignments: Vec<Row<Assignment>>,
    pub events: Vec<DriverEvent>,
}

impl Write {
    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
            && self.drivers.is_empty()
            && self.assignments.is_empty()
            && self.events.is_empty()
    }
}

pub trait DispatchRepo: Send + Sync {
    fn order(&self, id: &str) -> impl Future<Output = Result<Option<Order>, RepoError>> + Send;
    fn driver(&self, id: &str) -> impl Future<Output = Result<Option<Driver>, RepoError>> + Send;
    fn assignment(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Assignment>, RepoError>> + Send;
    /// A driver's state log, oldest first.
    fn driver_events(
        &self,
        driver_id: &str,
    ) -> impl Future<Output = Result<Vec<DriverEvent>, RepoError>> + Send;
    /// Pooled orders (`pooled_at` set), oldest first (then by id), at most `limit`.
    fn pool(&self, limit: usize) -> impl Future<Output = Result<Vec<Order>, RepoError>> + Send;
    /// How many orders are pooled, and since when the oldest.
    fn pool_stats(&self) -> impl Future<Output = Result<(usize, Option<i64>), RepoError>> + Send;
    /// How many of one hub's orders are pooled.
    fn hub_pool_len(&self, hub_id: &str) -> impl Future<Output = Result<usize, RepoError>> + Send;
    /// Drivers that may take an offer: IDLE, location known, `load < max_load`; by id.
    fn candidates(&self) -> impl Future<Output = Result<Vec<Driver>, RepoError>> + Send;
    /// Live PENDING assignments with `expires_at <= now`, soonest first.
    fn due_offers(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Assignment>, RepoError>> + Send;
    /// Orders whose reassignment attempt is due (`reassign_due_at <= now`), soonest first.
    fn due_reassignments(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Order>, RepoError>> + Send;
    /// PENDING orders whose `deliver_by <= now`, soonest first (then by id).
    fn overdue(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Order>, RepoError>> + Send;
    /// Applies every row of `w` or none.
    fn commit(&self, w: &Write) -> impl Future<Output = Result<(), RepoError>> + Send;
}
