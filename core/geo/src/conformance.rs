//! The conformance suite every [`HubStore`] adapter passes (memory in unit tests, Redis +
//! Postgres in `core/geo/tests`). Each check gets a fresh, empty store from `make`.

use std::future::Future;

use crate::store::HubStore;
use crate::{Hub, Point, Resolution};

const T0: i64 = 1_764_000_000_000;

fn res() -> Resolution {
    Resolution::Nine
}

fn hub(id: &str, lat: f64, lng: f64) -> Hub {
    Hub {
        id: id.into(),
        name: id.into(),
        lat,
        lng,
        max_radius_km: 2.0,
        priority: 0,
        stock: 0.5,
        rider_avail: 0.5,
        active: true,
    }
}

fn cell_of(lat: f64, lng: f64) -> String {
    Point { lat, lng }.cell(res()).to_string()
}

/// Runs every check, each on a fresh store; panics on the first failure.
pub async fn run_all<S, F, Fut>(make: F)
where
    S: HubStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    bootstrap_builds_the_index_once(make().await).await;
    hubs_are_indexed_listed_and_versioned(make().await).await;
    the_cache_refuses_stale_winners(make().await).await;
    changing_a_hub_invalidates_its_cells(make().await).await;
}

async fn bootstrap_builds_the_index_once<S: HubStore>(s: S) {
    assert_eq!(s.version().await.unwrap(), 0);
    assert!(s.hubs().await.unwrap().is_empty());
    let l = s.lookup(&cell_of(-6.2, 106.8)).await.unwrap();
    assert!(!l.ready && l.cached.is_none() && l.candidates.is_empty());
    s.put_hub(&hub("h1", -6.2, 106.8), res(), T0).await.unwrap();
    assert!(s.bootstrap(res()).await.unwrap());
    assert!(!s.bootstrap(res()).await.unwrap(), "built once");
    let l = s.lookup(&cell_of(-6.2, 106.8)).await.unwrap();
    assert!(l.ready);
    assert_eq!(l.candidates, ["h1"]);
    assert!(
        s.version().await.unwrap() >= 2,
        "writes and the bootstrap bump the version"
    );
}

async fn hubs_are_indexed_listed_and_versioned<S: HubStore>(s: S) {
    let (created, cells) = s
        .put_hub(&hub("b", -6.2, 106.8), res(), T0 + 1)
        .await
        .unwrap();
    assert!(created);
    assert!(
        cells > 100,
        "a 2 km coverage at res 9 spans many cells, got {cells}"
    );
    s.put_hub(&hub("a", -6.21, 106.81), res(), T0 + 2)
        .await
        .unwrap();
    let v = s.version().await.unwrap();
    let (created, _) = s
        .put_hub(&hub("b", -6.2, 106.8), res(), T0 + 3)
        .await
        .unwrap();
    assert!(!created, "a second write replaces");
    assert_eq!(s.version().await.unwrap(), v + 1);
    let ids: Vec<String> = s.hubs().await.unwrap().into_iter().map(|h| h.id).collect();
    assert_eq!(ids, ["b", "a"], "by creation time, not by id or update");
    let both = s.lookup(&cell_of(-6.205, 106.805)).await.unwrap();
    assert_eq!(both.candidates, ["a", "b"], "sorted by id");
    let far = s.lookup(&cell_of(-6.5, 107.2)).await.unwrap();
    assert!(far.candidates.is_empty());
}

async fn the_cache_refuses_stale_winners<S: HubStore>(s: S) {
    s.put_hub(&hub("h1", -6.2, 106.8), res(), T0).await.unwrap();
    let cell = cell_of(-6.2, 106.8);
    let v = s.version().await.unwrap();
    assert!(s.cache_winner(&cell, v, "h1", T0).await.unwrap());
    assert_eq!(s.lookup(&cell).await.unwrap().cached.as_deref(), Some("h1"));
    let other = cell_of(-6.201, 106.801);
    assert!(
        !s.cache_winner(&other, v - 1, "h1", T0).await.unwrap(),
        "chosen from an older snapshot"
    );
    assert_eq!(s.lookup(&other).await.unwrap().cached, None);
}

async fn changing_a_hub_invalidates_its_cells<S: HubStore>(s: S) {
    s.put_hub(&hub("h1", -6.2, 106.8), res(), T0).await.unwrap();
    s.put_hub(&hub("h2", -6.3, 106.9), res(), T0).await.unwrap();
    let (old_cell, h2_cell) = (cell_of(-6.2, 106.8), cell_of(-6.3, 106.9));
    let v = s.version().await.unwrap();
    assert!(s.cache_winner(&old_cell, v, "h1", T0).await.unwrap());
    assert!(s.cache_winner(&h2_cell, v, "h2", T0).await.unwrap());
    // h1 moves next to h2: both its old and its new cells lose their cached winners.
    s.put_hub(&hub("h1", -6.3, 106.9), res(), T0 + 1)
        .await
        .unwrap();
    let old = s.lookup(&old_cell).await.unwrap();
    assert!(old.cached.is_none() && old.candidates.is_empty(), "{old:?}");
    let new = s.lookup(&h2_cell).await.unwrap();
    assert_eq!(
        (new.cached, new.candidates),
        (None, vec!["h1".to_string(), "h2".to_string()])
    );
    // Deactivated: out of the index everywhere.
    let mut off = hub("h1", -6.3, 106.9);
    off.active = false;
    let (_, cells) = s.put_hub(&off, res(), T0 + 2).await.unwrap();
    assert_eq!(cells, 0);
    assert_eq!(s.lookup(&h2_cell).await.unwrap().candidates, ["h2"]);
    assert!(
        !s.hubs()
            .await
            .unwrap()
            .iter()
            .find(|h| h.id == "h1")
            .unwrap()
            .active
    );
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_hubs_conform() {
        super::run_all(|| async { crate::MemoryHubs::new() }).await;
    }
}
