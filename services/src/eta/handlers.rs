//! ETA handlers (07 §2): parse and validate, run the engine, queue the records, wrap in the
//! envelope. Store failures degrade `calculate` (fallback components), never fail it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use qc_eta::calibrate::hour_band;
use qc_eta::compose::base_travel_s;
use qc_eta::engine::{self, local_hour, LatestError, Model, ObserveInput};
use qc_eta::model::{key_id, location, CalculateInput, Invalid};

use super::{EtaApp, Record};
use crate::platform::{data, ApiError, ApiResult, Body, Ids};

type AppState = State<Arc<EtaApp>>;

/// ETA's domain errors to the envelope, in one place: bad input is a 400 naming the field; a
/// missing answer a 404; a store failure is logged and answered with a generic 503.
impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::invalid(e.0)
    }
}

impl From<LatestError> for ApiError {
    fn from(e: LatestError) -> Self {
        match e {
            LatestError::NotFound => ApiError::not_found("no ETA for this order"),
            LatestError::Unavailable(e) => {
                tracing::warn!(error = %e, "eta store unavailable");
                ApiError::unavailable("ETA store unavailable")
            }
        }
    }
}

pub async fn calculate(State(app): AppState, Body(input): Body<CalculateInput>) -> ApiResult {
    let req = input.validate()?;
    let now = app.clock.now_ms();
    let band = hour_band(local_hour(now, app.cfg.utc_offset_min));
    let deadline = std::time::Duration::from_millis(app.cfg.component_timeout_ms);
    let r = match tokio::time::timeout(
        deadline,
        engine::calculate(&app.store, &req, now, band, Model::FULL),
    )
    .await
    {
        Ok(r) => r,
        // Past the deadline: the composition with every store-backed part at its prior.
        Err(_) => {
            let mut r = engine::compute(
                &qc_eta::MemoryEtaStore::new(),
                &req,
                now,
                band,
                Model {
                    calibrate: false,
                    ..Model::FULL
                },
            )
            .await;
            r.fallback_components = vec!["travel".into()];
            r
        }
    };
    let m = &app.ctx.metrics;
    m.count(
        "eta_calculations_total",
        "ETA calculations by outcome.",
        vec![(
            "outcome",
            if r.cached { "sticky" } else { "computed" }.into(),
        )],
        1.0,
    );
    if !r.fallback_components.is_empty() {
        m.count(
            "eta_fallbacks_total",
            "Calculations that used a fallback component.",
            vec![],
            1.0,
        );
    }
    if !r.cached {
        app.record(Record::Prediction(Box::new(r.clone()), req.fingerprint()));
    }
    Ok(data(StatusCode::OK, r))
}

pub async fn latest(State(app): AppState, Ids(ids): Ids) -> ApiResult {
    let id = ids.into_iter().next().unwrap_or_default();
    key_id("order_id", &id, 128)?;
    let r = engine::latest(&app.store, &id, app.clock.now_ms()).await?;
    Ok(data(StatusCode::OK, r))
}

pub async fn observe(State(app): AppState, Body(input): Body<ObserveInput>) -> ApiResult {
    let now = app.clock.now_ms();
    let (order_id, actual, observed_at) = (
        input.order_id.clone(),
        input.actual_travel_s,
        input.observed_at.unwrap_or(now),
    );
    let expected = match (
        location("hub", input.hub_lat, input.hub_lng),
        location("cust", input.cust_lat, input.cust_lng),
    ) {
        (Ok(h), Ok(c)) => Some(base_travel_s(h, c)),
        _ => None,
    };
    let out = engine::observe(&app.store, input, now, app.cfg.utc_offset_min)
        .await?
        .map_err(LatestError::Unavailable)?;
    app.ctx.metrics.count(
        "eta_observations_total",
        "Observations by whether the filter applied them.",
        vec![("applied", out.applied.to_string())],
        1.0,
    );
    app.record(Record::Observation {
        order_id,
        segment: out.segment.clone(),
        expected_s: expected.unwrap_or(0.0),
        actual_s: actual,
        observed_at,
        applied: out.applied,
    });
    Ok(data(StatusCode::OK, out))
}
