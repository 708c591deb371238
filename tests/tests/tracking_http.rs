//! Tracking over real WebSocket, SSE and HTTP on loopback sockets and live Redis (issue #11):
//! fan-out across two instances through pub/sub, `Last-Event-ID` resume, pings and the idle
//! close, the reconnect race, bad frames and tokens leaving Redis unchanged, slow SSE clients,
//! status changes ending streams, shutdown, and Dispatch posting its statuses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::SinkExt;
use qc_kit::config::{EnvSource, StoreConfig};
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::testing::{delete_prefix, isolated_store_config, redis_for_test};
use qc_kit::ManualClock;
use qc_services::dispatch::{self, DispatchConfig};
use qc_services::platform::config::PlatformConfig;
use qc_services::platform::shutdown::Shutdown;
use qc_tests::tracking::{
    close_code, connect, fix, fix_ms, refused_status, reply, send, Sse, TestTracking,
};
use qc_tests::{code, redis_snapshot_of, serve_loopback, Api, T0_MS};
use qc_tracking::token::{sign, Role};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

async fn cleanup(store: &StoreConfig) {
    let mut conn = redis_for_test(store).await;
    delete_prefix(&mut conn, &KeyPrefix::new(store.key_prefix.clone()))
        .await
        .unwrap();
}

/// Tracking's keys and contents, without the sockets' leases (which follow connections, not data).
async fn data_snapshot(
    conn: &redis::aio::ConnectionManager,
    prefix: &KeyPrefix,
) -> std::collections::BTreeMap<String, String> {
    let mut all = redis_snapshot_of(conn.clone(), prefix).await;
    all.retain(|k, _| !k.ends_with(":conn"));
    all
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(T0_MS))
}

async fn ingest(t: &TestTracking, clock: &ManualClock, driver: &str, order: &str, n: i64) {
    let mut ws = t.ws(driver, order).await;
    for i in 0..n {
        clock.set_ms(fix_ms(i));
        let r = send(&mut ws, fix(i).to_string()).await;
        assert_eq!(r["status"], "ok", "{r}");
    }
}

async fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
    Api::new(base).post(path, body).await
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    Api::new(base).get(path).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fix_sent_to_instance_a_reaches_an_sse_client_of_instance_b_in_order() {
    let store = isolated_store_config();
    let clock = clock();
    let a = TestTracking::start(&store, clock.clone()).await;
    let b = TestTracking::start(&store, clock.clone()).await;
    let mut sse = Sse::open(&b.base, "order_id=o-1&user_id=u-1", None).await;
    assert_eq!(sse.status, 200);
    let retry = sse.next().await.unwrap();
    assert_eq!(retry.retry, Some(3000));
    let connected = sse.next().await.unwrap();
    assert_eq!(
        (connected.event.as_str(), connected.id, connected.json()),
        (
            "connected",
            None,
            json!({"order_id": "o-1", "user_id": "u-1"})
        )
    );
    let mut ws = a.ws("d-1", "o-1").await;
    let mut acked = Vec::new();
    for i in 0..10 {
        clock.set_ms(fix_ms(i));
        let r = send(&mut ws, fix(i).to_string()).await;
        assert_eq!(r["status"], "ok", "{r}");
        acked.push(r["seq"].as_i64().unwrap());
    }
    let mut seen = Vec::new();
    while seen.len() < 10 {
        let f = sse.next_event().await.expect("the stream stays open");
        assert_eq!(f.event, "position");
        let e = f.json();
        assert_eq!(f.id, e["seq"].as_i64(), "the SSE id is the event's seq");
        assert_eq!(
            (e["order_id"].as_str(), e["driver_id"].as_str()),
            (Some("o-1"), Some("d-1"))
        );
        seen.push(f.id.unwrap());
    }
    assert_eq!(seen, acked, "every fix, in order, ids as acknowledged");
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    // A status change on B reaches a stream on A too; a terminal one ends it.
    let mut on_a = Sse::open(&a.base, "order_id=o-1&user_id=u-2", None).await;
    let opening: Vec<_> = [on_a.next().await, on_a.next().await, on_a.next().await]
        .into_iter()
        .map(Option::unwrap)
        .collect();
    assert_eq!(
        opening[2].id,
        Some(10),
        "the latest position opens a fresh stream"
    );
    let (s, body) = post(
        &b.base,
        "/tracking/status/o-1",
        json!({"status": "delivered", "driver_id": "d-1"}),
    )
    .await;
    assert_eq!((s, body["data"]["seq"].as_i64()), (200, Some(11)), "{body}");
    for stream in [&mut sse, &mut on_a] {
        let f = stream.next_event().await.unwrap();
        assert_eq!((f.event.as_str(), f.id), ("status", Some(11)));
        assert_eq!(f.json()["status"], "delivered");
        assert!(
            stream.next().await.is_none(),
            "a terminal status ends the stream"
        );
    }
    a.stop().await;
    b.stop().await;
    cleanup(&store).await;
}

