//! Promo domain (05-promo): the condition tree ([`tree`]: strict parsing with depth,
//! size and shape limits, evaluation), effects in integer rupiah ([`effect`]), deterministic
//! resolution as a state machine the application layer drives between reservations
//! ([`resolve`]), and the fraud signals ([`fraud`]: device HMAC, address similarity, rings of
//! accounts linked by devices or addresses), the rule body ([`rule`]), and the counters port
//! ([`store`]: every boundary of a rule checked and taken at once, released once) with its
//! memory and Redis adapters, one conformance suite; the cart ([`cart`]) and the application
//! layer ([`engine`]: validate, apply, release). The rule and redemption repositories, the
//! service and the twin come next (issue #12).

pub mod cart;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod effect;
pub mod engine;
pub mod fraud;
pub mod redis_store;
pub mod resolve;
pub mod rule;
pub mod rules;
pub mod store;
pub mod tree;

pub use cart::{Cart, CartError};
pub use effect::{Effect, Grant, MAX_MONEY};
pub use engine::{
    apply, release, validate, Applied, EvalResult, FraudFlag, PromoConfig, RingAction, Rule,
};
pub use redis_store::RedisCounters;
pub use resolve::{Candidate, Reason, Resolver};
pub use rule::{Limits, RuleBody, RuleError, Status};
pub use rules::{MemoryRules, PgRules, RuleRepo};
pub use store::{
    AddressBook, CounterStore, MemoryCounters, Reservation, Reserved, RingBook, Usage,
};
pub use tree::{Condition, EvalContext, Minute, TreeError};
