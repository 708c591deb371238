//! The conformance suite every [`DispatchRepo`] adapter passes, through the [`Dispatcher`]
//! (memory in unit tests, Postgres in `core/dispatch/tests`). Each check gets a fresh, empty
//! repository from `make`, since batches look at the whole pool.

use std::future::Future;

use qc_geo::Point;

use crate::dispatcher::{DispatchError, DispatchPolicy, Dispatcher, HubPoints};
use crate::model::*;
use crate::repo::{DispatchRepo, RepoError, Row, Write};
use crate::state::DriverState;
use crate::Matcher;

const T0: i64 = 1_764_000_000_000;

fn hub() -> Point {
    Point::new(-6.2, 106.8).unwrap()
}

fn order(id: &str, priority: u8) -> NewOrder {
    NewOrder {
        id: id.into(),
        customer_id: "c1".into(),
        hub_id: "hub-1".into(),
        items: vec![Item {
            product_id: "sku-1".into(),
            name: String::new(),
            quantity: 2,
        }],
        total: 25_000,
        priority,
        delivery_location: hub().offset_km(1.0, 1.0),
        pickup_location: None,
        deliver_by: None,
    }
}

fn hubs() -> HubPoints {
    HubPoints::from([("hub-1".to_string(), hub())])
}

async fn idle_driver<R: DispatchRepo>(d: &Dispatcher<R>, id: &str, km_from_hub: f64) {
    d.register_driver(
        NewDriver {
            id: id.into(),
            name: id.into(),
            location: Some(hub().offset_km(km_from_hub, 0.0)),
            max_load: 1,
        },
        T0,
    )
    .await
    .unwrap();
    d.driver_state(id, DriverState::Idle, None, T0)
        .await
        .unwrap();
}

fn dispatcher<R: DispatchRepo>(repo: R) -> Dispatcher<R> {
    Dispatcher::new(
        repo,
        DispatchPolicy {
            offer_timeout_ms: 30_000,
            max_batch: 50,
            matcher: Matcher::Greedy,
            deadline_ms: DEADLINE_MS,
        },
    )
}

/// Orders' delivery deadline in the suite.
const DEADLINE_MS: i64 = 3_600_000;

/// Runs every check, each on a fresh repository; panics on the first failure.
pub async fn run_all<R, F, Fut>(make: F)
where
    R: DispatchRepo,
    F: Fn() -> Fut,
    Fut: Future<Output = R>,
{
    registration_and_orders_are_idempotent(dispatcher(make().await)).await;
    the_batch_offers_the_nearest_and_keeps_the_rest(dispatcher(make().await)).await;
    accept_checks_ownership_and_state(dispatcher(make().await)).await;
    rejection_reassigns_with_backoff_then_repools(dispatcher(make().await)).await;
    only_the_deadline_fails_a_waiting_order(dispatcher(make().await)).await;
    offers_time_out(dispatcher(make().await)).await;
    no_candidate_reschedules_then_fails(dispatcher(make().await)).await;
    a_trip_runs_to_delivery_and_frees_the_driver(dispatcher(make().await)).await;
    aborts_reassign_or_fail(dispatcher(make().await)).await;
    writes_are_compare_and_set(make().await).await;
    concurrent_batches_never_double_assign(dispatcher(make().await)).await;
}

async fn registration_and_orders_are_idempotent<R: DispatchRepo>(d: Dispatcher<R>) {
    let (o, created) = d.create_order(order("o1", 1), T0).await.unwrap();
    assert!(created && o.status == OrderStatus::Pending && o.pooled_at == Some(T0));
    let (again, created) = d.create_order(order("o1", 5), T0 + 5).await.unwrap();
    assert!(!created && again.priority == 1, "the stored order wins");
    idle_driver(&d, "d1", 1.0).await;
    let (drv, created) = d
        .register_driver(
            NewDriver {
                id: "d1".into(),
                name: "other".into(),
                location: None,
                max_load: 3,
            },
            T0 + 9,
        )
        .await
        .unwrap();
    assert!(!created && drv.status == DriverState::Idle && drv.max_load == 1);
    let events = d.driver_events("d1").await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(
        (events[0].from_state, events[0].to_state),
        (None, DriverState::Offline)
    );
    assert_eq!(events[1].from_state, Some(DriverState::Offline));
    assert!(matches!(
        d.driver("nobody").await,
        Err(DispatchError::NotFound {
            resource: "driver",
            ..
        })
    ));
    assert!(matches!(
        d.driver_state("d1", DriverState::Idle, None, T0).await,
        Err(DispatchError::IllegalTransition(_))
    ));
    assert!(matches!(
        d.driver_state("d1", DriverState::Assigned, None, T0).await,
        Err(DispatchError::IllegalTransition(_))
    ));
    assert_eq!(
        d.driver_events("d1").await.unwrap().len(),
        2,
        "refusals log nothing"
    );
}

