//! Dispatch handlers (06 §2): parse and validate, call the dispatcher, announce what changed,
//! wrap in the envelope. Times go out as RFC 3339 UTC.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use qc_dispatch::dispatcher::DispatchError;
use qc_dispatch::model::{
    check_id, check_location, Assignment, Driver, DriverEvent, LatLng, NewDriver, Order, OrderInput,
};
use qc_dispatch::DriverState;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{eta_client, notify, DispatchApp};
use crate::platform::{data, ApiError, ApiResult, Body, Ids};

type AppState = State<Arc<DispatchApp>>;

pub fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

fn opt_time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |m| json!(rfc3339(m)))
}

fn point_json(p: Option<qc_geo::Point>) -> Value {
    p.map_or(Value::Null, |p| json!({"lat": p.lat, "lng": p.lng}))
}

pub fn order_json(o: &Order) -> Value {
    json!({"id": o.id, "customer_id": o.customer_id, "hub_id": o.hub_id, "items": o.items,
           "total": o.total, "priority": o.priority, "status": o.status.as_str(),
           "created_at": rfc3339(o.created_at), "delivery_location": point_json(Some(o.delivery_location)),
           "pickup_location": point_json(o.pickup_location), "assigned_driver_id": o.assigned_driver_id,
           "current_assignment_id": o.current_assignment_id, "batch_id": o.batch_id,
           "reassign_count": o.reassign_count, "failure_reason": o.failure_reason,
           "deliver_by": opt_time(o.deliver_by), "repooled": o.repooled})
}

pub fn driver_json(d: &Driver) -> Value {
    json!({"id": d.id, "name": d.name, "location": point_json(d.location), "status": d.status.as_str(),
           "load": d.load, "max_load": d.max_load, "total_deliveries": d.total_deliveries,
           "last_assigned_at": opt_time(d.last_assigned_at), "skipped_count": d.skipped_count,
           "current_assignment_id": d.current_assignment_id})
}

pub fn assignment_json(a: &Assignment) -> Value {
    json!({"id": a.id, "order_id": a.order_id, "driver_id": a.driver_id, "status": a.status.as_str(),
           "score": a.score, "attempt": a.attempt, "created_at": rfc3339(a.created_at),
           "expires_at": rfc3339(a.expires_at), "accepted_at": opt_time(a.accepted_at),
           "rejected_at": opt_time(a.rejected_at)})
}

fn event_json(e: &DriverEvent) -> Value {
    json!({"driver_id": e.driver_id, "from_state": e.from_state.map(DriverState::as_str),
           "to_state": e.to_state.as_str(), "timestamp": rfc3339(e.at), "reason": e.reason})
}

/// Domain errors to the envelope (06 §2): the one mapping for Dispatch. A store failure is
/// logged with its cause and answered with a generic 503.
impl From<DispatchError> for ApiError {
    fn from(e: DispatchError) -> Self {
        match e {
            DispatchError::NotFound { resource, id } => {
                ApiError::not_found(format!("{resource} {id} not found"))
                    .with_details(json!({"resource": resource}))
            }
            DispatchError::Invalid(m) => ApiError::invalid(m),
            DispatchError::IllegalTransition(t) => ApiError::new(
                StatusCode::CONFLICT,
                "ILLEGAL_TRANSITION",
                format!(
                    "illegal transition {} -> {}",
                    t.from.as_str(),
                    t.to.as_str()
                ),
            )
            .with_details(json!({"from": t.from.as_str(), "to": t.to.as_str()})),
            DispatchError::AssignmentNotPending(s) => ApiError::new(
                StatusCode::CONFLICT,
                "ASSIGNMENT_NOT_PENDING",
                format!("assignment is {}", s.as_str()),
            )
            .with_details(json!({"status": s.as_str()})),
            DispatchError::DriverMismatch => ApiError::new(
                StatusCode::BAD_REQUEST,
                "ASSIGNMENT_DRIVER_MISMATCH",
                "the assignment belongs to another driver",
            ),
            DispatchError::Busy => ApiError::new(
                StatusCode::CONFLICT,
                "CONFLICT",
                "concurrent changes to the same order or driver; retry",
            ),
            DispatchError::Backend(m) => {
                tracing::warn!(error = %m, "dispatch store unavailable");
                ApiError::unavailable("dispatch store unavailable")
            }
        }
    }
}

fn invalid(e: qc_dispatch::model::Invalid) -> ApiError {
    ApiError::invalid(e.0)
}

fn one_id(ids: Vec<String>, field: &'static str) -> Result<String, ApiError> {
    let id = ids.into_iter().next().unwrap_or_default();
    check_id(field, &id).map_err(invalid)?;
    Ok(id)
}

