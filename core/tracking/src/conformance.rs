//! The conformance suite every [`TrackingStore`] adapter passes (memory in unit tests, Redis in
//! `core/tracking/tests`), through the [`Tracker`]. Each check gets a fresh store.

use std::future::Future;

use crate::kalman::KfParams;
use crate::model::{Fix, OrderStatus, PositionEvent, Reject};
use crate::store::{StatusChange, TrackingStore, TRAIL_MAX};
use crate::tracker::{IngestError, StatusError, Tracker};
use crate::validate::Limits;

const T0: i64 = 1_800_000_000_000;

fn event(order: &str, i: i64) -> PositionEvent {
    PositionEvent {
        kind: "position".into(),
        seq: 0,
        order_id: order.into(),
        driver_id: "d1".into(),
        lat: -6.2 + i as f64 * 1e-5,
        lng: 106.8,
        speed: 5.0,
        bearing: 90.0,
        accuracy: 10.0,
        raw_lat: -6.2,
        raw_lng: 106.8,
        timestamp: "2027-01-15T08:00:00.000Z".into(),
        received_at: "2027-01-15T08:00:00.000Z".into(),
    }
}

fn fix(i: i64) -> Fix {
    Fix {
        lat: -6.2 + (i as f64 * 40.0) / 111_195.0,
        lng: 106.8,
        accuracy: 8.0,
        timestamp_ms: T0 + i * 5_000,
        speed: None,
        bearing: None,
    }
}

pub async fn run_all<S, F, Fut>(make: F)
where
    S: TrackingStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    seq_is_strictly_increasing_across_positions_and_statuses(make().await).await;
    the_trail_keeps_the_newest_500(make().await).await;
    history_pages_by_seq(make().await).await;
    a_terminal_status_closes_the_order(make().await).await;
    rejected_fixes_store_nothing(make().await).await;
    events_round_trip_unchanged(make().await).await;
}

async fn seq_is_strictly_increasing_across_positions_and_statuses(s: impl TrackingStore) {
    let mut last = 0;
    for i in 0..5 {
        let e = s.append_position(event("o1", i)).await.unwrap().unwrap();
        assert!(e.seq > last, "{} after {last}", e.seq);
        last = e.seq;
        if i == 2 {
            let StatusChange::Done(st) = s
                .set_status("o1", OrderStatus::InTransit, Some("d1"), "t")
                .await
                .unwrap()
            else {
                panic!("an open order takes a status")
            };
            assert!(st.seq > last);
            last = st.seq;
        }
    }
    // Another order has its own counter.
    assert_eq!(
        s.append_position(event("o2", 0))
            .await
            .unwrap()
            .unwrap()
            .seq,
        1
    );
    assert_eq!(s.position("o1").await.unwrap().unwrap().seq, last);
    assert_eq!(s.position("nope").await.unwrap(), None);
}

async fn the_trail_keeps_the_newest_500(s: impl TrackingStore) {
    for i in 0..(TRAIL_MAX as i64 + 10) {
        s.append_position(event("o1", i)).await.unwrap();
    }
    let h = s.history("o1", 0, 500).await.unwrap();
    assert_eq!(h.len(), TRAIL_MAX);
    assert_eq!(
        (h[0].seq, h[TRAIL_MAX - 1].seq),
        (11, TRAIL_MAX as i64 + 10)
    );
}

async fn history_pages_by_seq(s: impl TrackingStore) {
    for i in 0..10 {
        s.append_position(event("o1", i)).await.unwrap();
    }
    let page: Vec<i64> = s
        .history("o1", 4, 3)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(page, vec![5, 6, 7]);
    assert!(s.history("o1", 10, 500).await.unwrap().is_empty());
    assert!(s.history("unknown", 0, 500).await.unwrap().is_empty());
}

async fn a_terminal_status_closes_the_order(s: impl TrackingStore) {
    let t = Tracker::new(s, Limits::default(), KfParams::default());
    t.set_status("o1", OrderStatus::DriverAssigned, Some("d1"), T0)
        .await
        .unwrap();
    let done = t
        .set_status("o1", OrderStatus::Delivered, Some("d1"), T0)
        .await
        .unwrap();
    assert_eq!((done.seq, done.status), (2, OrderStatus::Delivered));
    match t.set_status("o1", OrderStatus::Cancelled, None, T0).await {
        Err(StatusError::Closed(e)) => assert_eq!((e.seq, e.status), (2, OrderStatus::Delivered)),
        other => panic!("{other:?}"),
    }
    let r = t.ingest("d1", "o1", &fix(0), T0).await;
    assert!(
        matches!(r, Err(IngestError::Rejected(Reject::OrderClosed))),
        "{r:?}"
    );
    assert_eq!(t.position("o1").await.unwrap(), None);
}

async fn rejected_fixes_store_nothing(s: impl TrackingStore) {
    let t = Tracker::new(s, Limits::default(), KfParams::default());
    for i in 0..3 {
        t.ingest("d1", "o1", &fix(i), T0 + i * 5_000).await.unwrap();
    }
    let before = t.history("o1", 0, 500).await.unwrap();
    let mut bad = fix(3);
    bad.lat = f64::NAN;
    let mut far = fix(3);
    far.lat += 2_000.0 / 111_195.0;
    for (f, reason) in [
        (bad, Reject::OutOfBounds),
        (fix(2), Reject::OutOfOrder),
        (far, Reject::Jump),
    ] {
        let r = t.ingest("d1", "o1", &f, T0 + 15_000).await;
        assert!(
            matches!(r, Err(IngestError::Rejected(x)) if x == reason),
            "{r:?}"
        );
    }
    assert_eq!(t.history("o1", 0, 500).await.unwrap(), before);
    assert_eq!(t.position("o1").await.unwrap().unwrap().seq, 3);
}

async fn events_round_trip_unchanged(s: impl TrackingStore) {
    let sent = s.append_position(event("o1", 7)).await.unwrap().unwrap();
    assert_eq!(s.position("o1").await.unwrap(), Some(sent.clone()));
    assert_eq!(s.history("o1", 0, 1).await.unwrap(), vec![sent]);
    let StatusChange::Done(st) = s
        .set_status(
            "o1",
            OrderStatus::Preparing,
            None,
            "2027-01-15T08:00:00.000Z",
        )
        .await
        .unwrap()
    else {
        panic!("open order")
    };
    assert_eq!(s.status("o1").await.unwrap(), Some(st));
}

#[cfg(test)]
mod tests {
    use crate::store::MemoryTrackingStore;

    #[test]
    fn memory_store_conforms() {
        futures::executor::block_on(super::run_all(|| async { MemoryTrackingStore::new() }));
    }
}
