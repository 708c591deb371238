//! Dispatch → Tracking (06 §8, 09 `POST /tracking/status/:order_id`): every committed change
//! whose notice maps to a tracking status ([`qc_dispatch::Notice::tracking_status`]) is posted,
//! in order, by one background worker. A 409 (already terminal) counts as done. A Tracking
//! outage never blocks a rider's state change: each post is retried a bounded number of times,
//! then counted and logged; a full queue drops (and counts) the newest status.

use std::sync::Arc;
use std::time::Duration;

use qc_dispatch::Notice;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::platform::ops::ServiceCtx;
use crate::platform::shutdown::Shutdown;

/// Posts waiting for the worker.
const QUEUE: usize = 10_000;
/// Attempts per status, and the pause before each retry (doubling).
const ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// One status post.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusPost {
    pub order_id: String,
    pub status: &'static str,
    pub driver_id: Option<String>,
}

/// The sending side the handlers use (through `notify::announce`).
#[derive(Debug, Clone)]
pub struct TrackingPoster {
    tx: Option<mpsc::Sender<StatusPost>>,
    ctx: Option<Arc<ServiceCtx>>,
}

/// What the worker needs to post.
#[derive(Debug)]
struct Client {
    base: String,
    http: reqwest::Client,
    internal_token: Option<String>,
    ctx: Arc<ServiceCtx>,
}

impl TrackingPoster {
    /// Off: nothing is posted (no `TRACKING_URL`).
    pub fn off() -> Self {
        Self {
            tx: None,
            ctx: None,
        }
    }

    /// Queues the posts `notices` imply; never waits.
    pub fn enqueue(&self, notices: &[Notice]) {
        let (Some(tx), Some(ctx)) = (&self.tx, &self.ctx) else {
            return;
        };
        for n in notices {
            let (Some(status), Some(order_id)) = (n.tracking_status(), &n.order_id) else {
                continue;
            };
            let post = StatusPost {
                order_id: order_id.clone(),
                status,
                driver_id: n.driver_id.clone(),
            };
            if tx.try_send(post).is_err() {
                tracing::warn!(order_id, status, "tracking status dropped: queue full");
                count(ctx, "dropped");
            }
        }
    }
}

fn count(ctx: &ServiceCtx, outcome: &'static str) {
    ctx.metrics.count(
        "dispatch_tracking_calls_total",
        "Status posts to Tracking by outcome (ok, conflict = already terminal, gave_up, dropped).",
        vec![("outcome", outcome.into())],
        1.0,
    );
}

/// The poster and, when Tracking is configured, its worker.
pub fn start(
    base: Option<String>,
    http: reqwest::Client,
    internal_token: Option<String>,
    ctx: Arc<ServiceCtx>,
    shutdown: Shutdown,
) -> (TrackingPoster, Option<JoinHandle<()>>) {
    let Some(base) = base else {
        return (TrackingPoster::off(), None);
    };
    let client = Client {
        base,
        http,
        internal_token,
        ctx: ctx.clone(),
    };
    let (tx, mut rx) = mpsc::channel::<StatusPost>(QUEUE);
    let worker = tokio::spawn(async move {
        loop {
            let post = tokio::select! {
                p = rx.recv() => p,
                _ = shutdown.wait() => {
                    // Drain what is queued (bounded by the shutdown's drain timeout).
                    rx.close();
                    rx.recv().await
                }
            };
            let Some(post) = post else { break };
            client.deliver(&post).await;
        }
    });
    (
        TrackingPoster {
            tx: Some(tx),
            ctx: Some(ctx),
        },
        Some(worker),
    )
}

impl Client {
    /// One post with bounded retries.
    async fn deliver(&self, post: &StatusPost) {
        let url = format!(
            "{}/tracking/status/{}",
            self.base.trim_end_matches('/'),
            post.order_id
        );
        let mut body = json!({"status": post.status});
        if let Some(d) = &post.driver_id {
            body["driver_id"] = json!(d);
        }
        let mut pause = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let mut req = self.http.post(&url).json(&body);
            if let Some(t) = &self.internal_token {
                req = req.header("X-Internal-Token", t);
            }
            let outcome = match req.send().await {
                Ok(r) if r.status().is_success() => Some("ok"),
                Ok(r) if r.status().as_u16() == 409 => Some("conflict"),
                // A 4xx other than 409 will not change on retry.
                Ok(r) if r.status().is_client_error() => {
                    tracing::warn!(
                        order_id = post.order_id,
                        status = post.status,
                        http = r.status().as_u16(),
                        "tracking refused a status"
                    );
                    Some("refused")
                }
                Ok(r) => {
                    tracing::warn!(
                        order_id = post.order_id,
                        http = r.status().as_u16(),
                        attempt,
                        "tracking status post failed"
                    );
                    None
                }
                Err(e) => {
                    tracing::warn!(order_id = post.order_id, error = %e, attempt,
                    "tracking status post failed");
                    None
                }
            };
            if let Some(o) = outcome {
                count(&self.ctx, o);
                return;
            }
            if attempt < ATTEMPTS && !self.ctx.shutdown.is_triggered() {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
        tracing::error!(
            order_id = post.order_id,
            status = post.status,
            "tracking status not delivered after retries"
        );
        count(&self.ctx, "gave_up");
    }
}
