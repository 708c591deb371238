//! The service's operations over the [`EtaStore`] port (07 §2, §5): calculate with the sticky
//! rules and fallbacks, observe (filter update, and a calibration score when the order's
//! total time is known), and the latest answer.

use serde::{Deserialize, Serialize};

use crate::calibrate::{hour_band, pick, Offsets, Source};
use crate::compose::{base_travel_s, formatted, SLA_S};
use crate::kalman::{self, KfState};
use crate::model::{
    key_id, location, predict, segment, travel_lower_bound_s, EtaRequest, Invalid, Stage,
};
use crate::store::{EtaStore, StickyPut, LATEST_MAX_AGE_MS};

/// Which parts of the model run (the regression gate degrades them on purpose).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    pub traffic: bool,
    pub calibrate: bool,
    /// A re-estimate within the promise's tolerance keeps the shown ETA ([`revise`]).
    pub keep_promise: bool,
}

impl Model {
    pub const FULL: Model = Model {
        traffic: true,
        calibrate: true,
        keep_promise: true,
    };
}

fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The `calculate` answer (07 §2, plus `over_sla`, `fallback_components`, `traffic_multiplier`,
/// `segment`, and ours: `calibration`, `raw_p50_s`, `sigma_s`, `hub_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EtaResult {
    pub order_id: String,
    pub hub_id: String,
    pub eta_p50_s: f64,
    pub eta_p80_s: f64,
    pub eta_p95_s: f64,
    pub components: Components,
    pub formatted_eta: String,
    pub cached: bool,
    pub computed_at: i64,
    pub over_sla: bool,
    pub fallback_components: Vec<String>,
    pub traffic_multiplier: f64,
    pub segment: String,
    pub calibration: String,
    pub raw_p50_s: f64,
    pub sigma_s: f64,
    /// Ours: the stage the answer was computed for (`placed`, `assigned`, `picked_up`).
    #[serde(default = "placed")]
    pub stage: String,
    /// Ours: a re-estimate that moved the shown ETA (it left the promise's tolerance).
    #[serde(default)]
    pub revised: bool,
    /// Ours, on a revised answer: the promise it replaced (what calibration scores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promise: Option<Promised>,
}

/// The promise made at placement, as calibration needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promised {
    pub computed_at: i64,
    pub eta_p50_s: f64,
    pub eta_p80_s: f64,
    pub eta_p95_s: f64,
    pub raw_p50_s: f64,
    pub sigma_s: f64,
}

impl EtaResult {
    /// The promise this answer stands for: its own at placement, else the one it replaced.
    pub fn promised(&self) -> Option<Promised> {
        if self.stage == Stage::Placed.as_str() {
            Some(Promised {
                computed_at: self.computed_at,
                eta_p50_s: self.eta_p50_s,
                eta_p80_s: self.eta_p80_s,
                eta_p95_s: self.eta_p95_s,
                raw_p50_s: self.raw_p50_s,
                sigma_s: self.sigma_s,
            })
        } else {
            self.promise.clone()
        }
    }
}

