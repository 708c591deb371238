//! In-process adapter of [`DispatchRepo`]: the same compare-and-set and uniqueness rules as
//! Postgres, under one mutex (tests, the simulator, single-process runs). Secondary indexes
//! play the part of Postgres's partial indexes, so every read costs what it returns, not the
//! number of orders ever stored (a simulated city day stores tens of thousands).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use crate::model::{Assignment, AssignmentStatus, Driver, DriverEvent, Order, OrderStatus};
use crate::repo::{DispatchRepo, RepoError, Row, Write};
use crate::state::DriverState;

type At = (i64, String);

#[derive(Debug, Default)]
struct Tables {
    // Looked up by id only: every ordered read goes through an index below.
    orders: HashMap<String, Order>,
    drivers: HashMap<String, Driver>,
    assignments: HashMap<String, Assignment>,
    events: HashMap<String, Vec<DriverEvent>>,
    /// Pooled PENDING orders by (pooled_at, id).
    pool: BTreeSet<At>,
    /// Orders by (reassign_due_at, id).
    reassign: BTreeSet<At>,
    /// PENDING orders by (deliver_by, id).
    deadlines: BTreeSet<At>,
    /// Drivers that may take an offer, by id.
    candidates: BTreeSet<String>,
    /// Live PENDING assignments by (expires_at, id).
    offers: BTreeSet<At>,
    /// Live assignment id per order and per driver.
    live_by_order: HashMap<String, String>,
    live_by_driver: HashMap<String, String>,
}

fn order_keys(o: &Order) -> [Option<(u8, At)>; 3] {
    let pending = o.status == OrderStatus::Pending;
    [
        o.pooled_at
            .filter(|_| pending)
            .map(|t| (0, (t, o.id.clone()))),
        o.reassign_due_at.map(|t| (1, (t, o.id.clone()))),
        o.deliver_by
            .filter(|_| pending)
            .map(|t| (2, (t, o.id.clone()))),
    ]
}

fn is_candidate(d: &Driver) -> bool {
    d.status == DriverState::Idle && d.location.is_some() && d.load < d.max_load
}

fn is_open_offer(a: &Assignment) -> bool {
    a.status == AssignmentStatus::Pending && a.is_live()
}

impl Tables {
    fn order_index(&mut self, o: &Order, add: bool) {
        for (which, key) in order_keys(o).into_iter().flatten() {
            let set = match which {
                0 => &mut self.pool,
                1 => &mut self.reassign,
                _ => &mut self.deadlines,
            };
            if add {
                set.insert(key);
            } else {
                set.remove(&key);
            }
        }
    }

    fn put_order(&mut self, o: &Order) {
        if let Some(old) = self.orders.remove(&o.id) {
            self.order_index(&old, false);
        }
        self.order_index(o, true);
        self.orders.insert(o.id.clone(), o.clone());
    }

    fn put_driver(&mut self, d: &Driver) {
        let listed = self.candidates.contains(&d.id);
        if is_candidate(d) && !listed {
            self.candidates.insert(d.id.clone());
        } else if !is_candidate(d) && listed {
            self.candidates.remove(&d.id);
        }
        match self.drivers.get_mut(&d.id) {
            Some(slot) => slot.clone_from(d),
            None => {
                self.drivers.insert(d.id.clone(), d.clone());
            }
        }
    }

    fn put_assignment(&mut self, a: &Assignment) {
        if let Some(old) = self.assignments.get(&a.id).cloned() {
            self.offers.remove(&(old.expires_at, old.id.clone()));
            if old.is_live() {
                if self.live_by_order.get(&old.order_id) == Some(&old.id) {
                    self.live_by_order.remove(&old.order_id);
                }
                if self.live_by_driver.get(&old.driver_id) == Some(&old.id) {
                    self.live_by_driver.remove(&old.driver_id);
                }
            }
        }
        if is_open_offer(a) {
            self.offers.insert((a.expires_at, a.id.clone()));
        }
        if a.is_live() {
            self.live_by_order.insert(a.order_id.clone(), a.id.clone());
            self.live_by_driver
                .insert(a.driver_id.clone(), a.id.clone());
        }
        self.assignments.insert(a.id.clone(), a.clone());
    }

