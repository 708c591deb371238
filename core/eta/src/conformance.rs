//! The conformance suite every [`EtaStore`] adapter passes (memory in unit tests, Redis in
//! `core/eta/tests`), through the engine's operations. Each check gets a fresh store.

use std::future::Future;

use crate::calibrate::{MIN_SCORES, WINDOW};
use crate::engine::{self, LatestError, Model, ObserveInput};
use crate::kalman;
use crate::model::{CalculateInput, EtaRequest};
use crate::store::{EtaStore, StickyPut};

const T0: i64 = 1_800_000_000_000;

fn request(order: &str, items: i64, queue: i64) -> EtaRequest {
    CalculateInput::placed(
        order,
        "h1",
        items,
        (-6.2, 106.816666),
        (-6.25, 106.85),
        queue,
        5,
    )
    .validate()
    .unwrap()
}

pub async fn run_all<S, F, Fut>(make: F)
where
    S: EtaStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    the_filter_matches_the_pure_one(make().await).await;
    sticky_entries_live_for_30_seconds(make().await).await;
    calculate_is_sticky_per_fingerprint(make().await).await;
    score_windows_keep_the_newest(make().await).await;
    observations_learn_and_calibrate(make().await).await;
    revisions_keep_the_promise_within_its_tolerance(make().await).await;
    impossible_observations_move_no_promise(make().await).await;
}

fn at_stage(mut r: EtaRequest, stage: crate::model::Stage) -> EtaRequest {
    r.stage = stage;
    r
}

async fn revisions_keep_the_promise_within_its_tolerance<S: EtaStore>(s: S) {
    use crate::model::Stage;
    let promise = engine::calculate(&s, &request("o5", 5, 3), T0, 2, Model::FULL).await;
    assert_eq!((promise.stage.as_str(), promise.revised), ("placed", false));
    // Picked and taken by a rider on time: travel is what is left, the arrival is where it
    // was promised, so the shown answer stays the promise.
    let picked = Stage::Assigned { picked: true };
    let on_time = T0 + ((promise.eta_p50_s - promise.components.travel_time_s) * 1000.0) as i64;
    let kept = engine::calculate(
        &s,
        &at_stage(request("o5", 5, 3), picked),
        on_time,
        2,
        Model::FULL,
    )
    .await;
    assert_eq!(
        (kept.computed_at, kept.eta_p50_s),
        (promise.computed_at, promise.eta_p50_s)
    );
    assert!(kept.cached && !kept.revised);
    // Twenty minutes late leaving the hub: outside the tolerance, the shown ETA moves.
    let late = on_time + 20 * 60_000;
    let moved = engine::calculate(
        &s,
        &at_stage(request("o5", 5, 3), Stage::PickedUp),
        late,
        2,
        Model::FULL,
    )
    .await;
    assert!(moved.revised && !moved.cached, "{moved:?}");
    assert_eq!(
        (moved.stage.as_str(), moved.computed_at),
        ("picked_up", late)
    );
    assert_eq!(moved.components.picking_time_s, 0.0);
    assert_eq!(moved.components.queue_wait_time_s, 0.0);
    let shown = engine::latest(&s, "o5", late + 1).await.unwrap();
    assert_eq!(shown.computed_at, late, "the revision is what GET shows");
    let kept_promise = shown.promise.expect("a revision carries the promise");
    assert_eq!(
        (kept_promise.computed_at, kept_promise.eta_p50_s),
        (promise.computed_at, promise.eta_p50_s)
    );
    // A re-estimate for an order with no promise is simply the answer.
    let fresh = engine::calculate(
        &s,
        &at_stage(request("o6", 5, 3), picked),
        T0,
        2,
        Model::FULL,
    )
    .await;
    assert!(!fresh.revised && !fresh.cached);
}

