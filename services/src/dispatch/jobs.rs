//! Dispatch background loops (06 §7). Every instance claims `dispatch_queue` rows (SKIP LOCKED
//! makes that safe and spreads the load); the lease holder alone runs the batch timer, the
//! offer sweeper and the reassignment scheduler. Each pass is callable directly (tests drive
//! them with a manual clock).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use qc_dispatch::queue::{self, Settled};
use qc_dispatch::DispatchError;
use qc_kit::lease::Lease;
use tokio::task::JoinHandle;

use super::{notify, set_leader, DispatchApp};
use crate::platform::shutdown::Shutdown;

#[derive(Debug, Default)]
pub struct LeaderState {
    pub held: AtomicBool,
}

/// One claim round: stale claims go back to pending, then up to `claim_batch` rows become
/// orders. Returns how many rows were claimed.
pub async fn poll_queue_once(app: &DispatchApp) -> Result<usize, DispatchError> {
    let now = app.clock.now_ms();
    let stale = queue::release_stale(&app.pool, now).await?;
    if stale > 0 {
        tracing::warn!(
            rows = stale,
            "dispatch_queue claims went stale; back to pending"
        );
    }
    let rows = queue::claim(&app.pool, &app.instance, now, app.cfg.claim_batch).await?;
    for row in &rows {
        let (error, permanent) = match row.to_order() {
            Err(e) => (Some(e.0), true),
            Ok(new) => match app.dispatcher.create_order(new, now).await {
                Ok((_, created)) => {
                    if created {
                        app.ctx.metrics.count(
                            "dispatch_orders_created_total",
                            "Orders entering dispatch.",
                            vec![("via", "queue".into())],
                            1.0,
                        );
                    }
                    (None, false)
                }
                Err(e) => (Some(e.to_string()), false),
            },
        };
        let settled = queue::settle(
            &app.pool,
            &app.instance,
            row,
            error.as_deref().map(|e| (e, permanent)),
            now,
        )
        .await?;
        if settled == Settled::Failed {
            // The alert: an order Checkout confirmed will not be dispatched.
            tracing::error!(order_id = %row.order_id, attempts = row.attempts,
                error = error.as_deref().unwrap_or(""), "dispatch_queue row failed");
            app.ctx.metrics.count(
                "dispatch_queue_failed_total",
                "dispatch_queue rows failed for good.",
                vec![],
                1.0,
            );
        }
    }
    Ok(rows.len())
}

/// Flushes the batch pool if the timer says so (06 §5). Returns orders matched, if it flushed.
/// Only the leader runs it, so the timer is copied out and back around the awaits.
pub async fn flush_if_due(app: &DispatchApp) -> Result<Option<usize>, DispatchError> {
    let now = app.clock.now_ms();
    let mut timer = *app.timer.lock().unwrap_or_else(|p| p.into_inner());
    if !app.dispatcher.batch_due(&mut timer, now).await? {
        *app.timer.lock().unwrap_or_else(|p| p.into_inner()) = timer;
        return Ok(None);
    }
    let hubs = app
        .hub_points(&app.dispatcher.hubs_in_play(now).await?)
        .await;
    let now = app.clock.now_ms();
    let out = app
        .dispatcher
        .flush_and_rearm(&mut timer, now, &hubs)
        .await?;
    *app.timer.lock().unwrap_or_else(|p| p.into_inner()) = timer;
    notify::announce(app, &out.notices).await;
    let r = &out.value;
    let left = app.dispatcher.pool_stats().await?.0;
    if r.matched > 0 {
        tracing::info!(
            orders = r.orders,
            drivers = r.drivers,
            matched = r.matched,
            greedy_cost = r.greedy.1,
            optimal_cost = r.optimal.1,
            "batch flushed"
        );
    }
    let m = &app.ctx.metrics;
    m.count("dispatch_batches_total", "Batch flushes.", vec![], 1.0);
    m.count(
        "dispatch_offers_total",
        "Offers made.",
        vec![("via", "batch".into())],
        r.matched as f64,
    );
    if r.greedy.0 == r.optimal.0 {
        m.count(
            "dispatch_greedy_optimal_gap_total",
            "Σ (greedy − optimal) cost over batches of equal matching size.",
            vec![],
            (r.greedy.1 - r.optimal.1).max(0.0),
        );
    }
    m.gauge(
        "dispatch_pool_size",
        "Orders waiting in the batch pool.",
        vec![],
        left as f64,
    );
    Ok(Some(r.matched))
}

