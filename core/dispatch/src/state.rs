//! The driver lifecycle (06 §6): which transitions exist, who may make them, and what each
//! does to the driver's order.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DriverState {
    Offline,
    Idle,
    Assigned,
    ToHub,
    Picking,
    Delivering,
    Completed,
}

impl DriverState {
    pub const ALL: [DriverState; 7] = [
        Self::Offline,
        Self::Idle,
        Self::Assigned,
        Self::ToHub,
        Self::Picking,
        Self::Delivering,
        Self::Completed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offline => "OFFLINE",
            Self::Idle => "IDLE",
            Self::Assigned => "ASSIGNED",
            Self::ToHub => "TO_HUB",
            Self::Picking => "PICKING",
            Self::Delivering => "DELIVERING",
            Self::Completed => "COMPLETED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// Who asks for a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    /// The matcher offering an order.
    Matcher,
    /// The driver accepting an offer.
    Accept,
    /// The driver rejecting an offer (or the offer timing out).
    Reject,
    /// `POST /dispatch/driver/state`.
    Api,
}

/// What a transition does to the driver's current order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEffect {
    None,
    /// The offer closes or the trip is aborted before pickup: the order is reassigned
    /// (this driver excluded).
    Reassign,
    /// Aborted after pickup: the order fails with this reason.
    Fail(&'static str),
    /// The order was delivered.
    Deliver,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition {from:?} -> {to:?}")]
pub struct IllegalTransition {
    pub from: DriverState,
    pub to: DriverState,
}

/// The whole table: allowed (from, to, via) and the effect. Anything else is illegal,
/// self-transitions included.
pub fn check_transition(
    from: DriverState,
    to: DriverState,
    via: Via,
) -> Result<OrderEffect, IllegalTransition> {
    use DriverState::*;
    use OrderEffect as E;
    let effect = match (from, to, via) {
        (Offline, Idle, Via::Api) => E::None,
        (Idle, Assigned, Via::Matcher) => E::None,
        (Idle, Offline, Via::Api) => E::None,
        (Assigned, ToHub, Via::Accept) => E::None,
        (Assigned, Idle, Via::Reject | Via::Api) => E::Reassign,
        (Assigned, Offline, Via::Api) => E::Reassign,
        (ToHub, Picking, Via::Api) => E::None,
        (ToHub, Idle, Via::Api) => E::Reassign,
        (Picking, Delivering, Via::Api) => E::None,
        (Picking, Idle, Via::Api) => E::Fail("DRIVER_ABORTED"),
        (Delivering, Completed, Via::Api) => E::Deliver,
        (Delivering, Idle, Via::Api) => E::Fail("DRIVER_ABORTED"),
        (Completed, Idle | Offline, Via::Api) => E::None,
        _ => return Err(IllegalTransition { from, to }),
    };
    Ok(effect)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use DriverState::*;

    #[test]
    fn the_api_can_never_assign_or_accept() {
        for from in DriverState::ALL {
            assert!(check_transition(from, Assigned, Via::Api).is_err());
            assert!(check_transition(from, ToHub, Via::Api).is_err());
            assert!(
                check_transition(from, from, Via::Api).is_err(),
                "self-transition {from:?}"
            );
        }
        assert_eq!(
            check_transition(Delivering, Completed, Via::Api),
            Ok(OrderEffect::Deliver)
        );
        assert_eq!(
            check_transition(Picking, Idle, Via::Api),
            Ok(OrderEffect::Fail("DRIVER_ABORTED"))
        );
        assert_eq!(
            check_transition(ToHub, Idle, Via::Api),
            Ok(OrderEffect::Reassign)
        );
    }

    #[test]
    fn exactly_the_table_is_allowed() {
        let mut allowed = 0;
        for from in DriverState::ALL {
            for to in DriverState::ALL {
                for via in [Via::Matcher, Via::Accept, Via::Reject, Via::Api] {
                    allowed += usize::from(check_transition(from, to, via).is_ok());
                }
            }
        }
        assert_eq!(allowed, 15);
        assert_eq!(DriverState::parse("TO_HUB"), Some(ToHub));
    }

    /// A driver with at most one order, driven by random requests.
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct Model {
        state: DriverState,
        has_order: bool,
    }

    proptest! {
        /// Random request sequences never reach an illegal state: refused requests change
        /// nothing, an order is held exactly in the order-carrying states, and every taken
        /// transition is in the table.
        #[test]
        fn random_events_never_reach_an_illegal_state(steps in prop::collection::vec((0usize..7, 0usize..4), 1..200)) {
            let mut m = Model { state: Offline, has_order: false };
            for (to, via) in steps {
                let to = DriverState::ALL[to];
                let via = [Via::Matcher, Via::Accept, Via::Reject, Via::Api][via];
                let before = m;
                match check_transition(m.state, to, via) {
                    Err(_) => prop_assert_eq!(m, before),
                    Ok(effect) => {
                        if to == Assigned { m.has_order = true; }
                        if matches!(effect, OrderEffect::Reassign | OrderEffect::Fail(_)) { m.has_order = false; }
                        if to == Completed { prop_assert_eq!(effect, OrderEffect::Deliver); m.has_order = false; }
                        m.state = to;
                    }
                }
                let carrying = matches!(m.state, Assigned | ToHub | Picking | Delivering);
                prop_assert_eq!(carrying, m.has_order, "{:?}", m);
            }
        }
    }
}
