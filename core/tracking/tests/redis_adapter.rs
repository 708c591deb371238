//! The Redis adapter against a live Redis: the shared conformance suite, a fresh prefix per
//! check; and the events reach a pub/sub subscriber in order.

use qc_kit::redis_kit::KeyPrefix;
use qc_kit::testing::{delete_prefix, isolated_store_config, redis_for_test, Prefixes};
use qc_tracking::{conformance, RedisTrackingStore};

#[tokio::test]
async fn redis_store_conforms() {
    let prefixes = Prefixes::default();
    conformance::run_all(|| async {
        let (conn, prefix) = prefixes.fresh().await;
        RedisTrackingStore::new(conn, prefix, 2000)
    })
    .await;
    prefixes.cleanup().await;
}

/// Every stored event is published on the order's channel, in seq order: what SSE instances
/// subscribe to.
#[tokio::test]
async fn events_are_published_in_order_on_the_orders_channel() {
    use futures::StreamExt;
    use qc_tracking::{OrderStatus, PositionEvent, TrackingStore};

    let cfg = isolated_store_config();
    let mut conn = redis_for_test(&cfg).await;
    let prefix = KeyPrefix::new(cfg.key_prefix.clone());
    let store = RedisTrackingStore::new(conn.clone(), prefix.clone(), 2000);
    let client = redis::Client::open(cfg.redis_url.as_str()).unwrap();
    let mut sub = client.get_async_pubsub().await.unwrap();
    sub.subscribe(store.channel("o1")).await.unwrap();
    let mut messages = sub.on_message();
    let event = |i: i64| PositionEvent {
        kind: "position".into(),
        seq: 0,
        order_id: "o1".into(),
        driver_id: "d1".into(),
        lat: -6.2 + i as f64 * 1e-4,
        lng: 106.8,
        speed: 0.0,
        bearing: 0.0,
        accuracy: 5.0,
        raw_lat: -6.2,
        raw_lng: 106.8,
        timestamp: "2027-01-15T08:00:00.000Z".into(),
        received_at: "2027-01-15T08:00:00.000Z".into(),
    };
    for i in 0..3 {
        store.append_position(event(i)).await.unwrap();
    }
    store
        .set_status("o1", OrderStatus::Delivered, Some("d1"), "t")
        .await
        .unwrap();
    let mut seqs = Vec::new();
    for _ in 0..4 {
        let m = tokio::time::timeout(std::time::Duration::from_secs(5), messages.next())
            .await
            .expect("published within 5 s")
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&m.get_payload::<String>().unwrap()).unwrap();
        seqs.push((
            v["type"].as_str().unwrap().to_string(),
            v["seq"].as_i64().unwrap(),
        ));
    }
    let kinds: Vec<&str> = seqs.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(kinds, ["position", "position", "position", "status"]);
    assert!(seqs.windows(2).all(|w| w[0].1 < w[1].1), "{seqs:?}");
    delete_prefix(&mut conn, &prefix).await.unwrap();
}
