//! Promo domain (05-promo), pure so far: the condition tree ([`tree`]: strict parsing with depth,
//! size and shape limits, evaluation), effects in integer rupiah ([`effect`]), deterministic
//! resolution as a state machine the application layer drives between reservations
//! ([`resolve`]), and the fraud signals ([`fraud`]: device HMAC, address similarity, rings of
//! accounts linked by devices or addresses), and the rule body ([`rule`]). The store ports, the Redis scripts and the
//! application layer come next (issue #12).

pub mod effect;
pub mod fraud;
pub mod resolve;
pub mod rule;
pub mod tree;

pub use effect::{Effect, Grant, MAX_MONEY};
pub use resolve::{Candidate, Reason, Resolver};
pub use rule::{Limits, RuleBody, RuleError, Status};
pub use tree::{Condition, EvalContext, Minute, TreeError};
