//! Search over real HTTP, fed by a real Catalog through its change feed, with stock from
//! Inventory's Redis keys (issue #14): both languages, stock first, autocomplete, caching
//! headers, hostile queries answered cleanly, catalog writes visible within the poll, admin
//! writes through Search visible at once, and `/ready` 503 until the first build.

use std::sync::Arc;
use std::time::{Duration, Instant};

use qc_catalog::generate::catalog;
use qc_inventory::store::HoldPolicy;
use qc_inventory::{HubId, RedisStore, SetStockCommand, Sku, StockSetReason, StockStore};
use qc_kit::config::{EnvSource, StoreConfig};
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::testing::{delete_prefix, free_port, isolated_store_config, redis_for_test};
use qc_kit::ManualClock;
use qc_services::platform::config::PlatformConfig;
use qc_services::platform::shutdown::Shutdown;
use qc_services::{catalog, search};
use qc_tests::{code, serve_loopback, Api};
use serde_json::{json, Value};

const NOW: i64 = 1_796_112_000_000;

fn platform(store: &StoreConfig) -> PlatformConfig {
    let mut cfg = PlatformConfig::from_env(&EnvSource::from_pairs([])).unwrap();
    cfg.store = store.clone();
    cfg
}

async fn start_search(store: &StoreConfig, catalog_url: &str, stop: &Shutdown) -> Api {
    let settings = search::SearchSettings::from_env(&EnvSource::from_pairs([
        ("CATALOG_URL", catalog_url),
        ("SEARCH_POLL_MS", "50"),
    ]))
    .unwrap();
    let (_, svc) = search::build(
        &platform(store),
        settings,
        Arc::new(ManualClock::new(NOW)),
        stop.clone(),
    )
    .await
    .unwrap();
    let (base, _) = serve_loopback(svc, stop).await;
    Api::new(base)
}

