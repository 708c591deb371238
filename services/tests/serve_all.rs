//! One order end to end through `qc serve all` (issue #13), the way production runs it: one
//! real process with every service on its port (shifted by `PORT_OFFSET`), driven only over
//! HTTP and SSE. Products through Catalog's API, stock through Inventory's, a hub through Geo's,
//! a promo through Promo's, a rider through Dispatch's rider app API; the shopper finds the
//! milk through Search and checks out at Catalog's prices (hold, promo, charge, confirm) →
//! `dispatch_queue` → Dispatch claims and assigns → the rider accepts and
//! delivers → Tracking's SSE stream says delivered → ETA records the trip. Then every store is
//! read directly: Redis stock, Postgres orders, queue, outbox (relayed to the stream),
//! assignments and ETA observations.

mod common;

use std::time::{Duration, Instant};

use common::{wait_ready, Qc};
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::testing::{delete_prefix, isolated_store_config, redis_for_test};
use serde_json::{json, Value};

/// An offset at which every service port is free.
fn free_offset() -> u16 {
    let ports = [8091u16, 8092, 8094, 8095, 8096, 8097, 8098, 8099, 8100];
    for seed in 0..200u16 {
        let off = 20_000 + (std::process::id() as u16 % 97) * 100 + seed * 13;
        if ports
            .iter()
            .all(|p| std::net::TcpListener::bind(("127.0.0.1", p + off)).is_ok())
        {
            return off;
        }
    }
    panic!("no free port offset");
}

struct Platform {
    http: reqwest::Client,
    off: u16,
}

impl Platform {
    fn url(&self, port: u16, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", port + self.off)
    }

