//! The catalog in Postgres (`migrations/20261202000001_catalog.sql`). A product write is one
//! transaction: its category (created by name when new), the row with the next `catalog_seq`
//! and version + 1; a patch reads the row `FOR UPDATE` first so `If-Match` is checked against
//! what it replaces.

use qc_kit::redis_kit::BackendError;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row as _, Transaction};

use crate::model::{slug, Category, HubPrice, Invalid, Product, ProductInput};
use crate::repo::{category_name_check, patched, CatalogError, CatalogRepo, Change, Write};

#[derive(Debug, Clone)]
pub struct PgCatalog {
    pool: PgPool,
}

impl PgCatalog {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn pg(e: sqlx::Error) -> CatalogError {
    CatalogError::Backend(BackendError::from(e))
}

const COLS: &str = "p.sku, p.name, p.description, coalesce(c.name, '') AS category,
    coalesce(p.category_id, '') AS category_id, p.brand, p.base_price, p.margin_pct::float8 AS margin,
    p.popularity_score, p.tags, p.image_url, p.active,
    (extract(epoch FROM p.created_at) * 1000)::bigint AS created_ms,
    (extract(epoch FROM p.updated_at) * 1000)::bigint AS updated_ms, p.version, p.seq";

const FROM: &str = "products p LEFT JOIN categories c ON c.id = p.category_id";

fn product(r: &PgRow) -> Result<Product, CatalogError> {
    Ok(Product {
        sku: r.try_get("sku").map_err(pg)?,
        name: r.try_get("name").map_err(pg)?,
        description: r.try_get("description").map_err(pg)?,
        category: r.try_get("category").map_err(pg)?,
        category_id: r.try_get("category_id").map_err(pg)?,
        brand: r.try_get("brand").map_err(pg)?,
        price: r.try_get("base_price").map_err(pg)?,
        margin_pct: r.try_get("margin").map_err(pg)?,
        popularity_score: r.try_get("popularity_score").map_err(pg)?,
        tags: r.try_get("tags").map_err(pg)?,
        image_url: r.try_get("image_url").map_err(pg)?,
        active: r.try_get("active").map_err(pg)?,
        created_at_ms: r.try_get("created_ms").map_err(pg)?,
        updated_at_ms: r.try_get("updated_ms").map_err(pg)?,
        version: r.try_get("version").map_err(pg)?,
        seq: r.try_get("seq").map_err(pg)?,
    })
}

fn hub_price(r: &PgRow) -> Result<HubPrice, CatalogError> {
    Ok(HubPrice {
        hub_id: r.try_get("hub_id").map_err(pg)?,
        sku: r.try_get("sku").map_err(pg)?,
        price: r.try_get("price").map_err(pg)?,
        valid_from_ms: r.try_get("from_ms").map_err(pg)?,
        valid_to_ms: r.try_get("to_ms").map_err(pg)?,
    })
}

const PRICE_COLS: &str = "hub_id, sku, price,
    (extract(epoch FROM valid_from) * 1000)::bigint AS from_ms,
    (extract(epoch FROM valid_to) * 1000)::bigint AS to_ms";

async fn read(
    tx: &mut Transaction<'_, Postgres>,
    sku: &str,
    lock: bool,
) -> Result<Option<Product>, CatalogError> {
    let sql = format!(
        "SELECT {COLS} FROM {FROM} WHERE p.sku = $1{}",
        if lock { " FOR UPDATE OF p" } else { "" }
    );
    sqlx::query(&sql)
        .bind(sku)
        .fetch_optional(&mut **tx)
        .await
        .map_err(pg)?
        .as_ref()
        .map(product)
        .transpose()
}

/// The category for a product write: none for an empty name, else by slug, created if new.
async fn category_for(
    tx: &mut Transaction<'_, Postgres>,
    name: &str,
    now_ms: i64,
) -> Result<Option<String>, CatalogError> {
    if name.is_empty() {
        return Ok(None);
    }
    let id = slug(name);
    sqlx::query(
        "INSERT INTO categories (id, name, created_at, updated_at)
         VALUES ($1, $2, to_timestamp($3::float8 / 1000), to_timestamp($3::float8 / 1000))
         ON CONFLICT DO NOTHING",
    )
    .bind(&id)
    .bind(name)
    .bind(now_ms)
    .execute(&mut **tx)
    .await
    .map_err(pg)?;
    Ok(Some(id))
}

async fn put(
    tx: &mut Transaction<'_, Postgres>,
    input: &ProductInput,
    now_ms: i64,
) -> Result<(), CatalogError> {
    let category = category_for(tx, &input.category, now_ms).await?;
    sqlx::query(
        "INSERT INTO products (sku, name, description, category_id, brand, tags, image_url,
             base_price, margin_pct, popularity_score, active, created_at, updated_at, version, seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::numeric(5,2), $10, $11,
                 to_timestamp($12::float8 / 1000), to_timestamp($12::float8 / 1000), 1,
                 nextval('catalog_seq'))
         ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, description = EXCLUDED.description,
             category_id = EXCLUDED.category_id, brand = EXCLUDED.brand, tags = EXCLUDED.tags,
             image_url = EXCLUDED.image_url, base_price = EXCLUDED.base_price,
             margin_pct = EXCLUDED.margin_pct, popularity_score = EXCLUDED.popularity_score,
             active = EXCLUDED.active, updated_at = EXCLUDED.updated_at,
             version = products.version + 1, seq = EXCLUDED.seq",
    )
    .bind(&input.sku)
    .bind(&input.name)
    .bind(&input.description)
    .bind(category)
    .bind(&input.brand)
    .bind(&input.tags)
    .bind(&input.image_url)
    .bind(input.price)
    .bind(input.margin_pct)
    .bind(input.popularity_score)
    .bind(input.active)
    .bind(now_ms)
    .execute(&mut **tx)
    .await
    .map_err(pg)?;
    Ok(())
}

