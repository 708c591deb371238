//! Every Dispatch rule (06 §5, §6) over the [`DispatchRepo`] port: read rows, decide, commit
//! one all-or-nothing [`Write`] compared-and-set on row versions, and on a conflict read again
//! and decide again. No clock and no IO of its own: `now_ms` comes from the caller, pickup
//! points for hubs come in a map the caller resolved.

use std::collections::HashMap;
use std::sync::Arc;

use qc_geo::Point;
use qc_kit::ids::{IdSource, RandomIds};

use crate::batch::BatchTimer;
use crate::matching::{cost, greedy, optimal, total, CostInput, CostMatrix, Matcher};
use crate::model::*;
use crate::next_reassignment;
use crate::repo::{DispatchRepo, RepoError, Row, Write};
use crate::state::{check_transition, DriverState, IllegalTransition, OrderEffect, Via};

/// Settings the rules read (06 §5; env `DISPATCH_*` in the service).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DispatchPolicy {
    pub offer_timeout_ms: i64,
    pub max_batch: usize,
    pub matcher: Matcher,
    /// An order's delivery deadline after it enters Dispatch, unless it brings its own.
    pub deadline_ms: i64,
}

impl Default for DispatchPolicy {
    fn default() -> Self {
        Self {
            offer_timeout_ms: 30_000,
            max_batch: 50,
            matcher: Matcher::Greedy,
            deadline_ms: DEFAULT_DEADLINE_MS,
        }
    }
}

/// 60 minutes.
pub const DEFAULT_DEADLINE_MS: i64 = 3_600_000;

/// Why an order failed because its deadline passed while it waited for a rider.
pub const DEADLINE_PASSED: &str = "DEADLINE_PASSED";

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DispatchError {
    #[error("{resource} {id} not found")]
    NotFound { resource: &'static str, id: String },
    #[error("{0}")]
    Invalid(String),
    #[error("illegal transition {} -> {}", .0.from.as_str(), .0.to.as_str())]
    IllegalTransition(IllegalTransition),
    #[error("assignment is {} and no longer pending", .0.as_str())]
    AssignmentNotPending(AssignmentStatus),
    #[error("assignment belongs to another driver")]
    DriverMismatch,
    #[error("too many concurrent changes to the same records; retry")]
    Busy,
    #[error("{0}")]
    Backend(#[source] qc_kit::redis_kit::BackendError),
}

impl From<RepoError> for DispatchError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::Conflict(_) => DispatchError::Busy,
            RepoError::Backend(m) => DispatchError::Backend(m),
        }
    }
}

impl From<IllegalTransition> for DispatchError {
    fn from(e: IllegalTransition) -> Self {
        DispatchError::IllegalTransition(e)
    }
}

/// Something other services hear about (pub/sub `dispatch.events`, Tracking's assignment key).
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// order.assigned|picked_up|failed|delivered|reassign_scheduled|repooled,
    /// assignment.accepted|rejected|timeout|cancelled, driver.state
    pub kind: &'static str,
    pub order_id: Option<String>,
    pub driver_id: Option<String>,
    pub assignment_id: Option<String>,
    pub hub_id: Option<String>,
    pub at: i64,
    /// order.assigned: when the offer expires; order.reassign_scheduled: when the attempt runs.
    pub due_at: Option<i64>,
    /// order.failed: why.
    pub reason: Option<String>,
}

impl Notice {
    /// The order status Tracking shows for this notice (06 §8, 09 `POST /tracking/status`), in
    /// Tracking's words: accept → `driver_assigned`, pickup → `in_transit`, COMPLETED →
    /// `delivered`, order FAILED → `cancelled`. The service posts it; the twin sets it through
    /// the tracking core.
    pub fn tracking_status(&self) -> Option<&'static str> {
        match self.kind {
            "assignment.accepted" => Some("driver_assigned"),
            "order.picked_up" => Some("in_transit"),
            "order.delivered" => Some("delivered"),
            "order.failed" => Some("cancelled"),
            _ => None,
        }
    }
}