#[tokio::test]
async fn last_event_id_resumes_without_a_gap_and_a_fresh_client_gets_the_latest() {
    let store = isolated_store_config();
    let clock = clock();
    let t = TestTracking::start(&store, clock.clone()).await;
    ingest(&t, &clock, "d-1", "o-1", 10).await;
    post(
        &t.base,
        "/tracking/status/o-1",
        json!({"status": "in_transit"}),
    )
    .await;
    // Resume after 4: the status first (no id), then 5..10 from the trail.
    let mut sse = Sse::open(&t.base, "order_id=o-1&user_id=u-1", Some(4)).await;
    sse.next().await.unwrap();
    sse.next().await.unwrap();
    let status = sse.next().await.unwrap();
    assert_eq!((status.event.as_str(), status.id), ("status", None));
    assert_eq!(status.json()["seq"], 11);
    let mut ids = Vec::new();
    for _ in 5..=10 {
        ids.push(sse.next_event().await.unwrap().id.unwrap());
    }
    assert_eq!(ids, (5..=10).collect::<Vec<_>>());
    // The same through the query parameter; an id past the current seq gets the latest.
    let mut q = Sse::open(&t.base, "order_id=o-1&user_id=u-1&last_event_id=8", None).await;
    for _ in 0..3 {
        q.next().await.unwrap();
    }
    assert_eq!(q.next().await.unwrap().id, Some(9));
    let mut fresh = Sse::open(&t.base, "order_id=o-1&user_id=u-1", Some(999)).await;
    for _ in 0..3 {
        fresh.next().await.unwrap();
    }
    assert_eq!(fresh.next().await.unwrap().id, Some(10));
    // Live events after a replay are never repeated.
    let mut ws = t.ws("d-1", "o-1").await;
    clock.set_ms(fix_ms(10));
    assert_eq!(send(&mut ws, fix(10).to_string()).await["seq"], 12);
    assert_eq!(sse.next_event().await.unwrap().id, Some(12));
    // History and position agree with the trail.
    let (s, h) = get(&t.base, "/tracking/history/o-1?after_seq=8&limit=2").await;
    assert_eq!(s, 200);
    let seqs: Vec<i64> = h["data"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["seq"].as_i64().unwrap())
        .collect();
    assert_eq!((h["data"]["count"].as_i64(), seqs), (Some(2), vec![9, 10]));
    let (s, p) = get(&t.base, "/tracking/position/o-1").await;
    assert_eq!((s, p["data"]["seq"].as_i64()), (200, Some(12)));
    t.stop().await;
    cleanup(&store).await;
}

