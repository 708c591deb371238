//! Geo handlers: parse and validate, call the lookup or the registry, wrap in the envelope.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use qc_geo::{eta_minutes, round_to, Hub, Point};
use serde::Deserialize;
use serde_json::{json, Value};

use super::GeoApp;
use crate::platform::{data, ApiError, ApiResult, Body, Ids};
use qc_geo::registry;
use qc_geo::HubStore;

type AppState = State<Arc<GeoApp>>;

fn coordinate(q: &HashMap<String, String>, name: &str) -> Result<f64, ApiError> {
    let raw = q
        .get(name)
        .ok_or_else(|| ApiError::invalid(format!("{name} is required")))?;
    raw.trim()
        .parse::<f64>()
        .map_err(|_| ApiError::invalid(format!("{name} must be a number, got {raw:?}")))
}

fn hub_json(h: &Hub, res: qc_geo::Resolution) -> Value {
    json!({"id": h.id, "name": h.name, "lat": h.lat, "lng": h.lng, "max_radius_km": h.max_radius_km,
           "priority": h.priority, "stock": h.stock, "rider_avail": h.rider_avail, "active": h.active,
           "h3_cell": registry::hub_cell(h, res)})
}

pub async fn serviceability(
    State(app): AppState,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| ApiError::invalid(format!("invalid query: {}", e.body_text())))?;
    let p = Point::new(coordinate(&q, "lat")?, coordinate(&q, "lng")?)?;
    let a = app.serviceability(p).await;
    app.ctx.metrics.count(
        "geo_lookups_total",
        "Serviceability lookups by tier.",
        vec![("tier", a.tier.as_str().into())],
        1.0,
    );
    let body = match &a.hub {
        Some(h) => {
            let eta = eta_minutes(a.distance_km);
            json!({"serviceable": true, "h3_cell": a.cell, "hub": hub_json(h, app.cfg.resolution), "hub_id": h.id,
                   "distance_km": round_to(a.distance_km, 2), "eta": format!("{eta}m"), "eta_minutes": eta,
                   "score": round_to(a.score, 3), "cache_hit": a.cache_hit, "tier": a.tier.as_str()})
        }
        None => {
            json!({"serviceable": false, "h3_cell": a.cell, "hub": null, "hub_id": null, "distance_km": null,
                       "eta": null, "eta_minutes": null, "score": null, "cache_hit": false, "tier": "none"})
        }
    };
    Ok(data(StatusCode::OK, body))
}

/// The admin body: 02 §2 fields, with the reference aliases.
#[derive(Debug, Deserialize)]
pub struct HubInput {
    #[serde(alias = "hub_id")]
    id: Option<String>,
    #[serde(default)]
    name: String,
    lat: Option<f64>,
    lng: Option<f64>,
    #[serde(alias = "coverage_radius_km")]
    max_radius_km: Option<f64>,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    stock: f64,
    #[serde(default)]
    rider_avail: f64,
    active: Option<bool>,
}

pub async fn put_hub(State(app): AppState, Body(input): Body<HubInput>) -> ApiResult {
    let need = |v: Option<f64>, name: &str| {
        v.ok_or_else(|| ApiError::invalid(format!("{name} is required")))
    };
    let hub = Hub {
        id: input
            .id
            .ok_or_else(|| ApiError::invalid("id is required"))?,
        name: input.name,
        lat: need(input.lat, "lat")?,
        lng: need(input.lng, "lng")?,
        max_radius_km: need(input.max_radius_km, "max_radius_km")?,
        priority: input.priority,
        stock: input.stock,
        rider_avail: input.rider_avail,
        active: input.active.unwrap_or(true),
    };
    hub.validate()?;
    let (created, cells) = app.put_hub(&hub).await.map_err(registry_down)?;
    tracing::info!(hub_id = %hub.id, created, cells, "hub written");
    let mut body = hub_json(&hub, app.cfg.resolution);
    body["coverage_cells"] = json!(cells);
    Ok(data(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        body,
    ))
}

pub async fn list_hubs(State(app): AppState) -> ApiResult {
    let hubs = app.store.hubs().await.map_err(registry_down)?;
    let list: Vec<Value> = hubs
        .iter()
        .map(|h| hub_json(h, app.cfg.resolution))
        .collect();
    Ok(data(StatusCode::OK, list))
}

pub async fn get_hub(State(app): AppState, Ids(ids): Ids) -> ApiResult<Response> {
    let id = ids.into_iter().next().unwrap_or_default();
    qc_kit::validate_id("id", &id).map_err(|e| ApiError::invalid(e.to_string()))?;
    let hubs = app.store.hubs().await.map_err(registry_down)?;
    let hub = hubs.iter().find(|h| h.id == id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "HUB_NOT_FOUND",
            format!("no hub {id}"),
        )
    })?;
    Ok(data(StatusCode::OK, hub_json(hub, app.cfg.resolution)))
}

/// Geo's input errors to the envelope (a 400 naming the field).
impl From<qc_geo::GeoError> for ApiError {
    fn from(e: qc_geo::GeoError) -> Self {
        ApiError::invalid(e.to_string())
    }
}

/// The hub registry's store failed: the cause goes to the log, never into a response.
fn registry_down(e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "hub registry unavailable");
    ApiError::unavailable("hub registry unavailable")
}
