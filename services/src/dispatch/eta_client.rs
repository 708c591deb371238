//! Dispatch → ETA (06 §8, 00 internal HTTP): after an accept and at pickup, a stage-aware
//! `POST /eta/calculate` for the order (the shown ETA moves only past the promise's
//! tolerance); when a trip completes, `POST /eta/observe` with the ride (COMPLETED − DELIVERING) and
//! the delivery time, so the ETA service's traffic filters and calibration learn from every
//! trip. Calls run in the background with a 1 s timeout and never block or fail a dispatch
//! response; failures are logged and counted. (No retry: observe is not idempotent.)

use std::sync::Arc;

use qc_dispatch::{DispatchRepo, DriverState};
use serde_json::json;

use super::DispatchApp;

async fn post(app: &DispatchApp, path: &str, body: serde_json::Value) {
    let Some(base) = app.cfg.eta_url.as_deref() else {
        return;
    };
    let mut req = app
        .http
        .post(format!("{}{path}", base.trim_end_matches('/')))
        .json(&body);
    if let Some(t) = &app.internal_token {
        req = req.header("X-Internal-Token", t);
    }
    let outcome = match req.send().await {
        Ok(r) if r.status().is_success() => "ok",
        Ok(r) => {
            tracing::warn!(path, status = r.status().as_u16(), "eta call refused");
            "refused"
        }
        Err(e) => {
            tracing::warn!(path, error = %e, "eta call failed");
            "failed"
        }
    };
    app.ctx.metrics.count(
        "dispatch_eta_calls_total",
        "Calls to the ETA service by path and outcome.",
        vec![("path", path.to_string()), ("outcome", outcome.into())],
        1.0,
    );
}

/// The order's pickup point: its own, else its hub's (from Geo); None if unknown.
async fn pickup(app: &DispatchApp, o: &qc_dispatch::model::Order) -> Option<qc_geo::Point> {
    match o.pickup_location {
        Some(p) => Some(p),
        None => app
            .hub_points(std::slice::from_ref(&o.hub_id))
            .await
            .get(&o.hub_id)
            .copied(),
    }
}

/// After an accept (`assigned`) or at pickup (`picked_up`): the re-estimate for the stages
/// still ahead.
pub fn re_estimate(app: Arc<DispatchApp>, order_id: String, stage: &'static str) {
    if app.cfg.eta_url.is_none() {
        return;
    }
    tokio::spawn(async move {
        let Ok(o) = app.dispatcher.order(&order_id).await else {
            return;
        };
        let Some(hub) = pickup(&app, &o).await else {
            return;
        };
        let items: u64 = o.items.iter().map(|i| u64::from(i.quantity)).sum();
        let queue = app
            .dispatcher
            .repo
            .hub_pool_len(&o.hub_id)
            .await
            .unwrap_or(0);
        let idle = app
            .dispatcher
            .repo
            .candidates()
            .await
            .map_or(0, |c| c.len());
        let mut body = json!({"order_id": o.id, "hub_id": o.hub_id, "item_count": items.clamp(1, 1000),
            "hub_lat": hub.lat, "hub_lng": hub.lng, "cust_lat": o.delivery_location.lat,
            "cust_lng": o.delivery_location.lng, "queue_depth": queue, "drivers_avail": idle,
            "stage": stage});
        // After an accept, the rider's ride to the hub is still ahead.
        let rider = match (&o.assigned_driver_id, stage) {
            (Some(d), "assigned") => app.dispatcher.driver(d).await.ok().and_then(|d| d.location),
            _ => None,
        };
        if let Some(p) = rider {
            body["rider_lat"] = json!(p.lat);
            body["rider_lng"] = json!(p.lng);
        }
        post(&app, "/eta/calculate", body).await;
    });
}

/// After COMPLETED: the ride (from the driver's DELIVERING) and the delivery time.
pub fn after_delivery(app: Arc<DispatchApp>, driver_id: String, order_id: String, at: i64) {
    if app.cfg.eta_url.is_none() {
        return;
    }
    tokio::spawn(async move {
        let (Ok(o), Ok(events)) = (
            app.dispatcher.order(&order_id).await,
            app.dispatcher.driver_events(&driver_id).await,
        ) else {
            return;
        };
        let Some(out) = events
            .iter()
            .rev()
            .find(|e| e.to_state == DriverState::Delivering && e.at <= at)
        else {
            return;
        };
        let ride_s = (at - out.at) as f64 / 1000.0;
        if !(ride_s > 0.0 && ride_s <= 7200.0) {
            return;
        }
        let Some(hub) = pickup(&app, &o).await else {
            return;
        };
        let body = json!({"hub_id": o.hub_id, "hub_lat": hub.lat, "hub_lng": hub.lng,
            "cust_lat": o.delivery_location.lat, "cust_lng": o.delivery_location.lng,
            "actual_travel_s": ride_s, "observed_at": at, "order_id": o.id, "delivered_at": at});
        post(&app, "/eta/observe", body).await;
    });
}

/// Starts the calls a committed change implies.
pub fn follow(app: &Arc<DispatchApp>, notices: &[qc_dispatch::Notice]) {
    for n in notices {
        match (n.kind, &n.order_id, &n.driver_id) {
            ("assignment.accepted", Some(o), _) => re_estimate(app.clone(), o.clone(), "assigned"),
            ("order.picked_up", Some(o), _) => re_estimate(app.clone(), o.clone(), "picked_up"),
            ("order.delivered", Some(o), Some(d)) => {
                after_delivery(app.clone(), d.clone(), o.clone(), n.at)
            }
            _ => {}
        }
    }
}