/// The black-box finding of issue #9: 40 orders of one hub observed ~0.3 s after their ETA
/// was computed used to drag every hub's promise to "~0s". Such observations are ignored, and
/// no answer goes below the trip's physical lower bound or crosses its quantiles.
async fn impossible_observations_move_no_promise<S: EtaStore>(s: S) {
    let floor = crate::model::travel_lower_bound_s(
        qc_geo::Point::new(-6.2, 106.816666).unwrap(),
        qc_geo::Point::new(-6.25, 106.85).unwrap(),
    );
    for i in 0..40 {
        let id = format!("odd-{i}");
        let r = engine::calculate(&s, &request(&id, 5, 3), T0 + i, 2, Model::FULL).await;
        let o = engine::observe(
            &s,
            ObserveInput {
                hub_id: "h1".into(),
                hub_lat: -6.2,
                hub_lng: 106.816666,
                cust_lat: -6.25,
                cust_lng: 106.85,
                actual_travel_s: 0.3,
                observed_at: Some(r.computed_at + 300),
                order_id: Some(id),
                actual_total_s: None,
                delivered_at: Some(r.computed_at + 300),
            },
            r.computed_at + 300,
            420,
        )
        .await
        .unwrap()
        .unwrap();
        assert!(!o.applied && !o.calibrated && o.ignored.is_some(), "{o:?}");
    }
    let mut fresh = request("new-hub-order", 5, 3);
    fresh.hub_id = "h-new".into();
    let r = engine::calculate(&s, &fresh, T0 + 60_000, 2, Model::FULL).await;
    assert_eq!(
        r.calibration, "prior",
        "nothing was learnt from impossible data"
    );
    assert!((r.eta_p50_s - 1012.71).abs() < 0.01, "{r:?}");
    assert!(r.eta_p50_s >= floor && r.eta_p50_s < r.eta_p80_s && r.eta_p80_s < r.eta_p95_s);
}

async fn the_filter_matches_the_pure_one<S: EtaStore>(s: S) {
    assert_eq!(s.kf_get("h1", "h1:abcdef").await.unwrap(), (None, None));
    let (mut seg, mut hub) = (None, None);
    // In order, a gap (decay), an observation from the past (Δt = 0), a clamped ratio; a
    // second segment of the same hub starts from the hub's level.
    for (cell, t, ratio) in [
        ("abcdef", T0, 1.4),
        ("abcdef", T0 + 60_000, 1.6),
        ("abcdef", T0 + 5_400_000, 0.9),
        ("abcdef", T0 + 60_000, 2.0),
        ("abcdef", T0 + 5_400_001, 40.0),
        ("zzzzzz", T0 + 5_400_002, 1.2),
    ] {
        let segment = format!("h1:{cell}");
        let (stored, stored_hub) = s.kf_update("h1", &segment, t + 5, t, ratio).await.unwrap();
        let before = if cell == "abcdef" { seg } else { None };
        let (expect, expect_hub) = kalman::update_two_level(before, hub, t, ratio);
        for (a, b) in [(stored, expect), (stored_hub, expect_hub)] {
            assert!(
                (a.x - b.x).abs() < 1e-12 && (a.p - b.p).abs() < 1e-12,
                "{a:?} vs {b:?}"
            );
            assert_eq!((a.t_ms, a.n), (b.t_ms, b.n));
        }
        if cell == "abcdef" {
            seg = Some(expect);
        }
        hub = Some(expect_hub);
    }
    let (a, h) = s.kf_get("h1", "h1:abcdef").await.unwrap();
    assert_eq!(a.map(|k| (k.t_ms, k.n)), Some((T0 + 5_400_001, 5)));
    assert_eq!(h.map(|k| k.n), Some(6));
    assert_eq!(s.kf_get("h2", "h2:abcdef").await.unwrap(), (None, None));
}