impl CatalogRepo for PgCatalog {
    async fn write(
        &self,
        input: &ProductInput,
        mode: Write,
        now_ms: i64,
    ) -> Result<(Product, bool), CatalogError> {
        let mut tx = self.pool.begin().await.map_err(pg)?;
        let existed = read(&mut tx, &input.sku, true).await?.is_some();
        if existed && mode == Write::Create {
            return Err(CatalogError::Exists(input.sku.clone()));
        }
        put(&mut tx, input, now_ms).await?;
        let p = read(&mut tx, &input.sku, false)
            .await?
            .ok_or_else(|| CatalogError::NotFound(input.sku.clone()))?;
        tx.commit().await.map_err(pg)?;
        Ok((p, !existed))
    }

    async fn patch(
        &self,
        sku: &str,
        patch: &Value,
        if_match: Option<i32>,
        now_ms: i64,
    ) -> Result<Product, CatalogError> {
        let mut tx = self.pool.begin().await.map_err(pg)?;
        let current = read(&mut tx, sku, true)
            .await?
            .ok_or_else(|| CatalogError::NotFound(sku.to_string()))?;
        let input = patched(&current, patch, if_match)?;
        put(&mut tx, &input, now_ms).await?;
        let p = read(&mut tx, sku, false)
            .await?
            .ok_or_else(|| CatalogError::NotFound(sku.to_string()))?;
        tx.commit().await.map_err(pg)?;
        Ok(p)
    }

    async fn get(&self, sku: &str) -> Result<Option<Product>, CatalogError> {
        sqlx::query(&format!("SELECT {COLS} FROM {FROM} WHERE p.sku = $1"))
            .bind(sku)
            .fetch_optional(&self.pool)
            .await
            .map_err(pg)?
            .as_ref()
            .map(product)
            .transpose()
    }

