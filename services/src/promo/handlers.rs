//! Promo handlers (05 §2): parse strictly, call the engine, envelope. `apply` is idempotent per
//! key: a stored answer is returned as it was; a concurrent duplicate gets 409 while the first
//! holds the lease.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use qc_kit::redis_kit::{bounded, BackendError};
use qc_promo::engine::{self, local_time};
use qc_promo::{Applied, Cart, CartError, EvalResult, Rule, RuleBody, RuleError, RuleRepo};
use serde_json::{json, Value};

use super::PromoApp;
use crate::platform::{data, ApiError, ApiResult, Body, Ids};

type AppState = State<Arc<PromoApp>>;

/// How long a stored `apply` answer is replayed, and the lease of one in progress.
const STORED_S: i64 = 86_400;
const LEASE_MS: i64 = 5_000;

impl From<CartError> for ApiError {
    fn from(e: CartError) -> Self {
        ApiError::invalid(e.to_string()).with_details(json!({"field": e.field}))
    }
}

impl From<RuleError> for ApiError {
    fn from(e: RuleError) -> Self {
        match e {
            RuleError::Invalid { field, message } => {
                ApiError::invalid(format!("{field}: {message}"))
                    .with_details(json!({"field": field}))
            }
            RuleError::Conditions(t) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_CONDITIONS",
                format!("conditions {t}"),
            )
            .with_details(json!({"path": t.path})),
        }
    }
}

fn unavailable(e: BackendError) -> ApiError {
    tracing::warn!(error = %e, "promo store unavailable");
    ApiError::unavailable("promo store unavailable")
}

/// An id that reaches a key: `[A-Za-z0-9_.-]{1,128}`.
fn id(v: &str, field: &str) -> Result<String, ApiError> {
    if (1..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        Ok(v.to_string())
    } else {
        Err(
            ApiError::invalid(format!("{field} must match ^[A-Za-z0-9_.-]{{1,128}}$"))
                .with_details(json!({"field": field})),
        )
    }
}

fn result_json(r: &EvalResult) -> Value {
    let mut v = json!({"rule_id": r.rule_id, "rule_name": r.rule_name, "effect": r.effect.to_json(),
        "discount_amount": r.discount_amount, "cashback_amount": r.cashback_amount,
        "approved": r.approved});
    if let Some(why) = r.reject_reason {
        v["reject_reason"] = json!(why.as_str());
    }
    v
}

fn applied_json(a: &Applied) -> Value {
    let fraud = a.fraud.map(|f| {
        json!({"signal": "ring", "accounts": f.accounts, "action": f.action.as_str(),
               "reason": "the account shares devices or addresses with too many others"})
    });
    json!({"fraud": fraud,"applied_rules": a.applied.iter().map(result_json).collect::<Vec<_>>(),
           "rejected_rules": a.rejected.iter().map(result_json).collect::<Vec<_>>(),
           "subtotal": a.subtotal, "total_discount": a.total_discount,
           "final_amount": a.final_amount, "total_cashback": a.total_cashback,
           "redemption_id": a.redemption_id})
}

/// The request's parts: the cart (top-level `user_id` wins), and `now` (test mode only).
fn cart_of(app: &PromoApp, body: &Value) -> Result<(Cart, i64), ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::invalid("the body must be a JSON object"))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !["user_id", "idempotency_key", "cart"].contains(&k.as_str()))
    {
        return Err(
            ApiError::invalid(format!("{k}: unknown field")).with_details(json!({"field": k}))
        );
    }
    let user = match obj.get("user_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) => Some(u.as_str()),
        Some(_) => return Err(ApiError::invalid("user_id must be a string")),
    };
    let cart_v = obj.get("cart").cloned().unwrap_or(json!({}));
    let cart = Cart::parse(&cart_v, user)?;
    let mut now = app.clock.now_ms();
    if let Some(t) = cart_v.get("now").and_then(Value::as_str) {
        if app.settings.test_mode {
            now = humantime::parse_rfc3339_weak(t)
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as i64)
                .ok_or_else(|| ApiError::invalid("cart.now must be an RFC 3339 time"))?;
        }
    }
    Ok((cart, now))
}

