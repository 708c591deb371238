//! Access tokens (09 "Auth"): `<exp>.<hex HMAC-SHA256(secret, msg)>` with `exp` in Unix seconds,
//! where `msg` is `driver:<driver_id>:<order_id>:<exp>` for a driver's socket and
//! `user:<user_id>:<order_id>:<exp>` for a customer's stream, history and position. Ids follow
//! [`crate::model::valid_id`], so they cannot contain the `:` separator.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Who a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Driver,
    User,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Driver => "driver",
            Role::User => "user",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("a token is required")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("token expired")]
    Expired,
    #[error("token signature does not match")]
    BadSignature,
}

fn mac(secret: &[u8], role: Role, subject: &str, order_id: &str, exp: i64) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(format!("{}:{subject}:{order_id}:{exp}", role.as_str()).as_bytes());
    m
}

/// A token for `subject` (driver or user id) on `order_id`, valid until `exp_s`.
pub fn sign(secret: &[u8], role: Role, subject: &str, order_id: &str, exp_s: i64) -> String {
    let tag = mac(secret, role, subject, order_id, exp_s)
        .finalize()
        .into_bytes();
    format!("{exp_s}.{}", hex::encode(tag))
}

/// Checks a token in constant time; expired when `now_s > exp`.
pub fn verify(
    secret: &[u8],
    token: Option<&str>,
    role: Role,
    subject: &str,
    order_id: &str,
    now_s: i64,
) -> Result<(), TokenError> {
    let token = token.filter(|t| !t.is_empty()).ok_or(TokenError::Missing)?;
    let (exp, sig) = token.split_once('.').ok_or(TokenError::Malformed)?;
    if exp.is_empty() || !exp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TokenError::Malformed);
    }
    let exp: i64 = exp.parse().map_err(|_| TokenError::Malformed)?;
    let sig = hex::decode(sig).map_err(|_| TokenError::Malformed)?;
    mac(secret, role, subject, order_id, exp)
        .verify_slice(&sig)
        .map_err(|_| TokenError::BadSignature)?;
    if now_s > exp {
        return Err(TokenError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"secret";

    #[test]
    fn a_token_opens_only_its_own_door_until_it_expires() {
        let t = sign(KEY, Role::Driver, "drv_1", "ord_1", 1_000);
        assert_eq!(
            verify(KEY, Some(&t), Role::Driver, "drv_1", "ord_1", 1_000),
            Ok(())
        );
        let refused = [
            verify(KEY, Some(&t), Role::Driver, "drv_1", "ord_1", 1_001),
            verify(KEY, Some(&t), Role::User, "drv_1", "ord_1", 10),
            verify(KEY, Some(&t), Role::Driver, "drv_2", "ord_1", 10),
            verify(KEY, Some(&t), Role::Driver, "drv_1", "ord_2", 10),
            verify(b"other", Some(&t), Role::Driver, "drv_1", "ord_1", 10),
        ];
        assert_eq!(
            refused,
            [
                Err(TokenError::Expired),
                Err(TokenError::BadSignature),
                Err(TokenError::BadSignature),
                Err(TokenError::BadSignature),
                Err(TokenError::BadSignature),
            ]
        );
        // A later expiry pasted onto the old signature does not verify.
        let forged = format!("2000.{}", t.split_once('.').unwrap().1);
        assert_eq!(
            verify(KEY, Some(&forged), Role::Driver, "drv_1", "ord_1", 1_500),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn malformed_and_missing_tokens_are_named() {
        for (t, e) in [
            (None, TokenError::Missing),
            (Some(""), TokenError::Missing),
            (Some("abc"), TokenError::Malformed),
            (Some("-5.00"), TokenError::Malformed),
            (Some("10.zz"), TokenError::Malformed),
            (Some("99999999999999999999999.00"), TokenError::Malformed),
        ] {
            assert_eq!(verify(KEY, t, Role::User, "u", "o", 0), Err(e), "{t:?}");
        }
    }
}