#[tokio::test]
async fn server_pings_keep_a_socket_up_and_a_silent_one_is_closed() {
    let store = isolated_store_config();
    let clock = clock();
    // 30 s pings and a 60 s idle limit, scaled down 600 times: 1.5 s here is 15 minutes there.
    let env = [
        ("TRACKING_WS_PING_SECS", "0.05"),
        ("TRACKING_WS_IDLE_SECS", "0.1"),
    ];
    let t = TestTracking::start_with(&store, &env, clock.clone(), None).await;
    let mut live = t.ws("d-1", "o-1").await;
    let mut silent = t.ws("d-2", "o-2").await;
    let started = Instant::now();
    let mut pings = 0;
    // The live client reads (and so answers every ping with a pong) for 1.5 s.
    while started.elapsed() < Duration::from_millis(1500) {
        match tokio::time::timeout(
            Duration::from_millis(200),
            futures::StreamExt::next(&mut live),
        )
        .await
        {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(other) => panic!("the socket should stay up: {other:?}"),
            Err(_) => panic!("no ping for 200 ms"),
        }
    }
    assert!(pings >= 20, "{pings} pings in 1.5 s");
    let r = send(&mut live, fix(0).to_string()).await;
    assert_eq!(r["status"], "ok", "still up after 15 idle limits: {r}");
    // The silent client never read, so never answered a ping: closed as idle.
    assert_eq!(close_code(&mut silent).await, Some(1000));
    t.stop().await;
    cleanup(&store).await;
}