async fn sticky_entries_live_for_30_seconds<S: EtaStore>(s: S) {
    assert_eq!(
        s.sticky_put("o1", T0, "fp-a", "A").await.unwrap(),
        StickyPut::Stored
    );
    assert_eq!(
        s.sticky_put("o1", T0 + 29_999, "fp-a", "B").await.unwrap(),
        StickyPut::Existing("A".into())
    );
    assert_eq!(
        s.sticky_put("o1", T0 + 1, "fp-b", "C").await.unwrap(),
        StickyPut::Stored,
        "another fingerprint replaces"
    );
    assert_eq!(
        s.sticky_put("o1", T0 + 30_001, "fp-b", "D").await.unwrap(),
        StickyPut::Stored,
        "not live at expires_at"
    );
    let e = s.sticky_get("o1").await.unwrap().unwrap();
    assert_eq!(
        (e.fp.as_str(), e.expires_at_ms, e.body.as_str()),
        ("fp-b", T0 + 60_001, "D")
    );
    assert_eq!(s.sticky_get("o2").await.unwrap(), None);
}

async fn calculate_is_sticky_per_fingerprint<S: EtaStore>(s: S) {
    let m = Model::FULL;
    let first = engine::calculate(&s, &request("o1", 5, 3), T0, 2, m).await;
    assert!(!first.cached);
    assert_eq!(
        (first.eta_p50_s, first.eta_p80_s, first.eta_p95_s),
        (1012.71, 1256.42, 1489.03)
    );
    assert_eq!(first.formatted_eta, "~16m 52s");
    // Queue and drivers change: still the same answer, cached.
    let again = engine::calculate(&s, &request("o1", 5, 40), T0 + 29_999, 2, m).await;
    assert!(again.cached);
    assert_eq!((again.computed_at, again.eta_p50_s), (T0, first.eta_p50_s));
    // At expires_at it is recomputed, with the new queue.
    let later = engine::calculate(&s, &request("o1", 5, 40), T0 + 30_000, 2, m).await;
    assert!(!later.cached && later.computed_at == T0 + 30_000);
    assert!(later.components.queue_wait_time_s > first.components.queue_wait_time_s);
    // Another basket breaks stickiness at once.
    let basket = engine::calculate(&s, &request("o1", 9, 40), T0 + 30_001, 2, m).await;
    assert!(!basket.cached && basket.eta_p50_s > later.eta_p50_s);
    let got = engine::latest(&s, "o1", T0 + 30_001 + 7_200_000)
        .await
        .unwrap();
    assert!(
        got.cached && got.computed_at == T0 + 30_001,
        "GET serves the latest"
    );
    assert_eq!(
        engine::latest(&s, "o1", T0 + 30_002 + 7_200_000).await,
        Err(LatestError::NotFound)
    );
    assert_eq!(
        engine::latest(&s, "nope", T0).await,
        Err(LatestError::NotFound)
    );
}

async fn score_windows_keep_the_newest<S: EtaStore>(s: S) {
    for i in 0..(WINDOW + 10) {
        s.scores_push("h1", 3, i as f64).await.unwrap();
    }
    s.scores_push("h2", 3, -1.0).await.unwrap();
    let w = s.scores("h1", 3).await.unwrap();
    let (band, hub, all) = (w.band, w.hub, w.all);
    assert_eq!(w.levels, crate::calibrate::LEVELS);
    assert_eq!(band.len(), WINDOW);
    assert_eq!(
        (band[0], band[WINDOW - 1]),
        ((WINDOW + 9) as f64, 10.0),
        "newest first"
    );
    assert_eq!(hub, band);
    assert_eq!((all.len(), all[0]), (WINDOW, -1.0));
    let w = s.scores("h1", 4).await.unwrap();
    assert!(w.band.is_empty() && w.hub.len() == WINDOW);
    // Adaptive levels move by γ·(miss − (1 − stated)) per delivery, per hub, clamped.
    let l = s.adapt_levels("h1", [true, false, true]).await.unwrap();
    assert_eq!(
        l,
        crate::calibrate::adapt(crate::calibrate::LEVELS, [true, false, true])
    );
    for _ in 0..200 {
        s.adapt_levels("h1", [true, true, true]).await.unwrap();
    }
    let w = s.scores("h1", 4).await.unwrap();
    assert_eq!(
        w.levels,
        [
            0.5,
            crate::calibrate::ACI_BOUNDS.1,
            crate::calibrate::ACI_BOUNDS.1
        ]
    );
    assert_eq!(
        s.scores("h2", 4).await.unwrap().levels,
        crate::calibrate::LEVELS
    );
}

