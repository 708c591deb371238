//! Dispatch domain (06-dispatch). Pure parts: the 7-state driver machine with the order effects
//! of each transition, the offer cost, the greedy matcher, an optimal matcher (Kuhn–Munkres) that
//! can neither panic nor loop, the reassignment/backoff rules, the batch timer. Over them, the
//! [`Dispatcher`] applies every rule through the [`DispatchRepo`] port, whose adapters are
//! [`MemoryRepo`] and [`PgRepo`] (checked by one [`conformance`] suite); [`queue`] claims the
//! `dispatch_queue` rows Checkout writes.

pub mod batch;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod dispatcher;
pub mod matching;
pub mod memory;
pub mod model;
pub mod pg;
pub mod queue;
pub mod repo;
pub mod state;

pub use batch::BatchTimer;
pub use dispatcher::{DispatchError, DispatchPolicy, Dispatcher, HubPoints, Notice, Outcome};
pub use matching::{cost, greedy, optimal, Assignment, CostInput, Matcher, OPTIMAL_MAX_SIDE};
pub use memory::MemoryRepo;
pub use pg::PgRepo;
pub use repo::{DispatchRepo, RepoError};
pub use state::{check_transition, DriverState, OrderEffect, Via};

/// Reassignment after an offer closes (reject, timeout, cancel), 06 §5: with `k` attempts
/// already started, the next runs after 2^k s while k < 3; at k = 3 the order fails.
pub fn next_reassignment(k: u32) -> Option<(u32, i64)> {
    (k < MAX_REASSIGNMENTS).then(|| (k + 1, 1000i64 << k))
}

/// Reassignment attempts after the first offer (so at most 4 offers per order).
pub const MAX_REASSIGNMENTS: u32 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reassignment_backs_off_then_fails() {
        assert_eq!(next_reassignment(0), Some((1, 1000)));
        assert_eq!(next_reassignment(1), Some((2, 2000)));
        assert_eq!(next_reassignment(2), Some((3, 4000)));
        assert_eq!(next_reassignment(3), None);
    }
}