/// A committed result and what it announces.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome<T> {
    pub value: T,
    pub notices: Vec<Notice>,
}

impl Default for Outcome<usize> {
    fn default() -> Self {
        Self {
            value: 0,
            notices: Vec::new(),
        }
    }
}

impl Outcome<usize> {
    /// A job's pass over many rows: counts the rows one step changed, keeps its notices.
    fn add(&mut self, step: Outcome<bool>) {
        self.value += usize::from(step.value);
        self.notices.extend(step.notices);
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Transitioned {
    pub driver_id: String,
    pub from: DriverState,
    pub to: DriverState,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub assignment_id: String,
    pub order_id: String,
    pub hub_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub assignment_id: String,
    pub order_id: String,
    pub order_status: OrderStatus,
    /// The next attempt and when it runs; None when the order failed.
    pub reassign: Option<(u32, i64)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchReport {
    pub orders: usize,
    pub drivers: usize,
    pub matched: usize,
    /// Σ cost of the greedy and of the optimal matching on the same matrix, and their sizes.
    pub greedy: (usize, f64),
    pub optimal: (usize, f64),
}

/// Hub id → pickup point (from Geo); orders with their own `pickup_location` ignore it.
pub type HubPoints = HashMap<String, Point>;

/// Commit attempts before a caller gets [`DispatchError::Busy`].
const MAX_TRIES: usize = 8;

/// Decide-and-commit with retries: `$decide` builds `(Write, value)` from fresh reads.
macro_rules! retrying {
    ($self:ident, $decide:block) => {{
        let mut tries = 0;
        loop {
            let (w, out): (Write, _) = $decide;
            if w.is_empty() {
                break Ok(out);
            }
            match $self.repo.commit(&w).await {
                Ok(()) => break Ok(out),
                Err(RepoError::Conflict(_)) if tries + 1 < MAX_TRIES => tries += 1,
                Err(e) => break Err(DispatchError::from(e)),
            }
        }
    }};
}

pub struct Dispatcher<R> {
    pub repo: R,
    pub policy: DispatchPolicy,
    /// New assignment and batch ids.
    pub ids: Arc<dyn IdSource>,
}

fn not_found(resource: &'static str, id: &str) -> DispatchError {
    DispatchError::NotFound {
        resource,
        id: id.to_string(),
    }
}

fn notice(kind: &'static str, at: i64) -> Notice {
    Notice {
        kind,
        order_id: None,
        driver_id: None,
        assignment_id: None,
        hub_id: None,
        at,
        due_at: None,
        reason: None,
    }
}

/// Accumulates one decision: rows to write and notices to send after the commit.
#[derive(Default)]
struct Plan {
    w: Write,
    notices: Vec<Notice>,
}

impl Plan {
    fn order(&mut self, mut o: Order) {
        o.version += 1;
        self.w.orders.push(Row::Update(o));
    }
    fn driver(&mut self, mut d: Driver) {
        d.version += 1;
        self.w.drivers.push(Row::Update(d));
    }
    fn assignment(&mut self, mut a: Assignment) {
        a.version += 1;
        self.w.assignments.push(Row::Update(a));
    }
    fn move_driver(&mut self, d: &mut Driver, to: DriverState, reason: Option<&str>, now: i64) {
        self.w.events.push(DriverEvent {
            driver_id: d.id.clone(),
            from_state: Some(d.status),
            to_state: to,
            at: now,
            reason: reason.map(str::to_string),
        });
        self.notices.push(Notice {
            driver_id: Some(d.id.clone()),
            ..notice("driver.state", now)
        });
        d.status = to;
    }
    fn fail_order(&mut self, o: &mut Order, reason: &str, now: i64) {
        o.status = OrderStatus::Failed;
        o.failure_reason = Some(reason.to_string());
        o.pooled_at = None;
        o.reassign_due_at = None;
        self.notices.push(Notice {
            order_id: Some(o.id.clone()),
            hub_id: Some(o.hub_id.clone()),
            reason: Some(reason.to_string()),
            ..notice("order.failed", now)
        });
    }

    /// After an offer closed: the order's next reassignment attempt (06 §5 backoff); once the
    /// attempts are spent, back to the pool with raised priority, ahead of newer orders, every
    /// driver but the last one eligible again. A retry limit alone never fails an order that
    /// can still be delivered: only its deadline does. Returns the attempt and its delay.
    fn reschedule(&mut self, o: &mut Order, now: i64) -> Option<(u32, i64)> {
        if o.deliver_by.is_some_and(|d| d <= now) {
            self.fail_order(o, DEADLINE_PASSED, now);
            return None;
        }
        o.status = OrderStatus::Pending;
        match next_reassignment(o.reassign_count) {
            Some((k, delay)) => {
                o.reassign_count = k;
                o.reassign_due_at = Some(now + delay);
                self.notices.push(Notice {
                    order_id: Some(o.id.clone()),
                    hub_id: Some(o.hub_id.clone()),
                    due_at: o.reassign_due_at,
                    ..notice("order.reassign_scheduled", now)
                });
                Some((k, delay))
            }
            None => {
                o.reassign_count = 0;
                o.reassign_due_at = None;
                o.pooled_at = Some(o.created_at);
                o.priority = o.priority.saturating_add(1).min(9);
                o.repooled += 1;
                o.excluded.drain(..o.excluded.len().saturating_sub(1));
                self.notices.push(Notice {
                    order_id: Some(o.id.clone()),
                    hub_id: Some(o.hub_id.clone()),
                    ..notice("order.repooled", now)
                });
                None
            }
        }
    }

    /// An offer (or an accepted trip before pickup) closes: the assignment ends with `how`,
    /// the driver goes to `driver_to` and is excluded, the order is reassigned or fails.
    #[allow(clippy::too_many_arguments)]
    fn close(
        &mut self,
        mut o: Order,
        mut d: Driver,
        mut a: Assignment,
        how: AssignmentStatus,
        driver_to: DriverState,
        reason: &str,
        now: i64,
    ) -> (OrderStatus, Option<(u32, i64)>) {
        if a.status == AssignmentStatus::Pending {
            a.status = how;
            if how == AssignmentStatus::Rejected {
                a.rejected_at = Some(now);
            }
            let kind = match how {
                AssignmentStatus::Rejected => "assignment.rejected",
                AssignmentStatus::Timeout => "assignment.timeout",
                _ => "assignment.cancelled",
            };
            self.notices.push(Notice {
                assignment_id: Some(a.id.clone()),
                order_id: Some(o.id.clone()),
                driver_id: Some(d.id.clone()),
                ..notice(kind, now)
            });
        }
        a.finished_at = Some(now);
        self.move_driver(&mut d, driver_to, Some(reason), now);
        d.load = d.load.saturating_sub(1);
        d.current_assignment_id = None;
        if !o.excluded.contains(&d.id) {
            o.excluded.push(d.id.clone());
        }
        o.assigned_driver_id = None;
        o.current_assignment_id = None;
        let next = self.reschedule(&mut o, now);
        let status = o.status;
        self.assignment(a);
        self.driver(d);
        self.order(o);
        (status, next)
    }

    /// Offers `o` to `d` (IDLE → ASSIGNED by the matcher) as assignment `id`.
    #[allow(clippy::too_many_arguments)]
    fn offer(
        &mut self,
        id: String,
        mut o: Order,
        mut d: Driver,
        score: f64,
        batch_id: Option<&str>,
        now: i64,
        timeout_ms: i64,
    ) -> Result<(), IllegalTransition> {
        check_transition(d.status, DriverState::Assigned, Via::Matcher)?;
        let a = Assignment {
            id,
            order_id: o.id.clone(),
            driver_id: d.id.clone(),
            status: AssignmentStatus::Pending,
            score,
            attempt: o.reassign_count + 1,
            created_at: now,
            expires_at: now + timeout_ms,
            accepted_at: None,
            rejected_at: None,
            finished_at: None,
            version: 1,
        };
        self.move_driver(&mut d, DriverState::Assigned, Some("matched"), now);
        d.load += 1;
        d.last_assigned_at = Some(now);
        d.skipped_count = 0;
        d.current_assignment_id = Some(a.id.clone());
        o.status = OrderStatus::Assigned;
        o.assigned_driver_id = Some(d.id.clone());
        o.current_assignment_id = Some(a.id.clone());
        o.pooled_at = None;
        o.reassign_due_at = None;
        if let Some(b) = batch_id {
            o.batch_id = Some(b.to_string());
        }
        self.notices.push(Notice {
            order_id: Some(o.id.clone()),
            driver_id: Some(d.id.clone()),
            assignment_id: Some(a.id.clone()),
            hub_id: Some(o.hub_id.clone()),
            due_at: Some(a.expires_at),
            ..notice("order.assigned", now)
        });
        self.w.assignments.push(Row::Insert(a));
        self.driver(d);
        self.order(o);
        Ok(())
    }

    fn done<T>(self, value: T) -> (Write, Outcome<T>) {
        (
            self.w,
            Outcome {
                value,
                notices: self.notices,
            },
        )
    }
}

/// Where a driver picks `o` up: its own pickup point, else its hub's, else the delivery point.
pub fn pickup_point(o: &Order, hubs: &HubPoints) -> Point {
    o.pickup_location
        .or_else(|| hubs.get(&o.hub_id).copied())
        .unwrap_or(o.delivery_location)
}

fn pair_cost(o: &Order, d: &Driver, hubs: &HubPoints) -> Option<f64> {
    let loc = d.location?;
    if o.excluded.contains(&d.id) || d.load >= d.max_load {
        return None;
    }
    Some(cost(&CostInput {
        pickup: pickup_point(o, hubs),
        driver: loc,
        driver_load: d.load,
        driver_max_load: d.max_load,
        priority: o.priority,
        skipped_count: d.skipped_count,
    }))
}

impl<R: DispatchRepo> Dispatcher<R> {
    pub fn new(repo: R, policy: DispatchPolicy) -> Self {
        Self {
            repo,
            policy,
            ids: Arc::new(RandomIds),
        }
    }

    /// The same dispatcher taking new ids from `ids` (the simulator's are deterministic).
    pub fn with_ids(mut self, ids: Arc<dyn IdSource>) -> Self {
        self.ids = ids;
        self
    }

    async fn need_order(&self, id: &str) -> Result<Order, DispatchError> {
        self.repo
            .order(id)
            .await?
            .ok_or_else(|| not_found("order", id))
    }
    async fn need_driver(&self, id: &str) -> Result<Driver, DispatchError> {
        self.repo
            .driver(id)
            .await?
            .ok_or_else(|| not_found("driver", id))
    }
    async fn need_assignment(&self, id: &str) -> Result<Assignment, DispatchError> {
        self.repo
            .assignment(id)
            .await?
            .ok_or_else(|| not_found("assignment", id))
    }

    /// Creates the order in the batch pool; an existing id returns the stored order and false.
    pub async fn create_order(
        &self,
        new: NewOrder,
        now: i64,
    ) -> Result<(Order, bool), DispatchError> {
        retrying!(self, {
            if let Some(o) = self.repo.order(&new.id).await? {
                // Nothing to write: the stored order is the answer.
                (Write::default(), (o, false))
            } else {
                let o = Order {
                    id: new.id.clone(),
                    customer_id: new.customer_id.clone(),
                    hub_id: new.hub_id.clone(),
                    items: new.items.clone(),
                    total: new.total,
                    priority: new.priority,
                    status: OrderStatus::Pending,
                    created_at: now,
                    delivery_location: new.delivery_location,
                    pickup_location: new.pickup_location,
                    assigned_driver_id: None,
                    current_assignment_id: None,
                    batch_id: None,
                    reassign_count: 0,
                    failure_reason: None,
                    excluded: Vec::new(),
                    pooled_at: Some(now),
                    reassign_due_at: None,
                    deliver_by: Some(new.deliver_by.unwrap_or(now + self.policy.deadline_ms)),
                    repooled: 0,
                    version: 1,
                };
                let w = Write {
                    orders: vec![Row::Insert(o.clone())],
                    ..Write::default()
                };
                (w, (o, true))
            }
        })
    }

    /// Registers an OFFLINE driver; an existing id returns the stored driver (state kept).
    pub async fn register_driver(
        &self,
        new: NewDriver,
        now: i64,
    ) -> Result<(Driver, bool), DispatchError> {
        retrying!(self, {
            if let Some(d) = self.repo.driver(&new.id).await? {
                (Write::default(), (d, false))
            } else {
                let d = Driver {
                    id: new.id.clone(),
                    name: new.name.clone(),
                    location: new.location,
                    loc_at: new.location.map(|_| now),
                    status: DriverState::Offline,
                    load: 0,
                    max_load: new.max_load,
                    total_deliveries: 0,
                    last_assigned_at: None,
                    skipped_count: 0,
                    current_assignment_id: None,
                    version: 1,
                };
                let w = Write {
                    drivers: vec![Row::Insert(d.clone())],
                    events: vec![DriverEvent {
                        driver_id: d.id.clone(),
                        from_state: None,
                        to_state: DriverState::Offline,
                        at: now,
                        reason: None,
                    }],
                    ..Write::default()
                };
                (w, (d, true))
            }
        })
    }

    pub async fn set_location(&self, id: &str, p: Point, now: i64) -> Result<(), DispatchError> {
        let _: Outcome<()> = retrying!(self, {
            let mut d = self.need_driver(id).await?;
            d.location = Some(p);
            d.loc_at = Some(now);
            let mut plan = Plan::default();
            plan.driver(d);
            plan.done(())
        })?;
        Ok(())
    }

    pub async fn order(&self, id: &str) -> Result<Order, DispatchError> {
        self.need_order(id).await
    }
    pub async fn driver(&self, id: &str) -> Result<Driver, DispatchError> {
        self.need_driver(id).await
    }
    pub async fn assignment(&self, id: &str) -> Result<Assignment, DispatchError> {
        self.need_assignment(id).await
    }
    pub async fn driver_events(&self, id: &str) -> Result<Vec<DriverEvent>, DispatchError> {
        self.need_driver(id).await?;
        Ok(self.repo.driver_events(id).await?)
    }

    /// `POST /dispatch/driver/state`: the API's transitions and their order effects (06 §6).
    pub async fn driver_state(
        &self,
        id: &str,
        to: DriverState,
        reason: Option<&str>,
        now: i64,
    ) -> Result<Outcome<Transitioned>, DispatchError> {
        retrying!(self, {
            let mut d = self.need_driver(id).await?;
            let from = d.status;
            let effect = check_transition(from, to, Via::Api)?;
            let current = match &d.current_assignment_id {
                Some(aid) => self.repo.assignment(aid).await?,
                None => None,
            };
            let order = match &current {
                Some(a) => self.repo.order(&a.order_id).await?,
                None => None,
            };
            let mut plan = Plan::default();
            let done = Transitioned {
                driver_id: d.id.clone(),
                from,
                to,
                at: now,
            };
            match (effect, current, order) {
                (OrderEffect::Reassign, Some(a), Some(o)) => {
                    let how = if to == DriverState::Idle && from == DriverState::Assigned {
                        AssignmentStatus::Rejected
                    } else {
                        AssignmentStatus::Cancelled
                    };
                    let why = reason.unwrap_or(if from == DriverState::Assigned {
                        "offer_closed"
                    } else {
                        "aborted_before_pickup"
                    });
                    plan.close(o, d, a, how, to, why, now);
                }
                (OrderEffect::Fail(why), Some(mut a), Some(mut o)) => {
                    a.finished_at = Some(now);
                    plan.fail_order(&mut o, why, now);
                    plan.move_driver(&mut d, to, Some(reason.unwrap_or(why)), now);
                    d.load = d.load.saturating_sub(1);
                    d.current_assignment_id = None;
                    plan.assignment(a);
                    plan.order(o);
                    plan.driver(d);
                }
                (OrderEffect::Deliver, Some(mut a), Some(mut o)) => {
                    a.finished_at = Some(now);
                    o.status = OrderStatus::Delivered;
                    plan.notices.push(Notice {
                        order_id: Some(o.id.clone()),
                        driver_id: Some(d.id.clone()),
                        ..notice("order.delivered", now)
                    });
                    plan.move_driver(&mut d, to, Some(reason.unwrap_or("delivered")), now);
                    d.load = d.load.saturating_sub(1);
                    d.total_deliveries += 1;
                    d.current_assignment_id = None;
                    plan.assignment(a);
                    plan.order(o);
                    plan.driver(d);
                }
                (OrderEffect::None, Some(_), Some(o)) if to == DriverState::Delivering => {
                    plan.notices.push(Notice {
                        order_id: Some(o.id.clone()),
                        driver_id: Some(d.id.clone()),
                        hub_id: Some(o.hub_id.clone()),
                        ..notice("order.picked_up", now)
                    });
                    plan.move_driver(&mut d, to, reason, now);
                    plan.driver(d);
                }
                // No order to act on (or no effect): the driver alone moves.
                _ => {
                    plan.move_driver(&mut d, to, reason, now);
                    plan.driver(d);
                }
            }
            plan.done(done)
        })
    }

    /// Loads a live offer for `driver_id`, closing it as TIMEOUT first if it is past due.
    async fn open_offer(
        &self,
        assignment_id: &str,
        driver_id: &str,
        now: i64,
    ) -> Result<(Assignment, Driver, Order), DispatchError> {
        let a = self.need_assignment(assignment_id).await?;
        let d = self.need_driver(driver_id).await?;
        if a.driver_id != d.id {
            return Err(DispatchError::DriverMismatch);
        }
        if a.status != AssignmentStatus::Pending || !a.is_live() {
            return Err(DispatchError::AssignmentNotPending(a.status));
        }
        if now >= a.expires_at {
            self.expire_offer(&a.id, now).await?;
            return Err(DispatchError::AssignmentNotPending(
                AssignmentStatus::Timeout,
            ));
        }
        let o = self.need_order(&a.order_id).await?;
        Ok((a, d, o))
    }

    /// The driver takes the offer: assignment ACCEPTED, driver TO_HUB, order DISPATCHED.
    pub async fn accept(
        &self,
        assignment_id: &str,
        driver_id: &str,
        now: i64,
    ) -> Result<Outcome<Accepted>, DispatchError> {
        retrying!(self, {
            let (mut a, mut d, mut o) = self.open_offer(assignment_id, driver_id, now).await?;
            check_transition(d.status, DriverState::ToHub, Via::Accept)?;
            let mut plan = Plan::default();
            a.status = AssignmentStatus::Accepted;
            a.accepted_at = Some(now);
            plan.move_driver(&mut d, DriverState::ToHub, Some("accepted"), now);
            o.status = OrderStatus::Dispatched;
            plan.notices.push(Notice {
                assignment_id: Some(a.id.clone()),
                order_id: Some(o.id.clone()),
                driver_id: Some(d.id.clone()),
                hub_id: Some(o.hub_id.clone()),
                ..notice("assignment.accepted", now)
            });
            let value = Accepted {
                assignment_id: a.id.clone(),
                order_id: o.id.clone(),
                hub_id: o.hub_id.clone(),
            };
            plan.assignment(a);
            plan.driver(d);
            plan.order(o);
            plan.done(value)
        })
    }

    /// The driver declines the offer: it closes REJECTED and the order is reassigned.
    pub async fn reject(
        &self,
        assignment_id: &str,
        driver_id: &str,
        order_id: Option<&str>,
        reason: Option<&str>,
        now: i64,
    ) -> Result<Outcome<Rejected>, DispatchError> {
        retrying!(self, {
            let (a, d, o) = self.open_offer(assignment_id, driver_id, now).await?;
            if order_id.is_some_and(|id| id != a.order_id) {
                return Err(DispatchError::Invalid(
                    "order_id does not match the assignment".into(),
                ));
            }
            check_transition(d.status, DriverState::Idle, Via::Reject)?;
            let (aid, oid) = (a.id.clone(), o.id.clone());
            let mut plan = Plan::default();
            let (order_status, reassign) = plan.close(
                o,
                d,
                a,
                AssignmentStatus::Rejected,
                DriverState::Idle,
                reason.unwrap_or("rejected"),
                now,
            );
            plan.done(Rejected {
                assignment_id: aid,
                order_id: oid,
                order_status,
                reassign,
            })
        })
    }

    /// Closes one offer as TIMEOUT if it is still pending and due; false if it was not.
    async fn expire_offer(
        &self,
        assignment_id: &str,
        now: i64,
    ) -> Result<Outcome<bool>, DispatchError> {
        retrying!(self, {
            let a = self.need_assignment(assignment_id).await?;
            if a.status != AssignmentStatus::Pending || !a.is_live() || a.expires_at > now {
                (
                    Write::default(),
                    Outcome {
                        value: false,
                        notices: vec![],
                    },
                )
            } else {
                let d = self.need_driver(&a.driver_id).await?;
                let o = self.need_order(&a.order_id).await?;
                let mut plan = Plan::default();
                plan.close(
                    o,
                    d,
                    a,
                    AssignmentStatus::Timeout,
                    DriverState::Idle,
                    "offer_timeout",
                    now,
                );
                plan.done(true)
            }
        })
    }

    /// The offer sweeper (1 s): every pending offer past `expires_at` closes as TIMEOUT.
    pub async fn expire_offers(&self, now: i64) -> Result<Outcome<usize>, DispatchError> {
        let mut out = Outcome::<usize>::default();
        for a in self.repo.due_offers(now, 500).await? {
            let r = self.expire_offer(&a.id, now).await?;
            out.add(r);
        }
        Ok(out)
    }

    /// The reassignment scheduler (250 ms): each due order is offered to its cheapest candidate
    /// not excluded, or rescheduled, or failed after its last attempt.
    pub async fn run_reassignments(
        &self,
        now: i64,
        hubs: &HubPoints,
    ) -> Result<Outcome<usize>, DispatchError> {
        let mut out = Outcome::<usize>::default();
        for due in self.repo.due_reassignments(now, 500).await? {
            let r: Outcome<bool> = retrying!(self, {
                let mut o = self.need_order(&due.id).await?;
                let mut plan = Plan::default();
                if o.status != OrderStatus::Pending || o.reassign_due_at.is_none_or(|t| t > now) {
                    plan.done(false)
                } else {
                    let best = self
                        .repo
                        .candidates()
                        .await?
                        .into_iter()
                        .filter_map(|d| pair_cost(&o, &d, hubs).map(|c| (c, d)))
                        .min_by(|(a, da), (b, db)| a.total_cmp(b).then(da.id.cmp(&db.id)));
                    match best {
                        Some((c, d)) => plan.offer(
                            self.ids.next_id(),
                            o,
                            d,
                            c,
                            None,
                            now,
                            self.policy.offer_timeout_ms,
                        )?,
                        None => {
                            plan.reschedule(&mut o, now);
                            plan.order(o);
                        }
                    }
                    plan.done(true)
                }
            })?;
            out.add(r);
        }
        Ok(out)
    }

    /// The deadline sweeper: orders still waiting for a rider (pooled, or between reassignment
    /// attempts) past their `deliver_by` fail with [`DEADLINE_PASSED`]. An order with an open
    /// offer or a rider on the way is left to finish.
    pub async fn expire_overdue(&self, now: i64) -> Result<Outcome<usize>, DispatchError> {
        let mut out = Outcome::<usize>::default();
        for due in self.repo.overdue(now, 500).await? {
            let r: Outcome<bool> = retrying!(self, {
                let mut o = self.need_order(&due.id).await?;
                let mut plan = Plan::default();
                if o.status == OrderStatus::Pending && o.deliver_by.is_some_and(|d| d <= now) {
                    plan.fail_order(&mut o, DEADLINE_PASSED, now);
                    plan.order(o);
                    plan.done(true)
                } else {
                    plan.done(false)
                }
            })?;
            out.add(r);
        }
        Ok(out)
    }

    /// The batch timer's question (06 §5): flush now? Reads the pool's size and oldest entry.
    pub async fn batch_due(&self, timer: &mut BatchTimer, now: i64) -> Result<bool, DispatchError> {
        let (pooled, oldest) = self.repo.pool_stats().await?;
        Ok(timer.due(pooled, oldest, now))
    }

    /// One flush, then the timer re-arms for what the flush left in the pool.
    pub async fn flush_and_rearm(
        &self,
        timer: &mut BatchTimer,
        now: i64,
        hubs: &HubPoints,
    ) -> Result<Outcome<BatchReport>, DispatchError> {
        let out = self.flush_batch(now, hubs).await?;
        let left = self.repo.pool_stats().await?.0;
        timer.flushed(left, now);
        Ok(out)
    }

    /// How many orders wait in the pool, and since when the oldest.
    pub async fn pool_stats(&self) -> Result<(usize, Option<i64>), DispatchError> {
        Ok(self.repo.pool_stats().await?)
    }

    /// The hubs of the orders a flush or a reassignment pass would look at.
    pub async fn hubs_in_play(&self, now: i64) -> Result<Vec<String>, DispatchError> {
        let mut hubs: Vec<String> = self
            .repo
            .pool(self.policy.max_batch)
            .await?
            .into_iter()
            .chain(self.repo.due_reassignments(now, 500).await?)
            .filter(|o| o.pickup_location.is_none())
            .map(|o| o.hub_id)
            .collect();
        hubs.sort();
        hubs.dedup();
        Ok(hubs)
    }

    /// One batch (06 §5): the oldest ≤ `max_batch` pooled orders against every candidate,
    /// matched by the configured matcher; unmatched orders stay pooled, every candidate left
    /// without an order gains one `skipped_count`.
    pub async fn flush_batch(
        &self,
        now: i64,
        hubs: &HubPoints,
    ) -> Result<Outcome<BatchReport>, DispatchError> {
        retrying!(self, {
            let orders = self.repo.pool(self.policy.max_batch).await?;
            let drivers = self.repo.candidates().await?;
            let mut plan = Plan::default();
            let mut report = BatchReport {
                orders: orders.len(),
                drivers: drivers.len(),
                ..BatchReport::default()
            };
            if !orders.is_empty() && !drivers.is_empty() {
                let costs: CostMatrix = orders
                    .iter()
                    .map(|o| drivers.iter().map(|d| pair_cost(o, d, hubs)).collect())
                    .collect();
                let (g, opt) = (greedy(&costs), optimal(&costs));
                report.greedy = (g.len(), total(&g));
                report.optimal = (opt.len(), total(&opt));
                let chosen = match self.policy.matcher {
                    Matcher::Greedy => g,
                    Matcher::Optimal => opt,
                };
                report.matched = chosen.len();
                let batch_id = self.ids.next_id();
                let mut picked = vec![false; drivers.len()];
                for m in &chosen {
                    picked[m.driver] = true;
                    plan.offer(
                        self.ids.next_id(),
                        orders[m.order].clone(),
                        drivers[m.driver].clone(),
                        m.cost,
                        Some(&batch_id),
                        now,
                        self.policy.offer_timeout_ms,
                    )?;
                }
                for (d, _) in drivers.iter().zip(&picked).filter(|(_, p)| !**p) {
                    let mut d = d.clone();
                    d.skipped_count += 1;
                    plan.driver(d);
                }
            }
            plan.done(report)
        })
    }
}