pub async fn validate(State(app): AppState, Body(body): Body<Value>) -> ApiResult {
    let (cart, now) = cart_of(&app, &body)?;
    let rules = app.rules_snapshot();
    let eligible = engine::validate(&app.counters, &rules, &cart, &app.engine, now).await;
    Ok(data(
        StatusCode::OK,
        json!({"eligible_rules": eligible.iter().map(result_json).collect::<Vec<_>>(),
               "total_rules": eligible.len()}),
    ))
}

async fn redis_get(app: &PromoApp, key: &str) -> Result<Option<String>, ApiError> {
    bounded(
        app.settings.redis_timeout_ms,
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut app.redis.clone()),
    )
    .await
    .map_err(unavailable)
}

pub async fn apply(State(app): AppState, headers: HeaderMap, Body(body): Body<Value>) -> ApiResult {
    let header_key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().map(str::to_string))
        .transpose()
        .map_err(|_| ApiError::invalid("Idempotency-Key must be text"))?;
    let body_key = match body.get("idempotency_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(ApiError::invalid("idempotency_key must be a string")),
    };
    let key = match (header_key, body_key) {
        (Some(h), Some(b)) if h != b => {
            return Err(ApiError::invalid(
                "Idempotency-Key and idempotency_key differ",
            ))
        }
        (h, b) => h.or(b).map(|k| id(&k, "idempotency_key")).transpose()?,
    };
    let (cart, now) = cart_of(&app, &body)?;
    if cart.user_id.is_empty() {
        return Err(
            ApiError::invalid("user_id is required").with_details(json!({"field": "user_id"}))
        );
    }
    let redemption_id = key
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let stored_key = app.key(&format!("apply:{redemption_id}"));
    let lock_key = app.key(&format!("apply:lock:{redemption_id}"));
    if key.is_some() {
        if let Some(stored) = redis_get(&app, &stored_key).await? {
            return stored_answer(&stored);
        }
        let took: Option<String> = bounded(
            app.settings.redis_timeout_ms,
            redis::cmd("SET")
                .arg(&lock_key)
                .arg("1")
                .arg("NX")
                .arg("PX")
                .arg(LEASE_MS)
                .query_async(&mut app.redis.clone()),
        )
        .await
        .map_err(unavailable)?;
        if took.is_none() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "IDEMPOTENCY_IN_PROGRESS",
                "an apply with this key is in progress",
            ));
        }
        // The first may have finished between our read and the lease.
        if let Some(stored) = redis_get(&app, &stored_key).await? {
            return stored_answer(&stored);
        }
    }
    let rules = app.rules_snapshot();
    let out = engine::apply(
        &app.counters,
        &rules,
        &cart,
        &redemption_id,
        &app.engine,
        now,
    )
    .await;
    let answer = applied_json(&out);
    let mut pipe = redis::pipe();
    pipe.cmd("SET")
        .arg(&stored_key)
        .arg(answer.to_string())
        .arg("EX")
        .arg(STORED_S)
        .ignore()
        .cmd("DEL")
        .arg(&lock_key)
        .ignore();
    let stored: Result<(), _> = bounded(
        app.settings.redis_timeout_ms,
        pipe.query_async(&mut app.redis.clone()),
    )
    .await;
    if let Err(e) = stored {
        tracing::warn!(error = %e, redemption_id, "apply answer not stored");
    }
    record_redemptions(&app, &cart, &out, now);
    let m = &app.ctx.metrics;
    m.count(
        "promo_applies_total",
        "Apply calls by whether any rule applied.",
        vec![(
            "outcome",
            if out.applied.is_empty() {
                "none"
            } else {
                "applied"
            }
            .into(),
        )],
        1.0,
    );
    Ok(data(StatusCode::OK, answer))
}

fn stored_answer(stored: &str) -> ApiResult {
    let v: Value = serde_json::from_str(stored).map_err(|_| ApiError::internal())?;
    Ok(data(StatusCode::OK, v))
}

/// Redemption rows for Postgres, through the service's one ordered writer (so a release's
/// update always follows its apply's rows). The counters in Redis are the authority for caps;
/// the rows are the record and the source of a counter rebuild.
fn record_redemptions(app: &Arc<PromoApp>, cart: &Cart, out: &Applied, now: i64) {
    let device = cart
        .device_id
        .as_deref()
        .map(|d| qc_promo::fraud::device_hash(&app.engine.fp_secret, d));
    for r in &out.applied {
        app.record(super::Row::Reserved {
            redemption_id: out.redemption_id.clone(),
            rule_id: r.rule_id.clone(),
            user_id: cart.user_id.clone(),
            discount: r.discount_amount,
            cashback: r.cashback_amount,
            device: device.clone(),
            address: cart.address.clone(),
            at_ms: now,
        });
    }
}

