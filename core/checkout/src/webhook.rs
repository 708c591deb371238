//! Payment webhooks (04 "POST /api/v1/webhook/payment"): the signature is a hex HMAC-SHA256 of
//! `<timestamp>.<raw body>` with `WEBHOOK_SECRET` (an optional `sha256=` prefix is stripped;
//! compared in constant time), the timestamp within ±300 s; the event is applied in one
//! transaction that records it as processed, so a replay is answered "already processed" and an
//! event that failed (unknown order, a 5xx) is not marked and is processed when retried — the
//! reference marked first and lost it.

use std::future::Future;

use hmac::{Hmac, Mac};
use qc_kit::redis_kit::BackendError;
use serde_json::Value;
use sha2::Sha256;

/// Signed timestamps older or newer than this are refused.
pub const MAX_SKEW_S: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing signature")]
    Missing,
    #[error("signature does not match")]
    Mismatch,
    #[error("timestamp missing, malformed or outside ±300 s")]
    Stale,
}

fn mac(secret: &[u8], ts: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    m.update(ts.as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The signature a sender puts in `X-Signature` for `body` sent at `ts` (Unix seconds).
pub fn sign(secret: &[u8], ts: i64, body: &[u8]) -> String {
    hex::encode(mac(secret, &ts.to_string(), body).finalize().into_bytes())
}

/// Checks `X-Signature` and `X-Signature-Timestamp` against the raw body.
pub fn verify(
    secret: &[u8],
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now_s: i64,
) -> Result<(), SignatureError> {
    let sig = signature
        .map(|s| s.trim().trim_start_matches("sha256="))
        .filter(|s| !s.is_empty())
        .ok_or(SignatureError::Missing)?;
    let ts_raw = timestamp.ok_or(SignatureError::Stale)?.trim();
    let ts: i64 = ts_raw.parse().map_err(|_| SignatureError::Stale)?;
    let sig = hex::decode(sig).map_err(|_| SignatureError::Mismatch)?;
    mac(secret, ts_raw, body)
        .verify_slice(&sig)
        .map_err(|_| SignatureError::Mismatch)?;
    if (now_s - ts).abs() > MAX_SKEW_S {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// A payment event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentEvent {
    pub transaction_id: String,
    pub order_id: String,
    pub succeeded: bool,
    pub amount: i64,
    pub currency: String,
}

impl PaymentEvent {
    /// 400 when not this shape.
    pub fn parse(v: &Value) -> Result<PaymentEvent, String> {
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .filter(|x| !x.is_empty() && x.len() <= 128)
                .map(str::to_string)
                .ok_or_else(|| format!("{k} is required"))
        };
        let succeeded = match s("status")?.as_str() {
            "succeeded" => true,
            "failed" => false,
            other => return Err(format!("status {other:?} is neither succeeded nor failed")),
        };
        Ok(PaymentEvent {
            transaction_id: s("transaction_id")?,
            order_id: s("order_id")?,
            succeeded,
            amount: v
                .get("amount")
                .and_then(Value::as_i64)
                .filter(|a| *a >= 0)
                .ok_or("amount must be a non-negative integer")?,
            currency: s("currency")?,
        })
    }
}

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// 200 `ok`: the payment status moved (and its event is in the outbox).
    Done,
    /// 200 `already_processed`.
    AlreadyProcessed,
    /// 404: nothing recorded, so the gateway's retry is processed later.
    UnknownOrder,
    /// 409 `AMOUNT_MISMATCH`: nothing recorded.
    AmountMismatch,
}

/// The repository's side: one transaction per event.
pub trait PaymentEvents: Send + Sync {
    fn apply_payment_event(
        &self,
        e: &PaymentEvent,
        now_ms: i64,
    ) -> impl Future<Output = Result<Applied, BackendError>> + Send;
}

/// The payment status an event moves an order to, and the outbox event it writes (04): a
/// success on a confirmed order confirms the payment; on a cancelled one the money must go
/// back; a failure marks the payment failed (no automatic cancellation).
pub fn transition(order_status: &str, succeeded: bool) -> (&'static str, &'static str) {
    match (succeeded, order_status) {
        (true, "cancelled") => ("refund_pending", "payment.refund_required"),
        (true, _) => ("confirmed", "payment.confirmed"),
        (false, _) => ("failed", "payment.failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn signatures_bind_body_and_time() {
        let body = br#"{"order_id":"o1"}"#;
        let sig = sign(b"s3cret", 1_000, body);
        assert_eq!(
            verify(b"s3cret", Some(&sig), Some("1000"), body, 1_100),
            Ok(())
        );
        assert_eq!(
            verify(
                b"s3cret",
                Some(&format!("sha256={sig}")),
                Some("1000"),
                body,
                1_000
            ),
            Ok(())
        );
        for (s, ts, b, now, want) in [
            (
                None,
                Some("1000"),
                &body[..],
                1_000,
                SignatureError::Missing,
            ),
            (
                Some(sig.as_str()),
                Some("1000"),
                &br#"{"order_id":"o2"}"#[..],
                1_000,
                SignatureError::Mismatch,
            ),
            (
                Some(sig.as_str()),
                Some("1001"),
                &body[..],
                1_000,
                SignatureError::Mismatch,
            ),
            (
                Some(sig.as_str()),
                Some("1000"),
                &body[..],
                1_301,
                SignatureError::Stale,
            ),
            (
                Some(sig.as_str()),
                None,
                &body[..],
                1_000,
                SignatureError::Stale,
            ),
            (
                Some("zz"),
                Some("1000"),
                &body[..],
                1_000,
                SignatureError::Mismatch,
            ),
        ] {
            assert_eq!(verify(b"s3cret", s, ts, b, now), Err(want));
        }
        assert_eq!(
            verify(b"other", Some(&sig), Some("1000"), body, 1_000),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn events_parse_strictly() {
        let e = PaymentEvent::parse(&json!({"transaction_id": "t1", "order_id": "o1", "status": "succeeded", "amount": 5000, "currency": "IDR"})).unwrap();
        assert!(e.succeeded);
        for bad in [
            json!({}),
            json!({"transaction_id": "t1", "order_id": "o1", "status": "refunded", "amount": 1, "currency": "IDR"}),
            json!({"transaction_id": "t1", "order_id": "o1", "status": "failed", "amount": -1, "currency": "IDR"}),
        ] {
            assert!(PaymentEvent::parse(&bad).is_err(), "{bad}");
        }
    }
}
