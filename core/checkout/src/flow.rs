//! The checkout use case as a client meets it (04 "HTTP API", "Idempotency"): the key's stored
//! outcome or its lease, then the saga, then 04's status and body for every outcome, the
//! terminal ones kept for replays. The service's handler only parses and renders; the twin's
//! shoppers call [`checkout`] directly, retries and double submits included.

use qc_inventory::{InventoryError, StockStore};
use qc_kit::redis_kit::BackendError;
use serde_json::{json, Value};

use crate::idempotency::{Begin, IdempotencyStore, Stored};
use crate::ports::{Catalog, OrderRecord, OrderRepo, OrderStatus, PaymentGateway, Promos};
use crate::request::CheckoutRequest;
use crate::saga::{Checkout, Failure, SagaError};

/// What the client is answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    /// `{"data": …}`, or the error envelope `{"error": {code, message, details?}}` without a
    /// request id (the caller adds its own).
    pub body: Value,
    /// A stored answer to an earlier call with this key.
    pub replayed: bool,
    /// What the saga did, when it ran for this call.
    pub saga: Option<Result<OrderRecord, SagaError>>,
    /// False when the terminal answer could not be stored for replays (the order row still
    /// answers a retry: the durable guard).
    pub stored: bool,
}

impl Answer {
    fn plain(status: u16, body: Value, replayed: bool) -> Self {
        Self {
            status,
            body,
            replayed,
            saga: None,
            stored: true,
        }
    }

    /// The error code, for an error answer.
    pub fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
}

/// The error envelope (without a request id).
pub fn error_body(code: &str, message: impl Into<String>, details: Option<Value>) -> Value {
    let mut e = json!({"code": code, "message": message.into()});
    if let Some(d) = details {
        e["details"] = d;
    }
    json!({ "error": e })
}

pub fn confirmed_body(o: &OrderRecord) -> Value {
    json!({"data": {"order_id": o.order_id, "status": "confirmed", "subtotal": o.subtotal,
        "discount": o.discount, "total": o.total, "currency": "IDR",
        "transaction_id": o.transaction_id, "applied_promos": o.applied_promos}})
}

/// The answer for a key whose order exists already (the durable guard): (status, body,
/// terminal).
pub fn from_existing(o: &OrderRecord) -> (u16, Value, bool) {
    match o.status {
        OrderStatus::Confirmed => (201, confirmed_body(o), true),
        OrderStatus::Pending => (
            409,
            error_body(
                "IDEMPOTENCY_IN_PROGRESS",
                "this checkout is still running",
                None,
            ),
            false,
        ),
        OrderStatus::Cancelled | OrderStatus::Failed => (
            409,
            error_body(
                "CONFLICT",
                format!("this checkout ended {}", o.status.as_str()),
                Some(json!({"order_id": o.order_id, "failed_step": o.failed_step})),
            ),
            true,
        ),
    }
}

/// 04's answer to a saga that did not confirm: (status, body, terminal). Terminal answers are
/// stored for replays; 503s are not (a retry runs again, or answers from the order row).
pub fn failure_answer(e: &SagaError) -> (u16, Value, bool) {
    let step = e.step.as_str();
    match &e.failure {
        Failure::Existing(o) => from_existing(o),
        Failure::Stock(
            inv @ InventoryError::InsufficientStock {
                sku,
                available,
                requested,
            },
        ) => (
            409,
            error_body(
                "INSUFFICIENT_STOCK",
                inv.to_string(),
                Some(json!({"sku": sku, "available": available, "requested": requested})),
            ),
            true,
        ),
        Failure::Stock(inv @ InventoryError::SkuNotFound { sku }) => (
            409,
            error_body("SKU_NOT_FOUND", inv.to_string(), Some(json!({"sku": sku}))),
            true,
        ),
        Failure::Stock(other) => (
            503,
            error_body("UNAVAILABLE", other.to_string(), None),
            false,
        ),
        Failure::UnknownSku(sku) => (
            409,
            error_body(
                "SKU_NOT_FOUND",
                format!("{sku} is not sold here"),
                Some(json!({"sku": sku})),
            ),
            true,
        ),
        Failure::Declined => (
            402,
            error_body(
                "PAYMENT_FAILED",
                "the payment was declined",
                Some(json!({"order_id": e.order_id, "failed_step": step})),
            ),
            true,
        ),
        Failure::ReservationExpired => (
            409,
            error_body(
                "RESERVATION_EXPIRED",
                "the stock hold lapsed",
                Some(json!({"order_id": e.order_id})),
            ),
            true,
        ),
        Failure::CartHold(why) => (
            409,
            error_body(
                "RESERVATION_MISMATCH",
                why.clone(),
                Some(json!({"field": "reservation_id"})),
            ),
            true,
        ),
        Failure::GatewayTimeout => (
            503,
            error_body(
                "PAYMENT_UNAVAILABLE",
                "the payment gateway did not answer",
                None,
            ),
            false,
        ),
        Failure::Deadline => (
            503,
            error_body(
                "UNAVAILABLE",
                "the checkout ran past its deadline; nothing was charged",
                None,
            ),
            false,
        ),
        Failure::Unavailable(_) => (
            503,
            error_body("UNAVAILABLE", "a dependency is unavailable", None),
            false,
        ),
    }
}

/// One checkout call: `req` (parsed; `hash` is its body's canonical hash) under the client's
/// `key`, with this call's lease `token`; `order_id` is the id the saga uses if it runs.
/// Err: the idempotency store is unreachable (503, nothing done).
#[allow(clippy::too_many_arguments)]
pub async fn checkout<I, P, G, R, C, D>(
    saga: &Checkout<I, P, G, R, C>,
    idem: &D,
    req: &CheckoutRequest,
    key: &str,
    hash: &str,
    token: &str,
    order_id: &str,
    now_ms: i64,
) -> Result<Answer, BackendError>
where
    I: StockStore,
    P: Promos,
    G: PaymentGateway,
    R: OrderRepo,
    C: Catalog,
    D: IdempotencyStore,
{
    match idem.begin(&req.user_id, key, token, now_ms).await? {
        Begin::Replay(s) if s.request_hash != hash => {
            return Ok(Answer::plain(
                409,
                error_body(
                    "IDEMPOTENCY_KEY_REUSED",
                    "this Idempotency-Key was used for another request",
                    None,
                ),
                false,
            ))
        }
        Begin::Replay(s) => return Ok(Answer::plain(s.status, s.body, true)),
        Begin::InProgress => {
            return Ok(Answer::plain(
                409,
                error_body(
                    "IDEMPOTENCY_IN_PROGRESS",
                    "a checkout with this key is running",
                    None,
                ),
                false,
            ))
        }
        Begin::Run => {}
    }
    let result = saga.run(req, key, order_id, now_ms).await;
    let (status, body, terminal, replayed) = match &result {
        Ok(o) => (201, confirmed_body(o), true, false),
        // The key's order exists (its answer was not stored): answer from it, store nothing.
        Err(SagaError {
            failure: Failure::Existing(o),
            ..
        }) => {
            let (s, b, t) = from_existing(o);
            (s, b, false, t)
        }
        Err(e) => {
            let (s, b, t) = failure_answer(e);
            (s, b, t, false)
        }
    };
    let stored = terminal.then(|| Stored {
        status,
        body: body.clone(),
        request_hash: hash.to_string(),
    });
    let stored_ok = idem
        .finish(&req.user_id, key, token, stored.as_ref(), now_ms)
        .await
        .is_ok();
    Ok(Answer {
        status,
        body,
        replayed,
        saga: Some(result),
        stored: stored_ok,
    })
}
