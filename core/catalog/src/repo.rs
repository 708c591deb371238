//! The catalog repository port (08 §3–4) and its memory adapter. Every write bumps the
//! product's `version` and gives it the next `seq` (a price write too), so the change feed —
//! products after a `seq`, in `seq` order — is all a follower needs. Both adapters pass
//! `conformance::catalog_conforms`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;

use qc_kit::redis_kit::BackendError;
use serde_json::Value;

use crate::model::{effective_price, slug, Category, HubPrice, Invalid, Product, ProductInput};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// 404 `PRODUCT_NOT_FOUND`.
    #[error("no product {0}")]
    NotFound(String),
    /// 409 `PRODUCT_EXISTS` (a create for a sku that exists).
    #[error("product {0} exists")]
    Exists(String),
    /// 409 `VERSION_CONFLICT` (`If-Match` is not the current version).
    #[error("the current version is {current}")]
    VersionConflict { current: i32 },
    /// 409 `CATEGORY_EXISTS`.
    #[error("category {0} exists")]
    CategoryExists(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// How a product write treats an existing sku.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// `POST /products`: an existing sku is 409.
    Create,
    /// `PUT /products/{sku}`: full upsert.
    Upsert,
}

/// One entry of the change feed: the product (margin included) and its hub prices.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub product: Product,
    pub hub_prices: Vec<HubPrice>,
}

pub trait CatalogRepo: Send + Sync {
    /// Writes a product (creating its category by name if new). Ok: (product, created).
    fn write(
        &self,
        input: &ProductInput,
        mode: Write,
        now_ms: i64,
    ) -> impl Future<Output = Result<(Product, bool), CatalogError>> + Send;
    /// A merge-patch, checked against `if_match` (the version the client read) when given.
    fn patch(
        &self,
        sku: &str,
        patch: &Value,
        if_match: Option<i32>,
        now_ms: i64,
    ) -> impl Future<Output = Result<Product, CatalogError>> + Send;
    fn get(&self, sku: &str) -> impl Future<Output = Result<Option<Product>, CatalogError>> + Send;
    /// A page of products by sku (`category` is a category id), and the total.
    fn list(
        &self,
        category: Option<&str>,
        active: Option<bool>,
        page: usize,
        page_size: usize,
    ) -> impl Future<Output = Result<(Vec<Product>, u64), CatalogError>> + Send;
    fn categories(&self) -> impl Future<Output = Result<Vec<Category>, CatalogError>> + Send;
    fn create_category(
        &self,
        name: &str,
        parent_id: Option<&str>,
        now_ms: i64,
    ) -> impl Future<Output = Result<Category, CatalogError>> + Send;
    /// Sets a hub price row (replacing one with the same `valid_from`); the product's seq moves.
    fn set_hub_price(
        &self,
        row: &HubPrice,
        now_ms: i64,
    ) -> impl Future<Output = Result<Product, CatalogError>> + Send;
    fn hub_prices(
        &self,
        sku: &str,
    ) -> impl Future<Output = Result<Vec<HubPrice>, CatalogError>> + Send;
    /// Up to `limit` products with `seq > after`, in seq order, each with its hub prices.
    fn changes(
        &self,
        after: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Change>, CatalogError>> + Send;
}

/// The price of an active product at `hub` at `now_ms`: (price, "hub" | "base"); None for a
/// product that does not exist or is inactive.
pub async fn price_at<R: CatalogRepo>(
    repo: &R,
    sku: &str,
    hub: &str,
    now_ms: i64,
) -> Result<Option<(i64, &'static str)>, CatalogError> {
    let Some(p) = repo.get(sku).await?.filter(|p| p.active) else {
        return Ok(None);
    };
    let rows: Vec<HubPrice> = repo
        .hub_prices(sku)
        .await?
        .into_iter()
        .filter(|r| r.hub_id == hub)
        .collect();
    Ok(Some(effective_price(p.price, &rows, now_ms)))
}

/// A patch of `current`, refused when the client read another version: the body to write.
pub(crate) fn patched(
    current: &Product,
    patch: &Value,
    if_match: Option<i32>,
) -> Result<ProductInput, CatalogError> {
    if if_match.is_some_and(|v| v != current.version) {
        return Err(CatalogError::VersionConflict {
            current: current.version,
        });
    }
    Ok(ProductInput::merge(current, patch)?)
}

pub(crate) fn category_name_check(name: &str) -> Result<String, Invalid> {
    let n = name.trim();
    if (1..=100).contains(&n.chars().count()) && !slug(n).is_empty() {
        Ok(n.to_string())
    } else {
        Err(Invalid {
            field: "name".into(),
            message: "1–100 characters with a letter or digit".into(),
        })
    }
}

#[derive(Debug, Default)]
struct State {
    products: BTreeMap<String, Product>,
    categories: BTreeMap<String, Category>,
    /// (sku, hub, valid_from) → row
    prices: BTreeMap<(String, String, i64), HubPrice>,
    seq: i64,
}

/// The catalog in memory (tests, the twin).
#[derive(Debug, Default)]
pub struct MemoryCatalog {
    state: Mutex<State>,
}

impl MemoryCatalog {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    fn category_for(&mut self, name: &str) -> (String, String) {
        if name.is_empty() {
            return (String::new(), String::new());
        }
        let id = slug(name);
        let c = self.categories.entry(id.clone()).or_insert(Category {
            id: id.clone(),
            name: name.to_string(),
            parent_id: None,
            active: true,
        });
        (c.name.clone(), id)
    }