#[tokio::test]
async fn a_reconnect_closes_the_old_socket_with_4000_and_keeps_the_new_ones_track() {
    let store = isolated_store_config();
    let clock = clock();
    let t = TestTracking::start(&store, clock.clone()).await;
    let mut old = t.ws("d-1", "o-1").await;
    for i in 0..4 {
        clock.set_ms(fix_ms(i));
        assert_eq!(send(&mut old, fix(i).to_string()).await["status"], "ok");
    }
    let mut new = t.ws("d-1", "o-1").await;
    assert_eq!(close_code(&mut old).await, Some(4000));
    // The old socket's cleanup ran after the new one registered: the new one is still the
    // driver's, and its filter continues the track (a re-seeded filter would read speed 0).
    assert_eq!(t.app.sockets.open(), 1);
    clock.set_ms(fix_ms(4));
    let r = send(&mut new, fix(4).to_string()).await;
    assert_eq!(
        (r["status"].as_str(), r["seq"].as_i64()),
        (Some("ok"), Some(5)),
        "{r}"
    );
    let (_, p) = get(&t.base, "/tracking/position/o-1").await;
    let speed = p["data"]["speed"].as_f64().unwrap();
    assert!(
        (7.0..13.0).contains(&speed),
        "the filter kept its velocity: {speed} m/s"
    );
    // A third connection replaces the second the same way.
    let _third = t.ws("d-1", "o-1").await;
    assert_eq!(close_code(&mut new).await, Some(4000));
    t.stop().await;
    cleanup(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_to_another_instance_closes_the_old_socket_at_its_next_ping() {
    let store = isolated_store_config();
    let clock = clock();
    let env = [("TRACKING_WS_PING_SECS", "0.05")];
    let a = TestTracking::start_with(&store, &env, clock.clone(), None).await;
    let b = TestTracking::start_with(&store, &env, clock.clone(), None).await;
    let mut old = a.ws("d-1", "o-1").await;
    clock.set_ms(fix_ms(0));
    assert_eq!(send(&mut old, fix(0).to_string()).await["status"], "ok");
    let mut new = b.ws("d-1", "o-1").await;
    assert_eq!(close_code(&mut old).await, Some(4000));
    clock.set_ms(fix_ms(1));
    let r = send(&mut new, fix(1).to_string()).await;
    assert_eq!(
        (r["status"].as_str(), r["seq"].as_i64()),
        (Some("ok"), Some(2)),
        "{r}"
    );
    // The old socket's cleanup left the new one's lease alone: it stays up across pings.
    for _ in 0..5 {
        assert!(matches!(
            tokio::time::timeout(Duration::from_secs(1), futures::StreamExt::next(&mut new)).await,
            Ok(Some(Ok(Message::Ping(_))))
        ));
    }
    a.stop().await;
    b.stop().await;
    cleanup(&store).await;
}

#[tokio::test]
async fn bad_frames_are_answered_store_nothing_and_leave_the_socket_open() {
    let store = isolated_store_config();
    let clock = clock();
    let t = TestTracking::start(&store, clock.clone()).await;
    ingest(&t, &clock, "d-1", "o-1", 3).await;
    let conn = redis_for_test(&store).await;
    let before = data_snapshot(&conn, &t.prefix()).await;
    assert!(before.len() >= 3, "{before:?}");
    let mut ws = t.ws("d-1", "o-1").await;
    clock.set_ms(fix_ms(3));
    let with = |k: &str, v: Value| {
        let mut f = fix(3);
        f[k] = v;
        f.to_string()
    };
    let cases = [
        ("not json".to_string(), "invalid_message"),
        ("[1,2,3]".to_string(), "invalid_message"),
        (
            r#"{"lat":NaN,"lng":1,"accuracy":1,"timestamp":"2027-01-15T08:00:15Z"}"#.to_string(),
            "invalid_message",
        ),
        (with("lat", json!("north")), "invalid_message"),
        (with("timestamp", json!("yesterday")), "invalid_message"),
        (with("lat", json!(91.0)), "out_of_bounds"),
        (with("lng", json!(-180.5)), "out_of_bounds"),
        (with("speed", json!(80.0)), "invalid_speed"),
        (with("bearing", json!(361.0)), "invalid_bearing"),
        (with("accuracy", json!(-1.0)), "invalid_accuracy"),
        (with("driver_id", json!("d-2")), "identity_mismatch"),
        (with("order_id", json!("o-2")), "identity_mismatch"),
        (fix(1).to_string(), "out_of_order"),
        (
            with(
                "timestamp",
                json!(qc_tracking::model::rfc3339_ms(fix_ms(3) + 60_000)),
            ),
            "future_timestamp",
        ),
        (with("lat", json!(-6.1)), "jump"),
    ];
    for (frame, reason) in &cases {
        let r = send(&mut ws, frame.clone()).await;
        assert_eq!(
            (r["status"].as_str(), r["error"].as_str()),
            (Some("rejected"), Some(*reason)),
            "{frame} -> {r}"
        );
    }
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let r = reply(&mut ws).await;
    assert_eq!(
        (r["error"].as_str(), r["timestamp"].clone()),
        (Some("invalid_message"), Value::Null)
    );
    assert_eq!(
        data_snapshot(&conn, &t.prefix()).await,
        before,
        "no rejected frame changed Redis"
    );
    // After all that the socket is still open and a good fix is taken.
    let r = send(&mut ws, fix(3).to_string()).await;
    assert_eq!(
        (r["status"].as_str(), r["seq"].as_i64()),
        (Some("ok"), Some(4)),
        "{r}"
    );
    let after_good = data_snapshot(&conn, &t.prefix()).await;

    // Oversized (over 4096 bytes): 1009. A flood (over 20 frames in a second): 1008.
    let mut big = fix(4);
    big["pad"] = json!("x".repeat(5000));
    ws.send(Message::text(big.to_string())).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1009));
    let mut flood = t.ws("d-1", "o-1").await;
    for _ in 0..21 {
        if flood.send(Message::text("{}")).await.is_err() {
            break;
        }
    }
    assert_eq!(close_code(&mut flood).await, Some(1008));
    assert_eq!(data_snapshot(&conn, &t.prefix()).await, after_good);

    // Handshakes without ids, with bad ids, or without an upgrade: 400 and nothing stored.
    let ws_base = t.base.replace("http://", "ws://");
    for q in [
        "order_id=o-1",
        "driver_id=d-1",
        "driver_id=&order_id=o-1",
        "driver_id=a%7Bb%7D&order_id=o-1",
    ] {
        assert_eq!(
            refused_status(&format!("{ws_base}/ws/driver/location?{q}")).await,
            400,
            "{q}"
        );
    }
    let (s, b) = get(&t.base, "/ws/driver/location?driver_id=d-1&order_id=o-1").await;
    assert_eq!((s, code(&b)), (400, "INVALID_ARGUMENT"));
    // HTTP bad input.
    for (path, body, want) in [
        ("/tracking/status/o-1", json!({"status": "teleported"}), 400),
        (
            "/tracking/status/o-1",
            json!({"status": "arrived", "driver_id": "a b"}),
            400,
        ),
        ("/tracking/status/o-1", json!({"state": "arrived"}), 400),
        (
            "/tracking/status/a%7Bb%7D",
            json!({"status": "arrived"}),
            400,
        ),
    ] {
        let (s, b) = post(&t.base, path, body.clone()).await;
        assert_eq!((s, code(&b)), (want, "INVALID_ARGUMENT"), "{path} {body}");
    }
    for path in [
        "/tracking/history/o-1?limit=0",
        "/tracking/history/o-1?limit=501",
        "/tracking/history/o-1?after_seq=-1",
        "/tracking/history/o-1?after_seq=x",
        "/sse/order/tracking?order_id=o-1",
        "/sse/order/tracking?user_id=u-1",
    ] {
        let (s, b) = get(&t.base, path).await;
        assert_eq!((s, code(&b)), (400, "INVALID_ARGUMENT"), "{path}");
    }
    let (s, b) = get(&t.base, "/tracking/position/o-unknown").await;
    assert_eq!((s, code(&b)), (404, "NOT_FOUND"));
    let (s, b) = get(&t.base, "/tracking/history/o-unknown").await;
    assert_eq!((s, b["data"]["count"].as_i64()), (200, Some(0)));
    assert_eq!(data_snapshot(&conn, &t.prefix()).await, after_good);
    t.stop().await;
    cleanup(&store).await;
}

