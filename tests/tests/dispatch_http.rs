//! Dispatch over real HTTP on loopback sockets, live Redis and Postgres (issue #4, dispatch
//! part): the API with a manual clock, pickup points from a real Geo, Tracking's assignment key,
//! bad input, and two instances with their real loops on one `dispatch_queue` while drivers
//! work through both, one instance stopping half-way.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qc_dispatch::{check_transition, DriverState, Via};
use qc_kit::config::{EnvSource, StoreConfig};
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::testing::{delete_prefix, isolated_store_config, redis_for_test};
use qc_kit::{Clock, ManualClock, SharedClock, WallClock};
use qc_services::dispatch::{self, DispatchApp, DispatchConfig};
use qc_services::platform::config::PlatformConfig;
use qc_services::platform::shutdown::Shutdown;
use qc_tests::{code, serve_loopback, split, T0_MS};
use serde_json::{json, Value};

struct Svc {
    app: Arc<DispatchApp>,
    base: String,
    http: reqwest::Client,
    shutdown: Shutdown,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Svc {
    async fn start(
        store: &StoreConfig,
        instance: &str,
        env: &[(&str, &str)],
        clock: SharedClock,
        spawn_jobs: bool,
    ) -> Self {
        let mut cfg =
            PlatformConfig::from_env(&EnvSource::from_pairs([("INSTANCE_ID", instance)])).unwrap();
        cfg.store = store.clone();
        let dcfg = DispatchConfig::from_env(&EnvSource::from_pairs(env.iter().copied())).unwrap();
        let shutdown = Shutdown::new();
        let (app, mut svc) = dispatch::build(&cfg, dcfg, clock, shutdown.clone(), spawn_jobs)
            .await
            .unwrap_or_else(|e| panic!("dispatch did not start: {e}"));
        let mut tasks = std::mem::take(&mut svc.jobs);
        let (base, server) = serve_loopback(svc, &shutdown).await;
        tasks.push(tokio::spawn(async move {
            let _ = server.await;
        }));
        Self {
            app,
            base,
            http: reqwest::Client::new(),
            shutdown,
            tasks,
        }
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        split(r).await
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

    async fn ok(&self, path: &str, body: Value) -> Value {
        let (s, b) = self.post(path, body).await;
        assert!(s == 200 || s == 201, "{path}: {s} {b}");
        b["data"].clone()
    }

    async fn stop(self) {
        self.shutdown.trigger();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn cleanup(store: &StoreConfig) {
    let mut conn = redis_for_test(store).await;
    delete_prefix(&mut conn, &KeyPrefix::new(store.key_prefix.clone()))
        .await
        .unwrap();
    qc_kit::pg::drop_schema(store).await.unwrap();
}

const HUB: (f64, f64) = (-6.2, 106.8);

/// How many `POST /eta/calculate` calls Dispatch has made successfully (its metrics).
async fn eta_calculations(s: &Svc) -> f64 {
    let metrics = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("dispatch_eta_calls_total")
                && l.contains("/eta/calculate")
                && l.contains("\"ok\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn order_body(id: &str, lat: f64, lng: f64) -> Value {
    json!({"order_id": id, "customer_id": "cust-1", "hub_id": "hub-1", "total": 52000,
           "items": [{"product_id": "sku-1", "name": "Milk", "quantity": 2}],
           "delivery_location": {"lat": lat, "lng": lng}})
}

async fn idle_driver(s: &Svc, id: &str, lat: f64, lng: f64) {
    s.ok(
        "/dispatch/driver/register",
        json!({"driver_id": id, "name": id, "location": {"lat": lat, "lng": lng}}),
    )
    .await;
    s.ok(
        "/dispatch/driver/state",
        json!({"driver_id": id, "to": "IDLE"}),
    )
    .await;
}

#[tokio::test]
async fn the_api_runs_an_order_from_pool_to_door() {
    let store = isolated_store_config();
    let clock = Arc::new(ManualClock::new(T0_MS));
    let env = [
        ("DISPATCH_WINDOW_MS", "5000"),
        ("DISPATCH_MIN_ORDERS", "3"),
        ("GEO_URL", "http://127.0.0.1:9"),
        ("ETA_URL", ""),
        ("TRACKING_URL", ""),
    ];
    let s = Svc::start(&store, "solo", &env, clock.clone(), false).await;
    dispatch::set_leader(&s.app, true);

    // Riders: near the customer, and near the hub (the customer is 3 km away).
    idle_driver(&s, "near-hub", HUB.0 + 0.001, HUB.1).await;
    idle_driver(&s, "far", HUB.0 + 0.2, HUB.1).await;
    let (st, b) = s
        .post("/dispatch/order", order_body("o-1", HUB.0 + 0.027, HUB.1))
        .await;
    assert_eq!(
        (st, b["data"]["status"].as_str()),
        (201, Some("PENDING")),
        "{b}"
    );
    assert_eq!(b["data"]["estimated_match_seconds"], 5);
    let (st, b) = s
        .post("/dispatch/order", order_body("o-1", HUB.0 + 0.027, HUB.1))
        .await;
    assert_eq!(
        (st, b["data"]["order_id"].as_str()),
        (200, Some("o-1")),
        "a replay answers 200"
    );
    let (st, b) = s.post("/dispatch/order", json!({"customer_id": "c", "hub_id": "hub-1",
        "items": [{"product_id": "p", "quantity": 1}], "delivery_location": {"lat": 1.5, "lng": 0}})).await;
    assert_eq!(st, 201, "{b}");
    let generated = b["data"]["order_id"].as_str().unwrap().to_string();
    assert_eq!(generated.len(), 36, "a UUIDv4 when order_id is absent");

    // One order is under MIN_ORDERS: nothing until the 5 s window.
    assert_eq!(dispatch::flush_if_due(&s.app).await.unwrap(), None);
    clock.advance_ms(4999);
    assert_eq!(dispatch::flush_if_due(&s.app).await.unwrap(), None);
    clock.advance_ms(1);
    assert_eq!(dispatch::flush_if_due(&s.app).await.unwrap(), Some(2));
    let (_, o) = s.get("/dispatch/orders/o-1").await;
    let o = &o["data"];
    assert_eq!(o["status"], "ASSIGNED");
    assert_eq!(
        o["assigned_driver_id"], "near-hub",
        "Geo is down: pickup falls back to the delivery point, but near-hub is nearer anyway"
    );
    let asg_id = o["current_assignment_id"].as_str().unwrap().to_string();
    let (_, a) = s.get(&format!("/dispatch/assignments/{asg_id}")).await;
    assert_eq!(
        (a["data"]["status"].as_str(), a["data"]["attempt"].as_i64()),
        (Some("PENDING"), Some(1))
    );
    assert!(a["data"]["expires_at"].as_str().unwrap().ends_with('Z'));

    // Accept: wrong driver, then the right one, then again.
    let (st, b) = s
        .post(
            "/dispatch/driver/accept",
            json!({"assignment_id": asg_id, "driver_id": "far"}),
        )
        .await;
    assert_eq!((st, code(&b)), (400, "ASSIGNMENT_DRIVER_MISMATCH"));
    let acc = s
        .ok(
            "/dispatch/driver/accept",
            json!({"assignment_id": asg_id, "driver_id": "near-hub"}),
        )
        .await;
    assert_eq!(
        acc,
        json!({"assignment_id": asg_id, "order_id": "o-1", "hub_id": "hub-1", "status": "ACCEPTED"})
    );
    let (st, b) = s
        .post(
            "/dispatch/driver/accept",
            json!({"assignment_id": asg_id, "driver_id": "near-hub"}),
        )
        .await;
    assert_eq!(
        (st, code(&b), b["error"]["details"]["status"].as_str()),
        (409, "ASSIGNMENT_NOT_PENDING", Some("ACCEPTED"))
    );

    // Tracking's key (00, 06 §3), written with the accept.
    let mut conn = redis_for_test(&store).await;
    let key = format!("{}dispatch:{{dispatch}}:assignment:o-1", store.key_prefix);
    let h: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        (
            h["driver_id"].as_str(),
            h["assignment_id"].as_str(),
            h["hub_id"].as_str()
        ),
        ("near-hub", asg_id.as_str(), "hub-1")
    );
    assert!(h["assigned_at"].ends_with('Z'));
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 86_000 && ttl <= 86_400, "{ttl}");

    // The trip, then an illegal jump.
    let (st, b) = s
        .post(
            "/dispatch/driver/state",
            json!({"driver_id": "near-hub", "to": "DELIVERING"}),
        )
        .await;
    assert_eq!(
        (st, code(&b), b["error"]["details"]["from"].as_str()),
        (409, "ILLEGAL_TRANSITION", Some("TO_HUB"))
    );
    for to in ["PICKING", "DELIVERING", "COMPLETED"] {
        let t = s
            .ok(
                "/dispatch/driver/state",
                json!({"driver_id": "near-hub", "to": to}),
            )
            .await;
        assert_eq!(t["to"], to);
    }
    let (_, o) = s.get("/dispatch/orders/o-1").await;
    assert_eq!(o["data"]["status"], "DELIVERED");
    let (_, d) = s.get("/dispatch/drivers/near-hub").await;
    assert_eq!(
        (
            d["data"]["total_deliveries"].as_i64(),
            d["data"]["load"].as_i64()
        ),
        (Some(1), Some(0))
    );
    let (_, ev) = s.get("/dispatch/drivers/near-hub/events").await;
    let states: Vec<&str> = ev["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to_state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        [
            "OFFLINE",
            "IDLE",
            "ASSIGNED",
            "TO_HUB",
            "PICKING",
            "DELIVERING",
            "COMPLETED"
        ]
    );
    assert_eq!(ev["data"][0]["from_state"], Value::Null);

    // The other order went to "far": it rejects; reassignment is due in 1 s, to nobody else.
    let (_, o) = s.get(&format!("/dispatch/orders/{generated}")).await;
    let asg2 = o["data"]["current_assignment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, b) = s
        .post(
            "/dispatch/driver/reject",
            json!({"assignment_id": asg2, "driver_id": "far", "order_id": "o-1"}),
        )
        .await;
    assert_eq!(
        (st, code(&b)),
        (400, "INVALID_ARGUMENT"),
        "order_id mismatch"
    );
    let r = s
        .ok(
            "/dispatch/driver/reject",
            json!({"assignment_id": asg2, "driver_id": "far", "reason": "too far"}),
        )
        .await;
    assert_eq!(
        (
            r["order_status"].as_str(),
            r["reassign_attempt"].as_i64(),
            r["reassignment_in_ms"].as_i64()
        ),
        (Some("PENDING"), Some(1), Some(1000))
    );
    s.ok(
        "/dispatch/driver/state",
        json!({"driver_id": "near-hub", "to": "IDLE"}),
    )
    .await;
    clock.advance_ms(999);
    assert_eq!(dispatch::reassign_once(&s.app).await.unwrap(), 0);
    clock.advance_ms(1);
    assert_eq!(dispatch::reassign_once(&s.app).await.unwrap(), 1);
    let (_, o) = s.get(&format!("/dispatch/orders/{generated}")).await;
    assert_eq!(
        (
            o["data"]["status"].as_str(),
            o["data"]["assigned_driver_id"].as_str()
        ),
        (Some("ASSIGNED"), Some("near-hub"))
    );
    let asg3 = o["data"]["current_assignment_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Nobody answers: the sweeper closes the offer at its deadline.
    clock.advance_ms(29_999);
    assert_eq!(dispatch::sweep_once(&s.app).await.unwrap(), 0);
    clock.advance_ms(1);
    assert_eq!(dispatch::sweep_once(&s.app).await.unwrap(), 1);
    let (_, a) = s.get(&format!("/dispatch/assignments/{asg3}")).await;
    assert_eq!(
        (a["data"]["status"].as_str(), a["data"]["attempt"].as_i64()),
        (Some("TIMEOUT"), Some(2))
    );
    // Both riders are now excluded: attempts 2 and 3 find nobody, then the order goes back to
    // the pool with raised priority instead of failing.
    for step in [2000, 4000] {
        clock.advance_ms(step);
        assert_eq!(dispatch::reassign_once(&s.app).await.unwrap(), 1);
    }
    let (_, o) = s.get(&format!("/dispatch/orders/{generated}")).await;
    assert_eq!(
        (
            o["data"]["status"].as_str(),
            o["data"]["repooled"].as_u64(),
            o["data"]["priority"].as_u64(),
            o["data"]["failure_reason"].as_str()
        ),
        (Some("PENDING"), Some(1), Some(2), None)
    );
    // It fails only when its delivery deadline (60 min after it entered Dispatch) passes.
    let deadline = o["data"]["deliver_by"].as_str().unwrap().to_string();
    let left = humantime::parse_rfc3339(&deadline).unwrap();
    let left_ms = left
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - clock.now_ms();
    assert_eq!(dispatch::expire_overdue_once(&s.app).await.unwrap(), 0);
    clock.advance_ms(left_ms);
    assert_eq!(dispatch::expire_overdue_once(&s.app).await.unwrap(), 1);
    let (_, o) = s.get(&format!("/dispatch/orders/{generated}")).await;
    assert_eq!(
        (
            o["data"]["status"].as_str(),
            o["data"]["failure_reason"].as_str()
        ),
        (Some("FAILED"), Some("DEADLINE_PASSED"))
    );

    s.stop().await;
    cleanup(&store).await;
}

#[tokio::test]
async fn bad_input_gets_the_envelope_and_changes_nothing() {
    let store = isolated_store_config();
    let clock = Arc::new(ManualClock::new(T0_MS));
    let s = Svc::start(
        &store,
        "solo",
        &[("ETA_URL", ""), ("TRACKING_URL", "")],
        clock,
        false,
    )
    .await;
    idle_driver(&s, "d1", HUB.0, HUB.1).await;
    let good = order_body("o-1", HUB.0 + 0.01, HUB.1);
    let mut cases: Vec<(&str, Value, u16, &str)> = vec![];
    for (field, v) in [
        ("lat", json!(91.0)),
        ("lat", json!("1.0")),
        ("lng", json!(-180.5)),
        ("lat", json!(null)),
    ] {
        let mut b = good.clone();
        b["delivery_location"][field] = v;
        cases.push(("/dispatch/order", b, 400, "INVALID_ARGUMENT"));
    }
    let mut zero = good.clone();
    zero["delivery_location"] = json!({"lat": 0, "lng": 0});
    cases.push(("/dispatch/order", zero, 400, "INVALID_ARGUMENT"));
    let mut bad_id = good.clone();
    bad_id["order_id"] = json!("o:1{x}");
    cases.push(("/dispatch/order", bad_id, 400, "INVALID_ARGUMENT"));
    let mut no_items = good.clone();
    no_items["items"] = json!([]);
    cases.push(("/dispatch/order", no_items, 400, "INVALID_ARGUMENT"));
    let mut qty = good.clone();
    qty["items"][0]["quantity"] = json!(0);
    cases.push(("/dispatch/order", qty, 400, "INVALID_ARGUMENT"));
    let mut neg = good.clone();
    neg["total"] = json!(-5);
    cases.push(("/dispatch/order", neg, 400, "INVALID_ARGUMENT"));
    cases.extend([
        (
            "/dispatch/driver/register",
            json!({"driver_id": "d2", "max_load": 11}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/dispatch/driver/register",
            json!({"driver_id": "d 2"}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/dispatch/driver/register",
            json!({"driver_id": "d2", "location": {"lat": f64::MAX, "lng": 1}}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/dispatch/driver/location",
            json!({"driver_id": "d1", "lat": 0, "lng": 0}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/dispatch/driver/location",
            json!({"driver_id": "ghost", "lat": 1, "lng": 1}),
            404,
            "NOT_FOUND",
        ),
        (
            "/dispatch/driver/state",
            json!({"driver_id": "d1", "to": "FLYING"}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/dispatch/driver/state",
            json!({"driver_id": "d1", "to": "ASSIGNED"}),
            409,
            "ILLEGAL_TRANSITION",
        ),
        (
            "/dispatch/driver/state",
            json!({"driver_id": "d1", "to": "TO_HUB"}),
            409,
            "ILLEGAL_TRANSITION",
        ),
        (
            "/dispatch/driver/state",
            json!({"driver_id": "d1", "to": "IDLE"}),
            409,
            "ILLEGAL_TRANSITION",
        ),
        (
            "/dispatch/driver/accept",
            json!({"assignment_id": "nope", "driver_id": "d1"}),
            404,
            "NOT_FOUND",
        ),
        (
            "/dispatch/driver/reject",
            json!({"assignment_id": "nope"}),
            400,
            "INVALID_ARGUMENT",
        ),
    ]);
    for (path, body, status, want) in cases {
        let (st, b) = s.post(path, body.clone()).await;
        assert_eq!((st, code(&b)), (status, want), "{path} {body}: {b}");
        assert!(b["error"]["request_id"].is_string());
    }
    let (st, b) = s.get("/dispatch/orders/o-1").await;
    assert_eq!(
        (st, b["error"]["details"]["resource"].as_str()),
        (404, Some("order"))
    );
    let (st, b) = s.get("/dispatch/assignments/x").await;
    assert_eq!(
        (st, b["error"]["details"]["resource"].as_str()),
        (404, Some("assignment"))
    );
    let (st, _) = s.get("/dispatch/drivers/a%20b").await;
    assert_eq!(st, 400);
    let r = s
        .http
        .post(format!("{}/dispatch/order", s.base))
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(split(r).await.0, 400);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM dispatch_orders")
        .fetch_one(&s.app.pool)
        .await
        .unwrap();
    assert_eq!(n, 0, "nothing was created");
    let (_, d) = s.get("/dispatch/drivers/d1").await;
    assert_eq!(d["data"]["status"], "IDLE");
    s.stop().await;
    cleanup(&store).await;
}

#[tokio::test]
async fn pickup_points_come_from_geo_and_trips_feed_eta() {
    use qc_services::geo::{self, GeoConfig};
    let store = isolated_store_config();
    let mut cfg =
        PlatformConfig::from_env(&EnvSource::from_pairs([("INSTANCE_ID", "geo")])).unwrap();
    cfg.store = store.clone();
    let shutdown = Shutdown::new();
    let clock = Arc::new(ManualClock::new(T0_MS));
    let (_, gsvc) = geo::build(
        &cfg,
        GeoConfig::from_env(&EnvSource::from_pairs([])).unwrap(),
        clock.clone(),
        shutdown.clone(),
        false,
    )
    .await
    .unwrap();
    let (geo_url, _) = serve_loopback(gsvc, &shutdown).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{geo_url}/admin/hubs"))
        .json(&json!({"id": "hub-1", "lat": HUB.0, "lng": HUB.1, "max_radius_km": 5.0}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let (eta, esvc) = qc_services::eta::build(
        &cfg,
        qc_services::eta::EtaConfig::from_env(&EnvSource::from_pairs([])).unwrap(),
        clock.clone(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let (eta_url, _) = serve_loopback(esvc, &shutdown).await;

    let s = Svc::start(
        &store,
        "solo",
        &[
            ("GEO_URL", geo_url.as_str()),
            ("DISPATCH_MIN_ORDERS", "1"),
            ("ETA_URL", eta_url.as_str()),
            ("TRACKING_URL", ""),
        ],
        clock.clone(),
        false,
    )
    .await;
    dispatch::set_leader(&s.app, true);
    // The customer is 4 km north of the hub; one rider waits at the hub, one at the customer.
    idle_driver(&s, "at-customer", HUB.0 + 0.036, HUB.1).await;
    idle_driver(&s, "at-hub", HUB.0 + 0.0005, HUB.1).await;
    s.ok("/dispatch/order", order_body("o-1", HUB.0 + 0.036, HUB.1))
        .await;
    assert_eq!(dispatch::flush_if_due(&s.app).await.unwrap(), Some(1));
    let (_, o) = s.get("/dispatch/orders/o-1").await;
    assert_eq!(
        o["data"]["assigned_driver_id"], "at-hub",
        "the cost is driver -> pickup (the hub), not driver -> customer"
    );

    // Checkout promised an ETA at placement (calibration scores the promise).
    let promise = http
        .post(format!("{eta_url}/eta/calculate"))
        .json(
            &json!({"order_id": "o-1", "hub_id": "hub-1", "item_count": 2,
            "hub_lat": HUB.0, "hub_lng": HUB.1, "cust_lat": HUB.0 + 0.036, "cust_lng": HUB.1,
            "queue_depth": 0, "drivers_avail": 1}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(promise.status(), 200);
    // Accepting asks ETA for a stage-aware re-estimate (06 §8), in the background.
    let asg = o["data"]["current_assignment_id"]
        .as_str()
        .unwrap()
        .to_string();
    s.ok(
        "/dispatch/driver/accept",
        json!({"assignment_id": asg, "driver_id": "at-hub"}),
    )
    .await;
    let mut latest = Value::Null;
    for _ in 0..100 {
        if eta_calculations(&s).await >= 1.0 {
            let r = http.get(format!("{eta_url}/eta/o-1")).send().await.unwrap();
            latest = r.json::<Value>().await.unwrap();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        latest["data"]["hub_id"], "hub-1",
        "dispatch asked ETA for o-1: {latest}"
    );
    assert_eq!(
        latest["data"]["components"]["picking_time_s"], 120.0,
        "item_count = Σ quantity (2)"
    );
    // The trip: 10 minutes from DELIVERING to COMPLETED, observed by ETA as the ride.
    for to in ["PICKING", "DELIVERING"] {
        s.ok(
            "/dispatch/driver/state",
            json!({"driver_id": "at-hub", "to": to}),
        )
        .await;
    }
    // At pickup Dispatch asks again, for the ride that is left (stage picked_up).
    let mut asked = 0.0;
    for _ in 0..100 {
        asked = eta_calculations(&s).await;
        if asked >= 2.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(asked, 2.0, "re-estimates after accept and at pickup");
    clock.advance_ms(600_000);
    s.ok(
        "/dispatch/driver/state",
        json!({"driver_id": "at-hub", "to": "COMPLETED"}),
    )
    .await;
    let mut seen: Option<(f64, bool)> = None;
    for _ in 0..100 {
        seen =
            sqlx::query_as("SELECT actual_s, applied FROM eta_observations WHERE order_id = 'o-1'")
                .fetch_optional(&eta.pool)
                .await
                .unwrap();
        if seen.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(seen, Some((600.0, true)));
    use qc_eta::EtaStore;
    let band = qc_eta::calibrate::hour_band(qc_eta::engine::local_hour(T0_MS, 420));
    let w = eta.store.scores("hub-1", band).await.unwrap();
    assert_eq!(w.hub.len(), 1, "the delivery calibrated the hub's ETA");
    s.stop().await;
    shutdown.trigger();
    cleanup(&store).await;
}

/// A rider app: polls its driver through a random live instance, accepts (mostly), rejects or
/// ignores offers, and runs each accepted trip to COMPLETED and back to IDLE.
async fn rider(id: String, seed: u64, bases: Arc<std::sync::RwLock<Vec<String>>>, stop: Shutdown) {
    let http = reqwest::Client::new();
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let post = |base: String, path: &'static str, body: Value| {
        let http = http.clone();
        async move {
            match http.post(format!("{base}{path}")).json(&body).send().await {
                Ok(r) => split(r).await,
                Err(_) => (0, Value::Null),
            }
        }
    };
    let pick = |n: u64| {
        let b = bases.read().unwrap();
        b[(n as usize) % b.len()].clone()
    };
    let lat = HUB.0 + (seed % 7) as f64 * 0.002;
    let _ = post(
        pick(next()),
        "/dispatch/driver/register",
        json!({"driver_id": id, "location": {"lat": lat, "lng": HUB.1}}),
    )
    .await;
    let _ = post(
        pick(next()),
        "/dispatch/driver/state",
        json!({"driver_id": id, "to": "IDLE"}),
    )
    .await;
    let mut ignored: Option<String> = None;
    while !stop.is_triggered() {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let base = pick(next());
        let Ok(r) = http
            .get(format!("{base}/dispatch/drivers/{id}"))
            .send()
            .await
        else {
            continue;
        };
        let (_, d) = split(r).await;
        let d = &d["data"];
        let asg = d["current_assignment_id"].as_str().map(str::to_string);
        match (d["status"].as_str(), asg) {
            (Some("ASSIGNED"), Some(a)) if ignored.as_ref() != Some(&a) => match next() % 10 {
                0 => {
                    let _ = post(
                        pick(next()),
                        "/dispatch/driver/reject",
                        json!({"assignment_id": a, "driver_id": id}),
                    )
                    .await;
                }
                1 => ignored = Some(a), // never answer: the offer times out
                _ => {
                    let (st, _) = post(
                        pick(next()),
                        "/dispatch/driver/accept",
                        json!({"assignment_id": a, "driver_id": id}),
                    )
                    .await;
                    if st == 200 {
                        for to in ["PICKING", "DELIVERING", "COMPLETED", "IDLE"] {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            loop {
                                let (st, b) = post(
                                    pick(next()),
                                    "/dispatch/driver/state",
                                    json!({"driver_id": id, "to": to}),
                                )
                                .await;
                                if st == 200 || stop.is_triggered() {
                                    break;
                                }
                                assert!(
                                    st == 0 || st >= 500 || code(&b) == "CONFLICT",
                                    "{to}: {st} {b}"
                                );
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                }
            },
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_queue_never_double_assign_or_lose_an_order() {
    const ORDERS: usize = 120;
    const RIDERS: usize = 14;
    let store = isolated_store_config();
    let env = [
        ("DISPATCH_WINDOW_MS", "200"),
        ("DISPATCH_POLL_MS", "50"),
        ("DISPATCH_OFFER_TIMEOUT_S", "1"),
        ("DISPATCH_LEADER_LEASE_MS", "900"),
        ("GEO_URL", "http://127.0.0.1:9"),
        ("ETA_URL", ""),
        ("TRACKING_URL", ""),
    ];
    let a = Svc::start(&store, "dispatch-a", &env, Arc::new(WallClock), true).await;
    let b = Svc::start(&store, "dispatch-b", &env, Arc::new(WallClock), true).await;
    let bases = Arc::new(std::sync::RwLock::new(vec![a.base.clone(), b.base.clone()]));
    let stop = Shutdown::new();
    let riders: Vec<_> = (0..RIDERS)
        .map(|i| {
            tokio::spawn(rider(
                format!("r{i:02}"),
                7919 * (i as u64 + 1),
                bases.clone(),
                stop.clone(),
            ))
        })
        .collect();
    // Checkout's side: orders arrive in the queue in bursts. Half-way, instance A stops (the
    // lease holder, or not): B must hold the lease and finish everything.
    let pool = a.app.pool.clone();
    let mut a = Some(a);
    for i in 0..ORDERS {
        let payload = json!({"customer_id": "c", "items": [{"product_id": "sku-1", "name": "", "quantity": 1}],
                             "delivery_location": {"lat": HUB.0 + 0.01 + (i % 5) as f64 * 0.003, "lng": HUB.1}, "total": 1000});
        qc_dispatch::queue::enqueue(
            &pool,
            &format!("q{i:03}"),
            "hub-1",
            (1 + i % 3) as i16,
            &payload,
            WallClock.now_ms(),
        )
        .await
        .unwrap();
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        if i == ORDERS / 2 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let stopping = a.take().unwrap();
            bases.write().unwrap().retain(|u| *u != stopping.base);
            stopping.stop().await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM dispatch_queue WHERE status <> 'done')
                  + (SELECT count(*) FROM dispatch_orders WHERE status NOT IN ('DELIVERED', 'FAILED'))",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM dispatch_orders")
            .fetch_one(&pool)
            .await
            .unwrap();
        if open == 0 && orders == ORDERS as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} rows/orders still open after 90 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(b.app.is_leader(), "B holds the lease at the end");
    stop.trigger();
    for r in riders {
        r.await.unwrap();
    }

    // Every queue row became exactly one order; both instances claimed rows.
    let claimers: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT claimed_by FROM dispatch_queue ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(claimers, ["dispatch-a", "dispatch-b"]);
    // Every order ended delivered, or failed with a reason.
    let ends: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT id, status, failure_reason FROM dispatch_orders")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(ends.len(), ORDERS);
    for (id, status, reason) in &ends {
        assert!(
            status == "DELIVERED" || (status == "FAILED" && reason.is_some()),
            "{id}: {status} {reason:?}"
        );
    }
    let delivered = ends.iter().filter(|e| e.1 == "DELIVERED").count();
    assert!(delivered >= ORDERS * 3 / 4, "only {delivered} delivered");
    // Never assigned twice: one accepted assignment per delivered order, none left live.
    let asgs: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT order_id, status, finished_at IS NOT NULL FROM dispatch_assignments",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut accepted: BTreeMap<&str, usize> = BTreeMap::new();
    for (order, status, finished) in &asgs {
        *outcomes.entry(status.as_str()).or_default() += 1;
        if status == "ACCEPTED" {
            *accepted.entry(order).or_default() += 1;
        }
        assert!(finished, "{order}: a live assignment left behind");
    }
    eprintln!(
        "{ORDERS} orders: {delivered} delivered, {} failed; assignments {outcomes:?}",
        ORDERS - delivered
    );
    for (id, status, _) in &ends {
        let n = accepted.get(id.as_str()).copied().unwrap_or(0);
        assert!(n <= 1, "{id} accepted {n} times");
        if status == "DELIVERED" {
            assert_eq!(n, 1, "{id}");
        }
    }
    let total: i64 = sqlx::query_scalar("SELECT sum(total_deliveries)::bigint FROM drivers")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(total as usize, delivered);
    // Each rider's log is one unbroken chain of legal transitions: every change starts where the
    // previous one ended (no lost update), and ASSIGNED is entered only from IDLE, so no rider
    // ever held two offers or trips at once.
    let events: Vec<(String, Option<String>, String)> = sqlx::query_as(
        "SELECT driver_id, from_state, to_state FROM driver_state_events ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut last: BTreeMap<&str, DriverState> = BTreeMap::new();
    for (driver, from, to) in &events {
        let to = DriverState::parse(to).unwrap();
        match from {
            None => assert!(
                last.insert(driver, to).is_none(),
                "{driver} registered twice"
            ),
            Some(from) => {
                let from = DriverState::parse(from).unwrap();
                assert_eq!(
                    last.get(driver.as_str()),
                    Some(&from),
                    "{driver}: chain broken at {from:?} -> {to:?}"
                );
                let legal = [Via::Matcher, Via::Accept, Via::Reject, Via::Api]
                    .iter()
                    .any(|v| check_transition(from, to, *v).is_ok());
                assert!(legal, "{driver}: {from:?} -> {to:?}");
                last.insert(driver, to);
            }
        }
    }
    assert_eq!(last.len(), RIDERS);
    b.stop().await;
    cleanup(&store).await;
}
