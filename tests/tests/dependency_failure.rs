//! With its own Redis stopped, the service answers 503 within the configured timeout (never a
//! 500 or a hang) and recovers by itself when Redis is back.

use std::time::{Duration, Instant};

use qc_tests::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_gives_503_then_recovers() {
    let port = qc_kit::testing::free_port();
    let mut redis = start_redis(port);
    let mut store = qc_kit::testing::isolated_store_config();
    store.redis_url = format!("redis://127.0.0.1:{port}/");
    store.redis_timeout_ms = 500;
    let t = TestInventory::start_with(store, |_| {}).await;
    t.set_stock("hub-f", "jam", 5).await;
    let body = json!({"hub_id": "hub-f", "cart_id": "c", "user_id": "u", "items": [{"sku": "jam", "quantity": 1}]});
    assert_eq!(t.post("/reserve", body.clone()).await.0, 201);
    t.drain_writer().await;

    redis.kill().unwrap();
    redis.wait().unwrap();

    let started = Instant::now();
    let (s, b) = t.get("/ready").await;
    assert_eq!((s, code(&b)), (503, "UNAVAILABLE"), "{b}");
    assert_ne!(b["error"]["details"]["checks"]["redis"], json!("ok"));
    assert_eq!(b["error"]["details"]["checks"]["postgres"], json!("ok"));
    for _ in 0..3 {
        let t0 = Instant::now();
        let (s, b) = t.post("/reserve", body.clone()).await;
        assert_eq!((s, code(&b)), (503, "UNAVAILABLE"), "{b}");
        assert!(
            t0.elapsed() < Duration::from_millis(2500),
            "answered in {:?}",
            t0.elapsed()
        );
        let (s, b) = t.get("/stock/hub-f/jam").await;
        assert_eq!((s, code(&b)), (503, "UNAVAILABLE"), "{b}");
    }
    assert!(started.elapsed() < Duration::from_secs(10));

    let mut redis = start_redis(port);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, _) = t.get("/ready").await;
        if s == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "did not recover by itself");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The restarted Redis is empty (no persistence): a hold is refused as unknown, not 503...
    let (s, b) = t.post("/reserve", body.clone()).await;
    assert_eq!((s, code(&b)), (409, "SKU_NOT_FOUND"), "{b}");
    // ...until the periodic restore rebuilds it from Postgres, the earlier hold included.
    let restored = qc_services::inventory::restore_if_empty(&t.app)
        .await
        .unwrap()
        .expect("rebuilt");
    assert_eq!((restored.skus, restored.holds), (1, 1));
    assert_eq!(t.stock("hub-f", "jam").await, (4, 1));
    assert!(
        qc_services::inventory::restore_if_empty(&t.app)
            .await
            .unwrap()
            .is_none(),
        "only when empty"
    );
    let (s, b) = t.post("/reserve", body).await;
    assert_eq!(
        (s, &b["data"]["items"][0]["remaining"]),
        (201, &json!(3)),
        "{b}"
    );
    t.finish().await;
    redis.kill().unwrap();
    redis.wait().unwrap();
}
