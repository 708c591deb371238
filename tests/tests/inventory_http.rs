//! Inventory over real HTTP on a loopback socket, live Redis and Postgres (issue #2 "Done when").

use qc_services::inventory::{reap_once, reconcile_once};
use qc_tests::*;
use serde_json::{json, Value};

fn hold(hub: &str, sku: &str, qty: i64) -> Value {
    json!({"hub_id": hub, "cart_id": "cart-1", "user_id": "user-1", "items": [{"sku": sku, "quantity": qty}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_gives_one_hold() {
    let t = TestInventory::start().await;
    t.set_stock("hub-i", "rice", 10).await;
    let send = |key: &'static str, body: Value| {
        let (http, url) = (t.http.clone(), t.url("/reserve"));
        async move {
            split(
                http.post(url)
                    .header("Idempotency-Key", key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let (s1, b1) = send("order-1", hold("hub-i", "rice", 2)).await;
    let (s2, b2) = send("order-1", hold("hub-i", "rice", 2)).await;
    assert_eq!((s1, s2), (201, 201), "{b1} {b2}");
    assert_eq!(b1["data"]["reservation_id"], b2["data"]["reservation_id"]);
    assert_eq!(b2["data"]["replayed"], json!(true));
    assert_eq!(t.stock("hub-i", "rice").await, (8, 2));

    // Twenty concurrent retries of a new key: one hold, one id.
    let all =
        futures::future::join_all((0..20).map(|_| send("order-2", hold("hub-i", "rice", 3)))).await;
    let ids: std::collections::HashSet<String> = all
        .iter()
        .map(|(s, b)| {
            assert_eq!(*s, 201, "{b}");
            b["data"]["reservation_id"].to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(t.stock("hub-i", "rice").await, (5, 5));

    // The same key with a different request is refused, and holds nothing.
    let (s, b) = send("order-1", hold("hub-i", "rice", 1)).await;
    assert_eq!((s, code(&b)), (409, "CONFLICT"), "{b}");
    assert_eq!(t.stock("hub-i", "rice").await, (5, 5));
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_envelope_and_changes_nothing() {
    let t = TestInventory::start().await;
    t.set_stock("hub-b", "tea", 10).await;
    let (s, b) = t.post("/reserve", hold("hub-b", "tea", 2)).await;
    assert_eq!(s, 201, "{b}");
    t.drain_writer().await;
    let redis_before = redis_snapshot(&t).await;
    let pg_before = pg_snapshot(&t).await;
    assert!(
        redis_before.len() >= 8,
        "the snapshot sees the hub's keys: {redis_before:?}"
    );
    assert_eq!(pg_before.2, 1, "the snapshot sees the reservation row");

    let long = "x".repeat(1000);
    let item = |q: Value| json!({"hub_id": "hub-b", "cart_id": "c", "user_id": "u", "items": [{"sku": "tea", "quantity": q}]});
    let with_hub = |h: &str| json!({"hub_id": h, "cart_id": "c", "user_id": "u", "items": [{"sku": "tea", "quantity": 1}]});
    let many: Vec<Value> = (0..51)
        .map(|i| json!({"sku": format!("s{i}"), "quantity": 1}))
        .collect();
    let mut json_cases: Vec<(&str, Value, u16, &str)> = vec![
        ("/reserve", item(json!(0)), 400, "INVALID_ARGUMENT"),
        ("/reserve", item(json!(-1)), 400, "INVALID_ARGUMENT"),
        ("/reserve", item(json!(1.5)), 400, "INVALID_ARGUMENT"),
        ("/reserve", item(json!("5")), 400, "INVALID_ARGUMENT"),
        ("/reserve", item(json!(51)), 400, "INVALID_ARGUMENT"),
        ("/reserve", item(json!(1e30)), 400, "INVALID_ARGUMENT"),
        ("/reserve", item(json!(u64::MAX)), 400, "INVALID_ARGUMENT"),
        ("/reserve", item(Value::Null), 400, "INVALID_ARGUMENT"),
        (
            "/reserve",
            json!({"hub_id": "hub-b", "cart_id": "c", "user_id": "u", "items": []}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/reserve",
            json!({"hub_id": "hub-b", "cart_id": "c", "user_id": "u", "items": many}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/reserve",
            json!({"hub_id": "hub-b", "cart_id": "c", "user_id": "u", "items": "tea"}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/reserve",
            json!({"hub_id": "hub-b", "cart_id": "c", "user_id": "u",
            "items": [{"sku": "tea", "quantity": 1}, {"sku": "tea", "quantity": 2}]}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/reserve",
            json!({"hub_id": "hub-b", "cart_id": "c", "items": [{"sku": "tea", "quantity": 1}]}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/reserve",
            json!({"hub_id": "hub-b", "cart_id": "c", "user_id": "u", "ttl_seconds": 0,
            "items": [{"sku": "tea", "quantity": 1}]}),
            400,
            "INVALID_ARGUMENT",
        ),
        ("/reserve", with_hub("a:b"), 400, "INVALID_ARGUMENT"),
        ("/reserve", with_hub("a b"), 400, "INVALID_ARGUMENT"),
        ("/reserve", with_hub("{a}"), 400, "INVALID_ARGUMENT"),
        ("/reserve", with_hub(&long), 400, "INVALID_ARGUMENT"),
        ("/reserve", json!([1, 2]), 400, "INVALID_ARGUMENT"),
        (
            "/admin/stock",
            json!({"hub_id": "hub-b", "sku": "tea", "quantity": -1}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/admin/stock",
            json!({"hub_id": "hub-b", "sku": "tea", "quantity": 2.5}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/admin/stock",
            json!({"hub_id": "hub-b", "sku": "tea", "quantity": "10"}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/admin/stock",
            json!({"hub_id": "hub-b", "sku": "tea"}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/admin/stock",
            json!({"hub_id": "hub-b", "sku": "tea", "quantity": 2_000_000_000}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/admin/stock",
            json!({"hub_id": "hub-b", "sku": "tea", "quantity": 5, "buckets": 11}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/admin/stock",
            json!({"hub_id": "hub-b", "sku": "t{e}a", "quantity": 5}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/admin/cycle-count",
            json!({"hub_id": "hub-b", "sku": "tea", "physical_quantity": -3, "counted_by": "ann"}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/admin/cycle-count",
            json!({"hub_id": "hub-b", "sku": "tea", "physical_quantity": 3}),
            400,
            "INVALID_ARGUMENT",
        ),
        ("/release", json!({}), 400, "INVALID_ARGUMENT"),
        (
            "/release",
            json!({"reservation_id": 5}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/release",
            json!({"reservation_id": "not-a-uuid"}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/release",
            json!({"reservation_id": "7f1c0e8a-9b3d-4c21-8f6e-2d5a4b3c1e0f"}),
            404,
            "RESERVATION_NOT_FOUND",
        ),
        (
            "/confirm",
            json!({"reservation_id": "7f1c0e8a-9b3d-4c21-8f6e-2d5a4b3c1e0f", "hub_id": "a:b"}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/confirm",
            json!({"reservation_id": "7f1c0e8a-9b3d-4c21-8f6e-2d5a4b3c1e0f", "hub_id": "hub-b"}),
            404,
            "RESERVATION_NOT_FOUND",
        ),
    ];
    for (path, body, status, expected) in json_cases.drain(..) {
        let (s, b) = t.post(path, body.clone()).await;
        assert_eq!((s, code(&b)), (status, expected), "{path} {body}: {b}");
        assert!(
            !b["error"]["request_id"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{b}"
        );
        assert!(
            !b["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{b}"
        );
    }

    // Raw bodies and headers.
    // A client that never reuses a connection: the server answers an oversize body with 413
    // before reading it and closes the connection, which a pooled connection could race.
    let unpooled = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let raw = |ct: &'static str, body: Vec<u8>| {
        let (http, url) = (unpooled.clone(), t.url("/reserve"));
        async move {
            split(
                http.post(url)
                    .header("content-type", ct)
                    .body(body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "application/json",
            b"{\"hub_id\": ".to_vec(),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "application/json",
            b"not json".to_vec(),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "text/plain",
            hold("hub-b", "tea", 1).to_string().into_bytes(),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "application/json",
            vec![b' '; 2 << 20],
            413,
            "PAYLOAD_TOO_LARGE",
        ),
    ];
    for (ct, body, status, expected) in cases {
        let (s, b) = raw(ct, body).await;
        assert_eq!((s, code(&b)), (status, expected), "{ct}: {b}");
    }
    let r = t
        .http
        .post(t.url("/reserve"))
        .header("Idempotency-Key", "k".repeat(200))
        .json(&hold("hub-b", "tea", 1))
        .send()
        .await
        .unwrap();
    let (s, b) = split(r).await;
    assert_eq!((s, code(&b)), (400, "INVALID_ARGUMENT"), "{b}");

    for path in [
        "/stock/a%3Ab/tea",
        "/stock/a%20b/tea",
        "/stock/%7Bhub/tea",
        &format!("/stock/{long}/tea"),
        "/stock/hub-b/t%7Da",
        "/reservations/nope",
    ] {
        let (s, b) = t.get(path).await;
        assert_eq!((s, code(&b)), (400, "INVALID_ARGUMENT"), "{path}: {b}");
    }
    let (s, b) = t.get("/no/such/route").await;
    assert_eq!((s, code(&b)), (404, "NOT_FOUND"), "{b}");
    let (s, b) = split(t.http.delete(t.url("/reserve")).send().await.unwrap()).await;
    assert_eq!((s, code(&b)), (405, "METHOD_NOT_ALLOWED"), "{b}");

    t.drain_writer().await;
    assert_eq!(redis_snapshot(&t).await, redis_before, "Redis changed");
    assert_eq!(pg_snapshot(&t).await, pg_before, "Postgres changed");
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_item_holds_report_remaining_and_stock_reads_follow_the_contract() {
    let t = TestInventory::start().await;
    t.set_stock("hub-m", "a", 5).await;
    t.set_stock("hub-m", "b", 1).await;
    let (s, b) = t
        .post(
            "/reserve",
            json!({"hub_id": "hub-m", "cart_id": "c", "user_id": "u",
        "items": [{"sku": "b", "quantity": 1}, {"sku": "a", "quantity": 2}]}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        b["data"]["items"],
        json!([{"sku": "b", "quantity": 1, "remaining": 0}, {"sku": "a", "quantity": 2, "remaining": 3}])
    );
    let (s, b) = t
        .post(
            "/reserve",
            json!({"hub_id": "hub-m", "cart_id": "c", "user_id": "u",
        "items": [{"sku": "a", "quantity": 1}, {"sku": "b", "quantity": 1}]}),
        )
        .await;
    assert_eq!((s, code(&b)), (409, "INSUFFICIENT_STOCK"));
    assert_eq!(
        b["error"]["details"],
        json!({"sku": "b", "available": 0, "requested": 1})
    );
    assert_eq!(t.stock("hub-m", "a").await, (3, 2), "all or nothing");
    let (s, b) = t.post("/reserve", hold("hub-m", "zzz", 1)).await;
    assert_eq!(
        (s, code(&b), &b["error"]["details"]["sku"]),
        (409, "SKU_NOT_FOUND", &json!("zzz"))
    );
    let (s, b) = t.get("/stock/hub-m/unknown").await;
    assert_eq!(s, 200);
    assert_eq!(
        b["data"],
        json!({"hub_id": "hub-m", "sku": "unknown", "available": 0, "reserved": 0, "partitioned": false, "buckets": 1})
    );
    let (s, b) = t
        .post(
            "/admin/stock",
            json!({"hub_id": "hub-m", "sku": "c", "quantity": 10, "buckets": 4}),
        )
        .await;
    assert_eq!((s, &b["data"]["available"]), (200, &json!(10)));
    let (_, b) = t.get("/stock/hub-m/c").await;
    assert_eq!(
        (&b["data"]["partitioned"], &b["data"]["buckets"]),
        (&json!(true), &json!(4))
    );
    let (s, b) = t
        .post(
            "/admin/cycle-count",
            json!({"hub_id": "hub-m", "sku": "a", "physical_quantity": 4, "counted_by": "ann"}),
        )
        .await;
    assert_eq!(
        (s, &b["data"]),
        (
            200,
            &json!({"hub_id": "hub-m", "sku": "a", "on_hand": 4, "delta": -1})
        )
    );
    assert_eq!(
        t.stock("hub-m", "a").await,
        (2, 2),
        "cycle count keeps held units held"
    );
    t.drain_writer().await;
    let reasons: Vec<(String, i32)> =
        sqlx::query_as("SELECT reason, delta FROM stock_movements WHERE sku = 'a' ORDER BY id")
            .fetch_all(&t.app.pool)
            .await
            .unwrap();
    assert_eq!(
        reasons,
        vec![("ADMIN_SET".into(), 5), ("CYCLE_COUNT".into(), -1)]
    );
    assert!(reconcile_once(&t.app).await.unwrap().mismatches.is_empty());
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_and_confirm_find_the_hub_themselves_and_are_retry_safe() {
    let t = TestInventory::start().await;
    t.set_stock("hub-r", "oil", 5).await;
    let (_, b) = t.post("/reserve", hold("hub-r", "oil", 2)).await;
    let rid = b["data"]["reservation_id"].as_str().unwrap().to_string();
    // Reference clients send hub_id (and an ignored sku) as query parameters.
    let (s, b) = t
        .post(
            "/confirm?hub_id=hub-r&sku=whatever",
            json!({"reservation_id": rid}),
        )
        .await;
    assert_eq!((s, &b["data"]["status"]), (200, &json!("CONFIRMED")), "{b}");
    let (s, _) = t.post("/confirm", json!({"reservation_id": rid})).await;
    assert_eq!(s, 200, "a second confirm is a no-op");
    let (s, b) = t
        .post(
            "/release",
            json!({"reservation_id": rid, "hub_id": "hub-r"}),
        )
        .await;
    assert_eq!((s, code(&b)), (409, "INVALID_STATE"));
    let (s, b) = t
        .post(
            "/confirm",
            json!({"reservation_id": rid, "hub_id": "other-hub"}),
        )
        .await;
    assert_eq!(
        (s, code(&b)),
        (404, "RESERVATION_NOT_FOUND"),
        "a wrong hub finds nothing"
    );
    let (_, b) = t.get("/stock/hub-r/oil").await;
    assert_eq!(
        (&b["data"]["available"], &b["data"]["reserved"]),
        (&json!(3), &json!(0))
    );
    t.drain_writer().await;
    let on_hand: i32 = sqlx::query_scalar("SELECT on_hand FROM inventory_stock WHERE sku = 'oil'")
        .fetch_one(&t.app.pool)
        .await
        .unwrap();
    assert_eq!(on_hand, 3);
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_is_rebuilt_from_postgres_when_it_comes_back_empty() {
    let t = TestInventory::start().await;
    t.set_stock("hub-x", "a", 10).await;
    t.post(
        "/admin/stock",
        json!({"hub_id": "hub-x", "sku": "b", "quantity": 5, "buckets": 2}),
    )
    .await;
    let (_, b) = t.post("/reserve", hold("hub-x", "a", 3)).await;
    let live = b["data"]["reservation_id"].as_str().unwrap().to_string();
    let (_, b) = t
        .post(
            "/reserve",
            json!({"hub_id": "hub-x", "cart_id": "c", "user_id": "u",
        "items": [{"sku": "a", "quantity": 2}, {"sku": "b", "quantity": 1}]}),
        )
        .await;
    let done = b["data"]["reservation_id"].as_str().unwrap().to_string();
    assert_eq!(
        t.post("/confirm", json!({"reservation_id": done})).await.0,
        200
    );
    t.drain_writer().await;
    let store = t.cfg.store.clone();
    let mut conn = t.app.store.connection();
    t.stop().await;
    qc_kit::testing::delete_prefix(
        &mut conn,
        &qc_kit::redis_kit::KeyPrefix::new(store.key_prefix.clone()),
    )
    .await
    .unwrap();

    let t = TestInventory::start_with(store, |_| {}).await;
    assert_eq!(t.stock("hub-x", "a").await, (5, 3));
    let (_, b) = t.get("/stock/hub-x/b").await;
    assert_eq!(
        (&b["data"]["available"], &b["data"]["buckets"]),
        (&json!(4), &json!(2))
    );
    let (s, b) = t.get(&format!("/reservations/{live}")).await;
    assert_eq!((s, &b["data"]["status"]), (200, &json!("RESERVED")), "{b}");
    assert_eq!(
        t.post("/confirm", json!({"reservation_id": live})).await.0,
        200
    );
    assert_eq!(t.stock("hub-x", "a").await, (5, 0));
    t.drain_writer().await;
    assert!(reconcile_once(&t.app).await.unwrap().mismatches.is_empty());
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_reports_drift_and_the_writer_is_idempotent() {
    let t = TestInventory::start().await;
    t.set_stock("hub-d", "salt", 7).await;
    let (_, b) = t.post("/reserve", hold("hub-d", "salt", 2)).await;
    let rid = b["data"]["reservation_id"].as_str().unwrap().to_string();
    t.post("/confirm", json!({"reservation_id": rid})).await;
    t.drain_writer().await;
    let before = pg_snapshot(&t).await;

    // Replaying every stream entry (as after a crash before XACK) changes nothing.
    let mut conn = t.app.store.connection();
    let entries: Vec<(String, std::collections::HashMap<String, String>)> = {
        let v: redis::Value = redis::cmd("XRANGE")
            .arg(
                t.app
                    .keys
                    .events(&qc_inventory::HubId::parse("hub-d").unwrap()),
            )
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .unwrap();
        let redis::Value::Array(items) = v else {
            panic!("{v:?}")
        };
        items
            .into_iter()
            .map(|e| {
                let (id, fields): (String, std::collections::HashMap<String, String>) =
                    redis::FromRedisValue::from_redis_value(e).unwrap();
                (id, fields)
            })
            .collect()
    };
    assert_eq!(entries.len(), 3, "ADMIN_SET, RESERVED, CONFIRMED");
    let hub = qc_inventory::HubId::parse("hub-d").unwrap();
    for (id, fields) in &entries {
        let ev = qc_inventory::pg::parse_event(fields).unwrap();
        qc_inventory::pg::apply_event(&t.app.pool, &hub, id, &ev)
            .await
            .unwrap();
    }
    assert_eq!(pg_snapshot(&t).await, before);
    assert!(reconcile_once(&t.app).await.unwrap().mismatches.is_empty());

    let _: () = redis::cmd("INCRBY")
        .arg(
            t.app
                .keys
                .counter(&hub, &qc_inventory::Sku::parse("salt").unwrap(), 1, 0),
        )
        .arg(3)
        .query_async(&mut conn)
        .await
        .unwrap();
    let report = reconcile_once(&t.app).await.unwrap();
    assert_eq!(report.mismatches.len(), 1, "{report:?}");
    assert!(report.mismatches[0].contains("salt"), "{report:?}");
    let (_, metrics) = t.get("/metrics").await;
    assert!(metrics
        .as_str()
        .unwrap()
        .contains("inventory_reconcile_mismatches_total{hub_id=\"hub-d\"} 1"));
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_metrics_and_the_internal_token() {
    let t = TestInventory::start_with(qc_kit::testing::isolated_store_config(), |c| {
        c.internal_api_token = Some("s3cret".into());
    })
    .await;
    let body = json!({"hub_id": "hub-t", "sku": "x", "quantity": 1});
    let r = t
        .http
        .post(t.url("/admin/stock"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(split(r).await.0, 401);
    let r = t
        .http
        .post(t.url("/admin/stock"))
        .header("X-Internal-Token", "nope")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(split(r).await.0, 403);
    let r = t
        .http
        .post(t.url("/admin/stock"))
        .header("X-Internal-Token", "s3cret")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(split(r).await.0, 200);

    let r = t
        .http
        .get(t.url("/stock/bad:hub/x"))
        .header("X-Request-ID", "req-42.a_b")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "req-42.a_b");
    let (_, b) = split(r).await;
    assert_eq!(b["error"]["request_id"], json!("req-42.a_b"));
    let r = t
        .http
        .get(t.url("/health"))
        .header("X-Request-ID", "bad id!")
        .send()
        .await
        .unwrap();
    let echoed = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(echoed.len(), 36, "replaced by a UUID: {echoed}");

    let (s, b) = t.get("/ready").await;
    assert_eq!(
        (s, &b["data"]["checks"]),
        (200, &json!({"redis": "ok", "postgres": "ok"}))
    );
    let r = t.http.get(t.url("/metrics")).send().await.unwrap();
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = r.text().await.unwrap();
    assert!(
        text.contains(
            r#"http_requests_total{method="GET",route="/stock/{hub_id}/{sku}",status="400"} 1"#
        ),
        "{text}"
    );
    assert!(!text.contains("bad:hub"), "raw paths never become labels");
    assert!(text.contains(
        r#"http_request_duration_seconds_bucket{method="POST",route="/admin/stock",le="0.001"}"#
    ));
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_reserves_never_oversell() {
    let t = TestInventory::start().await;
    t.set_stock("hub-a", "milk", 100).await;
    let mut tasks = Vec::new();
    for i in 0..500 {
        let (http, url) = (t.http.clone(), t.url("/reserve"));
        tasks.push(tokio::spawn(async move {
            let body = json!({"hub_id": "hub-a", "cart_id": format!("c{i}"), "user_id": format!("u{i}"),
                              "items": [{"sku": "milk", "quantity": 1}]});
            split(http.post(url).json(&body).send().await.unwrap()).await
        }));
    }
    let (mut ok, mut refused, mut rids) = (0, 0, Vec::new());
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            201 => {
                ok += 1;
                rids.push(body["data"]["reservation_id"].as_str().unwrap().to_string());
            }
            409 => {
                assert_eq!(code(&body), "INSUFFICIENT_STOCK", "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((ok, refused), (100, 400));
    assert_eq!(t.stock("hub-a", "milk").await, (0, 100));

    // Release half over HTTP; let the other half expire through the reaper.
    for rid in &rids[..50] {
        let (s, b) = t.post("/release", json!({"reservation_id": rid})).await;
        assert_eq!(
            (s, b["data"]["status"].as_str()),
            (200, Some("RELEASED")),
            "{b}"
        );
    }
    assert_eq!(t.stock("hub-a", "milk").await, (50, 50));
    t.clock.advance_ms((900 + 30) * 1000 + 1);
    let reaped = reap_once(&t.app).await.unwrap().expect("lease is free");
    assert_eq!(reaped.expired, 50);
    assert_eq!(t.stock("hub-a", "milk").await, (100, 0));

    // Postgres agrees once the writer has caught up.
    t.drain_writer().await;
    let pool = &t.app.pool;
    let on_hand: i32 = sqlx::query_scalar(
        "SELECT on_hand FROM inventory_stock WHERE hub_id = 'hub-a' AND sku = 'milk'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(on_hand, 100);
    let by_status: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM reservations GROUP BY status ORDER BY status")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(
        by_status,
        vec![("EXPIRED".into(), 50), ("RELEASED".into(), 50)]
    );
    let report = reconcile_once(&t.app).await.unwrap();
    assert_eq!(
        (report.hubs_checked, report.mismatches.len()),
        (1, 0),
        "{report:?}"
    );
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_expire_by_the_manual_clock_and_never_credit_twice() {
    let t = TestInventory::start().await;
    t.set_stock("hub-e", "eggs", 10).await;
    let (s, b) = t
        .post(
            "/reserve",
            json!({"hub_id": "hub-e", "cart_id": "c", "user_id": "u",
        "items": [{"sku": "eggs", "quantity": 4}], "ttl_seconds": 60}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let rid = b["data"]["reservation_id"].as_str().unwrap().to_string();
    assert_eq!(b["data"]["expires_at"].as_i64(), Some(T0_MS + 60_000));

    // At expires_at + grace exactly the hold is still live; one ms later the reaper takes it.
    t.clock.set_ms(T0_MS + 60_000 + 30_000);
    assert_eq!(reap_once(&t.app).await.unwrap().unwrap().expired, 0);
    assert_eq!(t.stock("hub-e", "eggs").await, (6, 4));
    t.clock.advance_ms(1);
    assert_eq!(reap_once(&t.app).await.unwrap().unwrap().expired, 1);
    assert_eq!(t.stock("hub-e", "eggs").await, (10, 0));
    let (s, b) = t.post("/confirm", json!({"reservation_id": rid})).await;
    assert_eq!((s, code(&b)), (409, "RESERVATION_EXPIRED"), "{b}");
    let (s, b) = t.get(&format!("/reservations/{rid}")).await;
    assert_eq!((s, b["data"]["status"].as_str()), (200, Some("EXPIRED")));
    assert_eq!(b["data"]["expired_at"].as_i64(), Some(T0_MS + 90_001));

    // Releases racing the reaper on due holds: every unit comes back exactly once.
    t.set_stock("hub-e", "eggs", 50).await;
    let mut rids = Vec::new();
    for i in 0..40 {
        let (s, b) = t
            .post(
                "/reserve",
                json!({"hub_id": "hub-e", "cart_id": "c", "user_id": format!("u{i}"),
            "items": [{"sku": "eggs", "quantity": 1}], "ttl_seconds": 1}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        rids.push(b["data"]["reservation_id"].as_str().unwrap().to_string());
    }
    assert_eq!(t.stock("hub-e", "eggs").await, (10, 40));
    t.clock.advance_ms(31_001);
    let mut racers = Vec::new();
    for rid in rids.clone() {
        let (http, url) = (t.http.clone(), t.url("/release"));
        racers.push(tokio::spawn(async move {
            split(
                http.post(url)
                    .json(&json!({"reservation_id": rid}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }));
    }
    let reapers: Vec<_> = (0..3)
        .map(|_| {
            let app = t.app.clone();
            tokio::spawn(async move {
                qc_inventory::jobs::reap_once(&app.store, app.clock.now_ms(), 7).await
            })
        })
        .collect();
    for r in racers {
        let (s, b) = r.await.unwrap();
        assert_eq!(
            (s, b["data"]["status"].as_str()),
            (200, Some("EXPIRED")),
            "{b}"
        );
    }
    for r in reapers {
        r.await.unwrap().unwrap();
    }
    assert_eq!(t.stock("hub-e", "eggs").await, (50, 0));
    t.drain_writer().await;
    assert!(reconcile_once(&t.app).await.unwrap().mismatches.is_empty());
    t.finish().await;
}