pub async fn create_order(State(app): AppState, Body(input): Body<OrderInput>) -> ApiResult {
    let new = input.validate(qc_kit::ids::new_uuid).map_err(invalid)?;
    let (o, created) = app.dispatcher.create_order(new, app.clock.now_ms()).await?;
    if created {
        app.ctx.metrics.count(
            "dispatch_orders_created_total",
            "Orders entering dispatch.",
            vec![("via", "http".into())],
            1.0,
        );
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(data(
        status,
        json!({"order_id": o.id, "status": o.status.as_str(), "estimated_match_seconds": 5}),
    ))
}

pub async fn order(State(app): AppState, Ids(ids): Ids) -> ApiResult {
    let id = one_id(ids, "order_id")?;
    let o = app.dispatcher.order(&id).await?;
    Ok(data(StatusCode::OK, order_json(&o)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterInput {
    driver_id: String,
    #[serde(default)]
    name: String,
    location: Option<LatLng>,
    max_load: Option<i64>,
}

pub async fn register(State(app): AppState, Body(input): Body<RegisterInput>) -> ApiResult {
    check_id("driver_id", &input.driver_id).map_err(invalid)?;
    if input.name.len() > 128 {
        return Err(ApiError::invalid("name is longer than 128 bytes"));
    }
    let max_load = input.max_load.unwrap_or(1);
    if !(1..=10).contains(&max_load) {
        return Err(ApiError::invalid("max_load must be 1-10"));
    }
    let location = match input.location {
        Some(l) => Some(check_location("location", l.lat, l.lng).map_err(invalid)?),
        None => None,
    };
    let new = NewDriver {
        id: input.driver_id,
        name: input.name,
        location,
        max_load: max_load as u32,
    };
    let (d, created) = app
        .dispatcher
        .register_driver(new, app.clock.now_ms())
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(data(status, driver_json(&d)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationInput {
    driver_id: String,
    lat: f64,
    lng: f64,
}

pub async fn location(State(app): AppState, Body(input): Body<LocationInput>) -> ApiResult {
    check_id("driver_id", &input.driver_id).map_err(invalid)?;
    let p = check_location("location", input.lat, input.lng).map_err(invalid)?;
    app.dispatcher
        .set_location(&input.driver_id, p, app.clock.now_ms())
        .await?;
    Ok(data(StatusCode::OK, json!({"updated": true})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateInput {
    driver_id: String,
    to: String,
    reason: Option<String>,
}

fn check_reason(r: &Option<String>) -> Result<(), ApiError> {
    match r {
        Some(r) if r.len() > 256 => Err(ApiError::invalid("reason is longer than 256 bytes")),
        _ => Ok(()),
    }
}

pub async fn driver_state(State(app): AppState, Body(input): Body<StateInput>) -> ApiResult {
    check_id("driver_id", &input.driver_id).map_err(invalid)?;
    check_reason(&input.reason)?;
    let to = DriverState::parse(&input.to).ok_or_else(|| {
        ApiError::invalid(format!(
            "to must be one of IDLE, OFFLINE, PICKING, DELIVERING, COMPLETED; got {:?}",
            input.to
        ))
    })?;
    let out = app
        .dispatcher
        .driver_state(
            &input.driver_id,
            to,
            input.reason.as_deref(),
            app.clock.now_ms(),
        )
        .await?;
    notify::announce(&app, &out.notices).await;
    eta_client::follow(&app, &out.notices);
    let t = out.value;
    Ok(data(
        StatusCode::OK,
        json!({"driver_id": t.driver_id, "from": t.from.as_str(), "to": t.to.as_str(), "at": rfc3339(t.at)}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferInput {
    assignment_id: String,
    driver_id: String,
    order_id: Option<String>,
    reason: Option<String>,
}

impl OfferInput {
    fn check(&self) -> Result<(), ApiError> {
        check_id("assignment_id", &self.assignment_id).map_err(invalid)?;
        check_id("driver_id", &self.driver_id).map_err(invalid)?;
        if let Some(o) = &self.order_id {
            check_id("order_id", o).map_err(invalid)?;
        }
        check_reason(&self.reason)
    }
}

pub async fn accept(State(app): AppState, Body(input): Body<OfferInput>) -> ApiResult {
    input.check()?;
    if input.order_id.is_some() || input.reason.is_some() {
        return Err(ApiError::invalid(
            "accept takes only assignment_id and driver_id",
        ));
    }
    let out = app
        .dispatcher
        .accept(&input.assignment_id, &input.driver_id, app.clock.now_ms())
        .await?;
    notify::announce(&app, &out.notices).await;
    eta_client::follow(&app, &out.notices);
    let a = out.value;
    Ok(data(
        StatusCode::OK,
        json!({"assignment_id": a.assignment_id, "order_id": a.order_id, "hub_id": a.hub_id, "status": "ACCEPTED"}),
    ))
}

pub async fn reject(State(app): AppState, Body(input): Body<OfferInput>) -> ApiResult {
    input.check()?;
    let out = app
        .dispatcher
        .reject(
            &input.assignment_id,
            &input.driver_id,
            input.order_id.as_deref(),
            input.reason.as_deref(),
            app.clock.now_ms(),
        )
        .await?;
    notify::announce(&app, &out.notices).await;
    let r = out.value;
    Ok(data(
        StatusCode::OK,
        json!({"assignment_id": r.assignment_id, "order_id": r.order_id, "status": "REJECTED",
               "order_status": r.order_status.as_str(),
               "reassign_attempt": r.reassign.map(|(k, _)| k),
               "reassignment_in_ms": r.reassign.map(|(_, ms)| ms)}),
    ))
}

pub async fn driver(State(app): AppState, Ids(ids): Ids) -> ApiResult {
    let id = one_id(ids, "driver_id")?;
    let d = app.dispatcher.driver(&id).await?;
    Ok(data(StatusCode::OK, driver_json(&d)))
}

pub async fn driver_events(State(app): AppState, Ids(ids): Ids) -> ApiResult {
    let id = one_id(ids, "driver_id")?;
    let events = app.dispatcher.driver_events(&id).await?;
    let list: Vec<Value> = events.iter().map(event_json).collect();
    Ok(data(StatusCode::OK, list))
}

pub async fn assignment(State(app): AppState, Ids(ids): Ids) -> ApiResult {
    let id = one_id(ids, "assignment_id")?;
    let a = app.dispatcher.assignment(&id).await?;
    Ok(data(StatusCode::OK, assignment_json(&a)))
}