async fn the_batch_offers_the_nearest_and_keeps_the_rest<R: DispatchRepo>(d: Dispatcher<R>) {
    for (id, km) in [("far", 5.0), ("near", 0.5)] {
        idle_driver(&d, id, km).await;
    }
    // A driver without a location is no candidate.
    d.register_driver(
        NewDriver {
            id: "nowhere".into(),
            name: String::new(),
            location: None,
            max_load: 1,
        },
        T0,
    )
    .await
    .unwrap();
    d.driver_state("nowhere", DriverState::Idle, None, T0)
        .await
        .unwrap();
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        d.create_order(order(id, 1), T0 + i as i64).await.unwrap();
    }
    let r = d.flush_batch(T0 + 10, &hubs()).await.unwrap();
    assert_eq!(
        (r.value.orders, r.value.drivers, r.value.matched),
        (3, 2, 2)
    );
    // Equal costs per driver: the oldest orders go first, the nearest driver to the oldest.
    let a = d.order("a").await.unwrap();
    let b = d.order("b").await.unwrap();
    assert_eq!(a.status, OrderStatus::Assigned);
    assert_eq!(a.assigned_driver_id.as_deref(), Some("near"));
    assert_eq!(b.assigned_driver_id.as_deref(), Some("far"));
    assert_eq!(a.batch_id, b.batch_id);
    let c = d.order("c").await.unwrap();
    assert!(
        c.status == OrderStatus::Pending && c.pooled_at == Some(T0 + 2),
        "c stays pooled"
    );
    let asg = d
        .assignment(a.current_assignment_id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(
        (asg.status, asg.attempt, asg.expires_at),
        (AssignmentStatus::Pending, 1, T0 + 30_010)
    );
    let near = d.driver("near").await.unwrap();
    assert_eq!(
        (near.status, near.load, near.last_assigned_at),
        (DriverState::Assigned, 1, Some(T0 + 10))
    );
    assert_eq!(d.pool_stats().await.unwrap(), (1, Some(T0 + 2)));
    assert_eq!(d.repo.hub_pool_len("hub-1").await.unwrap(), 1);
    assert_eq!(d.repo.hub_pool_len("hub-2").await.unwrap(), 0);
    assert!(
        r.notices
            .iter()
            .filter(|n| n.kind == "order.assigned")
            .count()
            == 2
    );
    // No candidates left: the next flush changes nothing; a new driver is skipped never.
    let r = d.flush_batch(T0 + 20, &hubs()).await.unwrap();
    assert_eq!(r.value.matched, 0);
    idle_driver(&d, "late", 2.0).await;
    idle_driver(&d, "later", 3.0).await;
    d.flush_batch(T0 + 30, &hubs()).await.unwrap();
    assert_eq!(
        d.order("c").await.unwrap().assigned_driver_id.as_deref(),
        Some("late")
    );
    assert_eq!(
        d.driver("later").await.unwrap().skipped_count,
        1,
        "unpicked candidates are skipped once"
    );
}

async fn offered<R: DispatchRepo>(d: &Dispatcher<R>, order_id: &str) -> Assignment {
    let o = d.order(order_id).await.unwrap();
    d.assignment(o.current_assignment_id.as_deref().expect("an offer"))
        .await
        .unwrap()
}

