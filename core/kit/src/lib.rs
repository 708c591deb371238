//! Shared kit for every domain crate and service: clock, ids, env config, Redis and Postgres helpers,
//! the Lua script registry and leases. Nothing here knows HTTP.

pub mod clock;
pub mod config;
pub mod idempotency;
pub mod ids;
pub mod lease;
pub mod pg;
pub mod redis_kit;
pub mod scripts;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use clock::{Clock, ManualClock, SharedClock, WallClock};
pub use ids::{validate_id, IdError};
