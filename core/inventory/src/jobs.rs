//! The clock-driven reaper (01 §8): expires holds past `expires_at + grace`, over any store.

use crate::error::InventoryError;
use crate::model::{Action, TransitionOutcome};
use crate::store::StockStore;

/// What one reaper pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReapReport {
    pub expired: u64,
    /// Expiry entries whose reservation was already gone (removed, logged).
    pub orphans: u64,
    /// Entries that were terminal already (removed).
    pub skipped: u64,
}

/// Upper bound on batches per hub per pass, so one pass always ends.
const MAX_BATCHES_PER_HUB: usize = 1_000;

/// One pass over every hub: expire what is due, `batch` at a time, while batches come back full.
pub async fn reap_once<S: StockStore>(
    store: &S,
    now_ms: i64,
    batch: usize,
) -> Result<ReapReport, InventoryError> {
    let mut report = ReapReport::default();
    let batch = batch.max(1);
    for hub in store.hubs().await? {
        for _ in 0..MAX_BATCHES_PER_HUB {
            let due = store.due_expiries(now_ms, &hub, batch).await?;
            for rid in &due {
                match store.transition(now_ms, &hub, rid, Action::Expire).await? {
                    TransitionOutcome::Expired => report.expired += 1,
                    TransitionOutcome::NotFound => {
                        tracing::warn!(hub_id = %hub, reservation_id = %rid, "orphan expiry entry removed");
                        report.orphans += 1;
                    }
                    _ => report.skipped += 1,
                }
            }
            if due.len() < batch {
                break;
            }
        }
    }
    Ok(report)
}
