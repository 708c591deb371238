//! Inventory handlers: parse and validate, call the core, wrap in the envelope.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use qc_inventory::rules::{self, ReserveInput, SetStockInput};
use qc_inventory::*;
use serde::Deserialize;
use serde_json::{json, Value};

use super::InventoryApp;
use crate::platform::{data, ApiError, ApiResult, Body, Ids};

type AppState = State<Arc<InventoryApp>>;

/// The one place inventory errors become HTTP statuses and codes.
impl From<InventoryError> for ApiError {
    fn from(e: InventoryError) -> Self {
        use InventoryError as E;
        let conflict = |code, msg: String| ApiError::new(StatusCode::CONFLICT, code, msg);
        match e {
            E::Invalid(m) => ApiError::invalid(m),
            E::InsufficientStock {
                ref sku,
                available,
                requested,
            } => conflict("INSUFFICIENT_STOCK", e.to_string())
                .with_details(json!({"sku": sku, "available": available, "requested": requested})),
            E::SkuNotFound { ref sku } => {
                conflict("SKU_NOT_FOUND", e.to_string()).with_details(json!({"sku": sku}))
            }
            E::ReservationNotFound => ApiError::new(
                StatusCode::NOT_FOUND,
                "RESERVATION_NOT_FOUND",
                e.to_string(),
            ),
            E::InvalidState { status } => {
                conflict("INVALID_STATE", e.to_string()).with_details(json!({"status": status}))
            }
            E::ReservationExpired => conflict("RESERVATION_EXPIRED", e.to_string()),
            E::IdempotencyConflict => conflict("CONFLICT", e.to_string()),
            E::Contended => ApiError::unavailable(e.to_string()),
            E::Backend(b) => {
                tracing::warn!(error = %b, "inventory store unavailable");
                ApiError::unavailable(format!("inventory store unavailable: {b}"))
            }
        }
    }
}

fn count(app: &InventoryApp, op: &'static str, result: &str) {
    app.ctx.metrics.count(
        "inventory_operations_total",
        "Inventory operations by outcome.",
        vec![("op", op.into()), ("result", result.into())],
        1.0,
    );
}

fn outcome_label(r: &Result<impl Sized, ApiError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => e.code.to_lowercase(),
    }
}

pub async fn stock(State(app): AppState, Ids(ids): Ids) -> ApiResult {
    let [hub, sku] = <[String; 2]>::try_from(ids)
        .map_err(|_| ApiError::invalid("expected /stock/{hub_id}/{sku}"))?;
    let hub = HubId::parse(&hub)?;
    let sku = Sku::parse(&sku)?;
    let l = app.store.stock(&hub, &sku).await?;
    Ok(data(
        StatusCode::OK,
        json!({"hub_id": hub, "sku": sku, "available": l.available, "reserved": l.reserved,
               "partitioned": l.buckets > 1, "buckets": l.buckets}),
    ))
}

pub async fn set_stock(State(app): AppState, Body(input): Body<SetStockInput>) -> ApiResult {
    let cmd = rules::validate_set_stock(&input, "admin")?;
    let r = app.store.set_stock(app.clock.now_ms(), &cmd).await?;
    let available: i64 = rules::spread(r.counter, cmd.buckets)
        .iter()
        .map(|v| (*v).max(0))
        .sum();
    tracing::info!(hub_id = %cmd.hub_id, sku = %cmd.sku, on_hand = cmd.on_hand, buckets = cmd.buckets, "stock set");
    Ok(data(
        StatusCode::OK,
        json!({"set": true, "hub_id": cmd.hub_id, "sku": cmd.sku, "available": available, "reserved": r.reserved}),
    ))
}

pub async fn cycle_count(State(app): AppState, Body(input): Body<SetStockInput>) -> ApiResult {
    // Validate ids before the store is touched.
    let hub = HubId::parse(input.hub_id.as_deref().unwrap_or_default())?;
    let sku = Sku::parse(input.sku.as_deref().unwrap_or_default())?;
    let before = app.store.stock(&hub, &sku).await?;
    let cmd = rules::validate_cycle_count(&input, before.buckets)?;
    app.store.set_stock(app.clock.now_ms(), &cmd).await?;
    let delta = cmd.on_hand - before.on_hand();
    tracing::info!(hub_id = %hub, sku = %sku, on_hand = cmd.on_hand, delta, counted_by = %cmd.actor, "cycle count");
    Ok(data(
        StatusCode::OK,
        json!({"hub_id": hub, "sku": sku, "on_hand": cmd.on_hand, "delta": delta}),
    ))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    headers
        .get("idempotency-key")
        .map(|v| {
            let s = v
                .to_str()
                .map_err(|_| ApiError::invalid("Idempotency-Key must be visible ASCII"))?;
            Ok(IdempotencyKey::parse(s)?)
        })
        .transpose()
}

pub async fn reserve(
    State(app): AppState,
    headers: HeaderMap,
    Body(input): Body<ReserveInput>,
) -> ApiResult {
    let result = reserve_inner(&app, &headers, &input).await;
    count(&app, "reserve", &outcome_label(&result));
    result
}

