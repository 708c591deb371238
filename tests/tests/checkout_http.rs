//! Checkout over real HTTP, live Redis and Postgres (issue #13): one key sent 50 times at once
//! makes one order, one charge and one hold; bad input stores nothing; payment webhooks.

use std::sync::Arc;

use qc_checkout::webhook::sign;
use qc_inventory::store::HoldPolicy;
use qc_inventory::{HubId, RedisStore, SetStockCommand, Sku, StockSetReason, StockStore};
use qc_kit::config::{EnvSource, StoreConfig};
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::testing::{delete_prefix, isolated_store_config, redis_for_test};
use qc_kit::ManualClock;
use qc_services::checkout::{self, CheckoutApp, CheckoutSettings, Gateway};
use qc_services::platform::config::PlatformConfig;
use qc_services::platform::shutdown::Shutdown;
use qc_tests::{code, redis_snapshot_of, serve_loopback, split, Api};
use serde_json::{json, Value};

const NOW: i64 = 1_800_000_000_000;
const SECRET: &str = "a-webhook-secret-for-tests";

struct Shop {
    app: Arc<CheckoutApp>,
    api: Api,
    store: StoreConfig,
    shutdown: Shutdown,
}

impl Shop {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    async fn start_with(extra: &[(&str, &str)]) -> Self {
        let store = isolated_store_config();
        let mut cfg = PlatformConfig::from_env(&EnvSource::from_pairs([])).unwrap();
        cfg.store = store.clone();
        let mut env = vec![
            ("PROMO_URL", ""),
            ("WEBHOOK_SECRET", SECRET),
            ("CHECKOUT_PRICES", r#"{"milk": 18500, "bread": 15000}"#),
        ];
        env.extend_from_slice(extra);
        let settings = CheckoutSettings::from_env(&EnvSource::from_pairs(env), "test").unwrap();
        let shutdown = Shutdown::new();
        let (app, svc) = checkout::build(
            &cfg,
            settings,
            Arc::new(ManualClock::new(NOW)),
            shutdown.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("checkout did not start: {e}"));
        let conn = redis_for_test(&store).await;
        let inv = RedisStore::new(
            conn,
            KeyPrefix::new(store.key_prefix.clone()),
            HoldPolicy::default(),
            2000,
        );
        for (sku, q) in [("milk", 10), ("bread", 10)] {
            inv.set_stock(
                NOW,
                &SetStockCommand {
                    hub_id: HubId::parse("h1").unwrap(),
                    sku: Sku::parse(sku).unwrap(),
                    on_hand: q,
                    buckets: 1,
                    reason: StockSetReason::AdminSet,
                    actor: "test".into(),
                },
            )
            .await
            .unwrap();
        }
        let (base, _) = serve_loopback(svc, &shutdown).await;
        Self {
            app,
            api: Api::new(base),
            store,
            shutdown,
        }
    }

    async fn checkout(&self, key: &str, body: &Value) -> (u16, Value, bool) {
        let r = self
            .api
            .http
            .post(format!("{}/api/v1/checkout", self.api.base))
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .unwrap();
        let replayed = r.headers().contains_key("idempotent-replayed");
        let (s, b) = split(r).await;
        (s, b, replayed)
    }

    /// Charges the in-process gateway simulator took.
    fn charges(&self) -> usize {
        match &self.app.saga.gateway {
            Gateway::Simulated(g) => g.charges.lock().unwrap().len(),
            Gateway::Http(_) => panic!("the charges are in the gateway's server"),
        }
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.app.pool)
            .await
            .unwrap()
    }

    async fn milk(&self) -> (i64, i64) {
        let s = self
            .app
            .saga
            .inventory
            .stock(&HubId::parse("h1").unwrap(), &Sku::parse("milk").unwrap())
            .await
            .unwrap();
        (s.available, s.reserved)
    }

    async fn finish(self) {
        self.shutdown.trigger();
        let mut conn = redis_for_test(&self.store).await;
        delete_prefix(&mut conn, &KeyPrefix::new(self.store.key_prefix.clone()))
            .await
            .unwrap();
        self.app.pool.close().await;
        qc_kit::pg::drop_schema(&self.store).await.unwrap();
    }
}

