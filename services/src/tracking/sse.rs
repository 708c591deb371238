//! The customer stream (09 "SSE protocol"): subscribe first, then the opening sequence (retry,
//! `connected`, the current status, the trail after `Last-Event-ID` or else the latest
//! position), then live events with strictly increasing ids, keep-alives when quiet, and the
//! end after a terminal status. Everything live comes through the fan-out's bounded queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::stream;
use qc_tracking::store::TRAIL_MAX;
use qc_tracking::token::Role;
use qc_tracking::{PositionEvent, TrackingStore};
use serde_json::json;

use super::fanout::{Event, Item, JoinError, Subscription};
use super::ws::query_id;
use super::TrackingApp;
use crate::platform::error::ApiError;

pub async fn stream(
    State(app): State<Arc<TrackingApp>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    open(app, q, headers)
        .await
        .unwrap_or_else(|e| e.into_response())
}

/// `/sse/order/tracking/:order_id?user_id=`.
pub async fn stream_path(
    State(app): State<Arc<TrackingApp>>,
    Path(order_id): Path<String>,
    Query(mut q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    q.insert("order_id".into(), order_id);
    open(app, q, headers)
        .await
        .unwrap_or_else(|e| e.into_response())
}

fn frame(e: &Event) -> Bytes {
    let kind = if e.is_position { "position" } else { "status" };
    Bytes::from(format!(
        "id: {}\nevent: {kind}\ndata: {}\n\n",
        e.seq, e.json
    ))
}

/// A stored position as a frame with its id.
fn position_frame(p: &PositionEvent) -> Bytes {
    frame(&Event {
        seq: p.seq,
        is_position: true,
        terminal: false,
        json: serde_json::to_string(p).expect("a position serialises"),
    })
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(format!("redis: {e}"))
}

async fn open(
    app: Arc<TrackingApp>,
    q: HashMap<String, String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if app.ctx.shutdown.is_triggered() {
        return Err(ApiError::unavailable("shutting down"));
    }
    let order = query_id(&q, "order_id")?.to_string();
    let user = query_id(&q, "user_id")?.to_string();
    app.authorize(
        Role::User,
        &user,
        &order,
        q.get("token").map(String::as_str),
        &headers,
    )?;
    let store = app.tracker.store();
    if store.closed(&order).await.map_err(unavailable)? {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or(q.get("last_event_id").map(String::as_str))
        .and_then(|v| v.trim().parse::<i64>().ok());
    // Subscribe before reading, so nothing published meanwhile is missed.
    let sub = app.fanout.join(&order).await.map_err(|e| match e {
        JoinError::OrderFull => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "too many streams on this order",
        ),
        JoinError::InstanceFull => ApiError::unavailable("too many streams on this instance"),
        JoinError::Unavailable(why) => ApiError::unavailable(why),
    })?;
    app.gauges();
    let status = store.status(&order).await.map_err(unavailable)?;
    let latest = store.position(&order).await.map_err(unavailable)?;
    let current = status
        .as_ref()
        .map(|s| s.seq)
        .max(latest.as_ref().map(|p| p.seq))
        .unwrap_or(0);
    let mut opening = vec![
        Bytes::from_static(b"retry: 3000\n\n"),
        Bytes::from(format!(
            "event: connected\ndata: {}\n\n",
            json!({"order_id": order, "user_id": user})
        )),
    ];
    let mut last_sent = 0;
    let mut ended = false;
    if let Some(s) = &status {
        opening.push(Bytes::from(format!(
            "event: status\ndata: {}\n\n",
            serde_json::to_string(s).expect("a status serialises")
        )));
        last_sent = s.seq;
        ended = s.status.is_terminal();
    }
    match last_event_id.filter(|id| *id <= current) {
        Some(after) => {
            let trail = store
                .history(&order, after, TRAIL_MAX)
                .await
                .map_err(unavailable)?;
            for p in trail {
                last_sent = last_sent.max(p.seq);
                opening.push(position_frame(&p));
            }
            last_sent = last_sent.max(after);
        }
        None => {
            if let Some(p) = latest {
                last_sent = last_sent.max(p.seq);
                opening.push(position_frame(&p));
            }
        }
    }
    let live = Live {
        app: app.clone(),
        order,
        sub,
        pending: opening.into(),
        last_sent,
        ended,
        keepalive: Duration::from_millis(app.cfg.sse_keepalive_ms),
    };
    let body = Body::from_stream(stream::unfold(live, |mut live| async move {
        let next = live.next().await?;
        Some((Ok::<_, std::convert::Infallible>(next), live))
    }));
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

/// One client's live stream.
struct Live {
    app: Arc<TrackingApp>,
    order: String,
    sub: Subscription,
    pending: std::collections::VecDeque<Bytes>,
    last_sent: i64,
    ended: bool,
    keepalive: Duration,
}

impl Drop for Live {
    fn drop(&mut self) {
        // The subscription leaves the fan-out when it drops, right after this.
        let app = self.app.clone();
        tokio::spawn(async move { app.gauges() });
    }
}

impl Live {
    /// The next bytes to write, or None when the stream ends.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Some(b);
            }
            if self.ended {
                return None;
            }
            let item = match tokio::time::timeout(self.keepalive, self.sub.queue.next()).await {
                Err(_) => return Some(Bytes::from_static(b": keepalive\n\n")),
                Ok(item) => item,
            };
            match item {
                Item::Event(e) => {
                    if e.seq <= self.last_sent {
                        continue;
                    }
                    self.last_sent = e.seq;
                    self.ended = e.terminal;
                    return Some(frame(&e));
                }
                Item::Resync => {
                    // Events may have been published while the subscriber connection was down.
                    let store = self.app.tracker.store();
                    let Ok(trail) = store.history(&self.order, self.last_sent, TRAIL_MAX).await
                    else {
                        continue;
                    };
                    for p in trail {
                        self.last_sent = p.seq;
                        self.pending.push_back(position_frame(&p));
                    }
                    if let Ok(Some(s)) = store.status(&self.order).await {
                        if s.status.is_terminal() {
                            let json = serde_json::to_string(&s).expect("a status serialises");
                            self.pending.push_back(frame(&Event {
                                seq: s.seq,
                                is_position: false,
                                terminal: true,
                                json,
                            }));
                            self.ended = true;
                        }
                    }
                }
                Item::Closed => return None,
            }
        }
    }
}