async fn accept_checks_ownership_and_state<R: DispatchRepo>(d: Dispatcher<R>) {
    idle_driver(&d, "d1", 1.0).await;
    idle_driver(&d, "d2", 9.0).await;
    d.create_order(order("o1", 1), T0).await.unwrap();
    d.flush_batch(T0, &hubs()).await.unwrap();
    let a = offered(&d, "o1").await;
    assert_eq!(a.driver_id, "d1");
    assert_eq!(
        d.accept(&a.id, "d2", T0 + 1).await.unwrap_err(),
        DispatchError::DriverMismatch
    );
    assert!(matches!(
        d.accept("no-such", "d1", T0 + 1).await,
        Err(DispatchError::NotFound {
            resource: "assignment",
            ..
        })
    ));
    assert!(matches!(
        d.accept(&a.id, "ghost", T0 + 1).await,
        Err(DispatchError::NotFound {
            resource: "driver",
            ..
        })
    ));
    let ok = d.accept(&a.id, "d1", T0 + 2).await.unwrap();
    assert_eq!(
        (ok.value.order_id.as_str(), ok.value.hub_id.as_str()),
        ("o1", "hub-1")
    );
    assert!(ok.notices.iter().any(|n| n.kind == "assignment.accepted"));
    assert_eq!(d.order("o1").await.unwrap().status, OrderStatus::Dispatched);
    assert_eq!(d.driver("d1").await.unwrap().status, DriverState::ToHub);
    let a = d.assignment(&a.id).await.unwrap();
    assert_eq!(
        (a.status, a.accepted_at),
        (AssignmentStatus::Accepted, Some(T0 + 2))
    );
    assert_eq!(
        d.accept(&a.id, "d1", T0 + 3).await.unwrap_err(),
        DispatchError::AssignmentNotPending(AssignmentStatus::Accepted)
    );
    assert_eq!(
        d.reject(&a.id, "d1", None, None, T0 + 3).await.unwrap_err(),
        DispatchError::AssignmentNotPending(AssignmentStatus::Accepted)
    );
}

async fn rejection_reassigns_with_backoff_then_repools<R: DispatchRepo>(d: Dispatcher<R>) {
    for (i, id) in ["d1", "d2", "d3", "d4", "d5"].iter().enumerate() {
        idle_driver(&d, id, 1.0 + i as f64).await;
    }
    d.create_order(order("o1", 1), T0).await.unwrap();
    d.flush_batch(T0, &hubs()).await.unwrap();
    let mut now = T0;
    for (k, (driver, delay)) in [("d1", 1000), ("d2", 2000), ("d3", 4000)]
        .into_iter()
        .enumerate()
    {
        let a = offered(&d, "o1").await;
        assert_eq!((a.driver_id.as_str(), a.attempt), (driver, k as u32 + 1));
        let wrong_order = d.reject(&a.id, driver, Some("other"), None, now).await;
        assert!(matches!(wrong_order, Err(DispatchError::Invalid(_))));
        let r = d
            .reject(&a.id, driver, Some("o1"), None, now)
            .await
            .unwrap()
            .value;
        assert_eq!(r.order_status, OrderStatus::Pending);
        assert_eq!(r.reassign, Some((k as u32 + 1, delay)));
        let drv = d.driver(driver).await.unwrap();
        assert_eq!((drv.status, drv.load), (DriverState::Idle, 0));
        // Not before it is due.
        assert_eq!(
            d.run_reassignments(now + delay - 1, &hubs())
                .await
                .unwrap()
                .value,
            0
        );
        now += delay;
        assert_eq!(d.run_reassignments(now, &hubs()).await.unwrap().value, 1);
    }
    let a = offered(&d, "o1").await;
    assert_eq!(
        (a.driver_id.as_str(), a.attempt),
        ("d4", 4),
        "rejecting drivers are excluded"
    );
    let r = d
        .reject(&a.id, "d4", None, Some("too far"), now)
        .await
        .unwrap()
        .value;
    // Attempts spent: back to the pool, ahead of newer orders, with raised priority; only
    // the last driver stays excluded.
    assert_eq!((r.order_status, r.reassign), (OrderStatus::Pending, None));
    let o = d.order("o1").await.unwrap();
    assert_eq!(o.failure_reason, None);
    assert_eq!(o.excluded, vec!["d4"]);
    assert_eq!(
        (o.priority, o.repooled, o.reassign_count, o.reassign_due_at),
        (2, 1, 0, None)
    );
    assert_eq!(o.pooled_at, Some(o.created_at));
    assert_eq!(
        d.run_reassignments(now + 100_000, &hubs())
            .await
            .unwrap()
            .value,
        0
    );
    d.create_order(order("o2", 1), now).await.unwrap();
    assert_eq!(
        d.repo.pool(1).await.unwrap()[0].id,
        "o1",
        "a re-pooled order goes first"
    );
    let flushed = d.flush_batch(now, &hubs()).await.unwrap();
    assert_eq!(flushed.value.matched, 2, "d1 and d2 are eligible again");
    assert_ne!(offered(&d, "o1").await.driver_id, "d4");
    let ev = d.driver_events("d4").await.unwrap();
    assert_eq!(ev.last().unwrap().reason.as_deref(), Some("too far"));
}

