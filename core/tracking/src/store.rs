//! The port: Tracking's state in its store (09 "Events and Redis") — per order the `seq`
//! counter, the latest position, the trail of the newest positions and the status. Adapters:
//! [`MemoryTrackingStore`] here, and the Redis one. Both keep `seq` strictly increasing per
//! order and refuse any status change after a terminal one.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Mutex;

use qc_kit::redis_kit::BackendError;

use crate::model::{OrderStatus, PositionEvent, StatusEvent};

/// `TRACKING_TRAIL_MAX`: positions kept per order.
pub const TRAIL_MAX: usize = 500;

/// A status change's outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusChange {
    /// Stored and published with its `seq`.
    Done(StatusEvent),
    /// The order is already delivered or cancelled (409): its terminal status.
    Closed(StatusEvent),
}

pub trait TrackingStore: Send + Sync {
    /// The order's latest status event.
    fn status(
        &self,
        order_id: &str,
    ) -> impl Future<Output = Result<Option<StatusEvent>, BackendError>> + Send;
    /// Whether the order's status is terminal (delivered or cancelled): every fix asks.
    fn closed(&self, order_id: &str) -> impl Future<Output = Result<bool, BackendError>> + Send {
        async move {
            Ok(self
                .status(order_id)
                .await?
                .is_some_and(|s| s.status.is_terminal()))
        }
    }
    /// Atomically: unless the order is terminal (then `None`, nothing written), stores `event`
    /// with the order's next `seq` (its own is ignored) as the latest position and in the trail
    /// (newest [`TRAIL_MAX`] kept), and publishes it; returns it with its seq.
    fn append_position(
        &self,
        event: PositionEvent,
    ) -> impl Future<Output = Result<Option<PositionEvent>, BackendError>> + Send;
    /// Atomically: unless the order is terminal, takes the next `seq`, stores and publishes the
    /// status.
    fn set_status(
        &self,
        order_id: &str,
        status: OrderStatus,
        driver_id: Option<&str>,
        timestamp: &str,
    ) -> impl Future<Output = Result<StatusChange, BackendError>> + Send;
    fn position(
        &self,
        order_id: &str,
    ) -> impl Future<Output = Result<Option<PositionEvent>, BackendError>> + Send;
    /// Trail positions with `seq > after_seq`, ascending, at most `limit`.
    fn history(
        &self,
        order_id: &str,
        after_seq: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<PositionEvent>, BackendError>> + Send;
}

#[derive(Debug, Default)]
struct OrderRec {
    seq: i64,
    position: Option<PositionEvent>,
    /// Ascending seq (appended in seq order; the oldest dropped past [`TRAIL_MAX`]).
    trail: VecDeque<PositionEvent>,
    status: Option<StatusEvent>,
}

/// In-process adapter: the simulator's and the tests'. Publishing is a no-op here: nothing
/// subscribes in-process (the service's fan-out runs over Redis pub/sub).
#[derive(Debug, Default)]
pub struct MemoryTrackingStore {
    orders: Mutex<HashMap<String, OrderRec>>,
}

impl MemoryTrackingStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, order_id: &str, f: impl FnOnce(&mut OrderRec) -> T) -> T {
        let mut orders = self.orders.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(o) = orders.get_mut(order_id) {
            return f(o);
        }
        f(orders.entry(order_id.to_string()).or_default())
    }

    fn read<T>(&self, order_id: &str, f: impl FnOnce(Option<&OrderRec>) -> T) -> T {
        let orders = self.orders.lock().unwrap_or_else(|p| p.into_inner());
        f(orders.get(order_id))
    }
}

impl TrackingStore for MemoryTrackingStore {
    async fn status(&self, order_id: &str) -> Result<Option<StatusEvent>, BackendError> {
        Ok(self.read(order_id, |o| o.and_then(|o| o.status.clone())))
    }

    async fn append_position(
        &self,
        mut event: PositionEvent,
    ) -> Result<Option<PositionEvent>, BackendError> {
        let order_id = event.order_id.clone();
        Ok(self.with(&order_id, |o| {
            if o.status.as_ref().is_some_and(|s| s.status.is_terminal()) {
                return None;
            }
            o.seq += 1;
            event.seq = o.seq;
            o.position = Some(event.clone());
            o.trail.push_back(event.clone());
            while o.trail.len() > TRAIL_MAX {
                o.trail.pop_front();
            }
            Some(event)
        }))
    }

    async fn set_status(
        &self,
        order_id: &str,
        status: OrderStatus,
        driver_id: Option<&str>,
        timestamp: &str,
    ) -> Result<StatusChange, BackendError> {
        Ok(self.with(order_id, |o| {
            if let Some(s) = o.status.as_ref().filter(|s| s.status.is_terminal()) {
                return StatusChange::Closed(s.clone());
            }
            o.seq += 1;
            let event = StatusEvent {
                kind: "status".into(),
                seq: o.seq,
                order_id: order_id.to_string(),
                status,
                driver_id: driver_id.map(str::to_string),
                timestamp: timestamp.to_string(),
            };
            o.status = Some(event.clone());
            StatusChange::Done(event)
        }))
    }

    async fn position(&self, order_id: &str) -> Result<Option<PositionEvent>, BackendError> {
        Ok(self.read(order_id, |o| o.and_then(|o| o.position.clone())))
    }

    async fn history(
        &self,
        order_id: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<PositionEvent>, BackendError> {
        Ok(self.read(order_id, |o| {
            o.map(|o| {
                let from = o.trail.partition_point(|e| e.seq <= after_seq);
                o.trail.range(from..).take(limit).cloned().collect()
            })
            .unwrap_or_default()
        }))
    }
}
