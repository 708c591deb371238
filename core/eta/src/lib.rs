//! ETA domain (07-eta). Pure: the picking, queue and travel components and their Gaussian
//! composition ([`compose`]), the per-segment traffic Kalman filter ([`kalman`]), geohash
//! segments, split-conformal calibration of the stated quantiles ([`calibrate`]), input
//! validation and the sticky fingerprint ([`model`]). Over the [`EtaStore`] port (adapters
//! [`RedisEtaStore`], [`MemoryEtaStore`], one [`conformance`] suite), [`engine`] runs the
//! service's calculate / latest / observe. The simulator drives the same pure parts.

pub mod calibrate;
pub mod compose;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod engine;
pub mod geohash;
pub mod kalman;
pub mod model;
pub mod store;

pub use calibrate::{Offsets, Source};
pub use engine::{EtaResult, Model};
pub use kalman::{KfState, TrafficEstimate};
pub use model::{predict, EtaRequest, Prediction};
pub use store::{EtaStore, MemoryEtaStore, RedisEtaStore};
