//! Checkout handlers (04 §HTTP API): parse strictly, run `qc_checkout::flow::checkout` (the
//! key's lease or stored answer, the saga, 04's answer for each outcome), render it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use qc_checkout::flow;
use qc_checkout::idempotency::request_hash;
use qc_checkout::webhook::{self, Applied, PaymentEvent, PaymentEvents, SignatureError};
use qc_checkout::{CheckoutRequest, Failure, OrderRepo};
use serde_json::{json, Value};

use super::CheckoutApp;
use crate::platform::error::current_request_id;
use crate::platform::{data, ApiError, ApiResult, Body, Ids};

type AppState = State<Arc<CheckoutApp>>;

/// Webhook bodies are small (04).
const WEBHOOK_MAX_BYTES: usize = 64 * 1024;

/// The flow's answer over HTTP: this request's id in an error envelope, `Idempotent-Replayed`
/// on replays, `Retry-After` where a retry may succeed.
fn respond(a: flow::Answer) -> Response {
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let retry =
        status == StatusCode::SERVICE_UNAVAILABLE || a.code() == Some("IDEMPOTENCY_IN_PROGRESS");
    let mut body = a.body;
    if let Some(e) = body.get_mut("error").and_then(Value::as_object_mut) {
        e.insert("request_id".into(), json!(current_request_id()));
    }
    let mut r = (status, Json(body)).into_response();
    if a.replayed {
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if retry {
        r.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    r
}

pub async fn checkout(
    State(app): AppState,
    headers: HeaderMap,
    Body(body): Body<Value>,
) -> ApiResult {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| {
            (1..=128).contains(&k.len())
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
        })
        .ok_or_else(|| ApiError::invalid("Idempotency-Key is required: 1..128 of [A-Za-z0-9_.:-]"))?
        .to_string();
    let req = CheckoutRequest::parse(&body)
        .map_err(|e| ApiError::invalid(e.to_string()).with_details(json!({"field": e.field})))?;
    let hash = request_hash(&body);
    let token = uuid::Uuid::new_v4().to_string();
    let order_id = uuid::Uuid::new_v4().to_string();
    let now = app.clock.now_ms();
    let answer = flow::checkout(
        &app.saga, &app.idem, &req, &key, &hash, &token, &order_id, now,
    )
    .await
    .map_err(|e| {
        tracing::warn!(error = %e, "checkout idempotency store unavailable");
        ApiError::unavailable("idempotency store unavailable")
    })?;
    if let Some(Err(e)) = &answer.saga {
        if let Failure::Unavailable(why) = &e.failure {
            tracing::warn!(error = %why, step = e.step.as_str(), "checkout dependency unavailable");
        }
        app.ctx.metrics.count(
            "checkout_sagas_failed_total",
            "Checkouts that did not confirm, by step.",
            vec![("step", e.step.as_str().into())],
            1.0,
        );
    }
    if !answer.stored {
        // The order row still answers a retry (the durable guard).
        tracing::warn!("checkout outcome not stored for replays");
    }
    Ok(respond(answer))
}

pub async fn webhook(State(app): AppState, headers: HeaderMap, raw: Bytes) -> ApiResult {
    if raw.len() > WEBHOOK_MAX_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "webhook body over 64 KB",
        ));
    }
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    webhook::verify(
        app.settings.webhook_secret.as_bytes(),
        h("x-signature"),
        h("x-signature-timestamp"),
        &raw,
        app.clock.now_ms().div_euclid(1000),
    )
    .map_err(|e| {
        let msg = match e {
            SignatureError::Missing => "X-Signature is required",
            SignatureError::Mismatch => "signature does not match",
            SignatureError::Stale => "X-Signature-Timestamp missing or outside ±300 s",
        };
        ApiError::new(StatusCode::UNAUTHORIZED, "INVALID_SIGNATURE", msg)
    })?;
    let v: Value = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::invalid(format!("malformed JSON: {e}")))?;
    let event = PaymentEvent::parse(&v).map_err(ApiError::invalid)?;
    let applied = app
        .saga
        .orders
        .apply_payment_event(&event, app.clock.now_ms())
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "webhook not applied");
            ApiError::unavailable("order store unavailable")
        })?;
    match applied {
        Applied::Done => Ok(data(StatusCode::OK, json!({"status": "ok"}))),
        Applied::AlreadyProcessed => {
            Ok(data(StatusCode::OK, json!({"status": "already_processed"})))
        }
        Applied::UnknownOrder => Err(ApiError::not_found("no such order")),
        Applied::AmountMismatch => Err(ApiError::new(
            StatusCode::CONFLICT,
            "AMOUNT_MISMATCH",
            "amount or currency differs from the order's",
        )),
    }
}

pub async fn order(State(app): AppState, ids: Ids, headers: HeaderMap) -> ApiResult {
    let id = ids.0.into_iter().next().unwrap_or_default();
    let o = app
        .saga
        .orders
        .get(&id)
        .await
        .map_err(|_| ApiError::unavailable("order store unavailable"))?;
    let owner = headers.get("x-user-id").and_then(|v| v.to_str().ok());
    // 404, not 403, for another user's order: its existence is not theirs to learn.
    let Some(o) = o.filter(|o| owner == Some(o.user_id.as_str())) else {
        return Err(ApiError::not_found("no such order"));
    };
    Ok(data(
        StatusCode::OK,
        json!({"order_id": o.order_id, "user_id": o.user_id, "hub_id": o.hub_id,
            "status": o.status.as_str(), "payment_status": o.payment_status,
            "items": o.items.iter().map(|(s, n, q, p)| json!({"sku": s, "name": n, "quantity": q, "unit_price": p})).collect::<Vec<_>>(),
            "subtotal": o.subtotal, "discount": o.discount, "total": o.total, "currency": "IDR",
            "transaction_id": o.transaction_id, "reservation_id": o.reservation_id,
            "failed_step": o.failed_step,
            "timeline": o.timeline.iter().map(|(s, a, ok, _)| json!({"step": s, "action": a, "outcome": if *ok { "ok" } else { "error" }})).collect::<Vec<_>>()}),
    ))
}
