//! Platform plumbing shared by every service (00-platform): config, envelopes and errors,
//! request ids, metrics, JSON logs, ops endpoints, graceful shutdown.

pub mod config;
pub mod error;
pub mod extract;
pub mod logging;
pub mod metrics;
pub mod middleware;
pub mod ops;
pub mod server;
pub mod shutdown;

pub use error::{ApiError, ApiResult};
pub use extract::{Body, Ids};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// `{"data": ...}` with a status.
pub fn data<T: Serialize>(status: StatusCode, value: T) -> Response {
    (status, Json(serde_json::json!({ "data": value }))).into_response()
}
