//! Promo domain (05-promo): the condition tree ([`tree`]: strict parsing with depth,
//! size and shape limits, evaluation), effects in integer rupiah ([`effect`]), deterministic
//! resolution as a state machine the application layer drives between reservations
//! ([`resolve`]), and the fraud signals ([`fraud`]: device HMAC, address similarity, rings of
//! accounts linked by devices or addresses), the rule body ([`rule`]), and the counters port
//! ([`store`]: every boundary of a rule checked and taken at once, released once) with its
//! memory and Redis adapters, one conformance suite. The rule and redemption repositories, the
//! application layer and the service come next (issue #12).

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod effect;
pub mod fraud;
pub mod redis_store;
pub mod resolve;
pub mod rule;
pub mod store;
pub mod tree;

pub use effect::{Effect, Grant, MAX_MONEY};
pub use redis_store::RedisCounters;
pub use resolve::{Candidate, Reason, Resolver};
pub use rule::{Limits, RuleBody, RuleError, Status};
pub use store::{CounterStore, MemoryCounters, Reservation, Reserved, Usage};
pub use tree::{Condition, EvalContext, Minute, TreeError};