async fn offers_time_out<R: DispatchRepo>(d: Dispatcher<R>) {
    idle_driver(&d, "d1", 1.0).await;
    idle_driver(&d, "d2", 2.0).await;
    d.create_order(order("o1", 1), T0).await.unwrap();
    d.create_order(order("o2", 1), T0).await.unwrap();
    d.flush_batch(T0, &hubs()).await.unwrap();
    let (a1, a2) = (offered(&d, "o1").await, offered(&d, "o2").await);
    assert_eq!(d.expire_offers(T0 + 29_999).await.unwrap().value, 0);
    // An accept racing the sweeper at the deadline loses: the offer closes as TIMEOUT.
    assert_eq!(
        d.accept(&a1.id, &a1.driver_id, T0 + 30_000)
            .await
            .unwrap_err(),
        DispatchError::AssignmentNotPending(AssignmentStatus::Timeout)
    );
    let swept = d.expire_offers(T0 + 30_000).await.unwrap();
    assert_eq!(swept.value, 1, "only the second offer was still open");
    assert!(swept.notices.iter().any(|n| n.kind == "assignment.timeout"));
    for a in [a1, a2] {
        assert_eq!(
            d.assignment(&a.id).await.unwrap().status,
            AssignmentStatus::Timeout
        );
        assert_eq!(
            d.driver(&a.driver_id).await.unwrap().status,
            DriverState::Idle
        );
    }
    let o = d.order("o1").await.unwrap();
    assert_eq!(
        (o.status, o.reassign_count, o.reassign_due_at),
        (OrderStatus::Pending, 1, Some(T0 + 31_000))
    );
}

async fn no_candidate_reschedules_then_fails<R: DispatchRepo>(d: Dispatcher<R>) {
    idle_driver(&d, "d1", 1.0).await;
    d.create_order(order("o1", 1), T0).await.unwrap();
    d.flush_batch(T0, &hubs()).await.unwrap();
    let a = offered(&d, "o1").await;
    d.reject(&a.id, "d1", None, None, T0).await.unwrap();
    // Only the excluded driver is idle: attempts 1, 2, 3 find nobody (1 s, 2 s, 4 s), then the
    // order waits in the pool again rather than failing.
    let mut now = T0;
    for delay in [1000, 2000, 4000] {
        now += delay;
        assert_eq!(d.run_reassignments(now, &hubs()).await.unwrap().value, 1);
    }
    let o = d.order("o1").await.unwrap();
    assert_eq!((o.status, o.repooled), (OrderStatus::Pending, 1));
    assert_eq!(d.repo.pool_stats().await.unwrap().0, 1);
    assert_eq!(d.driver("d1").await.unwrap().status, DriverState::Idle);
}

async fn only_the_deadline_fails_a_waiting_order<R: DispatchRepo>(d: Dispatcher<R>) {
    d.create_order(order("o1", 1), T0).await.unwrap();
    let mut own = order("o2", 1);
    own.deliver_by = Some(T0 + 60_000);
    d.create_order(own, T0).await.unwrap();
    assert_eq!(
        d.order("o1").await.unwrap().deliver_by,
        Some(T0 + DEADLINE_MS)
    );
    // An offered order is left alone by the sweeper; a pooled one fails at its deadline.
    idle_driver(&d, "d1", 1.0).await;
    d.flush_batch(T0, &hubs()).await.unwrap();
    assert_eq!(offered(&d, "o1").await.driver_id, "d1");
    assert_eq!(d.expire_overdue(T0 + 59_999).await.unwrap().value, 0);
    let out = d.expire_overdue(T0 + 60_000).await.unwrap();
    assert_eq!(out.value, 1);
    assert!(out
        .notices
        .iter()
        .any(|n| n.kind == "order.failed" && n.reason.as_deref() == Some("DEADLINE_PASSED")));
    let o2 = d.order("o2").await.unwrap();
    assert_eq!(
        (o2.status, o2.failure_reason.as_deref()),
        (OrderStatus::Failed, Some("DEADLINE_PASSED"))
    );
    assert_eq!(d.repo.pool_stats().await.unwrap().0, 0);
    // Past its deadline, an offer that closes fails the order instead of rescheduling it.
    let late = T0 + DEADLINE_MS;
    assert_eq!(
        d.expire_overdue(late).await.unwrap().value,
        0,
        "an offered order is not the sweeper's"
    );
    assert_eq!(d.expire_offers(late).await.unwrap().value, 1);
    assert_eq!(
        d.order("o1").await.unwrap().failure_reason.as_deref(),
        Some("DEADLINE_PASSED")
    );
}

