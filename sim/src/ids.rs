//! Typed indices into the world's tables, and the ids the cores know them by. An index is
//! never a bare `usize` passed between domains: an order, a rider and a hub cannot be mixed up.

/// An order: its place in `World::orders`; Dispatch and ETA know it as `o0000042`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderIx(pub usize);

/// A rider: its place in `World::riders`; Dispatch knows it as `r00007`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RiderIx(pub usize);

/// A hub: its place in the scenario's `[[hubs]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HubIx(pub usize);

fn parse(prefix: char, width: usize, id: &str) -> Option<usize> {
    let digits = id.strip_prefix(prefix)?;
    (digits.len() == width && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

impl OrderIx {
    /// Fixed width, so ids sort as numbers in every store.
    pub fn key(self) -> String {
        format!("o{:07}", self.0)
    }
    pub fn parse(id: &str) -> Option<Self> {
        parse('o', 7, id).map(Self)
    }
}

impl RiderIx {
    pub fn key(self) -> String {
        format!("r{:05}", self.0)
    }
    pub fn parse(id: &str) -> Option<Self> {
        parse('r', 5, id).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        assert_eq!(OrderIx(42).key(), "o0000042");
        assert_eq!(OrderIx::parse("o0000042"), Some(OrderIx(42)));
        assert_eq!(RiderIx::parse(&RiderIx(7).key()), Some(RiderIx(7)));
        assert_eq!(OrderIx::parse("o42"), None);
        assert_eq!(RiderIx::parse("o00007"), None);
    }
}
