//! The flash sale over real HTTP with real Redis and Postgres (issue #15): a 10,000-buyer burst
//! for 100 units, tokens that must not work, 03's error answers, the freed unit going to the
//! head of the queue (seen on the queue's SSE stream), and stock that adds up after confirms,
//! releases and expiries.

use std::sync::Arc;

use futures::StreamExt;
use qc_flashsale::orders::{Orders, PgOrders};
use qc_kit::config::{EnvSource, StoreConfig};
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::testing::{delete_prefix, isolated_store_config, redis_for_test};
use qc_kit::{Clock, ManualClock};
use qc_services::flashsale::{self, FlashApp};
use qc_services::platform::config::PlatformConfig;
use qc_services::platform::shutdown::Shutdown;
use qc_tests::{code, serve_loopback, Api};
use serde_json::{json, Value};

const NOW: i64 = 1_796_112_000_000;

struct Sale {
    api: Api,
    app: Arc<FlashApp>,
    clock: Arc<ManualClock>,
    store: StoreConfig,
    stop: Shutdown,
}

impl Sale {
    async fn start(env: &[(&str, &str)]) -> Self {
        let store = isolated_store_config();
        let mut cfg = PlatformConfig::from_env(&EnvSource::from_pairs([])).unwrap();
        cfg.store = store.clone();
        let stop = Shutdown::new();
        let clock = Arc::new(ManualClock::new(NOW));
        // The jobs run by hand here, on the test's clock.
        let pairs = env.iter().copied().chain([("FLASH_JOBS", "off")]);
        let settings =
            flashsale::FlashSettings::from_env(&EnvSource::from_pairs(pairs), "test").unwrap();
        let (app, svc) = flashsale::build(&cfg, settings, clock.clone(), stop.clone())
            .await
            .unwrap();
        let (base, _) = serve_loopback(svc, &stop).await;
        Self {
            api: Api::new(base),
            app,
            clock,
            store,
            stop,
        }
    }

    async fn init(&self, body: Value) -> (u16, Value) {
        self.api.post("/admin/flash-sale/init-product", body).await
    }

    async fn token(&self, user: &str, device: &str, product: &str) -> String {
        let (s, b) = self
            .api
            .get(&format!(
                "/flash-sale/token?user_id={user}&device_fp={device}&product_id={product}"
            ))
            .await;
        assert_eq!(s, 200, "{b}");
        b["data"]["token"].as_str().unwrap().to_string()
    }

    async fn buy(&self, user: &str, device: &str, product: &str, key: &str) -> (u16, Value) {
        let token = self.token(user, device, product).await;
        self.api
            .post(
                "/flash-sale/checkout",
                json!({"product_id": product, "user_id": user, "device_fp": device, "token": token,
                       "quantity": 1, "idempotency_key": key}),
            )
            .await
    }

    async fn stock(&self, product: &str) -> Value {
        let (s, b) = self
            .api
            .get(&format!("/admin/flash-sale/stock?product_id={product}"))
            .await;
        assert_eq!(s, 200, "{b}");
        b["data"].clone()
    }

