//! Catalog over real HTTP on a loopback socket and a live Postgres (issue #14): CRUD with
//! versions and soft deletes, 409s for duplicates and stale versions, hub prices and the price
//! lookup Checkout uses, the change feed with its `catalog:changed` nudge, bad input storing
//! nothing, and writes closed without the internal token.

use std::sync::Arc;

use futures::StreamExt;
use qc_kit::config::{EnvSource, StoreConfig};
use qc_kit::testing::isolated_store_config;
use qc_kit::ManualClock;
use qc_services::catalog;
use qc_services::platform::config::PlatformConfig;
use qc_services::platform::shutdown::Shutdown;
use qc_tests::{code, serve_loopback, split, Api};
use serde_json::{json, Value};

const NOW: i64 = 1_796_112_000_000;

struct Catalog {
    app: Arc<catalog::CatalogApp>,
    api: Api,
    shutdown: Shutdown,
    store: StoreConfig,
    clock: Arc<ManualClock>,
}

impl Catalog {
    async fn start(token: Option<&str>) -> Self {
        let store = isolated_store_config();
        let mut cfg = PlatformConfig::from_env(&EnvSource::from_pairs([])).unwrap();
        cfg.store = store.clone();
        cfg.internal_api_token = token.map(str::to_string);
        let shutdown = Shutdown::new();
        let clock = Arc::new(ManualClock::new(NOW));
        let (app, svc) = catalog::build(&cfg, clock.clone(), shutdown.clone())
            .await
            .unwrap_or_else(|e| panic!("catalog did not start: {e}"));
        let (base, _) = serve_loopback(svc, &shutdown).await;
        Self {
            app,
            api: Api::new(base),
            shutdown,
            store,
            clock,
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut r = self.api.http.request(m, format!("{}{path}", self.api.base));
        if let Some(b) = body {
            r = r.json(&b);
        }
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        split(r.send().await.unwrap()).await
    }

    async fn rows(&self) -> (i64, i64, i64) {
        let pool = qc_kit::pg::connect(&self.store, 1).await.unwrap();
        let count = |t: &'static str| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {t}"))
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        let out = (
            count("products").await,
            count("categories").await,
            count("hub_prices").await,
        );
        pool.close().await;
        out
    }

    async fn finish(self) {
        self.shutdown.trigger();
        let _ = self.app;
        qc_kit::pg::drop_schema(&self.store).await.unwrap();
    }
}

fn milk() -> Value {
    json!({"sku": "milk-1l", "name": "Ultra Susu UHT Full Cream 1 L", "category": "Susu & Olahan",
           "brand": "Ultra", "price": 18500, "margin_pct": 12.5, "popularity_score": 0.8,
           "tags": ["susu", "UHT milk"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_are_created_versioned_repriced_and_soft_deleted() {
    let c = Catalog::start(None).await;
    let (s, b) = c.api.post("/products", milk()).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        (
            b["data"]["version"].as_i64(),
            b["data"]["category_id"].as_str()
        ),
        (Some(1), Some("susu-olahan"))
    );
    assert!(
        b["data"].get("margin_pct").is_none(),
        "margin is never public"
    );
    let (s, b) = c.api.post("/products", milk()).await;
    assert_eq!((s, code(&b)), (409, "PRODUCT_EXISTS"));

    // PUT replaces (200), PATCH merges under If-Match, a stale version is 409.
    let mut body = milk();
    body["price"] = json!(17900);
    let (s, b) = c.api.put("/products/milk-1l", body).await;
    assert_eq!(
        (
            s,
            b["data"]["version"].as_i64(),
            b["data"]["price"].as_i64()
        ),
        (200, Some(2), Some(17900))
    );
    let (s, b) = c
        .send(
            "PATCH",
            "/products/milk-1l",
            Some(json!({"price": 1})),
            &[("If-Match", "1")],
        )
        .await;
    assert_eq!((s, code(&b)), (409, "VERSION_CONFLICT"));
    let (s, b) = c
        .send(
            "PATCH",
            "/products/milk-1l",
            Some(json!({"brand": "Ultra Jaya"})),
            &[("If-Match", "\"2\"")],
        )
        .await;
    assert_eq!(
        (s, b["data"]["brand"].as_str(), b["data"]["price"].as_i64()),
        (200, Some("Ultra Jaya"), Some(17900))
    );
    let (s, _) = c
        .api
        .put(
            "/products/egg-10",
            json!({"name": "Telur Ayam 10 butir", "category": "Telur", "price": 28000}),
        )
        .await;
    assert_eq!(s, 201);

    // Hub prices and the lookup Checkout uses.
    let (s, b) = c
        .api
        .put("/products/milk-1l/prices/jkt-01", json!({"price": 17000}))
        .await;
    assert_eq!(s, 200, "{b}");
    let (_, b) = c.api.get("/products/milk-1l/price?hub_id=jkt-01").await;
    assert_eq!(
        (b["data"]["price"].as_i64(), b["data"]["source"].as_str()),
        (Some(17000), Some("hub"))
    );
    let (_, b) = c.api.get("/products/milk-1l/price?hub_id=jkt-02").await;
    assert_eq!(
        (b["data"]["price"].as_i64(), b["data"]["source"].as_str()),
        (Some(17900), Some("base"))
    );
    c.clock.advance_ms(1);

    // Soft delete: still readable, inactive, out of the active list, no price.
    let (s, b) = c.send("DELETE", "/products/egg-10", None, &[]).await;
    assert_eq!((s, b["data"]["active"].as_bool()), (200, Some(false)));
    let (s, b) = c.api.get("/products/egg-10").await;
    assert_eq!((s, b["data"]["active"].as_bool()), (200, Some(false)));
    let (_, b) = c.api.get("/products?active=true").await;
    assert_eq!(b["data"]["total"], 1);
    let (_, b) = c.api.get("/products?category=telur").await;
    assert_eq!(b["data"]["items"][0]["sku"], "egg-10");
    let (s, b) = c.api.get("/products/egg-10/price?hub_id=jkt-01").await;
    assert_eq!((s, code(&b)), (404, "PRODUCT_NOT_FOUND"));
    let (s, b) = c.api.get("/products/nope").await;
    assert_eq!((s, code(&b)), (404, "PRODUCT_NOT_FOUND"));

    // Categories.
    let (s, b) = c
        .api
        .post(
            "/categories",
            json!({"name": "Telur Omega", "parent_id": "telur"}),
        )
        .await;
    assert_eq!((s, b["data"]["id"].as_str()), (201, Some("telur-omega")));
    let (s, b) = c.api.post("/categories", json!({"name": "telur"})).await;
    assert_eq!((s, code(&b)), (409, "CATEGORY_EXISTS"));
    let (_, b) = c.api.get("/categories").await;
    assert_eq!(b["data"].as_array().unwrap().len(), 3);
    c.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_feed_follows_every_write_in_order_and_each_write_is_announced() {
    let c = Catalog::start(None).await;
    let client = redis::Client::open(c.store.redis_url.as_str()).unwrap();
    let mut sub = client.get_async_pubsub().await.unwrap();
    sub.subscribe(c.app.channel()).await.unwrap();
    c.api.post("/products", milk()).await;
    c.api
        .put(
            "/products/egg-10",
            json!({"name": "Telur Ayam 10 butir", "price": 28000}),
        )
        .await;
    c.api
        .put(
            "/products/milk-1l/prices/jkt-01",
            json!({"price": 17000, "valid_from": "2026-12-01T00:00:00Z"}),
        )
        .await;
    let mut seqs = Vec::new();
    let mut messages = sub.on_message();
    for _ in 0..3 {
        let m = tokio::time::timeout(std::time::Duration::from_secs(5), messages.next())
            .await
            .expect("a catalog:changed message")
            .unwrap();
        seqs.push(m.get_payload::<i64>().unwrap());
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let (s, b) = c.api.get("/internal/changes?after=0").await;
    assert_eq!(s, 200);
    let items = b["data"]["items"].as_array().unwrap();
    let order: Vec<&str> = items.iter().map(|i| i["sku"].as_str().unwrap()).collect();
    assert_eq!(
        order,
        ["egg-10", "milk-1l"],
        "the price write moved milk last"
    );
    assert_eq!(b["data"]["last_seq"].as_i64(), Some(seqs[2]));
    assert_eq!(items[1]["margin_pct"], 12.5, "the feed carries the margin");
    assert_eq!(items[1]["hub_prices"][0]["price"], 17000);
    let (_, b) = c
        .api
        .get(&format!("/internal/changes?after={}", seqs[2]))
        .await;
    assert_eq!(
        (
            b["data"]["items"].as_array().unwrap().len(),
            b["data"]["last_seq"].as_i64()
        ),
        (0, Some(seqs[2]))
    );
    for bad in ["after=-1", "after=x", "limit=0", "limit=1001"] {
        let (s, b) = c.api.get(&format!("/internal/changes?{bad}")).await;
        assert_eq!((s, code(&b)), (400, "INVALID_ARGUMENT"), "{bad}");
    }
    c.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_400_and_stores_nothing() {
    let c = Catalog::start(None).await;
    c.api.post("/products", milk()).await;
    let before = c.rows().await;
    let with = |k: &str, v: Value| {
        let mut b = milk();
        b["sku"] = json!("new-1");
        b[k] = v;
        b
    };
    for body in [
        with("name", json!("")),
        with("name", json!("x".repeat(201))),
        with("description", json!("d".repeat(2001))),
        with("category", json!("c".repeat(101))),
        with("brand", json!(7)),
        with("price", json!(-1)),
        with("price", json!(1.5)),
        with("price", json!("18500")),
        with("margin_pct", json!(100.5)),
        with("popularity_score", json!(-0.1)),
        with("tags", json!(vec!["t"; 21])),
        with("tags", json!(["t".repeat(51)])),
        with("image_url", json!("u".repeat(501))),
        with("active", json!(1)),
        with("colour", json!("red")),
        with("sku", json!("bad sku")),
        with("sku", json!("x".repeat(65))),
        json!([1, 2]),
    ] {
        let (s, b) = c.api.post("/products", body.clone()).await;
        assert_eq!((s, code(&b)), (400, "INVALID_ARGUMENT"), "{body}");
    }
    let (s, b) = c
        .api
        .put("/products/milk-1l", json!({"sku": "other", "name": "x"}))
        .await;
    assert_eq!(
        (s, code(&b)),
        (400, "INVALID_ARGUMENT"),
        "body sku differs from the path"
    );
    let (s, _) = c
        .send(
            "POST",
            "/products",
            None,
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(s, 400, "no body");
    let raw = c
        .api
        .http
        .post(format!("{}/products", c.api.base))
        .header("content-type", "application/json")
        .body("{\"sku\":")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400, "malformed JSON");
    for (path, body) in [
        ("/products/milk-1l/prices/jkt-01", json!({"price": -5})),
        ("/products/milk-1l/prices/jkt-01", json!({})),
        (
            "/products/milk-1l/prices/jkt-01",
            json!({"price": 1, "valid_from": "yesterday"}),
        ),
        (
            "/products/milk-1l/prices/jkt-01",
            json!({"price": 1, "valid_from": "2026-12-02T00:00:00Z", "valid_to": "2026-12-01T00:00:00Z"}),
        ),
        ("/products/milk-1l/prices/bad%20hub", json!({"price": 1})),
    ] {
        let (s, b) = c.api.put(path, body.clone()).await;
        assert_eq!((s, code(&b)), (400, "INVALID_ARGUMENT"), "{path} {body}");
    }
    let (s, b) = c
        .api
        .put("/products/nope/prices/jkt-01", json!({"price": 1}))
        .await;
    assert_eq!((s, code(&b)), (404, "PRODUCT_NOT_FOUND"));
    let (s, b) = c
        .send(
            "PATCH",
            "/products/milk-1l",
            Some(json!({"price": 1})),
            &[("If-Match", "soon")],
        )
        .await;
    assert_eq!((s, code(&b)), (400, "INVALID_ARGUMENT"));
    let (s, b) = c
        .send(
            "PATCH",
            "/products/milk-1l",
            Some(json!({"name": null})),
            &[],
        )
        .await;
    assert_eq!(
        (s, code(&b)),
        (400, "INVALID_ARGUMENT"),
        "name cannot be cleared"
    );
    for (body, what) in [
        (json!({"name": ""}), "empty"),
        (json!({"name": "X", "parent_id": "nope"}), "parent"),
        (json!({"title": "X"}), "unknown"),
    ] {
        let (s, b) = c.api.post("/categories", body).await;
        assert_eq!((s, code(&b)), (400, "INVALID_ARGUMENT"), "{what}");
    }
    for q in ["page=x", "page_size=1.5", "active=maybe"] {
        let (s, b) = c.api.get(&format!("/products?{q}")).await;
        assert_eq!((s, code(&b)), (400, "INVALID_ARGUMENT"), "{q}");
    }
    let (s, _) = c.api.get("/products/milk-1l/price").await;
    assert_eq!(s, 400, "hub_id is required");
    assert_eq!(c.rows().await, before, "nothing stored");
    let (_, b) = c.api.get("/products/milk-1l").await;
    assert_eq!(b["data"]["version"], 1);
    c.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_the_internal_token_when_one_is_set() {
    let c = Catalog::start(Some("s3cret-internal-token")).await;
    let (s, b) = c.api.post("/products", milk()).await;
    assert_eq!(s, 401, "{b}");
    let (s, _) = c
        .send(
            "POST",
            "/products",
            Some(milk()),
            &[("X-Internal-Token", "s3cret-internal-token")],
        )
        .await;
    assert_eq!(s, 201);
    let (s, _) = c.api.get("/internal/changes").await;
    assert_eq!(s, 401);
    let (s, b) = c.api.get("/products/milk-1l").await;
    assert_eq!(
        (s, b["data"]["sku"].as_str()),
        (200, Some("milk-1l")),
        "reads stay open"
    );
    c.finish().await;
}