async fn a_trip_runs_to_delivery_and_frees_the_driver<R: DispatchRepo>(d: Dispatcher<R>) {
    idle_driver(&d, "d1", 1.0).await;
    for (n, id) in ["o1", "o2"].iter().enumerate() {
        d.create_order(order(id, 1), T0 + n as i64).await.unwrap();
    }
    d.flush_batch(T0, &hubs()).await.unwrap();
    let a = offered(&d, "o1").await;
    d.accept(&a.id, "d1", T0 + 1).await.unwrap();
    for to in [DriverState::Picking, DriverState::Delivering] {
        d.driver_state("d1", to, None, T0 + 2).await.unwrap();
    }
    let done = d
        .driver_state("d1", DriverState::Completed, None, T0 + 3)
        .await
        .unwrap();
    assert!(done.notices.iter().any(|n| n.kind == "order.delivered"));
    assert_eq!(d.order("o1").await.unwrap().status, OrderStatus::Delivered);
    let drv = d.driver("d1").await.unwrap();
    assert_eq!(
        (drv.load, drv.total_deliveries, drv.current_assignment_id),
        (0, 1, None)
    );
    d.driver_state("d1", DriverState::Idle, None, T0 + 4)
        .await
        .unwrap();
    // The delivered order's assignment no longer holds the driver.
    d.flush_batch(T0 + 5, &hubs()).await.unwrap();
    assert_eq!(offered(&d, "o2").await.driver_id, "d1");
    let log: Vec<DriverState> = d
        .driver_events("d1")
        .await
        .unwrap()
        .iter()
        .map(|e| e.to_state)
        .collect();
    use DriverState::*;
    assert_eq!(
        log,
        [Offline, Idle, Assigned, ToHub, Picking, Delivering, Completed, Idle, Assigned]
    );
}

async fn held<R: DispatchRepo>(d: &Dispatcher<R>, driver: &str) -> Assignment {
    let drv = d.driver(driver).await.unwrap();
    d.assignment(drv.current_assignment_id.as_deref().unwrap())
        .await
        .unwrap()
}

async fn aborts_reassign_or_fail<R: DispatchRepo>(d: Dispatcher<R>) {
    idle_driver(&d, "d1", 1.0).await;
    idle_driver(&d, "d2", 2.0).await;
    idle_driver(&d, "d3", 3.0).await;
    for id in ["o1", "o2", "o3"] {
        d.create_order(order(id, 1), T0).await.unwrap();
    }
    d.flush_batch(T0, &hubs()).await.unwrap();
    let (a1, a2, a3) = (
        held(&d, "d1").await,
        held(&d, "d2").await,
        held(&d, "d3").await,
    );
    // ASSIGNED → OFFLINE cancels the offer and reassigns.
    d.driver_state("d1", DriverState::Offline, None, T0 + 1)
        .await
        .unwrap();
    assert_eq!(
        d.assignment(&a1.id).await.unwrap().status,
        AssignmentStatus::Cancelled
    );
    let o = d.order(&a1.order_id).await.unwrap();
    assert_eq!(
        (o.status, o.excluded.clone()),
        (OrderStatus::Pending, vec!["d1".to_string()])
    );
    // TO_HUB → IDLE: reassigned, driver excluded.
    d.accept(&a2.id, "d2", T0 + 1).await.unwrap();
    d.driver_state("d2", DriverState::Idle, Some("flat tyre"), T0 + 2)
        .await
        .unwrap();
    let o = d.order(&a2.order_id).await.unwrap();
    assert_eq!((o.status, o.reassign_count), (OrderStatus::Pending, 1));
    assert!(o.excluded.contains(&"d2".to_string()));
    // PICKING → IDLE after pickup: the order fails.
    d.accept(&a3.id, "d3", T0 + 1).await.unwrap();
    d.driver_state("d3", DriverState::Picking, None, T0 + 2)
        .await
        .unwrap();
    d.driver_state("d3", DriverState::Idle, None, T0 + 3)
        .await
        .unwrap();
    let o = d.order(&a3.order_id).await.unwrap();
    assert_eq!(
        (o.status, o.failure_reason.as_deref()),
        (OrderStatus::Failed, Some("DRIVER_ABORTED"))
    );
    assert_eq!(d.driver("d3").await.unwrap().load, 0);
}