    async fn stop(self) {
        self.stop.trigger();
        let mut c = redis_for_test(&self.store).await;
        delete_prefix(&mut c, &KeyPrefix::new(self.store.key_prefix.clone()))
            .await
            .unwrap();
        qc_kit::pg::drop_schema(&self.store).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_buyers_for_a_hundred_units_get_exactly_a_hundred() {
    let sale = Arc::new(Sale::start(&[]).await);
    let (s, b) = sale
        .init(json!({"product_id": "ps5", "total_stock": 100, "bucket_count": 8}))
        .await;
    assert_eq!(s, 200, "{b}");
    // 10,000 buyers at once (each its own account and phone), 512 requests in flight.
    let gate = Arc::new(tokio::sync::Semaphore::new(512));
    let tasks: Vec<_> = (0..10_000)
        .map(|i| {
            let (sale, gate) = (sale.clone(), gate.clone());
            tokio::spawn(async move {
                let _p = gate.acquire().await.unwrap();
                let (s, b) = sale
                    .buy(&format!("u{i}"), &format!("fp{i}"), "ps5", "k")
                    .await;
                (format!("u{i}"), s, b)
            })
        })
        .collect();
    let mut by_status = std::collections::BTreeMap::<u16, u64>::new();
    let mut reservations = Vec::new();
    for t in tasks {
        let (user, s, b) = t.await.unwrap();
        *by_status.entry(s).or_default() += 1;
        match s {
            200 => reservations.push((
                b["data"]["reservation_id"].as_str().unwrap().to_string(),
                user,
            )),
            202 => assert_eq!(b["data"]["status"], "queued"),
            503 => assert_eq!(code(&b), "SLOT_POOL_FULL", "{b}"),
            other => panic!("{other}: {b}"),
        }
    }
    println!("10,000 buyers: {by_status:?}");
    assert_eq!(by_status[&200], 100, "{by_status:?}");
    let v = sale.stock("ps5").await;
    assert_eq!(
        (v["remaining"].as_i64(), v["reserved_qty"].as_i64()),
        (Some(0), Some(100)),
        "{v}"
    );
    assert!(
        v["queue_length"].as_u64().unwrap() > 9_000 - by_status.get(&503).copied().unwrap_or(0),
        "{v}"
    );
    // 60 pay, 20 give up, 20 never come back.
    for (k, (rid, user)) in reservations.iter().enumerate() {
        let path = if k < 60 {
            "/flash-sale/confirm"
        } else if k < 80 {
            "/flash-sale/release"
        } else {
            continue;
        };
        let (s, b) = sale
            .api
            .post(path, json!({"reservation_id": rid, "user_id": user}))
            .await;
        assert_eq!(s, 200, "{path}: {b}");
    }
    sale.clock.advance_ms(300_000 + 15_000);
    assert_eq!(
        sale.app.core.reap_once(sale.clock.now_ms()).await.unwrap(),
        20
    );
    let v = sale.stock("ps5").await;
    assert_eq!(
        (
            v["remaining"].as_i64(),
            v["reserved_qty"].as_i64(),
            v["confirmed_qty"].as_i64()
        ),
        (Some(40), Some(0), Some(60)),
        "{v}"
    );
    let sold = PgOrders {
        pool: qc_kit::pg::connect(&sale.store, 1).await.unwrap(),
    }
    .sold("ps5")
    .await
    .unwrap();
    assert_eq!(sold, 60);
    // The 40 units are the queue's: admission hands out passes, 10 a tick (03's batch), to the
    // head of the queue, and no more than there are units.
    let before = v["queue_length"].as_u64().unwrap();
    let mut admitted = 0;
    for _ in 0..5 {
        admitted += sale.app.admit_tick().await.unwrap();
    }
    assert_eq!(admitted, 40);
    assert_eq!(
        sale.stock("ps5").await["queue_length"].as_u64().unwrap(),
        before - 40
    );
    Arc::try_unwrap(sale).ok().unwrap().stop().await;
}

#[tokio::test]
async fn bad_input_and_bad_tokens_change_nothing() {
    let sale = Sale::start(&[("FLASH_USER_BURST", "50")]).await;
    assert_eq!(
        sale.init(json!({"product_id": "p", "total_stock": 5}))
            .await
            .0,
        200
    );
    let good = sale.token("u1", "fp1", "p").await;
    let mut other = sale.token("u2", "fp2", "p").await;
    let body = |user: &str, device: &str, product: &str, token: &str, key: &str| {
        json!({"product_id": product, "user_id": user, "device_fp": device, "token": token,
               "quantity": 1, "idempotency_key": key})
    };
    let forged = format!("{}0", &good[..good.len() - 1]);
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("no body fields", json!({}), 400, "INVALID_ARGUMENT"),
        (
            "quantity 0",
            json!({"product_id": "p", "user_id": "u1", "device_fp": "fp1", "token": good, "quantity": 0, "idempotency_key": "k"}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "id with a colon",
            body("u:1", "fp1", "p", &good, "k"),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "forged",
            body("u1", "fp1", "p", &forged, "k1"),
            401,
            "INVALID_ATTESTATION",
        ),
        (
            "another user's token",
            body("u1", "fp1", "p", &other, "k2"),
            401,
            "INVALID_ATTESTATION",
        ),
        (
            "another device",
            body("u1", "fpX", "p", &good, "k3"),
            401,
            "INVALID_ATTESTATION",
        ),
        (
            "another product",
            body("u1", "fp1", "q", &good, "k4"),
            401,
            "INVALID_ATTESTATION",
        ),
    ];
    for (what, b, status, c) in cases {
        let (s, r) = sale.api.post("/flash-sale/checkout", b).await;
        assert_eq!((s, code(&r)), (status, c), "{what}: {r}");
        assert!(
            r["error"]["request_id"].is_string(),
            "{what}: the envelope: {r}"
        );
    }
    // Expired: the clock moves past the token's 30 s.
    sale.clock.advance_ms(30_001);
    let (s, r) = sale
        .api
        .post("/flash-sale/checkout", body("u1", "fp1", "p", &good, "k5"))
        .await;
    assert_eq!((s, code(&r)), (401, "INVALID_ATTESTATION"), "{r}");
    // Used once, then replayed under a new key.
    other = sale.token("u2", "fp2", "p").await;
    assert_eq!(
        sale.api
            .post("/flash-sale/checkout", body("u2", "fp2", "p", &other, "a"))
            .await
            .0,
        200
    );
    let (s, r) = sale
        .api
        .post("/flash-sale/checkout", body("u2", "fp2", "p", &other, "b"))
        .await;
    assert_eq!((s, code(&r)), (401, "INVALID_ATTESTATION"), "{r}");
    let v = sale.stock("p").await;
    assert_eq!(
        (v["remaining"].as_i64(), v["reserved_qty"].as_i64()),
        (Some(4), Some(1)),
        "only the good one: {v}"
    );
    // 404s, 409s, 400s on the other routes.
    let (s, r) = sale
        .api
        .get("/flash-sale/token?user_id=u&device_fp=d&product_id=none")
        .await;
    assert_eq!((s, code(&r)), (404, "NOT_FOUND"));
    let (s, r) = sale
        .api
        .get("/flash-sale/token?user_id=u&product_id=p")
        .await;
    assert_eq!((s, code(&r)), (400, "INVALID_ARGUMENT"), "{r}");
    let (s, r) = sale
        .api
        .post(
            "/flash-sale/confirm",
            json!({"reservation_id": "RES-none", "user_id": "u"}),
        )
        .await;
    assert_eq!((s, code(&r)), (404, "NOT_FOUND"));
    let (s, r) = sale
        .api
        .post("/flash-sale/release", json!({"user_id": "u"}))
        .await;
    assert_eq!((s, code(&r)), (400, "INVALID_ARGUMENT"));
    let (s, r) = sale
        .init(json!({"product_id": "p", "total_stock": 9}))
        .await;
    assert_eq!((s, code(&r)), (409, "SALE_ACTIVE"), "{r}");
    let (s, r) = sale
        .init(json!({"product_id": "p", "total_stock": -1, "force": true}))
        .await;
    assert_eq!((s, code(&r)), (400, "INVALID_ARGUMENT"), "{r}");
    let (s, r) = sale.init(json!({"product_id": "p", "total_stock": 9, "reservation_ttl_seconds": 5, "force": true})).await;
    assert_eq!((s, code(&r)), (400, "INVALID_ARGUMENT"), "{r}");
    let (s, r) = sale.api.get("/flash-sale/queue-status?product_id=p").await;
    assert_eq!((s, code(&r)), (400, "INVALID_ARGUMENT"));
    assert_eq!(sale.stock("p").await, v, "nothing changed");
    // 429: 20 requests per device per second.
    let mut last = (0, Value::Null);
    for _ in 0..21 {
        last = sale
            .api
            .get("/flash-sale/token?user_id=u9&device_fp=busy&product_id=p")
            .await;
    }
    assert_eq!((last.0, code(&last.1)), (429, "RATE_LIMITED"), "{}", last.1);
    let r = sale
        .api
        .http
        .get(format!(
            "{}/flash-sale/slot-status?product_id=p",
            sale.api.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    sale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_unit_goes_to_the_head_of_the_queue_who_hears_it_on_the_stream() {
    let sale = Sale::start(&[]).await;
    sale.init(json!({"product_id": "p", "total_stock": 1}))
        .await;
    let (s, first) = sale.buy("a", "fa", "p", "k").await;
    assert_eq!(s, 200);
    for u in ["b", "c"] {
        let (s, r) = sale.buy(u, &format!("f{u}"), "p", "k").await;
        assert_eq!(
            (s, r["data"]["status"].as_str()),
            (202, Some("queued")),
            "{r}"
        );
    }
    // b listens on the queue's stream.
    let resp = sale
        .api
        .http
        .get(format!(
            "{}/flash-sale/queue-stream?product_id=p&user_id=b",
            sale.api.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut stream = resp.bytes_stream();
    let opening = String::from_utf8(stream.next().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(
        opening.contains("\"position\":1") && opening.contains("queued"),
        "{opening}"
    );
    // a gives the unit back; a newcomer does not get it, b is admitted and told.
    let rid = first["data"]["reservation_id"].as_str().unwrap();
    assert_eq!(
        sale.api
            .post(
                "/flash-sale/release",
                json!({"reservation_id": rid, "user_id": "a"})
            )
            .await
            .0,
        200
    );
    let (s, r) = sale.buy("z", "fz", "p", "k").await;
    assert_eq!((s, r["data"]["position"].as_u64()), (202, Some(3)), "{r}");
    assert_eq!(sale.app.admit_tick().await.unwrap(), 1);
    let event = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            let chunk = String::from_utf8(stream.next().await.unwrap().unwrap().to_vec()).unwrap();
            if chunk.contains("admitted") {
                return chunk;
            }
        }
    })
    .await
    .expect("the admission reaches b's stream");
    assert!(event.starts_with("event: queue-status"), "{event}");
    let (s, r) = sale.buy("c", "fc", "p", "k2").await;
    assert_eq!(s, 202, "c still waits: {r}");
    let (s, r) = sale.buy("b", "fb", "p", "k2").await;
    assert_eq!(
        (s, r["data"]["status"].as_str()),
        (200, Some("completed")),
        "{r}"
    );
    sale.stop().await;
}