fn placed() -> String {
    Stage::Placed.as_str().to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Components {
    pub picking_time_s: f64,
    pub queue_wait_time_s: f64,
    pub travel_time_s: f64,
    pub buffer_s: f64,
}

/// Local hour of an epoch-ms instant for a UTC offset in minutes.
pub fn local_hour(now_ms: i64, utc_offset_min: i32) -> u32 {
    ((now_ms / 60_000 + i64::from(utc_offset_min)).rem_euclid(1440) / 60) as u32
}

/// Computes an answer from fresh reads; store errors degrade (prior traffic, Gaussian
/// quantiles), never fail.
pub async fn compute<S: EtaStore>(
    store: &S,
    req: &EtaRequest,
    now_ms: i64,
    band: u8,
    model: Model,
) -> EtaResult {
    let seg = req.segment();
    // The filters and the calibration windows are read concurrently (one round trip).
    let filters = async {
        if model.traffic {
            store
                .kf_get(&req.hub_id, &seg)
                .await
                .ok()
                .map(|(s, h)| kalman::estimate_two_level(s.as_ref(), h.as_ref(), now_ms))
        } else {
            Some(kalman::TrafficEstimate::PRIOR)
        }
    };
    let windows = async {
        // Calibration is of the promise: later stages state the composition's own quantiles.
        if model.calibrate && req.stage == Stage::Placed {
            match store.scores(&req.hub_id, band).await {
                Ok(w) => pick(&w.band, &w.hub, &w.all, w.levels),
                Err(_) => (Offsets::GAUSSIAN, Source::Prior),
            }
        } else {
            (Offsets::GAUSSIAN, Source::Prior)
        }
    };
    let (traffic, offsets) = futures::join!(filters, windows);
    let p = predict(req, traffic, offsets);
    EtaResult {
        order_id: req.order_id.clone(),
        hub_id: req.hub_id.clone(),
        eta_p50_s: r2(p.p50),
        eta_p80_s: r2(p.p80),
        eta_p95_s: r2(p.p95),
        components: Components {
            picking_time_s: r2(p.picking_s),
            queue_wait_time_s: r2(p.queue_s),
            travel_time_s: r2(p.travel_s),
            buffer_s: r2(p.buffer_s()),
        },
        formatted_eta: formatted(p.p50),
        cached: false,
        computed_at: now_ms,
        over_sla: p.p50 > SLA_S,
        fallback_components: p.fallback.iter().map(|s| s.to_string()).collect(),
        traffic_multiplier: (p.multiplier * 10_000.0).round() / 10_000.0,
        segment: p.segment,
        calibration: p.source.as_str().to_string(),
        raw_p50_s: r2(p.raw_p50),
        sigma_s: r2(p.sigma),
        stage: req.stage.as_str().to_string(),
        revised: false,
        promise: None,
    }
}

fn decode(body: &str) -> Option<EtaResult> {
    serde_json::from_str(body).ok()
}

/// `POST /eta/calculate`. At placement, the promise (07 §5 sticky rules): a live entry with
/// the same fingerprint is returned unchanged with `cached:true`; otherwise a fresh answer is
/// stored (unless another request stored one first) and always becomes the latest. At a later
/// stage, a re-estimate ([`revise`]).
pub async fn calculate<S: EtaStore>(
    store: &S,
    req: &EtaRequest,
    now_ms: i64,
    band: u8,
    model: Model,
) -> EtaResult {
    if req.stage != Stage::Placed {
        return revise(store, req, now_ms, band, model).await;
    }
    let fp = req.fingerprint();
    // The sticky entry and the inputs of a fresh answer are read concurrently: one round trip
    // whichever way it goes.
    let (sticky, fresh) = futures::join!(
        store.sticky_get(&req.order_id),
        compute(store, req, now_ms, band, model)
    );
    if let Ok(Some(e)) = sticky {
        if e.fp == fp && now_ms < e.expires_at_ms {
            if let Some(mut r) = decode(&e.body) {
                r.cached = true;
                return r;
            }
        }
    }
    let body = serde_json::to_string(&fresh).expect("serialisable");
    let out = match store.sticky_put(&req.order_id, now_ms, &fp, &body).await {
        Ok(StickyPut::Existing(b)) => match decode(&b) {
            Some(mut r) => {
                r.cached = true;
                r
            }
            None => fresh,
        },
        _ => fresh,
    };
    show(store, &req.order_id, &out).await;
    out
}

/// Makes `answer` the order's latest (what GET shows, and what observe scores). Best effort: a
/// store failure loses the record, never the answer.
async fn show<S: EtaStore>(store: &S, order_id: &str, answer: &EtaResult) {
    let body = serde_json::to_string(answer).expect("serialisable");
    let _ = store.latest_put(order_id, &body).await;
}

/// A re-estimate from a later stage (07 §8 after accept, and at pickup): only the stages still
/// ahead, measured from now. The shown ETA (the latest answer, normally the promise) stays
/// while it is still credible, its tolerance being its own interval: it moves when the
/// re-estimate's median arrival is later than the shown p95 (the promise would be broken), or
/// its p95 arrival is earlier than the shown median minus the shown buffer (p95 − p50: the
/// order will surely be early). A moved
/// answer is `revised` and carries the promise it replaced, which calibration goes on scoring
/// (stages are not mixed in one residual window).
pub async fn revise<S: EtaStore>(
    store: &S,
    req: &EtaRequest,
    now_ms: i64,
    band: u8,
    model: Model,
) -> EtaResult {
    let (shown, mut fresh) = futures::join!(
        store.latest_get(&req.order_id),
        compute(store, req, now_ms, band, model)
    );
    let shown = shown
        .ok()
        .flatten()
        .as_deref()
        .and_then(decode)
        .filter(|s| s.hub_id == req.hub_id && now_ms - s.computed_at <= LATEST_MAX_AGE_MS);
    fresh.promise = shown.as_ref().and_then(EtaResult::promised);
    match shown {
        Some(mut s) if model.keep_promise => {
            let at = |base: i64, s: f64| base as f64 + s * 1000.0;
            let late = at(now_ms, fresh.eta_p50_s) > at(s.computed_at, s.eta_p95_s);
            let buffer = s.eta_p95_s - s.eta_p50_s;
            let early = at(now_ms, fresh.eta_p95_s) < at(s.computed_at, s.eta_p50_s - buffer);
            if !late && !early {
                s.cached = true;
                return s;
            }
            fresh.revised = true;
        }
        Some(_) => fresh.revised = true,
        None => {}
    }
    show(store, &req.order_id, &fresh).await;
    fresh
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LatestError {
    #[error("no ETA for this order")]
    NotFound,
    #[error("{0}")]
    Unavailable(#[source] qc_kit::redis_kit::BackendError),
}

/// `GET /eta/{order_id}`: the latest answer, if computed within the last 7200 s.
pub async fn latest<S: EtaStore>(
    store: &S,
    order_id: &str,
    now_ms: i64,
) -> Result<EtaResult, LatestError> {
    let body = store
        .latest_get(order_id)
        .await
        .map_err(LatestError::Unavailable)?
        .ok_or(LatestError::NotFound)?;
    let mut r = decode(&body).ok_or(LatestError::NotFound)?;
    if now_ms - r.computed_at > LATEST_MAX_AGE_MS {
        return Err(LatestError::NotFound);
    }
    r.cached = true;
    Ok(r)
}

/// `POST /eta/observe` as it arrives; unknown fields are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct ObserveInput {
    pub hub_id: String,
    pub hub_lat: f64,
    pub hub_lng: f64,
    pub cust_lat: f64,
    pub cust_lng: f64,
    pub actual_travel_s: f64,
    pub observed_at: Option<i64>,
    pub order_id: Option<String>,
    /// Ours: the order's whole time since its promise (the ETA computed at placement),
    /// seconds; with `order_id`, scores that promise for calibration.
    pub actual_total_s: Option<f64>,
    /// Ours, instead of `actual_total_s`: when the order reached the door (epoch ms); the
    /// total is measured from the promise's `computed_at`.
    pub delivered_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observed {
    pub segment: String,
    pub applied: bool,
    pub multiplier: f64,
    pub x: f64,
    pub p: f64,
    pub n: u64,
    pub calibrated: bool,
    /// Why (part of) the observation was not used: a ride or a total faster than the trip's
    /// physical lower bound cannot have happened, and would drag every promise down.
    pub ignored: Option<String>,
}

/// Observations shorter than this expected travel time are not applied (07 §2).
pub const MIN_EXPECTED_S: f64 = 60.0;

pub async fn observe<S: EtaStore>(
    store: &S,
    input: ObserveInput,
    now_ms: i64,
    utc_offset_min: i32,
) -> Result<Result<Observed, qc_kit::redis_kit::BackendError>, Invalid> {
    key_id("hub_id", &input.hub_id, 64)?;
    if let Some(o) = &input.order_id {
        key_id("order_id", o, 128)?;
    }
    let hub = location("hub", input.hub_lat, input.hub_lng)?;
    let cust = location("cust", input.cust_lat, input.cust_lng)?;
    let t = input.actual_travel_s;
    if !(t.is_finite() && t > 0.0 && t <= 7200.0) {
        return Err(Invalid(format!(
            "actual_travel_s must be in (0, 7200], got {t}"
        )));
    }
    if let Some(total) = input.actual_total_s {
        if !(total.is_finite() && total > 0.0 && total <= 86_400.0) {
            return Err(Invalid(format!(
                "actual_total_s must be in (0, 86400], got {total}"
            )));
        }
    }
    let observed_at = input.observed_at.unwrap_or(now_ms);
    if observed_at <= 0 {
        return Err(Invalid("observed_at must be epoch ms".into()));
    }
    let seg = segment(&input.hub_id, cust);
    let base = base_travel_s(hub, cust);
    let floor = travel_lower_bound_s(hub, cust);
    let mut ignored = None;
    if t < floor {
        ignored = Some(format!(
            "actual_travel_s {t} is below the trip's lower bound {floor:.1} s"
        ));
    }
    let run = async {
        let ((state, hub), applied) = if base < MIN_EXPECTED_S || t < floor {
            (store.kf_get(&input.hub_id, &seg).await?, false)
        } else {
            let (s, h): (KfState, KfState) = store
                .kf_update(&input.hub_id, &seg, now_ms, observed_at, t / base)
                .await?;
            ((Some(s), Some(h)), true)
        };
        let mut calibrated = false;
        let wants = input.actual_total_s.is_some() || input.delivered_at.is_some();
        if let (Some(order), true) = (&input.order_id, wants) {
            let latest = store.latest_get(order).await?.as_deref().and_then(decode);
            if let Some((r, p)) = latest.and_then(|r| r.promised().map(|p| (r, p))) {
                let total = input.actual_total_s.unwrap_or_else(|| {
                    (input.delivered_at.unwrap_or(0) - p.computed_at) as f64 / 1000.0
                });
                if total < floor {
                    ignored = Some(format!(
                        "the order's total {total:.1} s is below the trip's lower bound {floor:.1} s"
                    ));
                } else if r.hub_id == input.hub_id && p.sigma_s > 0.0 {
                    let band = hour_band(local_hour(p.computed_at, utc_offset_min));
                    store
                        .scores_push(&r.hub_id, band, (total - p.raw_p50_s) / p.sigma_s)
                        .await?;
                    let missed = [
                        total > p.eta_p50_s,
                        total > p.eta_p80_s,
                        total > p.eta_p95_s,
                    ];
                    store.adapt_levels(&r.hub_id, missed).await?;
                    calibrated = true;
                }
            }
        }
        let est = kalman::estimate_two_level(state.as_ref(), hub.as_ref(), now_ms);
        Ok(Observed {
            segment: seg.clone(),
            applied,
            multiplier: est.multiplier,
            x: state.map_or(0.0, |s| s.x),
            p: state.map_or(kalman::SIGMA_INF2, |s| s.p),
            n: state.map_or(0, |s| s.n),
            calibrated,
            ignored,
        })
    };
    Ok(run.await)
}
