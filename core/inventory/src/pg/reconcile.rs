//! Reconciliation (01 §8): Postgres's live stock against Redis's, hub by hub.

use qc_kit::redis_kit::{bounded, BackendError};
use redis::aio::ConnectionManager;
use sqlx::{PgPool, Row};

use crate::error::InventoryError;
use crate::model::*;
use crate::redis_store::InventoryKeys;
use crate::store::StockStore;

/// What reconciliation found for one hub.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    pub skus_checked: usize,
    pub mismatches: Vec<String>,
}

/// Compares Postgres with Redis for one hub (call only when the hub's stream lag is 0):
/// on_hand vs counters + reserved per SKU, and active holds vs the expiry set.
pub async fn reconcile<S: StockStore>(
    pool: &PgPool,
    store: &S,
    conn: &mut ConnectionManager,
    keys: &InventoryKeys,
    hub: &HubId,
    timeout_ms: u64,
) -> Result<ReconcileReport, InventoryError> {
    let rows =
        sqlx::query("SELECT sku, on_hand FROM inventory_stock WHERE hub_id = $1 ORDER BY sku")
            .bind(hub.as_str())
            .fetch_all(pool)
            .await
            .map_err(BackendError::from)?;
    let mut report = ReconcileReport::default();
    for row in rows {
        let sku: String = row.get(0);
        let on_hand: i32 = row.get(1);
        let Ok(sku) = Sku::parse(&sku) else { continue };
        let level = store.stock(hub, &sku).await?;
        report.skus_checked += 1;
        if level.on_hand() != i64::from(on_hand) {
            report.mismatches.push(format!(
                "{hub}/{sku}: postgres on_hand {on_hand}, redis counters+reserved {}",
                level.on_hand()
            ));
        }
    }
    let active: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reservations WHERE hub_id = $1 AND status = 'RESERVED'",
    )
    .bind(hub.as_str())
    .fetch_one(pool)
    .await
    .map_err(BackendError::from)?;
    let zcard: i64 = bounded(
        timeout_ms,
        redis::cmd("ZCARD").arg(keys.expiry(hub)).query_async(conn),
    )
    .await?;
    if active != zcard {
        report.mismatches.push(format!(
            "{hub}: postgres has {active} active holds, redis expiry set {zcard}"
        ));
    }
    Ok(report)
}