    /// At most one live assignment per order and per driver once `rows` are applied.
    fn check_live(&self, rows: &[Row<Assignment>]) -> Result<(), RepoError> {
        let written: HashMap<&str, &Assignment> = rows
            .iter()
            .map(|r| (r.get().id.as_str(), r.get()))
            .collect();
        let still_live = |id: &str| match written.get(id) {
            Some(a) => a.is_live(),
            None => self.assignments.get(id).is_some_and(Assignment::is_live),
        };
        let (mut orders, mut drivers) = (HashMap::new(), HashMap::new());
        for a in rows.iter().map(Row::get).filter(|a| a.is_live()) {
            let clash = |index: &HashMap<String, String>, key: &str| {
                index
                    .get(key)
                    .is_some_and(|other| other != &a.id && still_live(other))
            };
            let twice_o = orders.insert(a.order_id.as_str(), a.id.as_str()).is_some();
            let twice_d = drivers
                .insert(a.driver_id.as_str(), a.id.as_str())
                .is_some();
            if twice_o
                || twice_d
                || clash(&self.live_by_order, &a.order_id)
                || clash(&self.live_by_driver, &a.driver_id)
            {
                return Err(RepoError::Conflict(format!(
                    "a live assignment exists for order {} or driver {}",
                    a.order_id, a.driver_id
                )));
            }
        }
        Ok(())
    }
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
    table: &HashMap<String, T>,
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

/// The rows of `table` named by the first `limit` entries of `index` up to `until`.
fn due<T: Clone>(
    index: &BTreeSet<At>,
    table: &HashMap<String, T>,
    until: Option<i64>,
    limit: usize,
) -> Vec<T> {
    index
        .iter()
        .take_while(|(t, _)| until.is_none_or(|u| *t <= u))
        .take(limit)
        .filter_map(|(_, id)| table.get(id).cloned())
        .collect()
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
        Ok(self
            .lock()
            .events
            .get(driver_id)
            .cloned()
            .unwrap_or_default())
    }

    async fn pool(&self, limit: usize) -> Result<Vec<Order>, RepoError> {
        let t = self.lock();
        Ok(due(&t.pool, &t.orders, None, limit))
    }

    async fn pool_stats(&self) -> Result<(usize, Option<i64>), RepoError> {
        let t = self.lock();
        Ok((t.pool.len(), t.pool.first().map(|(at, _)| *at)))
    }

    async fn hub_pool_len(&self, hub_id: &str) -> Result<usize, RepoError> {
        let t = self.lock();
        Ok(t.pool
            .iter()
            .filter(|(_, id)| t.orders.get(id).is_some_and(|o| o.hub_id == hub_id))
            .count())
    }

    async fn candidates(&self) -> Result<Vec<Driver>, RepoError> {
        let t = self.lock();
        Ok(t.candidates
            .iter()
            .filter_map(|id| t.drivers.get(id).cloned())
            .collect())
    }

    async fn due_offers(&self, now_ms: i64, limit: usize) -> Result<Vec<Assignment>, RepoError> {
        let t = self.lock();
        Ok(due(&t.offers, &t.assignments, Some(now_ms), limit))
    }

    async fn due_reassignments(&self, now_ms: i64, limit: usize) -> Result<Vec<Order>, RepoError> {
        let t = self.lock();
        Ok(due(&t.reassign, &t.orders, Some(now_ms), limit))
    }

    async fn overdue(&self, now_ms: i64, limit: usize) -> Result<Vec<Order>, RepoError> {
        let t = self.lock();
        Ok(due(&t.deadlines, &t.orders, Some(now_ms), limit))
    }

    async fn commit(&self, w: &Write) -> Result<(), RepoError> {
        let mut t = self.lock();
        check(&t.orders, &w.orders, |o| &o.id, |o| o.version)?;
        check(&t.drivers, &w.drivers, |d| &d.id, |d| d.version)?;
        check(&t.assignments, &w.assignments, |a| &a.id, |a| a.version)?;
        t.check_live(&w.assignments)?;
        for r in &w.orders {
            t.put_order(r.get());
        }
        for r in &w.drivers {
            t.put_driver(r.get());
        }
        for r in &w.assignments {
            t.put_assignment(r.get());
        }
        for e in &w.events {
            t.events
                .entry(e.driver_id.clone())
                .or_default()
                .push(e.clone());
        }
        Ok(())
    }
}
