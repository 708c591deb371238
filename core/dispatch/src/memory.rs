//! In-process adapter of [`DispatchRepo`]: the same compare-and-set and uniqueness rules as
//! Postgres, under one mutex (tests, the simulator, single-process runs).

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::model::{Assignment, Driver, DriverEvent, Order, OrderStatus};
use crate::repo::{DispatchRepo, RepoError, Row, Write};
use crate::state::DriverState;

#[derive(Debug, Default)]
struct Tables {
    orders: BTreeMap<String, Order>,
    drivers: BTreeMap<String, Driver>,
    assignments: BTreeMap<String, Assignment>,
    events: Vec<DriverEvent>,
}

#[derive(Debug, Default)]
pub struct MemoryRepo {
    t: Mutex<Tables>,
}

impl MemoryRepo {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave a half-applied write: commit checks
        // everything before it changes anything.
        self.t.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn check<T: Clone>(
    table: &BTreeMap<String, T>,
    rows: &[Row<T>],
    id: impl Fn(&T) -> &str,
    version: impl Fn(&T) -> i64,
) -> Result<(), RepoError> {
    for r in rows {
        match r {
            Row::Insert(t) if table.contains_key(id(t)) => {
                return Err(RepoError::Conflict(format!("{} exists", id(t))))
            }
            Row::Update(t) if table.get(id(t)).map(&version) != Some(version(t) - 1) => {
                return Err(RepoError::Conflict(format!("{} changed", id(t))))
            }
            _ => {}
        }
    }
    Ok(())
}

fn apply<T: Clone>(table: &mut BTreeMap<String, T>, rows: &[Row<T>], id: impl Fn(&T) -> &str) {
    for r in rows {
        let t = r.get();
        table.insert(id(t).to_string(), t.clone());
    }
}

impl DispatchRepo for MemoryRepo {
    async fn order(&self, id: &str) -> Result<Option<Order>, RepoError> {
        Ok(self.lock().orders.get(id).cloned())
    }

    async fn driver(&self, id: &str) -> Result<Option<Driver>, RepoError> {
        Ok(self.lock().drivers.get(id).cloned())
    }

    async fn assignment(&self, id: &str) -> Result<Option<Assignment>, RepoError> {
        Ok(self.lock().assignments.get(id).cloned())
    }

    async fn driver_events(&self, driver_id: &str) -> Result<Vec<DriverEvent>, RepoError> {
        let t = self.lock();
        Ok(t.events
            .iter()
            .filter(|e| e.driver_id == driver_id)
            .cloned()
            .collect())
    }

    async fn pool(&self, limit: usize) -> Result<Vec<Order>, RepoError> {
        let t = self.lock();
        let mut v: Vec<Order> = t
            .orders
            .values()
            .filter(|o| o.pooled_at.is_some() && o.status == OrderStatus::Pending)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.pooled_at.cmp(&b.pooled_at).then(a.id.cmp(&b.id)));
        v.truncate(limit);
        Ok(v)
    }

    async fn pool_stats(&self) -> Result<(usize, Option<i64>), RepoError> {
        let t = self.lock();
        let pooled = t
            .orders
            .values()
            .filter(|o| o.status == OrderStatus::Pending)
            .filter_map(|o| o.pooled_at);
        Ok(pooled.fold((0, None), |(n, oldest), at| {
            (n + 1, Some(oldest.map_or(at, |o: i64| o.min(at))))
        }))
    }

    async fn hub_pool_len(&self, hub_id: &str) -> Result<usize, RepoError> {
        let t = self.lock();
        Ok(t.orders
            .values()
            .filter(|o| {
                o.hub_id == hub_id && o.status == OrderStatus::Pending && o.pooled_at.is_some()
            })
            .count())
    }

    async fn candidates(&self) -> Result<Vec<Driver>, RepoError> {
        let t = self.lock();
        Ok(t.drivers
            .values()
            .filter(|d| {
                d.status == DriverState::Idle && d.location.is_some() && d.load < d.max_load
            })
            .cloned()
            .collect())
    }

    async fn due_offers(&self, now_ms: i64, limit: usize) -> Result<Vec<Assignment>, RepoError> {
        let t = self.lock();
        let mut v: Vec<Assignment> = t
            .assignments
            .values()
            .filter(|a| {
                a.status == crate::model::AssignmentStatus::Pending
                    && a.is_live()
                    && a.expires_at <= now_ms
            })
            .cloned()
            .collect();
        v.sort_by(|a, b| a.expires_at.cmp(&b.expires_at).then(a.id.cmp(&b.id)));
        v.truncate(limit);
        Ok(v)
    }

    async fn due_reassignments(&self, now_ms: i64, limit: usize) -> Result<Vec<Order>, RepoError> {
        let t = self.lock();
        let mut v: Vec<Order> = t
            .orders
            .values()
            .filter(|o| o.reassign_due_at.is_some_and(|d| d <= now_ms))
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            a.reassign_due_at
                .cmp(&b.reassign_due_at)
                .then(a.id.cmp(&b.id))
        });
        v.truncate(limit);
        Ok(v)
    }

    async fn commit(&self, w: &Write) -> Result<(), RepoError> {
        let mut t = self.lock();
        check(&t.orders, &w.orders, |o| &o.id, |o| o.version)?;
        check(&t.drivers, &w.drivers, |d| &d.id, |d| d.version)?;
        check(&t.assignments, &w.assignments, |a| &a.id, |a| a.version)?;
        // At most one live assignment per order and per driver, after this write.
        let mut after = t.assignments.clone();
        apply(&mut after, &w.assignments, |a| &a.id);
        for a in w.assignments.iter().map(Row::get).filter(|a| a.is_live()) {
            let clash = after.values().any(|b| {
                b.id != a.id
                    && b.is_live()
                    && (b.order_id == a.order_id || b.driver_id == a.driver_id)
            });
            if clash {
                return Err(RepoError::Conflict(format!(
                    "a live assignment exists for order {} or driver {}",
                    a.order_id, a.driver_id
                )));
            }
        }
        apply(&mut t.orders, &w.orders, |o| &o.id);
        apply(&mut t.drivers, &w.drivers, |d| &d.id);
        t.assignments = after;
        t.events.extend(w.events.iter().cloned());
        Ok(())
    }
}
