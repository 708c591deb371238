//! The discrete-event digital twin (10-simulator): a deterministic engine that drives the same
//! core crates as the services, against the in-memory adapters or live Redis and Postgres.

pub mod backend;
pub mod checkout;
pub mod engine;
pub mod eta;
pub mod flash;
pub mod fleet;
pub mod gate;
pub mod gps;
pub mod ids;
pub mod log;
pub mod plan;
pub mod pool;
pub mod promo;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod search;
pub mod summary;
pub mod sweep;
pub mod world;
