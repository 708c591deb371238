//! Catalog handlers (08 §3): parse strictly, call the repository, envelope; after a write,
//! nudge followers with `PUBLISH catalog:changed <seq>`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use qc_catalog::model::{check_sku, parse_hub_price};
use qc_catalog::{price_at, CatalogError, CatalogRepo, Change, Product, ProductInput, Write};
use serde_json::{json, Value};

use super::CatalogApp;
use crate::platform::{data, ApiError, ApiResult, Body, Ids};

type AppState = State<Arc<CatalogApp>>;
type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Invalid(i) => {
                ApiError::invalid(i.to_string()).with_details(json!({"field": i.field}))
            }
            CatalogError::NotFound(sku) => ApiError::new(
                StatusCode::NOT_FOUND,
                "PRODUCT_NOT_FOUND",
                format!("no product {sku}"),
            ),
            CatalogError::Exists(sku) => ApiError::new(
                StatusCode::CONFLICT,
                "PRODUCT_EXISTS",
                format!("product {sku} exists; PUT /products/{sku} replaces it"),
            ),
            CatalogError::VersionConflict { current } => ApiError::new(
                StatusCode::CONFLICT,
                "VERSION_CONFLICT",
                format!("the product changed: version {current} is current"),
            )
            .with_details(json!({"current_version": current})),
            CatalogError::CategoryExists(id) => ApiError::new(
                StatusCode::CONFLICT,
                "CATEGORY_EXISTS",
                format!("category {id} exists"),
            ),
            CatalogError::Backend(b) => {
                tracing::warn!(error = %b, "catalog store unavailable");
                ApiError::unavailable("catalog store unavailable")
            }
        }
    }
}

fn params(q: Params) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(m)| m)
        .map_err(|e| ApiError::invalid(format!("invalid query: {}", e.body_text())))
}

/// An integer query parameter: absent → `default`; not an integer → 400.
fn int(q: &HashMap<String, String>, key: &str, default: i64) -> Result<i64, ApiError> {
    match q.get(key) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| ApiError::invalid(format!("{key} must be an integer"))),
    }
}

fn sku_of(ids: Ids) -> Result<String, ApiError> {
    let sku = ids.0.into_iter().next().unwrap_or_default();
    check_sku(&sku).map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(sku)
}

/// After a committed write: the nudge (lossy; a follower also polls the feed).
async fn published(app: &CatalogApp, seq: i64) {
    let mut c = app.redis.clone();
    let r: Result<i64, _> = qc_kit::redis_kit::bounded(
        app.redis_timeout_ms,
        redis::cmd("PUBLISH")
            .arg(app.channel())
            .arg(seq)
            .query_async(&mut c),
    )
    .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "catalog:changed not published (followers poll the feed)");
    }
}

async fn written(app: &CatalogApp, p: Product, created: bool) -> ApiResult {
    published(app, p.seq).await;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(data(status, p.to_json()))
}

pub async fn categories(State(app): AppState) -> ApiResult {
    Ok(data(StatusCode::OK, app.repo.categories().await?))
}

pub async fn create_category(State(app): AppState, Body(b): Body<Value>) -> ApiResult {
    let obj = b
        .as_object()
        .ok_or_else(|| ApiError::invalid("body must be a JSON object"))?;
    if let Some(k) = obj.keys().find(|k| *k != "name" && *k != "parent_id") {
        return Err(
            ApiError::invalid(format!("{k}: unknown field")).with_details(json!({"field": k}))
        );
    }
    let name = obj.get("name").and_then(Value::as_str).ok_or_else(|| {
        ApiError::invalid("name is required").with_details(json!({"field": "name"}))
    })?;
    let parent = match obj.get("parent_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) => Some(p.as_str()),
        Some(_) => return Err(ApiError::invalid("parent_id must be a string")),
    };
    let c = app
        .repo
        .create_category(name, parent, app.clock.now_ms())
        .await?;
    Ok(data(StatusCode::CREATED, c))
}

pub async fn list_products(State(app): AppState, q: Params) -> ApiResult {
    let q = params(q)?;
    let page = int(&q, "page", 1)?.max(1) as usize;
    let size = match int(&q, "page_size", 20)? {
        s if s < 1 => 20,
        s => s.min(100),
    } as usize;
    let active = match q.get("active").map(String::as_str) {
        None | Some("") => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(ApiError::invalid("active must be true or false")),
    };
    let category = q
        .get("category")
        .map(String::as_str)
        .filter(|c| !c.is_empty());
    let (items, total) = app.repo.list(category, active, page, size).await?;
    Ok(data(
        StatusCode::OK,
        json!({"items": items.iter().map(Product::to_json).collect::<Vec<_>>(),
               "total": total, "page": page, "page_size": size}),
    ))
}