#[tokio::test]
async fn tokens_gate_every_door_when_required() {
    let store = isolated_store_config();
    let clock = clock();
    let secret = "a-secret-of-32-bytes-for-tests!!";
    let env = [("TRACKING_AUTH_REQUIRED", "true"), ("HMAC_SECRET", secret)];
    let t = TestTracking::start_with(&store, &env, clock.clone(), None).await;
    let conn = redis_for_test(&store).await;
    let now_s = T0_MS / 1000;
    let key = secret.as_bytes();
    let good = sign(key, Role::Driver, "d-1", "o-1", now_s + 60);
    let url = t.ws_url("d-1", "o-1");
    for bad in [
        String::new(),
        sign(key, Role::Driver, "d-1", "o-1", now_s - 1),
        sign(key, Role::Driver, "d-2", "o-1", now_s + 60),
        sign(key, Role::User, "d-1", "o-1", now_s + 60),
        sign(
            b"another-secret-entirely-32-bytes",
            Role::Driver,
            "d-1",
            "o-1",
            now_s + 60,
        ),
        format!("{}.{}", now_s + 3600, good.split_once('.').unwrap().1),
        "garbage".into(),
    ] {
        assert_eq!(
            refused_status(&format!("{url}&token={bad}")).await,
            401,
            "{bad:?}"
        );
    }
    assert!(redis_snapshot_of(conn.clone(), &t.prefix())
        .await
        .is_empty());
    let mut ws = connect(&format!("{url}&token={good}")).await;
    assert_eq!(send(&mut ws, fix(0).to_string()).await["status"], "ok");
    // Customers: SSE, position and history need the user's token; a driver's will not do.
    let user = sign(key, Role::User, "u-1", "o-1", now_s + 60);
    for q in [
        "order_id=o-1&user_id=u-1".to_string(),
        format!("order_id=o-1&user_id=u-2&token={user}"),
        format!("order_id=o-1&user_id=u-1&token={good}"),
    ] {
        let sse = Sse::open(&t.base, &q, None).await;
        assert_eq!(sse.status, 401, "{q}");
    }
    let mut sse = Sse::open(
        &t.base,
        &format!("order_id=o-1&user_id=u-1&token={user}"),
        None,
    )
    .await;
    assert_eq!(sse.status, 200);
    sse.next().await.unwrap();
    let (s, b) = get(&t.base, "/tracking/position/o-1?user_id=u-1").await;
    assert_eq!((s, code(&b)), (401, "UNAUTHENTICATED"));
    let r = reqwest::Client::new()
        .get(format!("{}/tracking/history/o-1?user_id=u-1", t.base))
        .bearer_auth(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "a bearer token works too");
    t.stop().await;

    // Enforcing Dispatch's assignment: only the assigned driver may stream.
    let env = [("TRACKING_ENFORCE_ASSIGNMENT", "true")];
    let t = TestTracking::start_with(&store, &env, clock.clone(), None).await;
    let mut c = conn.clone();
    let _: () = redis::cmd("HSET")
        .arg(format!(
            "{}dispatch:{{dispatch}}:assignment:o-9",
            store.key_prefix
        ))
        .arg("driver_id")
        .arg("d-9")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(refused_status(&t.ws_url("d-1", "o-9")).await, 403);
    let mut ws = t.ws("d-9", "o-9").await;
    assert_eq!(send(&mut ws, fix(0).to_string()).await["status"], "ok");
    t.stop().await;
    cleanup(&store).await;
}

