//! Inventory domain (01-inventory): sellable stock per (hub, sku) with atomic multi-item holds.
//!
//! Pure rules live in [`model`] and [`rules`]; [`store::StockStore`] is the port; [`memory`] and
//! [`redis_store`] are its adapters (the latter runs the scripts in `lua/`); [`jobs`] holds the
//! clock-driven reaper; [`pg`] is the Postgres side (event writer, reconciliation, rebuild).

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod error;
pub mod jobs;
pub mod memory;
pub mod model;
pub mod pg;
pub mod redis_store;
pub mod rules;
pub mod store;

pub use error::InventoryError;
pub use memory::MemoryStore;
pub use model::*;
pub use redis_store::RedisStore;
pub use store::StockStore;