/// Polls `check` on `GET path` until it holds (the follower runs every 50 ms).
async fn until(api: &Api, path: &str, check: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, b) = api.get(path).await;
        if check(s, &b) {
            return b;
        }
        assert!(Instant::now() < deadline, "{path}: {s} {b}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn names(b: &Value) -> Vec<String> {
    b["data"]["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_follows_the_catalog_and_ranks_with_stock() {
    let store = isolated_store_config();
    let stop = Shutdown::new();
    let (_, svc) = catalog::build(
        &platform(&store),
        Arc::new(ManualClock::new(NOW)),
        stop.clone(),
    )
    .await
    .unwrap();
    let (cat_base, _) = serve_loopback(svc, &stop).await;
    let cat = Api::new(cat_base.clone());
    let products = catalog(400, 7);
    for g in &products {
        let (s, b) = cat
            .put(&format!("/products/{}", g.sku), g.body.clone())
            .await;
        assert_eq!(s, 201, "{b}");
    }
    let api = start_search(&store, &cat_base, &stop).await;
    until(&api, "/ready", |s, _| s == 200).await;

    // Both languages and units find the milk.
    for q in ["susu", "milk", "susu%20uht%201l", "MILK%201%20liter"] {
        let (s, b) = api.get(&format!("/search?q={q}")).await;
        assert_eq!(s, 200, "{b}");
        let n = names(&b);
        assert!(
            !n.is_empty() && n.iter().take(3).all(|x| x.contains("Susu")),
            "{q}: {n:?}"
        );
        assert_eq!(b["data"]["tier"], 0);
        assert!(b["data"]["products"][0].get("margin_pct").is_none());
    }

    // With a hub: the one milk in stock comes first, with its quantity.
    let conn = redis_for_test(&store).await;
    let inv = RedisStore::new(
        conn.clone(),
        KeyPrefix::new(store.key_prefix.clone()),
        HoldPolicy::default(),
        2000,
    );
    let (_, b) = api.get("/search?q=susu&page_size=100").await;
    let last = b["data"]["products"].as_array().unwrap().last().unwrap()["sku"]
        .as_str()
        .unwrap()
        .to_string();
    inv.set_stock(
        NOW,
        &SetStockCommand {
            hub_id: HubId::parse("jkt-01").unwrap(),
            sku: Sku::parse(&last).unwrap(),
            on_hand: 12,
            buckets: 1,
            reason: StockSetReason::AdminSet,
            actor: "t".into(),
        },
    )
    .await
    .unwrap();
    let r = api
        .http
        .get(format!("{}/search?q=susu&hub_id=jkt-01", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let b: Value = r.json().await.unwrap();
    let first = &b["data"]["products"][0];
    assert_eq!(
        (
            first["sku"].as_str(),
            first["stock_qty"].as_i64(),
            first["in_stock"].as_bool()
        ),
        (Some(last.as_str()), Some(12), Some(true))
    );
    assert_eq!(b["data"]["products"][1]["in_stock"], false);
    let r = api
        .http
        .get(format!("{}/search?q=susu", api.base))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age=30"));
    let b: Value = r.json().await.unwrap();
    assert!(
        b["data"]["products"][0]["stock_qty"].is_null(),
        "no hub, no stock"
    );

    // Autocomplete.
    let (s, b) = api.get("/autocomplete?q=ul&limit=3").await;
    assert_eq!(s, 200);
    assert_eq!(b["data"][0]["text"], "ultra", "{b}");
    assert_eq!(b["data"].as_array().unwrap().len(), 3);

    // Hostile queries answer cleanly.
    for q in [
        "",
        "%20%20",
        "%F0%9F%A5%9B%F0%9F%A5%9A",
        "%D8%AD%D9%84%D9%8A%D8%A8",
        "!!!%3F%3F",
        "%27%3B%20DROP%20TABLE%20products%3B--",
        ".*(a%2B)%2B%24",
        "%25%25%5C",
    ] {
        let (s, b) = api.get(&format!("/search?q={q}")).await;
        assert_eq!(s, 200, "{q}: {b}");
    }
    let long = "a".repeat(1000);
    let (s, b) = api.get(&format!("/search?q={long}")).await;
    assert_eq!((s, code(&b)), (400, "INVALID_ARGUMENT"));
    for bad in [
        "page=x",
        "page_size=1.5",
        "min_price=-1",
        "max_price=abc",
        "hub_id=bad%20hub",
    ] {
        let (s, b) = api.get(&format!("/search?q=susu&{bad}")).await;
        assert_eq!((s, code(&b)), (400, "INVALID_ARGUMENT"), "{bad}");
    }
    let (s, _) = api
        .get(&format!("/autocomplete?q={}", "a".repeat(101)))
        .await;
    assert_eq!(s, 400);
    let (s, b) = api.get("/autocomplete?q=").await;
    assert_eq!((s, b["data"].as_array().map(Vec::len)), (200, Some(0)));

    // Catalog writes reach search through the feed: created, repriced, deactivated.
    let (s, _) = cat
        .put(
            "/products/durian-1",
            json!({"name": "Durian Montong 1 kg", "category": "Buah", "price": 120000}),
        )
        .await;
    assert_eq!(s, 201);
    until(&api, "/search?q=durian", |_, b| {
        names(b).first().is_some_and(|n| n.contains("Durian"))
    })
    .await;
    cat.put(
        "/products/durian-1/prices/jkt-01",
        json!({"price": 99000, "valid_from": "2020-01-01T00:00:00Z"}),
    )
    .await;
    until(&api, "/search?q=durian&hub_id=jkt-01", |_, b| {
        b["data"]["products"][0]["price"] == 99000
    })
    .await;
    let r = cat
        .http
        .delete(format!("{cat_base}/products/durian-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    until(&api, "/search?q=durian", |_, b| {
        !names(b).iter().any(|n| n.contains("Durian"))
    })
    .await;

    // A write through Search's admin route is visible in the very next search.
    let (s, b) = api
        .post(
            "/admin/products",
            json!({"sku": "salak-1", "name": "Salak Pondoh 1 kg", "price": 25000}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (_, b) = api.get("/search?q=salak").await;
    assert_eq!(
        names(&b).first().map(String::as_str),
        Some("Salak Pondoh 1 kg")
    );
    let (s, b) = api
        .post("/admin/products", json!({"sku": "salak-1", "name": ""}))
        .await;
    assert_eq!(
        (s, code(&b)),
        (400, "INVALID_ARGUMENT"),
        "Catalog's field rules, passed through"
    );

    stop.trigger();
    let mut c = conn.clone();
    delete_prefix(&mut c, &KeyPrefix::new(store.key_prefix.clone()))
        .await
        .unwrap();
    qc_kit::pg::drop_schema(&store).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_is_not_ready_until_its_first_build() {
    let store = isolated_store_config();
    let stop = Shutdown::new();
    // Nothing listens there: the first build cannot happen.
    let api = start_search(&store, &format!("http://127.0.0.1:{}", free_port()), &stop).await;
    let (s, b) = api.get("/ready").await;
    assert_eq!(s, 503, "{b}");
    let (s, b) = api.get("/search?q=susu").await;
    assert_eq!((s, code(&b)), (503, "UNAVAILABLE"));
    let (s, _) = api.get("/autocomplete?q=su").await;
    assert_eq!(s, 503);
    stop.trigger();
    qc_kit::pg::drop_schema(&store).await.unwrap();
}
