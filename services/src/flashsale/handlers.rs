//! Flash-sale handlers (03 "HTTP API"): parse, call `qc_flashsale::app`, render its answer
//! (this request's id in an error envelope, `Retry-After` where it says). Every response is
//! `Cache-Control: no-store` (03 flaw 14).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body as RawBody, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use qc_flashsale::app::{Answer, Caller, CheckoutRequest, Ids};
use qc_flashsale::model::SaleConfig;
use serde_json::{json, Value};

use super::FlashApp;
use crate::platform::error::current_request_id;
use crate::platform::{ApiError, Body};

type AppState = State<Arc<FlashApp>>;
type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

pub async fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn respond(a: Answer) -> Response {
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut body = a.body;
    if let Some(e) = body.get_mut("error").and_then(Value::as_object_mut) {
        e.insert("request_id".into(), json!(current_request_id()));
    }
    let mut r = (status, Json(body)).into_response();
    if let Some(s) = a.retry_after_s {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

fn params(q: Params) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(m)| m)
        .map_err(|e| ApiError::invalid(format!("invalid query: {}", e.body_text())))
}

fn param<'a>(q: &'a HashMap<String, String>, k: &str) -> Result<&'a str, ApiError> {
    q.get(k)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::invalid(format!("{k} is required")))
}

/// The account's age from the gateway (`X-Account-Age-Days`, trusted like the internal token).
fn age(h: &HeaderMap) -> Option<f64> {
    h.get("x-account-age-days")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d >= 0.0)
}

/// Random ids: 16 hex characters from a v4 UUID (CSPRNG).
struct RandomIds;
impl Ids for RandomIds {
    fn next(&mut self) -> String {
        uuid::Uuid::new_v4().simple().to_string()[..16].to_string()
    }
}

pub async fn token(State(app): AppState, h: HeaderMap, q: Params) -> Result<Response, ApiError> {
    let q = params(q)?;
    let caller = Caller {
        user_id: param(&q, "user_id")?.to_string(),
        device: param(&q, "device_fp")?.to_string(),
        account_age_days: age(&h),
    };
    let product = param(&q, "product_id")?;
    let proof = q.get("proof").map(String::as_str).unwrap_or_default();
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    Ok(respond(
        app.core
            .mint(&caller, product, proof, &nonce, app.clock.now_ms())
            .await,
    ))
}

pub async fn checkout(
    State(app): AppState,
    h: HeaderMap,
    Body(b): Body<Value>,
) -> Result<Response, ApiError> {
    let r = CheckoutRequest::parse(&b).map_err(ApiError::invalid)?;
    Ok(respond(
        app.core
            .checkout(&r, age(&h), &mut RandomIds, app.clock.now_ms())
            .await,
    ))
}

fn owner_body(b: &Value) -> Result<(String, String), ApiError> {
    let s = |k: &str| {
        b.get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .ok_or_else(|| ApiError::invalid(format!("{k} is required (a string)")))
    };
    Ok((s("reservation_id")?, s("user_id")?))
}

pub async fn confirm(State(app): AppState, Body(b): Body<Value>) -> Result<Response, ApiError> {
    let (rid, uid) = owner_body(&b)?;
    Ok(respond(
        app.core.confirm(&rid, &uid, app.clock.now_ms()).await,
    ))
}

pub async fn release(State(app): AppState, Body(b): Body<Value>) -> Result<Response, ApiError> {
    let (rid, uid) = owner_body(&b)?;
    Ok(respond(
        app.core.release(&rid, &uid, app.clock.now_ms()).await,
    ))
}

pub async fn queue_status(State(app): AppState, q: Params) -> Result<Response, ApiError> {
    let q = params(q)?;
    let (pid, uid) = (param(&q, "product_id")?, param(&q, "user_id")?);
    Ok(respond(
        app.core.queue_status(pid, uid, app.clock.now_ms()).await,
    ))
}

pub async fn slot_status(State(app): AppState, q: Params) -> Result<Response, ApiError> {
    let q = params(q)?;
    Ok(respond(
        app.core
            .slot_status(param(&q, "product_id")?, app.clock.now_ms())
            .await,
    ))
}

pub async fn stock(State(app): AppState, q: Params) -> Result<Response, ApiError> {
    let q = params(q)?;
    Ok(respond(app.core.stock(param(&q, "product_id")?).await))
}

pub async fn init(State(app): AppState, Body(b): Body<Value>) -> Result<Response, ApiError> {
    let pid = b
        .get("product_id")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("product_id is required (a string)"))?;
    let int = |k: &str, d: i64| -> Result<i64, ApiError> {
        match b.get(k) {
            None | Some(Value::Null) => Ok(d),
            Some(v) => v
                .as_i64()
                .ok_or_else(|| ApiError::invalid(format!("{k} must be an integer"))),
        }
    };
    let total = b
        .get("total_stock")
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::invalid("total_stock is required (an integer ≥ 0)"))?;
    let now = app.clock.now_ms();
    let mut cfg = SaleConfig::new(pid, total, int("opens_at", now)?);
    let u32_of = |k: &str, v: i64| {
        u32::try_from(v).map_err(|_| ApiError::invalid(format!("{k} is out of range")))
    };
    cfg.bucket_count = u32_of("bucket_count", int("bucket_count", 10)?)?;
    cfg.max_slots = u32_of("max_slots", int("max_slots", 1000)?)?;
    cfg.per_user_limit = u32_of("per_user_limit", int("per_user_limit", 0)?)?;
    cfg.reservation_ttl_s = u32_of(
        "reservation_ttl_seconds",
        int("reservation_ttl_seconds", 300)?,
    )?;
    let force = match b.get("force") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(f)) => *f,
        Some(_) => return Err(ApiError::invalid("force must be a boolean")),
    };
    Ok(respond(app.core.init(&cfg, force).await))
}

/// `GET /flash-sale/queue-stream`: the queue-status snapshot, then each event published for
/// this user (admission), and `: ping` every 15 s.
pub async fn queue_stream(State(app): AppState, q: Params) -> Result<Response, ApiError> {
    let q = params(q)?;
    let (pid, uid) = (
        param(&q, "product_id")?.to_string(),
        param(&q, "user_id")?.to_string(),
    );
    let client = redis::Client::open(app.redis_url.as_str())
        .map_err(|_| ApiError::unavailable("the flash sale store is unavailable"))?;
    let mut sub = client
        .get_async_pubsub()
        .await
        .map_err(|_| ApiError::unavailable("the flash sale store is unavailable"))?;
    sub.subscribe(app.channel(&pid, &uid))
        .await
        .map_err(|_| ApiError::unavailable("the flash sale store is unavailable"))?;
    // Subscribed first, then the snapshot: an admission in between is not missed.
    let snap = app.core.queue_status(&pid, &uid, app.clock.now_ms()).await;
    if snap.status != 200 {
        return Ok(respond(snap));
    }
    let first = Bytes::from(format!(
        "event: queue-status\ndata: {}\n\n",
        snap.body["data"]
    ));
    let messages = sub.into_on_message().map(|m| {
        let payload: String = m.get_payload().unwrap_or_default();
        Bytes::from(format!("event: queue-status\ndata: {payload}\n\n"))
    });
    let pings = futures::stream::unfold((), |_| async {
        tokio::time::sleep(Duration::from_secs(15)).await;
        Some((Bytes::from_static(b": ping\n\n"), ()))
    });
    let body = futures::stream::once(async move { first })
        .chain(futures::stream::select(messages, pings))
        .map(Ok::<_, Infallible>);
    let mut resp = Response::new(RawBody::from_stream(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}