fn body(token: &str) -> Value {
    json!({"user_id": "u1", "hub_id": "h1",
           "items": [{"sku": "milk", "quantity": 2, "unit_price": 1}, {"sku": "bread", "quantity": 1}],
           "payment": {"method": "card", "card_token": token, "currency": "IDR"},
           "delivery_location": {"lat": -6.2, "lng": 106.8}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_key_sent_fifty_times_at_once_makes_one_order_one_charge_one_hold() {
    let shop = Arc::new(Shop::start().await);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let s = shop.clone();
            tokio::spawn(async move { s.checkout("same-key", &body("tok_ok")).await })
        })
        .collect();
    let mut created = Vec::new();
    for t in tasks {
        let (s, b, _) = t.await.unwrap();
        match s {
            201 => created.push(b),
            409 => assert_eq!(code(&b), "IDEMPOTENCY_IN_PROGRESS", "{b}"),
            other => panic!("{other}: {b}"),
        }
    }
    assert!(!created.is_empty());
    assert!(
        created.iter().all(|b| b == &created[0]),
        "every 201 is the same body"
    );
    assert_eq!(created[0]["data"]["total"], 52_000, "server prices");
    assert_eq!(shop.count("SELECT count(*) FROM checkout_orders").await, 1);
    assert_eq!(shop.count("SELECT count(*) FROM dispatch_queue").await, 1);
    assert_eq!(shop.charges(), 1);
    assert_eq!(shop.milk().await, (8, 0), "one hold, confirmed");
    // A replay afterwards: the same body, marked as replayed; another body under the key: 409.
    let (s, b, replayed) = shop.checkout("same-key", &body("tok_ok")).await;
    assert_eq!((s, &b, replayed), (201, &created[0], true));
    let mut other = body("tok_ok");
    other["items"][0]["quantity"] = json!(3);
    let (s, b, _) = shop.checkout("same-key", &other).await;
    assert_eq!((s, code(&b)), (409, "IDEMPOTENCY_KEY_REUSED"));
    // The order reads back for its owner only.
    let id = created[0]["data"]["order_id"].as_str().unwrap().to_string();
    let get = |user: &'static str| {
        let (api, id) = (shop.api.clone(), id.clone());
        async move {
            split(
                api.http
                    .get(format!("{}/api/v1/orders/{id}", api.base))
                    .header("X-User-Id", user)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let (s, o) = get("u1").await;
    assert_eq!(
        (
            s,
            o["data"]["status"].as_str(),
            o["data"]["payment_status"].as_str()
        ),
        (200, Some("confirmed"), Some("charged"))
    );
    assert_eq!(get("u2").await.0, 404, "no one else's");
    Arc::try_unwrap(shop).ok().unwrap().finish().await;
}

#[tokio::test]
async fn declines_and_stockouts_answer_402_and_409_and_hold_nothing() {
    let shop = Shop::start().await;
    let (s, b, _) = shop.checkout("k-decline", &body("tok_decline")).await;
    assert_eq!(
        (s, code(&b), b["error"]["details"]["failed_step"].as_str()),
        (402, "PAYMENT_FAILED", Some("charge_payment"))
    );
    let (s, b, _) = shop.checkout("k-timeout", &body("tok_timeout")).await;
    assert_eq!((s, code(&b)), (503, "PAYMENT_UNAVAILABLE"));
    let mut big = body("tok_ok");
    big["items"][0]["quantity"] = json!(11);
    let (s, b, _) = shop.checkout("k-stock", &big).await;
    assert_eq!((s, code(&b)), (409, "INSUFFICIENT_STOCK"));
    assert_eq!(shop.milk().await, (10, 0));
    assert_eq!(shop.charges(), 0);
    // The decline is stored: a retry gets the same 402 without charging again.
    let (s, _, replayed) = shop.checkout("k-decline", &body("tok_decline")).await;
    assert_eq!((s, replayed), (402, true));
    shop.finish().await;
}

#[tokio::test]
async fn bad_input_is_refused_and_stores_nothing() {
    let shop = Shop::start().await;
    let conn = redis_for_test(&shop.store).await;
    let prefix = KeyPrefix::new(shop.store.key_prefix.clone());
    let before = redis_snapshot_of(conn.clone(), &prefix).await;
    let many: Vec<Value> = (0..51)
        .map(|i| json!({"sku": format!("s{i}"), "quantity": 1}))
        .collect();
    let patch = |k: &str, v: Value| {
        let mut b = body("tok_ok");
        b[k] = v;
        b
    };
    for b in [
        patch("user_id", json!("a b")),
        patch("items", json!([])),
        patch("items", json!(many)),
        patch(
            "items",
            json!([{"sku": "milk", "quantity": 1}, {"sku": "milk", "quantity": 1}]),
        ),
        patch("items", json!([{"sku": "milk", "quantity": 0}])),
        patch(
            "items",
            json!([{"sku": "milk", "quantity": 1, "unit_price": -5}]),
        ),
        patch("delivery_location", json!({"lat": 0, "lng": 0})),
        patch("delivery_location", json!({"lat": 95, "lng": 0})),
        patch("payment", json!({"card_token": "tok_ok"})),
    ] {
        let (s, r, _) = shop.checkout("k-bad", &b).await;
        assert_eq!((s, code(&r)), (400, "INVALID_ARGUMENT"), "{b}");
    }
    let no_key = shop.api.post("/api/v1/checkout", body("tok_ok")).await;
    assert_eq!((no_key.0, code(&no_key.1)), (400, "INVALID_ARGUMENT"));
    let malformed = split(
        shop.api
            .http
            .post(format!("{}/api/v1/checkout", shop.api.base))
            .header("Idempotency-Key", "k")
            .header("content-type", "application/json")
            .body("{oops")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((malformed.0, code(&malformed.1)), (400, "INVALID_ARGUMENT"));
    assert_eq!(
        redis_snapshot_of(conn, &prefix).await,
        before,
        "Redis unchanged"
    );
    assert_eq!(shop.count("SELECT count(*) FROM checkout_orders").await, 0);
    shop.finish().await;
}

#[tokio::test]
async fn webhooks_are_verified_applied_once_and_refused_ones_leave_no_marker() {
    let shop = Shop::start().await;
    let (_, created, _) = shop.checkout("k1", &body("tok_ok")).await;
    let order_id = created["data"]["order_id"].as_str().unwrap().to_string();
    let now_s = NOW / 1000;
    let send = |payload: Value, ts: i64, secret: &'static str| {
        let api = shop.api.clone();
        async move {
            let raw = payload.to_string();
            let sig = sign(secret.as_bytes(), ts, raw.as_bytes());
            split(
                api.http
                    .post(format!("{}/api/v1/webhook/payment", api.base))
                    .header("X-Signature", sig)
                    .header("X-Signature-Timestamp", ts.to_string())
                    .header("content-type", "application/json")
                    .body(raw)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let ev = |order: &str, amount: i64, txn: &str| json!({"transaction_id": txn, "order_id": order, "status": "succeeded", "amount": amount, "currency": "IDR"});
    let (s, b) = send(
        ev(&order_id, 52_000, "t1"),
        now_s,
        "a-forged-secret-of-the-attacker",
    )
    .await;
    assert_eq!((s, code(&b)), (401, "INVALID_SIGNATURE"));
    let (s, _) = send(ev(&order_id, 52_000, "t1"), now_s - 301, SECRET).await;
    assert_eq!(s, 401, "stale");
    let (s, b) = send(ev(&order_id, 1, "t1"), now_s, SECRET).await;
    assert_eq!((s, code(&b)), (409, "AMOUNT_MISMATCH"));
    let unknown = "00000000-0000-4000-8000-00000000beef";
    let (s, _) = send(ev(unknown, 52_000, "t9"), now_s, SECRET).await;
    assert_eq!(s, 404);
    let (s, b) = send(ev(&order_id, 52_000, "t1"), now_s, SECRET).await;
    assert_eq!(
        (s, b["data"]["status"].as_str()),
        (200, Some("ok")),
        "the refused ones left no marker"
    );
    let (s, b) = send(ev(&order_id, 52_000, "t1"), now_s, SECRET).await;
    assert_eq!(
        (s, b["data"]["status"].as_str()),
        (200, Some("already_processed"))
    );
    assert_eq!(
        shop.count("SELECT count(*) FROM checkout_processed_webhooks")
            .await,
        1
    );
    shop.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_over_http_charges_once_and_declines_with_402() {
    let sim = Arc::new(qc_checkout::SimulatedGateway::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = Shutdown::new();
    tokio::spawn(qc_services::platform::server::serve_until(
        listener,
        checkout::gateway_simulator(sim.clone()),
        stop.clone(),
    ));
    let shop = Shop::start_with(&[("CHECKOUT_PAYMENT_GATEWAY_URL", url.as_str())]).await;
    let (s, b, _) = shop.checkout("k1", &body("tok_ok")).await;
    assert_eq!(s, 201, "{b}");
    let txn = b["data"]["transaction_id"].as_str().unwrap().to_string();
    assert_eq!(
        sim.charges
            .lock()
            .unwrap()
            .values()
            .map(|c| c.0.clone())
            .collect::<Vec<_>>(),
        [txn]
    );
    let (s, b, _) = shop.checkout("k2", &body("tok_decline")).await;
    assert_eq!((s, code(&b)), (402, "PAYMENT_FAILED"));
    assert_eq!(sim.charges.lock().unwrap().len(), 1);
    stop.trigger();
    shop.finish().await;
}

/// With `CATALOG_URL`, the saga prices from the Catalog service: the hub's price in force, else
/// the base; a product Catalog does not sell (unknown or deactivated) is 409 `SKU_NOT_FOUND`
/// before anything is held; Catalog unreachable is 503 with nothing held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prices_come_from_the_catalog_service_when_it_is_configured() {
    let cat_store = isolated_store_config();
    let mut cfg = PlatformConfig::from_env(&EnvSource::from_pairs([])).unwrap();
    cfg.store = cat_store.clone();
    let stop = Shutdown::new();
    let (_, svc) = qc_services::catalog::build(&cfg, Arc::new(ManualClock::new(NOW)), stop.clone())
        .await
        .unwrap();
    let (cat_base, cat_server) = serve_loopback(svc, &stop).await;
    let catalog = Api::new(cat_base.clone());
    for (sku, price) in [("milk", 20_000), ("bread", 15_000)] {
        let (s, b) = catalog
            .put(
                &format!("/products/{sku}"),
                json!({"name": sku, "price": price}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
    }
    let (s, _) = catalog
        .put(
            "/products/milk/prices/h1",
            json!({"price": 17_500, "valid_from": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(s, 200);

    let shop = Shop::start_with(&[("CATALOG_URL", cat_base.as_str())]).await;
    let (s, b, _) = shop.checkout("k-1", &body("tok_ok")).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        b["data"]["subtotal"].as_i64(),
        Some(2 * 17_500 + 15_000),
        "milk at the hub's price, bread at the base; the client's unit_price ignored"
    );

    // Deactivated in Catalog: not sold.
    let r = catalog
        .http
        .delete(format!("{cat_base}/products/bread"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (s, b, _) = shop.checkout("k-2", &body("tok_ok")).await;
    assert_eq!((s, code(&b)), (409, "SKU_NOT_FOUND"), "{b}");
    assert_eq!(
        shop.milk().await,
        (8, 0),
        "nothing held for the refused one"
    );

    // Catalog gone: 503, nothing held.
    stop.trigger();
    cat_server.await.unwrap().unwrap();
    let (s, b, _) = shop.checkout("k-3", &body("tok_ok")).await;
    assert_eq!((s, code(&b)), (503, "UNAVAILABLE"), "{b}");
    assert_eq!(shop.milk().await, (8, 0));
    shop.finish().await;
    qc_kit::pg::drop_schema(&cat_store).await.unwrap();
}
