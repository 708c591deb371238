//! Driver ingest over WebSocket (09 "WebSocket protocol"): one reply per frame, in order; each
//! fix goes through the tracker (validate → filter → store → publish) before the next frame is
//! read. Bad frames are answered and the socket stays open; floods (1008) and oversized frames
//! (1009) close it. The server pings; a socket silent for the idle time is closed. One socket
//! per driver: on this instance a newer one closes the older at once with 4000, and the older
//! one's cleanup never touches the newer one's entry or the driver's filter; across instances
//! the newer socket's Redis lease makes the older one close with 4000 at its next ping.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use qc_tracking::model::valid_id;
use qc_tracking::token::Role;
use qc_tracking::{Frame, IngestError, Reject};
use serde_json::json;

use super::TrackingApp;
use crate::platform::error::ApiError;

/// Hard cap handed to the WebSocket codec; frames between the configured limit and this are
/// read and answered with 1009, larger ones fail in the codec (and close the connection).
const CODEC_MAX_BYTES: usize = 1 << 16;
const READ_BUFFER_BYTES: usize = 8 * 1024;

const CLOSE_NORMAL: u16 = 1000;
const CLOSE_SHUTDOWN: u16 = 1001;
const CLOSE_FLOOD: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_REPLACED: u16 = 4000;

/// A required id from the query.
pub(super) fn query_id<'a>(
    q: &'a HashMap<String, String>,
    name: &str,
) -> Result<&'a str, ApiError> {
    match q.get(name).map(String::as_str) {
        None | Some("") => Err(ApiError::invalid(format!("{name} is required"))),
        Some(v) if !valid_id(v) => Err(ApiError::invalid(format!(
            "{name} must match ^[A-Za-z0-9_.-]{{1,128}}$"
        ))),
        Some(v) => Ok(v),
    }
}

pub async fn connect(
    State(app): State<Arc<TrackingApp>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match accept(&app, &q, &headers).await {
        Err(e) => e.into_response(),
        Ok((driver, order)) => match upgrade {
            Err(_) => ApiError::invalid("a WebSocket upgrade request is required").into_response(),
            Ok(up) => up
                // Frames are small: the codec's default 128 KiB read buffer is zero-filled on
                // every read and cost a third of the ingest CPU (perf).
                .read_buffer_size(READ_BUFFER_BYTES)
                .max_message_size(CODEC_MAX_BYTES)
                .max_frame_size(CODEC_MAX_BYTES)
                .on_upgrade(move |socket| session(app, socket, driver, order)),
        },
    }
}