async fn writes_are_compare_and_set<R: DispatchRepo>(repo: R) {
    let d = dispatcher(repo);
    idle_driver(&d, "d1", 1.0).await;
    idle_driver(&d, "d2", 2.0).await;
    d.create_order(order("o1", 1), T0).await.unwrap();
    d.create_order(order("o2", 1), T0).await.unwrap();
    let repo = &d.repo;
    let stale = repo.driver("d1").await.unwrap().unwrap();
    let mut fresh = stale.clone();
    fresh.version += 1;
    fresh.skipped_count = 7;
    repo.commit(&Write {
        drivers: vec![Row::Update(fresh)],
        ..Write::default()
    })
    .await
    .unwrap();
    let mut late = stale.clone();
    late.version += 1;
    let lost = repo
        .commit(&Write {
            drivers: vec![Row::Update(late)],
            ..Write::default()
        })
        .await;
    assert!(matches!(lost, Err(RepoError::Conflict(_))), "{lost:?}");
    assert_eq!(
        repo.driver("d1").await.unwrap().unwrap().skipped_count,
        7,
        "no lost update"
    );
    let dup = repo
        .commit(&Write {
            drivers: vec![Row::Insert(stale)],
            ..Write::default()
        })
        .await;
    assert!(matches!(dup, Err(RepoError::Conflict(_))));
    // A second live assignment for one order is refused, and the whole write with it.
    let live = |id: &str, order: &str, driver: &str| Assignment {
        id: id.into(),
        order_id: order.into(),
        driver_id: driver.into(),
        status: AssignmentStatus::Pending,
        score: 0.0,
        attempt: 1,
        created_at: T0,
        expires_at: T0 + 1,
        accepted_at: None,
        rejected_at: None,
        finished_at: None,
        version: 1,
    };
    repo.commit(&Write {
        assignments: vec![Row::Insert(live("x1", "o1", "d1"))],
        ..Write::default()
    })
    .await
    .unwrap();
    for clash in [live("x2", "o1", "d2"), live("x3", "o2", "d1")] {
        let mut bump = repo.driver("d2").await.unwrap().unwrap();
        bump.version += 1;
        let w = Write {
            drivers: vec![Row::Update(bump)],
            assignments: vec![Row::Insert(clash)],
            ..Write::default()
        };
        assert!(matches!(repo.commit(&w).await, Err(RepoError::Conflict(_))));
    }
    let d2 = repo.driver("d2").await.unwrap().unwrap();
    assert_eq!(d2.version, 2, "a refused write changes nothing");
    assert!(repo.assignment("x2").await.unwrap().is_none());
}

async fn concurrent_batches_never_double_assign<R: DispatchRepo>(d: Dispatcher<R>) {
    for i in 0..12 {
        idle_driver(&d, &format!("d{i:02}"), 0.5 + i as f64 * 0.3).await;
    }
    for i in 0..20 {
        d.create_order(order(&format!("o{i:02}"), 1 + (i % 9) as u8), T0 + i)
            .await
            .unwrap();
    }
    let hubs = hubs();
    let flushes = (0..6).map(|k| d.flush_batch(T0 + 100 + k, &hubs));
    let results = futures::future::join_all(flushes).await;
    let matched: usize = results
        .iter()
        .map(|r| match r {
            Ok(o) => o.value.matched,
            Err(DispatchError::Busy) => 0,
            Err(e) => panic!("{e}"),
        })
        .sum();
    assert_eq!(
        matched, 12,
        "every driver offered exactly once across racing batches"
    );
    let mut drivers_seen = std::collections::BTreeSet::new();
    for i in 0..20 {
        let o = d.order(&format!("o{i:02}")).await.unwrap();
        if let Some(drv) = o.assigned_driver_id {
            assert!(drivers_seen.insert(drv.clone()), "{drv} holds two orders");
            let dr = d.driver(&drv).await.unwrap();
            assert_eq!(dr.current_assignment_id, o.current_assignment_id);
            assert_eq!(dr.load, 1);
        } else {
            assert_eq!(o.status, OrderStatus::Pending);
        }
    }
    assert_eq!(drivers_seen.len(), 12);
    assert_eq!(d.pool_stats().await.unwrap().0, 8);
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_repo_conforms() {
        super::run_all(|| async { crate::MemoryRepo::new() }).await;
    }
}