    fn put(&mut self, input: &ProductInput, now_ms: i64) -> (Product, bool) {
        let (category, category_id) = self.category_for(&input.category);
        self.seq += 1;
        let old = self.products.get(&input.sku);
        let p = Product {
            sku: input.sku.clone(),
            name: input.name.clone(),
            description: input.description.clone(),
            category,
            category_id,
            brand: input.brand.clone(),
            price: input.price,
            margin_pct: input.margin_pct,
            popularity_score: input.popularity_score,
            tags: input.tags.clone(),
            image_url: input.image_url.clone(),
            active: input.active,
            created_at_ms: old.map_or(now_ms, |o| o.created_at_ms),
            updated_at_ms: now_ms,
            version: old.map_or(1, |o| o.version + 1),
            seq: self.seq,
        };
        let created = old.is_none();
        self.products.insert(p.sku.clone(), p.clone());
        (p, created)
    }
}

impl CatalogRepo for MemoryCatalog {
    async fn write(
        &self,
        input: &ProductInput,
        mode: Write,
        now_ms: i64,
    ) -> Result<(Product, bool), CatalogError> {
        let mut s = self.lock();
        if mode == Write::Create && s.products.contains_key(&input.sku) {
            return Err(CatalogError::Exists(input.sku.clone()));
        }
        Ok(s.put(input, now_ms))
    }

    async fn patch(
        &self,
        sku: &str,
        patch: &Value,
        if_match: Option<i32>,
        now_ms: i64,
    ) -> Result<Product, CatalogError> {
        let mut s = self.lock();
        let current = s
            .products
            .get(sku)
            .ok_or_else(|| CatalogError::NotFound(sku.to_string()))?;
        let input = patched(current, patch, if_match)?;
        Ok(s.put(&input, now_ms).0)
    }

    async fn get(&self, sku: &str) -> Result<Option<Product>, CatalogError> {
        Ok(self.lock().products.get(sku).cloned())
    }

    async fn list(
        &self,
        category: Option<&str>,
        active: Option<bool>,
        page: usize,
        page_size: usize,
    ) -> Result<(Vec<Product>, u64), CatalogError> {
        let s = self.lock();
        let all: Vec<&Product> = s
            .products
            .values()
            .filter(|p| category.is_none_or(|c| p.category_id == c))
            .filter(|p| active.is_none_or(|a| p.active == a))
            .collect();
        let total = all.len() as u64;
        let items = all
            .into_iter()
            .skip(page.saturating_sub(1) * page_size)
            .take(page_size)
            .cloned()
            .collect();
        Ok((items, total))
    }

    async fn categories(&self) -> Result<Vec<Category>, CatalogError> {
        Ok(self.lock().categories.values().cloned().collect())
    }

    async fn create_category(
        &self,
        name: &str,
        parent_id: Option<&str>,
        _now_ms: i64,
    ) -> Result<Category, CatalogError> {
        let name = category_name_check(name)?;
        let mut s = self.lock();
        let id = slug(&name);
        if s.categories.contains_key(&id) {
            return Err(CatalogError::CategoryExists(id));
        }
        if let Some(pid) = parent_id {
            if !s.categories.contains_key(pid) {
                return Err(Invalid {
                    field: "parent_id".into(),
                    message: format!("no category {pid}"),
                }
                .into());
            }
        }
        let c = Category {
            id: id.clone(),
            name,
            parent_id: parent_id.map(str::to_string),
            active: true,
        };
        s.categories.insert(id, c.clone());
        Ok(c)
    }

    async fn set_hub_price(&self, row: &HubPrice, now_ms: i64) -> Result<Product, CatalogError> {
        let mut s = self.lock();
        if !s.products.contains_key(&row.sku) {
            return Err(CatalogError::NotFound(row.sku.clone()));
        }
        s.prices.insert(
            (row.sku.clone(), row.hub_id.clone(), row.valid_from_ms),
            row.clone(),
        );
        s.seq += 1;
        let seq = s.seq;
        let p = s.products.get_mut(&row.sku).expect("checked above");
        p.seq = seq;
        p.version += 1;
        p.updated_at_ms = now_ms;
        Ok(p.clone())
    }

    async fn hub_prices(&self, sku: &str) -> Result<Vec<HubPrice>, CatalogError> {
        Ok(self
            .lock()
            .prices
            .values()
            .filter(|r| r.sku == sku)
            .cloned()
            .collect())
    }

    async fn changes(&self, after: i64, limit: usize) -> Result<Vec<Change>, CatalogError> {
        let s = self.lock();
        let mut ps: Vec<&Product> = s.products.values().filter(|p| p.seq > after).collect();
        ps.sort_by_key(|p| p.seq);
        Ok(ps
            .into_iter()
            .take(limit)
            .map(|p| Change {
                product: p.clone(),
                hub_prices: s
                    .prices
                    .values()
                    .filter(|r| r.sku == p.sku)
                    .cloned()
                    .collect(),
            })
            .collect())
    }
}