async fn observations_learn_and_calibrate<S: EtaStore>(s: S) {
    let obs = |travel: f64, at: i64, total: Option<f64>| ObserveInput {
        hub_id: "h1".into(),
        hub_lat: -6.2,
        hub_lng: 106.816666,
        cust_lat: -6.25,
        cust_lng: 106.85,
        actual_travel_s: travel,
        observed_at: Some(at),
        order_id: total.map(|_| "o1".to_string()),
        actual_total_s: total,
        delivered_at: None,
    };
    // Base travel is 800.7 s: 1601 s observed is a ratio of 2.
    let mut last = None;
    for i in 0..20 {
        last = Some(
            engine::observe(&s, obs(1601.4, T0 + i * 60_000, None), T0 + i * 60_000, 420)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let o = last.unwrap();
    assert!(
        o.applied && o.n == 20 && (o.multiplier - 2.0).abs() < 0.1,
        "{o:?}"
    );
    let r = engine::calculate(&s, &request("o1", 5, 3), T0 + 20 * 60_000, 2, Model::FULL).await;
    assert!((r.traffic_multiplier - 2.0).abs() < 0.1 && r.components.travel_time_s > 1500.0);
    assert_eq!(r.calibration, "prior");
    // Deliveries of o1 always take exactly its p95: after MIN_SCORES of them the stated p50
    // moves there (calibrated per hub and band).
    for _ in 0..MIN_SCORES {
        let o = engine::observe(
            &s,
            obs(1601.4, T0 + 20 * 60_000, Some(r.eta_p95_s)),
            T0 + 20 * 60_000,
            420,
        )
        .await
        .unwrap()
        .unwrap();
        assert!(o.calibrated);
    }
    let band = crate::calibrate::hour_band(engine::local_hour(r.computed_at, 420));
    let c = engine::compute(
        &s,
        &request("o9", 5, 3),
        T0 + 20 * 60_000,
        band,
        Model::FULL,
    )
    .await;
    assert_eq!(c.calibration, "hub_band");
    // Every score was the Gaussian p95's (z = 1.6449): all three offsets moved there (within
    // the bounds), and the stated quantiles stay strictly ordered.
    let at_p95 = c.raw_p50_s + crate::compose::Z95 * c.sigma_s;
    assert!(
        (c.eta_p50_s - at_p95).abs() < 0.5
            && c.eta_p80_s > c.eta_p50_s
            && c.eta_p95_s > c.eta_p80_s
            && c.eta_p95_s - at_p95 < 0.2 * c.sigma_s,
        "{c:?}"
    );
    // Too short to learn from: not applied.
    let mut near = obs(30.0, T0, None);
    (near.cust_lat, near.cust_lng) = (-6.2001, 106.816666);
    let o = engine::observe(&s, near, T0, 420).await.unwrap().unwrap();
    assert!(!o.applied && o.n == 0);
    // Bad input is refused before anything is read.
    assert!(engine::observe(&s, obs(0.0, T0, None), T0, 420)
        .await
        .is_err());
    assert!(engine::observe(&s, obs(7200.5, T0, None), T0, 420)
        .await
        .is_err());
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_store_conforms() {
        super::run_all(|| async { crate::store::MemoryEtaStore::new() }).await;
    }
}