async fn reserve_inner(app: &InventoryApp, headers: &HeaderMap, input: &ReserveInput) -> ApiResult {
    let key = idempotency_key(headers)?;
    let cmd = rules::validate_reserve(
        input,
        ReservationId::new_random(),
        key,
        app.cfg.reservation_ttl_s,
    )?;
    match app.store.reserve(app.clock.now_ms(), &cmd).await? {
        ReserveOutcome::Reserved {
            expires_at_ms,
            remaining,
        } => {
            let items: Vec<Value> = cmd
                .items
                .iter()
                .zip(remaining)
                .map(|(it, rem)| json!({"sku": it.sku, "quantity": it.quantity, "remaining": rem}))
                .collect();
            tracing::info!(hub_id = %cmd.hub_id, reservation_id = %cmd.reservation_id, user_id = %cmd.user_id, "reserved");
            Ok(data(
                StatusCode::CREATED,
                json!({"reservation_id": cmd.reservation_id, "status": "RESERVED", "items": items,
                       "expires_at": expires_at_ms, "ttl_seconds": cmd.ttl_s}),
            ))
        }
        ReserveOutcome::Replay { reservation_id } => {
            let original = app
                .store
                .reservation(&cmd.hub_id, &reservation_id)
                .await?
                .ok_or(InventoryError::ReservationNotFound)?;
            if !rules::same_request(&original, &cmd) {
                return Err(InventoryError::IdempotencyConflict.into());
            }
            // Request order, with the SKU's current availability as `remaining`.
            let mut items = Vec::with_capacity(cmd.items.len());
            for it in &cmd.items {
                let l = app.store.stock(&cmd.hub_id, &it.sku).await?;
                items.push(
                    json!({"sku": it.sku, "quantity": it.quantity, "remaining": l.available}),
                );
            }
            Ok(data(
                StatusCode::CREATED,
                json!({"reservation_id": reservation_id, "status": original.status, "items": items,
                       "expires_at": original.expires_at,
                       "ttl_seconds": (original.expires_at - original.created_at) / 1000, "replayed": true}),
            ))
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct TransitionInput {
    reservation_id: Option<String>,
    hub_id: Option<String>,
}

type QueryParams = Result<Query<HashMap<String, String>>, QueryRejection>;

/// The reservation and its hub: from the body, else `?hub_id=`, else `inv:resid:<rid>`.
async fn locate(
    app: &InventoryApp,
    rid: Option<&str>,
    body_hub: Option<&str>,
    query: QueryParams,
) -> Result<(ReservationId, HubId), ApiError> {
    let query =
        query.map_err(|e| ApiError::invalid(format!("invalid query: {}", e.body_text())))?;
    let rid =
        ReservationId::parse(rid.ok_or_else(|| ApiError::invalid("reservation_id is required"))?)?;
    let hub = match body_hub.or(query.get("hub_id").map(String::as_str)) {
        Some(h) => HubId::parse(h)?,
        None => app
            .store
            .locate(&rid)
            .await?
            .ok_or(InventoryError::ReservationNotFound)?,
    };
    Ok((rid, hub))
}

async fn transition(
    app: &InventoryApp,
    query: QueryParams,
    input: &TransitionInput,
    action: Action,
) -> ApiResult {
    let (rid, hub) = locate(
        app,
        input.reservation_id.as_deref(),
        input.hub_id.as_deref(),
        query,
    )
    .await?;
    let outcome = app
        .store
        .transition(app.clock.now_ms(), &hub, &rid, action)
        .await?;
    let (status, key) = match action {
        Action::Confirm => (rules::confirm_reply(outcome)?, "confirmed"),
        _ => (rules::release_reply(outcome)?, "released"),
    };
    tracing::info!(hub_id = %hub, reservation_id = %rid, action = action.as_str(), status = %status, "transition");
    Ok(data(
        StatusCode::OK,
        json!({key: true, "reservation_id": rid, "status": status}),
    ))
}

pub async fn release(
    State(app): AppState,
    query: QueryParams,
    Body(input): Body<TransitionInput>,
) -> ApiResult {
    let r = transition(&app, query, &input, Action::Release).await;
    count(&app, "release", &outcome_label(&r));
    r
}

pub async fn confirm(
    State(app): AppState,
    query: QueryParams,
    Body(input): Body<TransitionInput>,
) -> ApiResult {
    let r = transition(&app, query, &input, Action::Confirm).await;
    count(&app, "confirm", &outcome_label(&r));
    r
}

pub async fn reservation(
    State(app): AppState,
    Ids(ids): Ids,
    query: QueryParams,
) -> ApiResult<Response> {
    let rid = ids.into_iter().next();
    let (rid, hub) = locate(&app, rid.as_deref(), None, query).await?;
    let r = app
        .store
        .reservation(&hub, &rid)
        .await?
        .ok_or(InventoryError::ReservationNotFound)?;
    Ok(data(StatusCode::OK, r))
}
