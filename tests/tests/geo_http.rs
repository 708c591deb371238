//! Geo over real HTTP on loopback sockets, live Redis and Postgres (issue #4, geo part): the
//! lookup chain tier by tier, tie-breaks, invalidation of both cache levels across two
//! instances, the admin API and bad input.

use std::sync::Arc;

use qc_kit::config::{EnvSource, StoreConfig};
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::testing::{delete_prefix, isolated_store_config};
use qc_kit::ManualClock;
use qc_services::geo::{self, GeoApp, GeoConfig};
use qc_services::platform::config::PlatformConfig;
use qc_services::platform::shutdown::Shutdown;
use qc_tests::{code, serve_loopback, split};
use serde_json::{json, Value};

struct Geo {
    app: Arc<GeoApp>,
    base: String,
    http: reqwest::Client,
    shutdown: Shutdown,
}

impl Geo {
    async fn start(store: StoreConfig) -> Self {
        let mut cfg =
            PlatformConfig::from_env(&EnvSource::from_pairs([("INSTANCE_ID", "test")])).unwrap();
        cfg.store = store;
        let geo_cfg = GeoConfig::from_env(&EnvSource::from_pairs([])).unwrap();
        let shutdown = Shutdown::new();
        let (app, svc) = geo::build(
            &cfg,
            geo_cfg,
            Arc::new(ManualClock::new(1_800_000_000_000)),
            shutdown.clone(),
            false,
        )
        .await
        .unwrap();
        let (base, _) = serve_loopback(svc, &shutdown).await;
        Self {
            app,
            base,
            http: reqwest::Client::new(),
            shutdown,
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        split(
            self.http
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    async fn put(&self, hub: Value) -> (u16, Value) {
        split(
            self.http
                .post(format!("{}/admin/hubs", self.base))
                .json(&hub)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    async fn at(&self, lat: f64, lng: f64) -> Value {
        let (s, b) = self
            .get(&format!("/serviceability?lat={lat}&lng={lng}"))
            .await;
        assert_eq!(s, 200, "{b}");
        b["data"].clone()
    }
}

async fn cleanup(store: &StoreConfig, geo: Geo) {
    let mut conn = geo.app.store.conn.clone();
    geo.shutdown.trigger();
    delete_prefix(&mut conn, &KeyPrefix::new(store.key_prefix.clone()))
        .await
        .unwrap();
    qc_kit::pg::drop_schema(store).await.unwrap();
}

fn hub(id: &str, lat: f64, lng: f64, r: f64) -> Value {
    json!({"id": id, "lat": lat, "lng": lng, "max_radius_km": r, "stock": 0.5, "rider_avail": 0.5})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lookup_chain_answers_tier_by_tier() {
    let store = isolated_store_config();
    let g = Geo::start(store.clone()).await;
    let (s, b) = g.put(hub("central", -6.2, 106.84, 3.0)).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["data"]["h3_cell"], json!("898c1079d57ffff"));
    assert!(b["data"]["coverage_cells"].as_u64().unwrap() > 250);

    let first = g.at(-6.205, 106.842).await;
    assert_eq!(
        (
            first["serviceable"].clone(),
            first["tier"].clone(),
            first["cache_hit"].clone()
        ),
        (json!(true), json!("index"), json!(false))
    );
    assert_eq!(first["hub_id"], json!("central"));
    let again = g.at(-6.205, 106.842).await;
    assert_eq!(
        (again["tier"].clone(), again["cache_hit"].clone()),
        (json!("cache"), json!(true)),
        "level 1"
    );
    g.app.clear_l1();
    let redis_level = g.at(-6.205, 106.842).await;
    assert_eq!(
        (
            redis_level["tier"].clone(),
            redis_level["cache_hit"].clone()
        ),
        (json!("cache"), json!(true)),
        "level 2"
    );
    assert_eq!(redis_level["distance_km"], first["distance_km"]);

    // Without the index marker (index not built) the snapshot is scanned.
    let mut conn = g.app.store.conn.clone();
    let _: () = redis::cmd("DEL")
        .arg(g.app.store.keys.ready())
        .query_async(&mut conn)
        .await
        .unwrap();
    let scan = g.at(-6.19, 106.83).await;
    assert_eq!(
        (scan["tier"].clone(), scan["hub_id"].clone()),
        (json!("scan"), json!("central"))
    );

    let none = g.at(-6.5, 107.2).await;
    assert_eq!(
        (
            none["serviceable"].clone(),
            none["tier"].clone(),
            none["hub"].clone()
        ),
        (json!(false), json!("none"), Value::Null)
    );
    assert!(none["h3_cell"].as_str().unwrap().len() == 15);
    let zero = g.at(0.0, 0.0).await;
    assert_eq!(zero["serviceable"], json!(false), "0,0 is a valid point");
    cleanup(&store, g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_change_invalidates_both_cache_levels_everywhere() {
    let store = isolated_store_config();
    let a = Geo::start(store.clone()).await;
    let b = Geo::start(store.clone()).await;
    a.put(hub("west", -6.2, 106.83, 4.0)).await;
    a.put(hub("east", -6.2, 106.86, 4.0)).await;
    b.app.refresh_if_changed().await.unwrap();
    let p = (-6.2, 106.832);
    let won = b.at(p.0, p.1).await;
    assert_eq!(won["hub_id"], json!("west"));
    assert_eq!(
        b.at(p.0, p.1).await["tier"],
        json!("cache"),
        "instance b has it in level 1"
    );

    // Instance a deactivates the winner.
    let (s, _) = a.put(json!({"id": "west", "lat": -6.2, "lng": 106.83, "max_radius_km": 4.0, "stock": 0.5, "rider_avail": 0.5, "active": false})).await;
    assert_eq!(s, 200);
    // b notices the version change (its loop checks every 2 s; here by hand). Its level 1 entry
    // is from the old version and the Redis entry was deleted: the index answers afresh.
    assert!(b.app.refresh_if_changed().await.unwrap());
    let after = b.at(p.0, p.1).await;
    assert_eq!(
        (after["hub_id"].clone(), after["tier"].clone()),
        (json!("east"), json!("index")),
        "{after}"
    );
    assert_eq!(
        a.at(p.0, p.1).await["hub_id"],
        json!("east"),
        "the writer agrees"
    );

    // A better hub appearing also invalidates.
    a.put(json!({"id": "better", "lat": -6.2, "lng": 106.832, "max_radius_km": 4.0, "stock": 1.0, "rider_avail": 1.0})).await;
    b.app.refresh_if_changed().await.unwrap();
    assert_eq!(b.at(p.0, p.1).await["hub_id"], json!("better"));
    cleanup(&store, a).await;
    b.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ties_and_the_admin_api() {
    let store = isolated_store_config();
    let g = Geo::start(store.clone()).await;
    // Identical hubs but for the id: the smaller id wins, whatever the insertion order.
    g.put(hub("b-hub", -6.2, 106.84, 3.0)).await;
    g.put(hub("a-hub", -6.2, 106.84, 3.0)).await;
    assert_eq!(g.at(-6.201, 106.841).await["hub_id"], json!("a-hub"));
    let (s, b) = g.get("/admin/hubs").await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["a-hub", "b-hub"],
        "created_at ties (one clock) order by id"
    );
    let (s, b) = g.get("/admin/hubs/a-hub").await;
    assert_eq!((s, &b["data"]["max_radius_km"]), (200, &json!(3.0)));
    let (s, b) = g.get("/admin/hubs/nope").await;
    assert_eq!((s, code(&b)), (404, "HUB_NOT_FOUND"));
    for bad in [
        json!({"lat": 1.0, "lng": 1.0, "max_radius_km": 1.0}),
        json!({"id": "x", "lat": 91.0, "lng": 1.0, "max_radius_km": 1.0}),
        json!({"id": "x", "lat": 1.0, "lng": 1.0, "max_radius_km": 0}),
        json!({"id": "x", "lat": 1.0, "lng": 1.0, "max_radius_km": 51}),
        json!({"id": "x", "lat": 1.0, "lng": 1.0, "max_radius_km": 1, "stock": 2}),
        json!({"id": "x:y", "lat": 1.0, "lng": 1.0, "max_radius_km": 1}),
        json!({"id": "x", "lat": "1.0", "lng": 1.0, "max_radius_km": 1}),
    ] {
        let (s, b) = g.put(bad.clone()).await;
        assert_eq!((s, code(&b)), (400, "INVALID_ARGUMENT"), "{bad}: {b}");
    }
    let (s, b) = g
        .put(json!({"hub_id": "alias", "lat": -6.2, "lng": 106.84, "coverage_radius_km": 2.0}))
        .await;
    assert_eq!(
        (s, &b["data"]["id"], &b["data"]["active"]),
        (201, &json!("alias"), &json!(true)),
        "{b}"
    );
    cleanup(&store, g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_coordinates_are_400() {
    let store = isolated_store_config();
    let g = Geo::start(store.clone()).await;
    for q in [
        "lat=91&lng=0",
        "lat=-90.5&lng=0",
        "lat=0&lng=181",
        "lat=NaN&lng=0",
        "lat=inf&lng=0",
        "lng=1",
        "lat=1",
        "lat=abc&lng=1",
        "lat=&lng=1",
        "lat=1,5&lng=1",
    ] {
        let (s, b) = g.get(&format!("/serviceability?{q}")).await;
        assert_eq!((s, code(&b)), (400, "INVALID_ARGUMENT"), "{q}: {b}");
    }
    cleanup(&store, g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_lookups_fall_back_to_the_scan() {
    let port = qc_kit::testing::free_port();
    let mut redis = qc_tests::start_redis(port);
    let mut store = isolated_store_config();
    store.redis_url = format!("redis://127.0.0.1:{port}/");
    store.redis_timeout_ms = 300;
    let g = Geo::start(store.clone()).await;
    g.put(hub("central", -6.2, 106.84, 3.0)).await;
    assert_eq!(g.at(-6.201, 106.841).await["tier"], json!("index"));
    redis.kill().unwrap();
    redis.wait().unwrap();
    g.app.clear_l1();
    let started = std::time::Instant::now();
    let a = g.at(-6.201, 106.841).await;
    assert_eq!(
        (a["hub_id"].clone(), a["tier"].clone()),
        (json!("central"), json!("scan")),
        "{a}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let (s, b) = g.get("/ready").await;
    assert_eq!((s, code(&b)), (503, "UNAVAILABLE"));
    g.shutdown.trigger();
    qc_kit::pg::drop_schema(&store).await.unwrap();
}
