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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        assert!(validate_id("hub_id", "hub-1.a_B").is_ok());
        assert!(validate_id("hub_id", &"a".repeat(64)).is_ok());
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
