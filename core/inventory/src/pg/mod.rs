//! The Postgres side (01 §6, §8), one module per job: `writer` (the idempotent event writer fed
//! by the per-hub Redis streams), `reconcile` (Postgres against Redis) and `rebuild` (Redis from
//! Postgres when it comes back empty).

mod rebuild;
mod reconcile;
mod writer;

pub use rebuild::*;
pub use reconcile::*;
pub use writer::*;
