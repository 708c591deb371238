//! Admission tokens (03 §"Pipeline" step 3, hardened per flaw 11 and issue #15): a token is
//! minted for one user on one device for one product, carries a random single-use nonce and
//! lives [`TOKEN_TTL_MS`]. Format `v1.<nonce 32 hex>.<expires_at ms>.<hex HMAC-SHA256>` over
//! `v1|<user>|<device>|<product>|<nonce>|<expires_at>`; ids cannot contain `|`. The signature is
//! checked in constant time; the nonce is spent by the store (`SET NX`), so a token works once.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A token's life.
pub const TOKEN_TTL_MS: i64 = 30_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed admission token")]
    Malformed,
    #[error("admission token does not match this user, device and product")]
    BadSignature,
    #[error("admission token expired")]
    Expired,
    #[error("admission token already used")]
    Replayed,
}

/// A verified token's nonce and expiry (the store spends the nonce until then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub nonce: String,
    pub expires_at_ms: i64,
}

fn mac(
    secret: &[u8],
    user: &str,
    device: &str,
    product: &str,
    nonce: &str,
    exp: i64,
) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(format!("v1|{user}|{device}|{product}|{nonce}|{exp}").as_bytes());
    m
}

/// A token for `user` on `device` for `product`, with `nonce` (16 random bytes, hex), expiring
/// [`TOKEN_TTL_MS`] after `now_ms`.
pub fn mint(
    secret: &[u8],
    user: &str,
    device: &str,
    product: &str,
    nonce: &str,
    now_ms: i64,
) -> (String, i64) {
    let exp = now_ms + TOKEN_TTL_MS;
    let tag = mac(secret, user, device, product, nonce, exp)
        .finalize()
        .into_bytes();
    (format!("v1.{nonce}.{exp}.{}", hex::encode(tag)), exp)
}

/// Checks `token` for this user, device and product at `now_ms`: well formed, signed with
/// `secret` for exactly them (constant time), not expired, not minted in the future. Spending
/// the nonce is the caller's next step.
pub fn verify(
    secret: &[u8],
    token: &str,
    user: &str,
    device: &str,
    product: &str,
    now_ms: i64,
) -> Result<Verified, TokenError> {
    let mut parts = token.split('.');
    let (Some("v1"), Some(nonce), Some(exp), Some(sig), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(TokenError::Malformed);
    };
    if nonce.len() != 32 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TokenError::Malformed);
    }
    if exp.is_empty() || exp.len() > 15 || !exp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TokenError::Malformed);
    }
    let exp: i64 = exp.parse().map_err(|_| TokenError::Malformed)?;
    let sig = hex::decode(sig).map_err(|_| TokenError::Malformed)?;
    mac(secret, user, device, product, nonce, exp)
        .verify_slice(&sig)
        .map_err(|_| TokenError::BadSignature)?;
    if now_ms > exp || exp > now_ms + TOKEN_TTL_MS {
        return Err(TokenError::Expired);
    }
    Ok(Verified {
        nonce: nonce.to_string(),
        expires_at_ms: exp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"a-secret-of-at-least-thirty-two-bytes!!";
    const NONCE: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn a_token_is_bound_to_user_device_product_and_time() {
        let (t, exp) = mint(KEY, "u1", "fp1", "p1", NONCE, 1_000_000);
        assert_eq!(exp, 1_030_000);
        let ok = verify(KEY, &t, "u1", "fp1", "p1", 1_010_000).unwrap();
        assert_eq!(ok.nonce, NONCE);
        let refused = [
            verify(KEY, &t, "u2", "fp1", "p1", 1_010_000),
            verify(KEY, &t, "u1", "fp2", "p1", 1_010_000),
            verify(KEY, &t, "u1", "fp1", "p2", 1_010_000),
            verify(
                b"another-secret-of-thirty-two-bytes!!!!",
                &t,
                "u1",
                "fp1",
                "p1",
                1_010_000,
            ),
            verify(KEY, &t, "u1", "fp1", "p1", 1_030_001),
            // Minted "in the future": a token from a clock far ahead.
            verify(KEY, &t, "u1", "fp1", "p1", 990_000),
        ];
        assert_eq!(
            refused.map(|r| r.unwrap_err()),
            [
                TokenError::BadSignature,
                TokenError::BadSignature,
                TokenError::BadSignature,
                TokenError::BadSignature,
                TokenError::Expired,
                TokenError::Expired,
            ]
        );
        // A later expiry pasted onto the signature does not verify.
        let forged = t.replace("1030000", "1090000");
        assert_eq!(
            verify(KEY, &forged, "u1", "fp1", "p1", 1_080_000),
            Err(TokenError::BadSignature)
        );
        for bad in [
            "",
            "v1",
            "v2.a.1.b",
            &t.replace("v1.", "v1.x"),
            "v1.00112233445566778899aabbccddeeff.1.zz",
        ] {
            assert_eq!(
                verify(KEY, bad, "u1", "fp1", "p1", 0),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
    }
}
