//! Search handlers (08 §2): strict parameters, the index's candidates, stock in one read, the
//! composite order, 08's product shape; autocomplete; admin writes through Catalog.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use qc_inventory::HubId;
use qc_search::index::Request;
use qc_search::rank::Sort;
use serde_json::{json, Value};
use unicode_normalization::UnicodeNormalization;

use super::SearchApp;
use crate::platform::{data, ApiError, Body};

type AppState = State<Arc<SearchApp>>;
type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

const CDN: &str = "public, max-age=30, stale-while-revalidate=300, stale-if-error=3600";

fn params(q: Params) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(m)| m)
        .map_err(|e| ApiError::invalid(format!("invalid query: {}", e.body_text())))
}

fn int(q: &HashMap<String, String>, key: &str) -> Result<Option<i64>, ApiError> {
    q.get(key)
        .filter(|v| !v.trim().is_empty())
        .map(|v| {
            v.trim()
                .parse::<i64>()
                .map_err(|_| ApiError::invalid(format!("{key} must be an integer")))
        })
        .transpose()
}

fn not_ready() -> ApiError {
    ApiError::unavailable("the search index is being built")
}

fn with_cache(mut r: Response, value: &'static str) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    r
}

pub async fn search(State(app): AppState, q: Params) -> Result<Response, ApiError> {
    let q = params(q)?;
    let text: String = q
        .get("q")
        .map(|s| s.nfkc().collect::<String>())
        .unwrap_or_default();
    let text = text.trim().to_string();
    if text.chars().count() > 256 {
        return Err(ApiError::invalid("q must be at most 256 characters"));
    }
    let hub = match q.get("hub_id").filter(|h| !h.is_empty()) {
        Some(h) => Some(HubId::parse(h).map_err(|e| ApiError::invalid(e.to_string()))?),
        None => None,
    };
    let (min_price, max_price) = (int(&q, "min_price")?, int(&q, "max_price")?);
    if min_price.is_some_and(|p| p < 0) || max_price.is_some_and(|p| p < 0) {
        return Err(ApiError::invalid("prices must be ≥ 0"));
    }
    let req = Request {
        q: text.clone(),
        hub: hub.as_ref().map(|h| h.to_string()),
        category: q
            .get("category")
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty()),
        min_price,
        max_price,
        sort: Sort::parse(q.get("sort").map(String::as_str)),
        page: int(&q, "page")?.unwrap_or(1),
        page_size: int(&q, "page_size")?.unwrap_or(20),
    };
    let snap = app.current().ok_or_else(not_ready)?;
    let now = app.clock.now_ms();
    let found = qc_search::app::search(&snap.index, &req, &app.stock, &app.settings.weights, now)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "search failed");
            ApiError::unavailable("search failed")
        })?;
    let res = found.results;
    let products: Vec<Value> = res
        .hits
        .iter()
        .map(|h| {
            json!({"sku": h.doc.sku, "name": h.doc.name, "description": h.doc.description,
                "category": h.doc.category, "brand": h.doc.brand, "price": h.price,
                "tags": h.doc.tags, "image_url": h.doc.image_url,
                "popularity_score": h.doc.popularity, "score": h.score,
                "in_stock": h.stock_qty.map(|q| q > 0), "stock_qty": h.stock_qty})
        })
        .collect();
    let body = json!({"products": products, "total": res.total, "page": res.page,
        "page_size": res.page_size, "query": text, "tier": res.tier});
    let mut r = data(StatusCode::OK, body);
    if found.stock_degraded {
        r.headers_mut()
            .insert("x-search-degraded", HeaderValue::from_static("stock"));
    }
    Ok(with_cache(r, if hub.is_some() { "no-store" } else { CDN }))
}

pub async fn autocomplete(State(app): AppState, q: Params) -> Result<Response, ApiError> {
    let q = params(q)?;
    let text = q.get("q").map(String::as_str).unwrap_or_default();
    if text.nfkc().count() > 100 {
        return Err(ApiError::invalid("q must be at most 100 characters"));
    }
    let limit = q
        .get("limit")
        .and_then(|l| l.trim().parse::<usize>().ok())
        .filter(|l| (1..=50).contains(l))
        .unwrap_or(10);
    let snap = app.current().ok_or_else(not_ready)?;
    let out: Vec<Value> = snap
        .autocomplete
        .lookup(text, limit)
        .into_iter()
        .map(|(t, n)| json!({"text": t, "score": n}))
        .collect();
    Ok(with_cache(data(StatusCode::OK, out), CDN))
}

/// `POST /admin/products`: written through Catalog (`PUT /products/{sku}`), then the feed is
/// pulled before answering, so the writer sees the change in its next search.
pub async fn admin_product(
    State(app): AppState,
    Body(b): Body<Value>,
) -> Result<Response, ApiError> {
    let sku = b
        .get("sku")
        .and_then(Value::as_str)
        .filter(|s| qc_catalog::model::check_sku(s).is_ok())
        .ok_or_else(|| ApiError::invalid("sku is required: 1–64 of [A-Za-z0-9._-]"))?
        .to_string();
    let mut req = app
        .http
        .put(format!(
            "{}/products/{sku}",
            app.settings.catalog_url.trim_end_matches('/')
        ))
        .json(&b);
    if let Some(t) = &app.ctx.internal_token {
        req = req.header("X-Internal-Token", t);
    }
    let r = req.send().await.map_err(|e| {
        tracing::warn!(error = %e, "catalog unreachable");
        ApiError::unavailable("catalog unavailable")
    })?;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if status.is_server_error() {
        return Err(ApiError::unavailable("catalog unavailable"));
    }
    if status.is_success() {
        if let Err(e) = app.sync(false).await {
            tracing::warn!(error = %e, "search index not refreshed after a write");
        }
    }
    Ok((status, Json(body)).into_response())
}
