//! The per-request middleware: request id, metrics, access log, internal-token check.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, REQUEST_ID};
use super::ops::ServiceCtx;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Keeps a caller's id if it is 1–128 chars of `[A-Za-z0-9._-]`, else makes a UUIDv4.
pub fn request_id_from(header: Option<&HeaderValue>) -> String {
    header
        .and_then(|v| v.to_str().ok())
        .filter(|s| {
            !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
        .map_or_else(qc_kit::ids::new_uuid, str::to_string)
}

fn is_ops(route: &str) -> bool {
    matches!(route, "/health" | "/ready" | "/metrics")
}

pub async fn observe(State(ctx): State<Arc<ServiceCtx>>, req: Request, next: Next) -> Response {
    let rid = request_id_from(req.headers().get(REQUEST_ID_HEADER));
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    ctx.metrics.request_started();
    let started = Instant::now();
    let mut resp = REQUEST_ID.scope(rid.clone(), next.run(req)).await;
    let elapsed = started.elapsed();
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    let status = resp.status().as_u16();
    ctx.metrics
        .request_finished(&method, &route, status, elapsed.as_secs_f64());
    let duration_ms = (elapsed.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
    if is_ops(&route) {
        tracing::debug!(service = ctx.id.name(), request_id = %rid, method, route, status, duration_ms, remote_ip = remote, "request");
    } else if status >= 500 {
        tracing::warn!(service = ctx.id.name(), request_id = %rid, method, route, status, duration_ms, remote_ip = remote, "request");
    } else {
        tracing::info!(service = ctx.id.name(), request_id = %rid, method, route, status, duration_ms, remote_ip = remote, "request");
    }
    resp
}

/// When `INTERNAL_API_TOKEN` is set, internal routes need it in `X-Internal-Token`.
/// `router`'s routes, guarded by [`require_internal_token`].
pub fn internal_only<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    ctx: &Arc<ServiceCtx>,
) -> axum::Router<S> {
    router.route_layer(axum::middleware::from_fn_with_state(
        ctx.clone(),
        require_internal_token,
    ))
}

pub async fn require_internal_token(
    State(ctx): State<Arc<ServiceCtx>>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(expected) = &ctx.internal_token {
        let given = req
            .headers()
            .get("x-internal-token")
            .and_then(|v| v.to_str().ok());
        if given.map(str::as_bytes) != Some(expected.as_bytes()) {
            return match given {
                None => ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHENTICATED",
                    "X-Internal-Token is required",
                ),
                Some(_) => ApiError::new(
                    StatusCode::FORBIDDEN,
                    "FORBIDDEN",
                    "X-Internal-Token is wrong",
                ),
            }
            .into_response();
        }
    }
    next.run(req).await
}

/// The response a recovered panic becomes.
pub fn panic_response(_err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal().into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_only_when_clean() {
        let keep = HeaderValue::from_static("abc.DEF_1-2");
        assert_eq!(request_id_from(Some(&keep)), "abc.DEF_1-2");
        for bad in ["has space", "semi;colon", ""] {
            let v = HeaderValue::from_str(bad).unwrap();
            let got = request_id_from(Some(&v));
            assert_ne!(got, bad);
            assert_eq!(got.len(), 36);
        }
        let long = HeaderValue::from_str(&"a".repeat(129)).unwrap();
        assert_eq!(request_id_from(Some(&long)).len(), 36);
        assert_eq!(request_id_from(None).len(), 36);
    }
}