pub async fn get_product(State(app): AppState, ids: Ids) -> ApiResult {
    let sku = sku_of(ids)?;
    match app.repo.get(&sku).await? {
        Some(p) => Ok(data(StatusCode::OK, p.to_json())),
        None => Err(CatalogError::NotFound(sku).into()),
    }
}

pub async fn create_product(State(app): AppState, Body(b): Body<Value>) -> ApiResult {
    let sku = b
        .get("sku")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("sku is required").with_details(json!({"field": "sku"})))?
        .to_string();
    let input = ProductInput::parse(&b, &sku).map_err(CatalogError::from)?;
    let (p, created) = app
        .repo
        .write(&input, Write::Create, app.clock.now_ms())
        .await?;
    written(&app, p, created).await
}

pub async fn put_product(State(app): AppState, ids: Ids, Body(b): Body<Value>) -> ApiResult {
    let sku = sku_of(ids)?;
    let input = ProductInput::parse(&b, &sku).map_err(CatalogError::from)?;
    let (p, created) = app
        .repo
        .write(&input, Write::Upsert, app.clock.now_ms())
        .await?;
    written(&app, p, created).await
}

pub async fn patch_product(
    State(app): AppState,
    ids: Ids,
    headers: HeaderMap,
    Body(b): Body<Value>,
) -> ApiResult {
    let sku = sku_of(ids)?;
    let if_match = match headers.get("if-match") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .map(|s| s.trim().trim_matches('"'))
                .and_then(|s| s.parse::<i32>().ok())
                .ok_or_else(|| ApiError::invalid("If-Match must be a version number"))?,
        ),
    };
    let p = app
        .repo
        .patch(&sku, &b, if_match, app.clock.now_ms())
        .await?;
    written(&app, p, false).await
}

/// Soft delete: the product stays, inactive (hidden from search).
pub async fn delete_product(State(app): AppState, ids: Ids) -> ApiResult {
    let sku = sku_of(ids)?;
    let p = app
        .repo
        .patch(&sku, &json!({"active": false}), None, app.clock.now_ms())
        .await?;
    written(&app, p, false).await
}

pub async fn put_price(State(app): AppState, ids: Ids, Body(b): Body<Value>) -> ApiResult {
    let mut it = ids.0.into_iter();
    let sku = it.next().unwrap_or_default();
    let hub = it.next().unwrap_or_default();
    check_sku(&sku).map_err(|e| ApiError::invalid(e.to_string()))?;
    let now = app.clock.now_ms();
    let row = parse_hub_price(&b, &sku, &hub, now).map_err(CatalogError::from)?;
    let p = app.repo.set_hub_price(&row, now).await?;
    published(&app, p.seq).await;
    Ok(data(
        StatusCode::OK,
        json!({"sku": sku, "hub_id": hub, "price": row.price,
               "valid_from": qc_catalog::model::rfc3339(row.valid_from_ms),
               "valid_to": row.valid_to_ms.map(qc_catalog::model::rfc3339)}),
    ))
}

pub async fn price(State(app): AppState, ids: Ids, q: Params) -> ApiResult {
    let sku = sku_of(ids)?;
    let q = params(q)?;
    let hub = q
        .get("hub_id")
        .ok_or_else(|| ApiError::invalid("hub_id is required"))?;
    qc_kit::validate_id("hub_id", hub).map_err(|e| ApiError::invalid(e.to_string()))?;
    match price_at(&app.repo, &sku, hub, app.clock.now_ms()).await? {
        Some((price, source)) => Ok(data(
            StatusCode::OK,
            json!({"sku": sku, "hub_id": hub, "price": price, "source": source}),
        )),
        None => Err(CatalogError::NotFound(sku).into()),
    }
}

/// The change feed entry: the product with its margin and hub prices.
fn change_json(c: &Change) -> Value {
    let mut v = c.product.to_json();
    v["margin_pct"] = json!(c.product.margin_pct);
    v["hub_prices"] = json!(c
        .hub_prices
        .iter()
        .map(|h| json!({"hub_id": h.hub_id, "price": h.price,
            "valid_from": qc_catalog::model::rfc3339(h.valid_from_ms),
            "valid_to": h.valid_to_ms.map(qc_catalog::model::rfc3339)}))
        .collect::<Vec<_>>());
    v
}

pub async fn changes(State(app): AppState, q: Params) -> Result<Response, ApiError> {
    let q = params(q)?;
    let after = int(&q, "after", 0)?;
    if after < 0 {
        return Err(ApiError::invalid("after must be ≥ 0"));
    }
    let limit = int(&q, "limit", 100)?;
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit must be within 1..=1000"));
    }
    let items = app.repo.changes(after, limit as usize).await?;
    let last = items.last().map_or(after, |c| c.product.seq);
    Ok(data(
        StatusCode::OK,
        json!({"items": items.iter().map(change_json).collect::<Vec<_>>(), "last_seq": last}),
    ))
}