pub async fn release(State(app): AppState, Body(body): Body<Value>) -> ApiResult {
    let rid = match (body.get("redemption_id"), body.get("order_id")) {
        (Some(Value::String(r)), _) | (None, Some(Value::String(r))) => id(r, "redemption_id")?,
        _ => return Err(ApiError::invalid("redemption_id is required")),
    };
    let rules = app.rules_snapshot();
    let ids: Vec<String> = rules.iter().map(|r| r.id.clone()).collect();
    let now = app.clock.now_ms();
    let released = engine::release(&app.counters, &ids, &rid, now)
        .await
        .map_err(unavailable)?;
    let mut already = false;
    if released == 0 {
        let Some(stored) = redis_get(&app, &app.key(&format!("apply:{rid}"))).await? else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "REDEMPTION_NOT_FOUND",
                "no redemption with this id",
            ));
        };
        already = serde_json::from_str::<Value>(&stored)
            .ok()
            .and_then(|v| v["applied_rules"].as_array().map(|a| !a.is_empty()))
            .unwrap_or(false);
    } else {
        app.record(super::Row::Released {
            redemption_id: rid.clone(),
            at_ms: now,
        });
    }
    Ok(data(
        StatusCode::OK,
        json!({"redemption_id": rid, "released": released, "already_released": already}),
    ))
}

fn rule_id(ids: Ids) -> Result<String, ApiError> {
    id(&ids.0.into_iter().next().unwrap_or_default(), "id")
}

fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "RULE_NOT_FOUND",
        "no rule with this id",
    )
}

pub async fn create_rule(State(app): AppState, Body(body): Body<Value>) -> ApiResult {
    let parsed = RuleBody::parse(&body)?;
    let now = app.clock.now_ms();
    let rule = Rule {
        id: uuid::Uuid::new_v4().to_string(),
        body: parsed,
        created_at_ms: now,
        updated_at_ms: now,
        version: 1,
    };
    app.rules.create(&rule).await.map_err(unavailable)?;
    app.rules_changed().await;
    Ok(data(StatusCode::CREATED, rule.to_json()))
}

pub async fn list_rules(State(app): AppState) -> ApiResult {
    let rules = app.rules.list().await.map_err(unavailable)?;
    Ok(data(
        StatusCode::OK,
        rules.iter().map(Rule::to_json).collect::<Vec<_>>(),
    ))
}

pub async fn get_rule(State(app): AppState, ids: Ids) -> ApiResult {
    let id = rule_id(ids)?;
    match app.rules.get(&id).await.map_err(unavailable)? {
        Some(r) => Ok(data(StatusCode::OK, r.to_json())),
        None => Err(not_found()),
    }
}

pub async fn replace_rule(State(app): AppState, ids: Ids, Body(body): Body<Value>) -> ApiResult {
    let id = rule_id(ids)?;
    let parsed = RuleBody::parse(&body)?;
    match app
        .rules
        .replace(&id, &parsed, app.clock.now_ms())
        .await
        .map_err(unavailable)?
    {
        Some(r) => {
            app.rules_changed().await;
            Ok(data(StatusCode::OK, r.to_json()))
        }
        None => Err(not_found()),
    }
}

pub async fn usage(State(app): AppState, ids: Ids) -> ApiResult {
    let id = rule_id(ids)?;
    let rule = app
        .rules
        .get(&id)
        .await
        .map_err(unavailable)?
        .ok_or_else(not_found)?;
    let now = app.clock.now_ms();
    let (_, _, date) = local_time(now, app.engine.utc_offset_min);
    let u = qc_promo::CounterStore::usage(&app.counters, &id, "-", &date, None, now)
        .await
        .map_err(unavailable)?;
    Ok(data(
        StatusCode::OK,
        json!({"total": u.total, "daily": u.daily, "date": date, "spent": u.spent,
               "budget": rule.body.limits.budget}),
    ))
}
