//! Confirmed orders (03 "Postgres"): the system of record for what a flash sale sold. A
//! confirm writes the order and its `flash.order_confirmed` outbox event in one transaction,
//! idempotently (a repeated confirm, or a retry after a failed write, adds nothing twice).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;

use qc_kit::redis_kit::BackendError;
use serde::Serialize;
use sqlx::PgPool;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfirmedOrder {
    pub order_id: String,
    pub reservation_id: String,
    pub product_id: String,
    pub user_id: String,
    pub quantity: u32,
    pub confirmed_at_ms: i64,
}

pub trait Orders: Send + Sync {
    /// Records `o` and its outbox event unless the order is already recorded.
    fn record(&self, o: &ConfirmedOrder) -> impl Future<Output = Result<(), BackendError>> + Send;
    /// Units sold of `product_id` (audits, tests).
    fn sold(&self, product_id: &str) -> impl Future<Output = Result<i64, BackendError>> + Send;
}

/// The memory adapter: orders by id, and the outbox as (order_id, event) pairs.
#[derive(Debug, Default)]
pub struct MemoryOrders {
    pub orders: Mutex<BTreeMap<String, ConfirmedOrder>>,
}

impl Orders for MemoryOrders {
    async fn record(&self, o: &ConfirmedOrder) -> Result<(), BackendError> {
        self.orders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(o.order_id.clone())
            .or_insert_with(|| o.clone());
        Ok(())
    }

    async fn sold(&self, product_id: &str) -> Result<i64, BackendError> {
        Ok(self
            .orders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|o| o.product_id == product_id)
            .map(|o| i64::from(o.quantity))
            .sum())
    }
}

#[derive(Debug, Clone)]
pub struct PgOrders {
    pub pool: PgPool,
}

impl Orders for PgOrders {
    async fn record(&self, o: &ConfirmedOrder) -> Result<(), BackendError> {
        let mut tx = self.pool.begin().await?;
        let at = o.confirmed_at_ms as f64 / 1000.0;
        let inserted = sqlx::query(
            "INSERT INTO flash_sale_orders (order_id, reservation_id, product_id, user_id, quantity, confirmed_at)
             VALUES ($1, $2, $3, $4, $5, to_timestamp($6)) ON CONFLICT DO NOTHING",
        )
        .bind(&o.order_id)
        .bind(&o.reservation_id)
        .bind(&o.product_id)
        .bind(&o.user_id)
        .bind(o.quantity as i32)
        .bind(at)
        .execute(&mut *tx)
        .await
        ?
        .rows_affected();
        if inserted == 1 {
            sqlx::query(
                "INSERT INTO flash_outbox (aggregate_id, event_type, payload, created_at)
                 VALUES ($1, 'flash.order_confirmed', $2, to_timestamp($3)) ON CONFLICT DO NOTHING",
            )
            .bind(&o.order_id)
            .bind(serde_json::to_value(o).expect("an order serialises"))
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        Ok(tx.commit().await?)
    }

    async fn sold(&self, product_id: &str) -> Result<i64, BackendError> {
        let (n,): (Option<i64>,) = sqlx::query_as(
            "SELECT SUM(quantity)::BIGINT FROM flash_sale_orders WHERE product_id = $1",
        )
        .bind(product_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(n.unwrap_or(0))
    }
}
