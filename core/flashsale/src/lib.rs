//! Flash-sale domain (03-flash-sale, issue #15): selling a few hundred units to thousands of
//! buyers at once, fairly and without overselling.
//!
//! Pure rules: [`token`] (admission tokens bound by HMAC to user, device, product and a
//! single-use nonce), [`bot`] (the bot score from request signals), [`model`] (a sale, its
//! reservations, input rules, bucket split). The port [`store::FlashStore`] has two adapters,
//! [`store::MemoryFlash`] and [`redis_store::RedisFlash`] (one Lua script per atomic step), and
//! both pass [`conformance`]. [`app`] is the application layer the service and the twin run:
//! token mint, the checkout pipeline in 03's order, confirm, release, the queue, and the jobs
//! (reaper, admission, waiting-room cleanup) as functions of the clock.

pub mod app;
pub mod bot;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod model;
pub mod orders;
pub mod redis_store;
pub mod store;
pub mod token;

pub use app::{Answer, FlashSale, Policy};
pub use redis_store::RedisFlash;
pub use store::{FlashStore, MemoryFlash};