    async fn call(&self, port: u16, path: &str, body: Option<Value>) -> (u16, Value) {
        let r = match body {
            Some(b) => self.http.post(self.url(port, path)).json(&b),
            None => self.http.get(self.url(port, path)),
        };
        let r = r.send().await.unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn ok(&self, port: u16, path: &str, body: Value) -> Value {
        let (s, b) = self.call(port, path, Some(body)).await;
        assert!(s < 300, "{path}: {s} {b}");
        b
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_goes_from_checkout_to_the_door_through_qc_serve_all() {
    let store = isolated_store_config();
    let off = free_offset();
    let at = |port: u16| format!("http://127.0.0.1:{}", port + off);
    let env = vec![
        ("PORT_OFFSET", off.to_string()),
        ("BIND_ADDR", "127.0.0.1".to_string()),
        ("GEO_URL", at(8092)),
        ("PROMO_URL", at(8095)),
        ("ETA_URL", at(8097)),
        ("TRACKING_URL", at(8099)),
        ("CATALOG_URL", at(8100)),
        ("SEARCH_POLL_MS", "50".into()),
        ("CHECKOUT_RELAY_MS", "50".into()),
        ("DISPATCH_MIN_ORDERS", "1".into()),
        ("DISPATCH_WINDOW_MS", "50".into()),
        ("DISPATCH_POLL_MS", "50".into()),
        ("DISPATCH_LEADER_LEASE_MS", "300".into()),
    ];
    let qc = tokio::task::block_in_place(|| {
        let qc = Qc::spawn(&["serve", "all"], &store, &env);
        for port in [8091, 8092, 8094, 8095, 8096, 8097, 8098, 8099, 8100] {
            wait_ready(port + off, Duration::from_secs(60));
        }
        qc
    });
    let p = Platform {
        http: reqwest::Client::new(),
        off,
    };

    // The city: a catalog, a hub, its stock, a promo, a rider on shift.
    for (sku, name, price) in [
        ("milk", "Susu UHT 1 L", 18_500),
        ("bread", "Roti Tawar", 15_000),
    ] {
        let r = p
            .http
            .put(p.url(8100, &format!("/products/{sku}")))
            .json(&json!({"name": name, "price": price}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    }
    p.ok(
        8092,
        "/admin/hubs",
        json!({"id": "jkt-01", "lat": -6.2, "lng": 106.8, "max_radius_km": 5}),
    )
    .await;
    for sku in ["milk", "bread"] {
        p.ok(
            8091,
            "/admin/stock",
            json!({"hub_id": "jkt-01", "sku": sku, "quantity": 20}),
        )
        .await;
    }
    let rule = p
        .ok(
            8095,
            "/api/v1/promo/admin/rules",
            json!({"name": "10% off",
            "conditions": {"type": "min_transaction", "min_amount": 10000},
            "effect": {"type": "percentage", "value": 10}, "limits": {"max_total": 100}}),
        )
        .await;
    let rule_id = rule["data"]["id"].as_str().unwrap().to_string();
    p.ok(
        8096,
        "/dispatch/driver/register",
        json!({"driver_id": "r-1", "name": "Rider", "location": {"lat": -6.2, "lng": 106.8}}),
    )
    .await;
    p.ok(
        8096,
        "/dispatch/driver/state",
        json!({"driver_id": "r-1", "to": "IDLE"}),
    )
    .await;

    // The shopper finds the milk (Search follows Catalog's feed), then checks out.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, b) = p.call(8098, "/search?q=milk&hub_id=jkt-01", None).await;
        if b["data"]["products"][0]["sku"] == "milk" {
            assert_eq!(b["data"]["products"][0]["stock_qty"], 20, "{b}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "search never found the milk: {b}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = p
        .http
        .post(p.url(8094, "/api/v1/checkout"))
        .header("Idempotency-Key", "cart-1")
        .json(&json!({"user_id": "u-1", "hub_id": "jkt-01",
            "items": [{"sku": "milk", "quantity": 2}, {"sku": "bread", "quantity": 1}],
            "payment": {"method": "card", "card_token": "tok_visa"},
            "delivery_location": {"lat": -6.21, "lng": 106.81}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let created: Value = r.json().await.unwrap();
    let order_id = created["data"]["order_id"].as_str().unwrap().to_string();
    assert_eq!(
        (
            created["data"]["subtotal"].as_i64(),
            created["data"]["total"].as_i64()
        ),
        (Some(52_000), Some(46_800)),
        "server prices, 10% off"
    );

    // The customer watches the order on Tracking's SSE stream from here on.
    let mut sse = p
        .http
        .get(p.url(8099, &format!("/sse/order/tracking/{order_id}?user_id=u-1")))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status().as_u16(), 200);

    // Dispatch claims the queue row and offers the rider the order.
    let deadline = Instant::now() + Duration::from_secs(20);
    let assignment = loop {
        let (_, o) = p
            .call(8096, &format!("/dispatch/orders/{order_id}"), None)
            .await;
        if let Some(a) = o["data"]["current_assignment_id"].as_str() {
            assert_eq!(o["data"]["assigned_driver_id"], "r-1", "{o}");
            break a.to_string();
        }
        assert!(Instant::now() < deadline, "never assigned: {o}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    p.ok(
        8096,
        "/dispatch/driver/accept",
        json!({"assignment_id": assignment, "driver_id": "r-1"}),
    )
    .await;
    for to in ["PICKING", "DELIVERING", "COMPLETED"] {
        p.ok(
            8096,
            "/dispatch/driver/state",
            json!({"driver_id": "r-1", "to": to}),
        )
        .await;
    }

    // The stream says delivered.
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.contains("delivered") {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, sse.chunk()).await {
            Ok(Ok(Some(c))) => seen.push_str(&String::from_utf8_lossy(&c)),
            other => panic!("stream ended or stalled ({other:?}); saw:\n{seen}"),
        }
    }

    // Every store, read directly.
    let pool = qc_kit::pg::connect(&store, 2).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (observed, sent): (i64, i64) = loop {
        let observed: i64 = sqlx::query_scalar("SELECT count(*) FROM eta_observations")
            .fetch_one(&pool)
            .await
            .unwrap();
        let sent: i64 =
            sqlx::query_scalar("SELECT count(*) FROM checkout_outbox WHERE status = 'sent'")
                .fetch_one(&pool)
                .await
                .unwrap();
        if observed >= 1 && sent == 2 {
            break (observed, sent);
        }
        assert!(
            Instant::now() < deadline,
            "eta observations {observed}, outbox sent {sent}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((observed, sent), (1, 2));
    let order: (String, String, i64) = sqlx::query_as(
        "SELECT status, payment_status, total FROM checkout_orders WHERE id = $1::uuid",
    )
    .bind(&order_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(order, ("confirmed".into(), "charged".into(), 46_800));
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM dispatch_queue WHERE order_id = $1")
        .bind(&order_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(queued, 1);
    let (_, o) = p
        .call(8096, &format!("/dispatch/orders/{order_id}"), None)
        .await;
    assert_eq!(o["data"]["status"], "DELIVERED", "{o}");
    for (sku, left) in [("milk", 18), ("bread", 19)] {
        let (_, s) = p.call(8091, &format!("/stock/jkt-01/{sku}"), None).await;
        assert_eq!(
            (
                s["data"]["available"].as_i64(),
                s["data"]["reserved"].as_i64()
            ),
            (Some(left), Some(0)),
            "{sku}: sold, not held: {s}"
        );
    }
    let (_, usage) = p
        .call(
            8095,
            &format!("/api/v1/promo/admin/rules/{rule_id}/usage"),
            None,
        )
        .await;
    assert_eq!(usage["data"]["total"], 1, "one redemption: {usage}");
    let mut conn = redis_for_test(&store).await;
    let stream: Vec<(String, std::collections::HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(format!("{}checkout:events", store.key_prefix))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let types: Vec<&str> = stream
        .iter()
        .map(|(_, f)| f["event_type"].as_str())
        .collect();
    assert_eq!(types, ["order.confirmed", "payment.charged"]);

    drop(sse);
    tokio::task::block_in_place(|| qc.kill9());
    pool.close().await;
    delete_prefix(&mut conn, &KeyPrefix::new(store.key_prefix.clone()))
        .await
        .unwrap();
    qc_kit::pg::drop_schema(&store).await.unwrap();
}