async fn accept(
    app: &TrackingApp,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<(String, String), ApiError> {
    if app.ctx.shutdown.is_triggered() {
        return Err(ApiError::unavailable("shutting down"));
    }
    let driver = query_id(q, "driver_id")?;
    let order = query_id(q, "order_id")?;
    app.authorize(
        Role::Driver,
        driver,
        order,
        q.get("token").map(String::as_str),
        headers,
    )?;
    app.check_assignment(driver, order).await?;
    Ok((driver.to_string(), order.to_string()))
}

/// At most `max` data frames in any window of one second.
#[derive(Debug)]
struct FloodGate {
    max: usize,
    arrivals: VecDeque<Instant>,
}

impl FloodGate {
    fn new(max: usize) -> Self {
        Self {
            max,
            arrivals: VecDeque::with_capacity(max + 1),
        }
    }

    /// Records a frame; false when it is the one too many.
    fn admit(&mut self, now: Instant) -> bool {
        while self
            .arrivals
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            self.arrivals.pop_front();
        }
        self.arrivals.push_back(now);
        self.arrivals.len() <= self.max
    }
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

async fn session(app: Arc<TrackingApp>, mut socket: WebSocket, driver: String, order: String) {
    let (conn_id, mut replaced) = app.sockets.register(&driver);
    app.claim_socket(&driver, conn_id).await;
    app.sessions.fetch_add(1, Ordering::SeqCst);
    app.gauges();
    let cfg = &app.cfg;
    let idle = Duration::from_millis(cfg.ws_idle_ms);
    let mut deadline = tokio::time::Instant::now() + idle;
    let period = Duration::from_millis(cfg.ws_ping_ms);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut gate = FloodGate::new(cfg.ws_max_frames_per_s);
    loop {
        tokio::select! {
            biased;
            _ = app.ctx.shutdown.wait() => {
                close(&mut socket, CLOSE_SHUTDOWN, "server shutting down").await;
                break;
            }
            _ = &mut replaced => {
                close(&mut socket, CLOSE_REPLACED, "replaced by a newer connection").await;
                break;
            }
            _ = tokio::time::sleep_until(deadline) => {
                close(&mut socket, CLOSE_NORMAL, "idle").await;
                break;
            }
            _ = ping.tick() => {
                if !app.still_owner(&driver, conn_id).await {
                    close(&mut socket, CLOSE_REPLACED, "replaced by a newer connection").await;
                    break;
                }
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
            msg = socket.recv() => {
                let Some(Ok(msg)) = msg else { break };
                deadline = tokio::time::Instant::now() + idle;
                let text = match msg {
                    Message::Text(t) => Some(t),
                    Message::Binary(_) => None,
                    Message::Ping(_) | Message::Pong(_) => continue,
                    Message::Close(_) => break,
                };
                if !gate.admit(Instant::now()) {
                    close(&mut socket, CLOSE_FLOOD, "more than the allowed frames per second").await;
                    break;
                }
                let reply = match text {
                    Some(t) if t.len() > cfg.ws_max_frame_bytes => {
                        close(&mut socket, CLOSE_TOO_BIG, "frame too large").await;
                        break;
                    }
                    Some(t) => ingest(&app, &driver, &order, t.as_str()).await,
                    None => rejected(Reject::InvalidMessage, None),
                };
                if socket.send(Message::Text(reply.into())).await.is_err() {
                    break;
                }
            }
        }
    }
    app.sockets.release(&driver, conn_id);
    app.release_socket(&driver, conn_id).await;
    app.sessions.fetch_sub(1, Ordering::SeqCst);
    app.sockets.closed.notify_waiters();
    app.gauges();
}

fn rejected(reason: Reject, timestamp: Option<&str>) -> String {
    json!({"status": "rejected", "error": reason.as_str(), "message": reason.message(),
           "timestamp": timestamp})
    .to_string()
}

/// One frame through the tracker; the reply.
async fn ingest(app: &TrackingApp, driver: &str, order: &str, text: &str) -> String {
    let m = &app.ctx.metrics;
    m.count(
        "tracking_points_received_total",
        "GPS frames received.",
        vec![],
        1.0,
    );
    let reject = |reason: Reject, ts: Option<&str>| {
        m.count(
            "tracking_points_rejected_total",
            "GPS frames rejected, by reason.",
            vec![("reason", reason.as_str().into())],
            1.0,
        );
        rejected(reason, ts)
    };
    let frame = match Frame::parse(text) {
        Ok(f) => f,
        Err((reason, ts)) => return reject(reason, ts.as_deref()),
    };
    let ts = Some(frame.timestamp.as_str());
    if frame.driver_id.as_deref().is_some_and(|d| d != driver)
        || frame.order_id.as_deref().is_some_and(|o| o != order)
    {
        return reject(Reject::IdentityMismatch, ts);
    }
    let started = Instant::now();
    match app
        .tracker
        .ingest(driver, order, &frame.fix, app.clock.now_ms())
        .await
    {
        Ok(e) => {
            m.observe(
                "tracking_publish_latency_seconds",
                "From a fix's arrival to its event stored and published.",
                vec![],
                started.elapsed().as_secs_f64(),
            );
            m.count(
                "tracking_points_accepted_total",
                "GPS fixes accepted, stored and published.",
                vec![],
                1.0,
            );
            json!({"status": "ok", "message": "location received", "seq": e.seq,
                   "timestamp": frame.timestamp})
            .to_string()
        }
        Err(IngestError::Rejected(r)) => reject(r, ts),
        Err(IngestError::Store(e)) => {
            tracing::warn!(error = %e, "tracking store unavailable during ingest");
            m.count(
                "tracking_points_unavailable_total",
                "GPS fixes not stored because Redis failed (the client may retry).",
                vec![],
                1.0,
            );
            json!({"status": "error", "error": "unavailable",
                   "message": "the position store is unavailable; retry"})
            .to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flood_gate_allows_the_limit_in_any_second() {
        let mut g = FloodGate::new(20);
        let t0 = Instant::now();
        for i in 0..20 {
            assert!(g.admit(t0 + Duration::from_millis(i * 10)));
        }
        assert!(!g.admit(t0 + Duration::from_millis(999)));
        let mut g = FloodGate::new(20);
        for i in 0..200 {
            assert!(g.admit(t0 + Duration::from_millis(i * 50)), "{i}");
        }
    }
}
