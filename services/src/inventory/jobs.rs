//! Inventory background loops (01 §8): reaper, Postgres event writer, reconciliation.
//! Each stops at shutdown; each pass is also callable directly (tests drive them by hand).

use std::sync::Arc;
use std::time::Duration;

use qc_inventory::jobs::{reap_once as reap_store, ReapReport};
use qc_inventory::pg::{last_event_id, rebuild_if_empty, reconcile, stream_lag, RebuildReport};
use qc_inventory::{InventoryError, StockStore};
use qc_kit::lease::Lease;
use tokio::task::JoinHandle;

use super::InventoryApp;
use crate::platform::shutdown::Shutdown;

/// Summary of one reconciliation pass.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct JobReport {
    pub hubs_checked: usize,
    /// Hubs with events not yet in Postgres, or that changed during the comparison.
    pub hubs_skipped_for_lag: usize,
    pub mismatches: Vec<String>,
}

/// One reaper pass at the app clock's now, under the optional reaper lease.
pub async fn reap_once(app: &InventoryApp) -> Result<Option<ReapReport>, InventoryError> {
    let now = app.clock.now_ms();
    let lease = Lease::new(app.keys.reaper_lock(), app.instance.clone(), 4_000);
    let mut conn = app.store.connection();
    if !lease
        .acquire(&mut conn, now, app.store.timeout_ms())
        .await?
    {
        return Ok(None);
    }
    let report = reap_store(&app.store, now, app.cfg.reaper_batch).await?;
    if report.expired + report.orphans > 0 {
        tracing::info!(
            expired = report.expired,
            orphans = report.orphans,
            "reaper pass"
        );
    }
    let m = &app.ctx.metrics;
    m.count(
        "inventory_reaper_expired_total",
        "Holds expired by the reaper.",
        vec![],
        report.expired as f64,
    );
    m.count(
        "inventory_reaper_orphans_total",
        "Expiry entries without a reservation.",
        vec![],
        report.orphans as f64,
    );
    Ok(Some(report))
}

/// Restores Redis from Postgres if it came back empty (cheap when it did not: one SCARD).
pub async fn restore_if_empty(app: &InventoryApp) -> Result<Option<RebuildReport>, InventoryError> {
    let mut conn = app.store.connection();
    let report = rebuild_if_empty(
        &app.pool,
        &mut conn,
        &app.keys,
        app.cfg.policy(),
        app.clock.now_ms(),
        &app.instance,
        app.store.timeout_ms(),
    )
    .await?;
    if let Some(r) = &report {
        tracing::warn!(
            hubs = r.hubs,
            skus = r.skus,
            holds = r.holds,
            "Redis was empty: rebuilt inventory from Postgres"
        );
    }
    Ok(report)
}

/// Reconciles every hub whose stream lag is 0 (01 §8); mismatches are logged and counted.
pub async fn reconcile_once(app: &InventoryApp) -> Result<JobReport, InventoryError> {
    let mut report = JobReport::default();
    let mut conn = app.store.connection();
    let t = app.store.timeout_ms();
    for hub in app.store.hubs().await? {
        let lag = stream_lag(&mut conn, &app.keys, &hub, t).await?;
        app.ctx.metrics.gauge(
            "inventory_stream_lag",
            "Stream entries not yet written to Postgres (-1 unknown).",
            vec![("hub_id", hub.to_string())],
            lag.map_or(-1.0, |l| l as f64),
        );
        if lag != Some(0) {
            report.hubs_skipped_for_lag += 1;
            continue;
        }
        let before = last_event_id(&mut conn, &app.keys, &hub, t).await?;
        let r = reconcile(&app.pool, &app.store, &mut conn, &app.keys, &hub, t).await?;
        if last_event_id(&mut conn, &app.keys, &hub, t).await? != before {
            // The hub changed while we compared: judge it next time rather than report noise.
            report.hubs_skipped_for_lag += 1;
            continue;
        }
        report.hubs_checked += 1;
        for m in &r.mismatches {
            tracing::error!(hub_id = %hub, mismatch = %m, "reconciliation mismatch");
        }
        app.ctx.metrics.count(
            "inventory_reconcile_mismatches_total",
            "Postgres/Redis disagreements found by reconciliation.",
            vec![("hub_id", hub.to_string())],
            r.mismatches.len() as f64,
        );
        report.mismatches.extend(r.mismatches);
    }
    Ok(report)
}

/// Sleeps `d` unless shutdown comes first; false once shutdown has begun.
async fn pause(shutdown: &Shutdown, d: Duration) -> bool {
    tokio::select! {
        _ = shutdown.wait() => false,
        _ = tokio::time::sleep(d) => !shutdown.is_triggered(),
    }
}

pub fn spawn_all(app: Arc<InventoryApp>, shutdown: Shutdown) -> Vec<JoinHandle<()>> {
    let reaper = {
        let (app, sd) = (app.clone(), shutdown.clone());
        tokio::spawn(async move {
            let every = Duration::from_secs(app.cfg.reaper_interval_s);
            while pause(&sd, every).await {
                if let Err(e) = restore_if_empty(&app).await {
                    tracing::warn!(error = %e, "restore check failed");
                }
                if let Err(e) = reap_once(&app).await {
                    tracing::warn!(error = %e, "reaper pass failed");
                }
            }
        })
    };
    let writer = {
        let (app, sd) = (app.clone(), shutdown.clone());
        tokio::spawn(async move { writer_loop(app, sd).await })
    };
    let reconciler = {
        let (app, sd) = (app, shutdown);
        tokio::spawn(async move {
            let every = Duration::from_secs(app.cfg.reconcile_interval_s);
            while pause(&sd, every).await {
                if let Err(e) = reconcile_once(&app).await {
                    tracing::warn!(error = %e, "reconciliation failed");
                }
            }
        })
    };
    vec![reaper, writer, reconciler]
}

async fn writer_loop(app: Arc<InventoryApp>, sd: Shutdown) {
    let mut writer = loop {
        match app.event_writer().await {
            Ok(w) => break w,
            Err(e) => {
                tracing::warn!(error = %e, "event writer cannot connect; retrying");
                if !pause(&sd, Duration::from_secs(1)).await {
                    return;
                }
            }
        }
    };
    let lease = writer.lease(10_000);
    let mut conn = app.store.connection();
    let t = app.store.timeout_ms();
    while !sd.is_triggered() {
        match lease.acquire(&mut conn, app.clock.now_ms(), t).await {
            Ok(true) => match writer.run_once(1000).await {
                Ok(r) if r.applied + r.poison > 0 => {
                    let m = &app.ctx.metrics;
                    m.count(
                        "inventory_writer_events_total",
                        "Stream events written to Postgres.",
                        vec![],
                        r.applied as f64,
                    );
                    m.count(
                        "inventory_writer_poison_total",
                        "Undecodable stream events acknowledged and logged.",
                        vec![],
                        r.poison as f64,
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "event writer round failed");
                    if !pause(&sd, Duration::from_secs(1)).await {
                        break;
                    }
                }
            },
            Ok(false) => {
                if !pause(&sd, Duration::from_secs(2)).await {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "event writer lease failed");
                if !pause(&sd, Duration::from_secs(1)).await {
                    break;
                }
            }
        }
    }
    lease.release(&mut conn, app.clock.now_ms(), t).await.ok();
}
