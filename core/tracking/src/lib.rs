//! Tracking domain (09-tracking). Pure: a fix's validation ([`validate`]: the six factors, the
//! jump rule, Traccar's filters) and the metric Kalman filter with its innovation gate
//! ([`kalman`]). Over the [`TrackingStore`] port (adapters [`MemoryTrackingStore`] and
//! [`RedisTrackingStore`], one conformance suite), [`Tracker`] runs ingest, status changes,
//! position and history for the service and the simulator alike.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod kalman;
pub mod model;
pub mod redis_store;
pub mod store;
pub mod token;
pub mod tracker;
pub mod validate;

pub use kalman::{Filter, KfParams, Output};
pub use model::{Fix, Frame, OrderStatus, PositionEvent, Reject, StatusEvent};
pub use redis_store::RedisTrackingStore;
pub use store::{MemoryTrackingStore, StatusChange, TrackingStore};
pub use tracker::{IngestError, StatusError, Tracker};
pub use validate::{haversine_m, Limits};
