//! Identifier rules shared by all services: ids go into Redis keys, so their alphabet is closed.

/// Why an id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{field} is required")]
    Missing { field: &'static str },
    #[error("{field} must be 1-64 characters of [A-Za-z0-9_.-]")]
    Malformed { field: &'static str },
}

/// `^[A-Za-z0-9_.-]{1,64}$`: no key injection through `:`, braces, spaces or control characters.
pub fn validate_id(field: &'static str, value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Missing { field });
    }
    let ok = value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(IdError::Malformed { field })
    }
}

/// A new random UUIDv4 as a string.
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Where a core takes new record ids from: random UUIDs in the services, a deterministic
/// sequence in the simulator (so a run depends only on scenario, seed and code).
pub trait IdSource: Send + Sync + std::fmt::Debug {
    fn next_id(&self) -> String;
}

/// UUIDv4s.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomIds;

impl IdSource for RandomIds {
    fn next_id(&self) -> String {
        new_uuid()
    }
}

/// `<prefix><n>` with `n` zero-padded to 10 digits and counting from 1: fixed width, so ids
/// sort as numbers whatever the collation.
#[derive(Debug)]
pub struct SequentialIds {
    prefix: String,
    next: std::sync::atomic::AtomicU64,
}

impl SequentialIds {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            next: std::sync::atomic::AtomicU64::new(1),
        }
    }
}

impl IdSource for SequentialIds {
    fn next_id(&self) -> String {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}{n:010}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        assert!(validate_id("hub_id", "hub-1.a_B").is_ok());
        assert!(validate_id("hub_id", &"a".repeat(64)).is_ok());
    }

    #[test]
    fn sequential_ids_are_valid_and_ordered() {
        let ids = SequentialIds::new("a-");
        let (a, b) = (ids.next_id(), ids.next_id());
        assert_eq!(a, "a-0000000001");
        assert!(a < b && validate_id("id", &b).is_ok());
        assert_ne!(RandomIds.next_id(), RandomIds.next_id());
    }

    #[test]
    fn refuses_injection_and_oversize() {
        for bad in ["a:b", "a b", "{a}", "a\n", "é", &"a".repeat(65)] {
            assert_eq!(
                validate_id("sku", bad),
                Err(IdError::Malformed { field: "sku" }),
                "{bad:?}"
            );
        }
        assert_eq!(
            validate_id("sku", ""),
            Err(IdError::Missing { field: "sku" })
        );
    }
}
