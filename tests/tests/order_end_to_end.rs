//! One order through the whole platform over real HTTP, live Redis and Postgres (issue #13):
//! checkout (stock held and confirmed through the inventory core, a promo applied over Promo's
//! API, charged) → `dispatch_queue` → Dispatch claims it and assigns the rider → the rider's app
//! accepts and delivers → Tracking shows each status → ETA learns from the trip (the pickup point
//! from Geo). Every service
//! runs in this process on its own loopback port, on one Redis prefix and one Postgres schema.

use std::sync::Arc;
use std::time::{Duration, Instant};

use qc_inventory::store::HoldPolicy;
use qc_inventory::{HubId, RedisStore, SetStockCommand, Sku, StockSetReason, StockStore};
use qc_kit::config::{EnvSource, StoreConfig};
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::testing::{delete_prefix, isolated_store_config, redis_for_test};
use qc_kit::ManualClock;
use qc_services::platform::config::PlatformConfig;
use qc_services::platform::shutdown::Shutdown;
use qc_services::{checkout, dispatch, eta, geo, promo, tracking};
use qc_tests::{serve_loopback, Api};
use qc_tracking::TrackingStore;
use serde_json::json;

const T0: i64 = 1_796_112_000_000;

fn platform(store: &StoreConfig) -> PlatformConfig {
    let mut cfg = PlatformConfig::from_env(&EnvSource::from_pairs([])).unwrap();
    cfg.store = store.clone();
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_goes_from_checkout_to_the_door_through_every_service() {
    let store = isolated_store_config();
    let cfg = platform(&store);
    let clock = Arc::new(ManualClock::new(T0));
    let stop = Shutdown::new();

    let (_, svc) = geo::build(
        &cfg,
        geo::GeoConfig::from_env(&EnvSource::from_pairs([])).unwrap(),
        clock.clone(),
        stop.clone(),
        false,
    )
    .await
    .unwrap();
    let (geo_base, _) = serve_loopback(svc, &stop).await;
    let (s, b) = Api::new(geo_base.clone())
        .post(
            "/admin/hubs",
            json!({"id": "jkt-01", "lat": -6.2, "lng": 106.8, "max_radius_km": 5}),
        )
        .await;
    assert!(s < 300, "{b}");
    let (eta_app, svc) = eta::build(
        &cfg,
        eta::EtaConfig::from_env(&EnvSource::from_pairs([])).unwrap(),
        clock.clone(),
        stop.clone(),
    )
    .await
    .unwrap();
    let (eta_base, _) = serve_loopback(svc, &stop).await;
    let (tracking_app, svc) = tracking::build(
        &cfg,
        tracking::TrackingConfig::from_env(&EnvSource::from_pairs([])).unwrap(),
        clock.clone(),
        stop.clone(),
    )
    .await
    .unwrap();
    let (tracking_base, _) = serve_loopback(svc, &stop).await;
    let (_, svc) = promo::build(
        &cfg,
        promo::PromoSettings::from_env(&EnvSource::from_pairs([]), "test").unwrap(),
        clock.clone(),
        stop.clone(),
    )
    .await
    .unwrap();
    let (promo_base, _) = serve_loopback(svc, &stop).await;
    let dcfg = dispatch::DispatchConfig::from_env(&EnvSource::from_pairs([
        ("DISPATCH_MIN_ORDERS", "1"),
        ("GEO_URL", geo_base.as_str()),
        ("ETA_URL", eta_base.as_str()),
        ("TRACKING_URL", tracking_base.as_str()),
    ]))
    .unwrap();
    let (dispatch_app, svc) = dispatch::build(&cfg, dcfg, clock.clone(), stop.clone(), false)
        .await
        .unwrap();
    let (dispatch_base, _) = serve_loopback(svc, &stop).await;
    dispatch::set_leader(&dispatch_app, true);
    let settings = checkout::CheckoutSettings::from_env(
        &EnvSource::from_pairs([
            ("PROMO_URL", promo_base.as_str()),
            ("CHECKOUT_PRICES", r#"{"milk": 18500, "bread": 15000}"#),
        ]),
        "test",
    )
    .unwrap();
    let (checkout_app, svc) = checkout::build(&cfg, settings, clock.clone(), stop.clone())
        .await
        .unwrap();
    let (checkout_base, _) = serve_loopback(svc, &stop).await;

    // Stock at the hub, a promo, a rider at the hub.
    let conn = redis_for_test(&store).await;
    let inventory = RedisStore::new(
        conn.clone(),
        KeyPrefix::new(store.key_prefix.clone()),
        HoldPolicy::default(),
        2000,
    );
    let hub = HubId::parse("jkt-01").unwrap();
    for sku in ["milk", "bread"] {
        inventory
            .set_stock(
                T0,
                &SetStockCommand {
                    hub_id: hub.clone(),
                    sku: Sku::parse(sku).unwrap(),
                    on_hand: 20,
                    buckets: 1,
                    reason: StockSetReason::AdminSet,
                    actor: "t".into(),
                },
            )
            .await
            .unwrap();
    }
    let promo_api = Api::new(promo_base);
    let (s, _) = promo_api
        .post("/api/v1/promo/admin/rules", json!({"name": "10% off", "conditions": {"type": "min_transaction", "min_amount": 10000},
            "effect": {"type": "percentage", "value": 10}, "limits": {"max_total": 100}}))
        .await;
    assert_eq!(s, 201);
    let d = Api::new(dispatch_base);
    for (path, body) in [
        (
            "/dispatch/driver/register",
            json!({"driver_id": "r-1", "name": "Rider", "location": {"lat": -6.2, "lng": 106.8}}),
        ),
        (
            "/dispatch/driver/state",
            json!({"driver_id": "r-1", "to": "IDLE"}),
        ),
    ] {
        let (st, b) = d.post(path, body).await;
        assert!(st < 300, "{path}: {b}");
    }

    // The shopper checks out.
    let r = reqwest::Client::new()
        .post(format!("{checkout_base}/api/v1/checkout"))
        .header("Idempotency-Key", "cart-1")
        .json(&json!({"user_id": "u-1", "hub_id": "jkt-01",
            "items": [{"sku": "milk", "quantity": 2}, {"sku": "bread", "quantity": 1}],
            "payment": {"method": "card", "card_token": "tok_visa"},
            "delivery_location": {"lat": -6.21, "lng": 106.81}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let created: serde_json::Value = r.json().await.unwrap();
    let order_id = created["data"]["order_id"].as_str().unwrap().to_string();
    assert_eq!(
        (
            created["data"]["subtotal"].as_i64(),
            created["data"]["discount"].as_i64(),
            created["data"]["total"].as_i64()
        ),
        (Some(52_000), Some(5_200), Some(46_800))
    );

    // Dispatch claims the queue row and assigns the rider; the rider's app does the rest.
    assert_eq!(dispatch::poll_queue_once(&dispatch_app).await.unwrap(), 1);
    clock.advance_ms(5_000);
    dispatch::flush_if_due(&dispatch_app).await.unwrap();
    let (_, o) = d.get(&format!("/dispatch/orders/{order_id}")).await;
    assert_eq!(o["data"]["assigned_driver_id"], "r-1", "{o}");
    let asg = o["data"]["current_assignment_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        d.post(
            "/dispatch/driver/accept",
            json!({"assignment_id": asg, "driver_id": "r-1"})
        )
        .await
        .0,
        200
    );
    for to in ["PICKING", "DELIVERING"] {
        assert_eq!(
            d.post(
                "/dispatch/driver/state",
                json!({"driver_id": "r-1", "to": to})
            )
            .await
            .0,
            200
        );
    }
    clock.advance_ms(600_000);
    assert_eq!(
        d.post(
            "/dispatch/driver/state",
            json!({"driver_id": "r-1", "to": "COMPLETED"})
        )
        .await
        .0,
        200
    );

    // Every store agrees at the end (Tracking and ETA hear from Dispatch in the background).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = tracking_app
            .tracker
            .store()
            .status(&order_id)
            .await
            .unwrap();
        let observed: i64 = sqlx::query_scalar("SELECT count(*) FROM eta_observations")
            .fetch_one(&eta_app.pool)
            .await
            .unwrap();
        if status
            .as_ref()
            .is_some_and(|s| s.status.as_str() == "delivered")
            && observed >= 1
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tracking {status:?}, eta observations {observed}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, o) = d.get(&format!("/dispatch/orders/{order_id}")).await;
    assert_eq!(o["data"]["status"], "DELIVERED");
    let milk = inventory
        .stock(&hub, &Sku::parse("milk").unwrap())
        .await
        .unwrap();
    assert_eq!((milk.available, milk.reserved), (18, 0), "sold, not held");
    let stored = qc_checkout::OrderRepo::get(&checkout_app.saga.orders, &order_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.status.as_str(), stored.payment_status.as_str()),
        ("confirmed", "charged")
    );
    let rules: Vec<serde_json::Value> = promo_api.get("/admin/rules").await.1["data"]
        .as_array()
        .unwrap()
        .clone();
    let (_, usage) = promo_api
        .get(&format!(
            "/admin/rules/{}/usage",
            rules[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(usage["data"]["total"], 1, "one redemption");

    stop.trigger();
    let mut c = conn.clone();
    delete_prefix(&mut c, &KeyPrefix::new(store.key_prefix.clone()))
        .await
        .unwrap();
    qc_kit::pg::drop_schema(&store).await.unwrap();
}