    async fn list(
        &self,
        category: Option<&str>,
        active: Option<bool>,
        page: usize,
        page_size: usize,
    ) -> Result<(Vec<Product>, u64), CatalogError> {
        let filter =
            "($1::text IS NULL OR p.category_id = $1) AND ($2::bool IS NULL OR p.active = $2)";
        let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {FROM} WHERE {filter}"))
            .bind(category)
            .bind(active)
            .fetch_one(&self.pool)
            .await
            .map_err(pg)?;
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM {FROM} WHERE {filter} ORDER BY p.sku LIMIT $3 OFFSET $4"
        ))
        .bind(category)
        .bind(active)
        .bind(page_size as i64)
        .bind((page.saturating_sub(1) * page_size) as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?;
        let items = rows.iter().map(product).collect::<Result<_, _>>()?;
        Ok((items, total as u64))
    }

    async fn categories(&self) -> Result<Vec<Category>, CatalogError> {
        let rows = sqlx::query("SELECT id, name, parent_id, active FROM categories ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(pg)?;
        rows.iter()
            .map(|r| {
                Ok(Category {
                    id: r.try_get("id").map_err(pg)?,
                    name: r.try_get("name").map_err(pg)?,
                    parent_id: r.try_get("parent_id").map_err(pg)?,
                    active: r.try_get("active").map_err(pg)?,
                })
            })
            .collect()
    }

    async fn create_category(
        &self,
        name: &str,
        parent_id: Option<&str>,
        now_ms: i64,
    ) -> Result<Category, CatalogError> {
        let name = category_name_check(name)?;
        let id = slug(&name);
        let mut tx = self.pool.begin().await.map_err(pg)?;
        if let Some(pid) = parent_id {
            let found: Option<String> =
                sqlx::query_scalar("SELECT id FROM categories WHERE id = $1")
                    .bind(pid)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(pg)?;
            if found.is_none() {
                return Err(Invalid {
                    field: "parent_id".into(),
                    message: format!("no category {pid}"),
                }
                .into());
            }
        }
        let done = sqlx::query(
            "INSERT INTO categories (id, name, parent_id, created_at, updated_at)
             VALUES ($1, $2, $3, to_timestamp($4::float8 / 1000), to_timestamp($4::float8 / 1000))
             ON CONFLICT DO NOTHING",
        )
        .bind(&id)
        .bind(&name)
        .bind(parent_id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(pg)?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::CategoryExists(id));
        }
        tx.commit().await.map_err(pg)?;
        Ok(Category {
            id,
            name,
            parent_id: parent_id.map(str::to_string),
            active: true,
        })
    }

    async fn set_hub_price(&self, row: &HubPrice, now_ms: i64) -> Result<Product, CatalogError> {
        let mut tx = self.pool.begin().await.map_err(pg)?;
        if read(&mut tx, &row.sku, true).await?.is_none() {
            return Err(CatalogError::NotFound(row.sku.clone()));
        }
        sqlx::query(
            "INSERT INTO hub_prices (hub_id, sku, valid_from, price, valid_to)
             VALUES ($1, $2, to_timestamp($3::float8 / 1000), $4, to_timestamp($5::float8 / 1000))
             ON CONFLICT (hub_id, sku, valid_from) DO UPDATE SET price = EXCLUDED.price,
                 valid_to = EXCLUDED.valid_to",
        )
        .bind(&row.hub_id)
        .bind(&row.sku)
        .bind(row.valid_from_ms)
        .bind(row.price)
        .bind(row.valid_to_ms)
        .execute(&mut *tx)
        .await
        .map_err(pg)?;
        sqlx::query(
            "UPDATE products SET seq = nextval('catalog_seq'), version = version + 1,
                 updated_at = to_timestamp($2::float8 / 1000) WHERE sku = $1",
        )
        .bind(&row.sku)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(pg)?;
        let p = read(&mut tx, &row.sku, false)
            .await?
            .ok_or_else(|| CatalogError::NotFound(row.sku.clone()))?;
        tx.commit().await.map_err(pg)?;
        Ok(p)
    }

    async fn hub_prices(&self, sku: &str) -> Result<Vec<HubPrice>, CatalogError> {
        let rows = sqlx::query(&format!(
            "SELECT {PRICE_COLS} FROM hub_prices WHERE sku = $1 ORDER BY hub_id, valid_from"
        ))
        .bind(sku)
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?;
        rows.iter().map(hub_price).collect()
    }

    async fn changes(&self, after: i64, limit: usize) -> Result<Vec<Change>, CatalogError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM {FROM} WHERE p.seq > $1 ORDER BY p.seq LIMIT $2"
        ))
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?;
        let products: Vec<Product> = rows.iter().map(product).collect::<Result<_, _>>()?;
        let skus: Vec<&str> = products.iter().map(|p| p.sku.as_str()).collect();
        let prices = sqlx::query(&format!(
            "SELECT {PRICE_COLS} FROM hub_prices WHERE sku = ANY($1) ORDER BY sku, hub_id, valid_from"
        ))
        .bind(&skus)
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?;
        let mut by_sku: std::collections::HashMap<String, Vec<HubPrice>> = Default::default();
        for r in &prices {
            let h = hub_price(r)?;
            by_sku.entry(h.sku.clone()).or_default().push(h);
        }
        Ok(products
            .into_iter()
            .map(|p| Change {
                hub_prices: by_sku.remove(&p.sku).unwrap_or_default(),
                product: p,
            })
            .collect())
    }
}