/// The offer sweeper: pending offers past their deadline close as TIMEOUT.
pub async fn sweep_once(app: &DispatchApp) -> Result<usize, DispatchError> {
    let out = app.dispatcher.expire_offers(app.clock.now_ms()).await?;
    notify::announce(app, &out.notices).await;
    Ok(out.value)
}

/// The deadline sweeper: orders still waiting for a rider past their deadline fail.
pub async fn expire_overdue_once(app: &DispatchApp) -> Result<usize, DispatchError> {
    let out = app.dispatcher.expire_overdue(app.clock.now_ms()).await?;
    notify::announce(app, &out.notices).await;
    if out.value > 0 {
        tracing::warn!(
            orders = out.value,
            "orders failed: delivery deadline passed with no rider"
        );
    }
    Ok(out.value)
}

/// The reassignment scheduler: due orders get their next attempt.
pub async fn reassign_once(app: &DispatchApp) -> Result<usize, DispatchError> {
    let now = app.clock.now_ms();
    let hubs = app
        .hub_points(&app.dispatcher.hubs_in_play(now).await?)
        .await;
    let now = app.clock.now_ms();
    let out = app.dispatcher.run_reassignments(now, &hubs).await?;
    notify::announce(app, &out.notices).await;
    Ok(out.value)
}

/// Sleeps `d` unless shutdown comes first; false once shutdown has begun.
async fn pause(shutdown: &Shutdown, d: Duration) -> bool {
    tokio::select! {
        _ = shutdown.wait() => false,
        _ = tokio::time::sleep(d) => !shutdown.is_triggered(),
    }
}

fn warn(job: &str, r: Result<impl Sized, DispatchError>) {
    if let Err(e) = r {
        tracing::warn!(job, error = %e, "dispatch job pass failed");
    }
}

pub fn spawn_all(app: Arc<DispatchApp>, shutdown: Shutdown) -> Vec<JoinHandle<()>> {
    let poller = {
        let (app, sd) = (app.clone(), shutdown.clone());
        tokio::spawn(async move {
            let every = Duration::from_millis(app.cfg.poll_ms);
            while pause(&sd, every).await {
                warn("queue", poll_queue_once(&app).await);
            }
        })
    };
    let lease = {
        let (app, sd) = (app.clone(), shutdown.clone());
        tokio::spawn(async move { lease_loop(app, sd).await })
    };
    let leader = tokio::spawn(async move {
        let (mut last_reassign, mut last_sweep) = (0i64, 0i64);
        while pause(&shutdown, Duration::from_millis(100)).await {
            if !app.is_leader() {
                continue;
            }
            warn("batch", flush_if_due(&app).await);
            let now = app.clock.now_ms();
            if now - last_reassign >= 250 {
                last_reassign = now;
                warn("reassign", reassign_once(&app).await);
            }
            if now - last_sweep >= 1000 {
                last_sweep = now;
                warn("sweep", sweep_once(&app).await);
                warn("deadline", expire_overdue_once(&app).await);
            }
        }
    });
    vec![poller, lease, leader]
}

/// Holds `dispatch:{dispatch}:lock:leader` (renewed every third of its TTL) while it can.
async fn lease_loop(app: Arc<DispatchApp>, sd: Shutdown) {
    let ttl = app.cfg.leader_lease_ms;
    let lease = Lease::new(app.key("lock:leader"), app.instance.clone(), ttl);
    let every = Duration::from_millis((ttl / 3) as u64);
    loop {
        let mut conn = app.redis.clone();
        let held = match lease
            .acquire(&mut conn, app.clock.now_ms(), app.redis_timeout_ms)
            .await
        {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "leader lease unreachable; not leading");
                false
            }
        };
        if held != app.is_leader() {
            tracing::info!(leader = held, "dispatch leadership changed");
        }
        set_leader(&app, held);
        app.ctx.metrics.gauge(
            "dispatch_leader",
            "1 while this instance runs the leader's jobs.",
            vec![],
            f64::from(u8::from(held)),
        );
        if !pause(&sd, every).await {
            break;
        }
    }
    set_leader(&app, false);
    let mut conn = app.redis.clone();
    lease
        .release(&mut conn, app.clock.now_ms(), app.redis_timeout_ms)
        .await
        .ok();
}