#[tokio::test]
async fn statuses_take_seqs_refuse_changes_after_the_end_and_closed_orders_get_204() {
    let store = isolated_store_config();
    let clock = clock();
    let token = "internal-secret";
    let env = [("TRACKING_SSE_KEEPALIVE_SECS", "0.05")];
    let t = TestTracking::start_with(&store, &env, clock.clone(), None).await;
    ingest(&t, &clock, "d-1", "o-1", 2).await;
    let mut sse = Sse::open(&t.base, "order_id=o-1&user_id=u-1", None).await;
    for _ in 0..3 {
        sse.next().await.unwrap();
    }
    // Quiet: keep-alive comments.
    let k = sse.next().await.unwrap();
    assert_eq!(k.comment.as_deref(), Some("keepalive"));
    let (s, b) = post(
        &t.base,
        "/tracking/status/o-1",
        json!({"status": "arrived", "driver_id": "d-1"}),
    )
    .await;
    assert_eq!(
        (s, b["data"].clone()),
        (
            200,
            json!({"order_id": "o-1", "status": "arrived", "seq": 3})
        )
    );
    let f = sse.next_event().await.unwrap();
    assert_eq!((f.event.as_str(), f.id), ("status", Some(3)));
    let (s, _) = post(
        &t.base,
        "/tracking/status/o-1",
        json!({"status": "cancelled"}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        sse.next_event().await.unwrap().json()["status"],
        "cancelled"
    );
    assert!(sse.next().await.is_none());
    let (s, b) = post(
        &t.base,
        "/tracking/status/o-1",
        json!({"status": "delivered"}),
    )
    .await;
    assert_eq!(
        (s, code(&b), b["error"]["details"]["status"].as_str()),
        (409, "CONFLICT", Some("cancelled"))
    );
    let closed = Sse::open(&t.base, "order_id=o-1&user_id=u-1", None).await;
    assert_eq!(
        closed.status, 204,
        "a closed order's stream is not reopened"
    );
    let mut ws = t.ws("d-1", "o-1").await;
    clock.set_ms(fix_ms(2));
    assert_eq!(
        send(&mut ws, fix(2).to_string()).await["error"],
        "order_closed"
    );
    t.stop().await;

    // With INTERNAL_API_TOKEN set, the status endpoint needs it.
    let mut cfg =
        PlatformConfig::from_env(&EnvSource::from_pairs([("INTERNAL_API_TOKEN", token)])).unwrap();
    cfg.store = store.clone();
    let shutdown = Shutdown::new();
    let (_, svc) = qc_services::tracking::build(
        &cfg,
        qc_services::tracking::TrackingConfig::from_env(&EnvSource::from_pairs([])).unwrap(),
        clock.clone(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let (base, _) = serve_loopback(svc, &shutdown).await;
    let (s, _) = post(
        &base,
        "/tracking/status/o-2",
        json!({"status": "preparing"}),
    )
    .await;
    assert_eq!(s, 401);
    let r = reqwest::Client::new()
        .post(format!("{base}/tracking/status/o-2"))
        .header("X-Internal-Token", token)
        .json(&json!({"status": "preparing"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    shutdown.trigger();
    cleanup(&store).await;
}

/// Counter or gauge values of `name` in a service's metrics.
async fn metric(base: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sse_client_stays_bounded_and_does_not_delay_the_others() {
    use tokio::io::AsyncWriteExt;
    let store = isolated_store_config();
    let clock = clock();
    let env = [("TRACKING_SSE_WRITE_TIMEOUT_SECS", "0.5")];
    let t = TestTracking::start_with(&store, &env, clock.clone(), None).await;
    // The slow client: a raw socket that sends the request and never reads.
    let addr = t.base.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(
        b"GET /sse/order/tracking?order_id=o-1&user_id=slow HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n",
    )
    .await
    .unwrap();
    let mut fast = Sse::open(&t.base, "order_id=o-1&user_id=fast", None).await;
    fast.next().await.unwrap();
    fast.next().await.unwrap();
    while t.app.fanout.clients() < 2 {
        tokio::task::yield_now().await;
    }
    // 16 MB of events through real pub/sub, far more than the socket buffers hold; the fast
    // client reads each burst of 20 before the next.
    let mut conn = redis_for_test(&store).await;
    let channel = format!("{}tracking:order:o-1", store.key_prefix);
    let pad = "x".repeat(8_000);
    let started = Instant::now();
    let mut seq = 0;
    for _ in 0..100 {
        let mut pipe = redis::pipe();
        for _ in 0..20 {
            seq += 1;
            let e = json!({"type": "position", "seq": seq, "order_id": "o-1", "pad": pad});
            pipe.publish(&channel, e.to_string()).ignore();
        }
        let () = pipe.query_async(&mut conn).await.unwrap();
        loop {
            let f = fast.next_event().await.unwrap();
            if f.id == Some(seq) {
                break;
            }
        }
        assert!(t.app.fanout.max_queued() <= 32, "queues stay bounded");
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "the fast client kept up: {took:?}"
    );
    let dropped = metric(&t.base, "tracking_sse_events_dropped_total").await;
    assert!(
        dropped > 0.0,
        "the slow client's oldest positions were dropped"
    );
    // Still not reading after the write timeout: the next event disconnects it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let e = json!({"type": "position", "seq": seq + 1, "order_id": "o-1"});
    let _: i64 = redis::cmd("PUBLISH")
        .arg(&channel)
        .arg(e.to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(fast.next_event().await.unwrap().id, Some(seq + 1));
    assert_eq!(t.app.fanout.clients(), 1, "only the fast client is left");
    assert_eq!(
        metric(&t.base, "tracking_sse_slow_disconnects_total").await,
        1.0
    );
    println!("slow client: {dropped} positions dropped; 2,000 events to the fast one in {took:?}");
    drop(slow);
    t.stop().await;
    cleanup(&store).await;
}

#[tokio::test]
async fn shutdown_closes_sockets_with_1001_and_ends_streams() {
    let store = isolated_store_config();
    let clock = clock();
    let t = TestTracking::start(&store, clock.clone()).await;
    let mut ws = t.ws("d-1", "o-1").await;
    let mut sse = Sse::open(&t.base, "order_id=o-1&user_id=u-1", None).await;
    sse.next().await.unwrap();
    sse.next().await.unwrap();
    t.shutdown.trigger();
    assert_eq!(close_code(&mut ws).await, Some(1001));
    assert!(sse.next().await.is_none(), "the stream ended");
    let stopped = tokio::time::timeout(Duration::from_secs(5), t.stop()).await;
    assert!(stopped.is_ok(), "server and jobs drained");
    cleanup(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_posts_order_statuses_and_a_tracking_outage_never_blocks_a_rider() {
    let store = isolated_store_config();
    let clock = clock();
    let t = TestTracking::start(&store, clock.clone()).await;
    let mut sse = Sse::open(&t.base, "order_id=o-1&user_id=u-1", None).await;
    sse.next().await.unwrap();
    sse.next().await.unwrap();
    for (tracking_url, order) in [
        (t.base.clone(), "o-1"),
        ("http://127.0.0.1:9".to_string(), "o-2"),
    ] {
        let mut cfg =
            PlatformConfig::from_env(&EnvSource::from_pairs([("INSTANCE_ID", "d")])).unwrap();
        cfg.store = store.clone();
        let env = [
            ("GEO_URL", "http://127.0.0.1:9"),
            ("ETA_URL", ""),
            ("TRACKING_URL", tracking_url.as_str()),
            ("DISPATCH_MIN_ORDERS", "1"),
        ];
        let dcfg = DispatchConfig::from_env(&EnvSource::from_pairs(env)).unwrap();
        let shutdown = Shutdown::new();
        let (app, svc) = dispatch::build(&cfg, dcfg, clock.clone(), shutdown.clone(), false)
            .await
            .unwrap();
        let (base, _) = serve_loopback(svc, &shutdown).await;
        dispatch::set_leader(&app, true);
        let driver = format!("r-{order}");
        for (path, body) in [
            (
                "/dispatch/driver/register",
                json!({"driver_id": driver, "name": "r", "location": {"lat": -6.2, "lng": 106.8}}),
            ),
            (
                "/dispatch/driver/state",
                json!({"driver_id": driver, "to": "IDLE"}),
            ),
            (
                "/dispatch/order",
                json!({"order_id": order, "customer_id": "c", "hub_id": "h",
                "items": [{"product_id": "p", "quantity": 1}],
                "delivery_location": {"lat": -6.21, "lng": 106.8}}),
            ),
        ] {
            let (s, b) = post(&base, path, body).await;
            assert!(s < 300, "{path}: {b}");
        }
        dispatch::flush_if_due(&app).await.unwrap();
        let (_, o) = get(&base, &format!("/dispatch/orders/{order}")).await;
        let asg = o["data"]["current_assignment_id"]
            .as_str()
            .unwrap()
            .to_string();
        let started = Instant::now();
        let (s, b) = post(
            &base,
            "/dispatch/driver/accept",
            json!({"assignment_id": asg, "driver_id": driver}),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        for to in ["PICKING", "DELIVERING", "COMPLETED"] {
            let (s, b) = post(
                &base,
                "/dispatch/driver/state",
                json!({"driver_id": driver, "to": to}),
            )
            .await;
            assert_eq!(s, 200, "{b}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "rider changes do not wait for Tracking: {:?}",
            started.elapsed()
        );
        if order == "o-1" {
            let mut got = Vec::new();
            while let Some(f) = sse.next_event().await {
                got.push((
                    f.json()["status"].as_str().unwrap().to_string(),
                    f.json()["driver_id"].clone(),
                ));
            }
            assert_eq!(
                got,
                [
                    ("driver_assigned".to_string(), json!(driver)),
                    ("in_transit".to_string(), json!(driver)),
                    ("delivered".to_string(), json!(driver)),
                ]
            );
        } else {
            // Tracking is down: each status is retried a bounded number of times, then counted.
            let deadline = Instant::now() + Duration::from_secs(10);
            while metric(&base, "dispatch_tracking_calls_total{outcome=\"gave_up\"").await < 3.0 {
                assert!(
                    Instant::now() < deadline,
                    "the posts were given up and counted"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let (_, o) = get(&base, "/dispatch/orders/o-2").await;
            assert_eq!(o["data"]["status"], "DELIVERED");
        }
        shutdown.trigger();
    }
    t.stop().await;
    cleanup(&store).await;
    qc_kit::pg::drop_schema(&store).await.unwrap();
}
