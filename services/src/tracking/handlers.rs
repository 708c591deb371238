//! Tracking's plain HTTP endpoints (09): the latest position, the trail, and the status change
//! Dispatch posts. Parse, call the tracker, envelope.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use qc_kit::redis_kit::BackendError;
use qc_tracking::model::valid_id;
use qc_tracking::token::Role;
use qc_tracking::{OrderStatus, StatusError};
use serde::Deserialize;
use serde_json::json;

use super::ws::query_id;
use super::TrackingApp;
use crate::platform::{data, ApiError, ApiResult, Body, Ids};

type AppState = State<Arc<TrackingApp>>;

fn order_id(ids: Ids) -> Result<String, ApiError> {
    let id = ids.0.into_iter().next().unwrap_or_default();
    if valid_id(&id) {
        Ok(id)
    } else {
        Err(ApiError::invalid(
            "order_id must match ^[A-Za-z0-9_.-]{1,128}$",
        ))
    }
}

fn unavailable(e: BackendError) -> ApiError {
    tracing::warn!(error = %e, "tracking store unavailable");
    ApiError::unavailable("tracking store unavailable")
}

/// Customers' reads need their token when auth is required (`user_id` names them).
fn authorize_reader(
    app: &TrackingApp,
    order: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    if !app.cfg.auth_required {
        return Ok(());
    }
    let user = query_id(q, "user_id")?;
    app.authorize(
        Role::User,
        user,
        order,
        q.get("token").map(String::as_str),
        headers,
    )
}

pub async fn position(
    State(app): AppState,
    ids: Ids,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult {
    let order = order_id(ids)?;
    authorize_reader(&app, &order, &q, &headers)?;
    match app.tracker.position(&order).await.map_err(unavailable)? {
        Some(p) => Ok(data(StatusCode::OK, p)),
        None => Err(ApiError::not_found("no position for this order")),
    }
}

pub async fn history(
    State(app): AppState,
    ids: Ids,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult {
    let order = order_id(ids)?;
    authorize_reader(&app, &order, &q, &headers)?;
    let after_seq = match q.get("after_seq") {
        None => 0,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|s| *s >= 0)
            .ok_or_else(|| ApiError::invalid("after_seq must be a non-negative integer"))?,
    };
    let limit = match q.get("limit") {
        None => qc_tracking::store::TRAIL_MAX,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=qc_tracking::store::TRAIL_MAX).contains(l))
            .ok_or_else(|| ApiError::invalid("limit must be an integer in 1..500"))?,
    };
    let points = app
        .tracker
        .history(&order, after_seq, limit)
        .await
        .map_err(unavailable)?;
    Ok(data(
        StatusCode::OK,
        json!({"order_id": order, "count": points.len(), "points": points}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusBody {
    status: String,
    #[serde(default)]
    driver_id: Option<String>,
}

pub async fn status(State(app): AppState, ids: Ids, Body(body): Body<StatusBody>) -> ApiResult {
    let order = order_id(ids)?;
    let status = OrderStatus::parse(&body.status).ok_or_else(|| {
        ApiError::invalid(
            "status must be one of preparing|driver_assigned|in_transit|arrived|delivered|cancelled",
        )
    })?;
    if let Some(d) = body.driver_id.as_deref().filter(|d| !valid_id(d)) {
        return Err(ApiError::invalid(format!(
            "driver_id {d:?} must match ^[A-Za-z0-9_.-]{{1,128}}$"
        )));
    }
    let r = app
        .tracker
        .set_status(
            &order,
            status,
            body.driver_id.as_deref(),
            app.clock.now_ms(),
        )
        .await;
    match r {
        Ok(e) => Ok(data(
            StatusCode::OK,
            json!({"order_id": order, "status": e.status.as_str(), "seq": e.seq}),
        )),
        Err(StatusError::Closed(e)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "CONFLICT",
            format!("order already {}", e.status.as_str()),
        )
        .with_details(json!({"status": e.status.as_str(), "seq": e.seq}))),
        Err(StatusError::Store(e)) => Err(unavailable(e)),
    }
}
