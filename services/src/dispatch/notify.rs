//! After a committed change: queue the order statuses Tracking shows (06 §8), publish the
//! change on `dispatch.events` and, on accept, write the assignment hash Tracking reads (00, 06 §3). Postgres already holds the truth, so a Redis
//! failure here is logged and counted and never fails the request.

use serde_json::json;

use super::handlers::rfc3339;
use super::DispatchApp;
use qc_dispatch::Notice;

/// GC for Tracking's assignment hash (06 §3).
const ASSIGNMENT_TTL_S: i64 = 24 * 3600;

pub async fn announce(app: &DispatchApp, notices: &[Notice]) {
    if notices.is_empty() {
        return;
    }
    app.tracking.enqueue(notices);
    let mut pipe = redis::pipe();
    let channel = app.prefix.key("dispatch.events");
    for n in notices {
        let event = json!({"type": n.kind, "order_id": n.order_id, "driver_id": n.driver_id,
                           "assignment_id": n.assignment_id, "at": rfc3339(n.at)});
        pipe.publish(&channel, event.to_string()).ignore();
        if n.kind == "assignment.accepted" {
            if let (Some(order), Some(driver), Some(asg), Some(hub)) =
                (&n.order_id, &n.driver_id, &n.assignment_id, &n.hub_id)
            {
                let key = app.key(&format!("assignment:{order}"));
                pipe.hset_multiple(
                    &key,
                    &[
                        ("driver_id", driver.clone()),
                        ("assignment_id", asg.clone()),
                        ("hub_id", hub.clone()),
                        ("assigned_at", rfc3339(n.at)),
                    ],
                )
                .ignore()
                .expire(&key, ASSIGNMENT_TTL_S)
                .ignore();
            }
        }
        app.ctx.metrics.count(
            "dispatch_events_total",
            "Dispatch events by type.",
            vec![("type", n.kind.into())],
            1.0,
        );
    }
    let mut conn = app.redis.clone();
    let sent: Result<(), _> =
        qc_kit::redis_kit::bounded(app.redis_timeout_ms, pipe.query_async(&mut conn)).await;
    if let Err(e) = sent {
        tracing::warn!(error = %e, events = notices.len(), "dispatch events not published");
        app.ctx.metrics.count(
            "dispatch_notify_failures_total",
            "Event batches not published to Redis.",
            vec![],
            1.0,
        );
    }
}
