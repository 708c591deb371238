//! Checkout benchmark (BENCHMARKS.md, issue #13): the saga in process over the real adapters
//! (the inventory core's Redis scripts, the Postgres repository, 04's gateway simulator, no
//! promos), and the service over HTTP on loopback (adding the idempotency lease and stored
//! answer). p50/p99 and throughput; every checkout a new user, key and order.
//!
//! `cargo run --release -p qc-tests --bin bench_checkout -- [checkouts] [concurrency]`

use std::sync::Arc;
use std::time::Instant;

use qc_checkout::CheckoutRequest;
use qc_inventory::{HubId, SetStockCommand, Sku, StockSetReason, StockStore};
use qc_kit::config::EnvSource;
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::testing::{delete_prefix, isolated_store_config, redis_for_test};
use qc_kit::WallClock;
use qc_services::checkout::{self, CheckoutSettings};
use qc_services::platform::config::PlatformConfig;
use qc_services::platform::server::serve_until;
use qc_services::platform::shutdown::Shutdown;
use serde_json::json;

fn body(i: usize) -> serde_json::Value {
    json!({"user_id": format!("u{i}"), "hub_id": "h1",
           "items": [{"sku": "milk", "quantity": 1}, {"sku": "bread", "quantity": 2}],
           "payment": {"method": "card", "card_token": "tok_ok"},
           "delivery_location": {"lat": -6.2, "lng": 106.8}})
}

fn report(label: &str, h: &hdrhistogram::Histogram<u64>, secs: f64) {
    println!(
        "{label}: {} checkouts, p50 {:.2} ms, p99 {:.2} ms, {:.0}/s",
        h.len(),
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.len() as f64 / secs
    );
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    let conc: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(16);
    let store = isolated_store_config();
    let mut cfg = PlatformConfig::from_env(&EnvSource::from_pairs([])).unwrap();
    cfg.store = store.clone();
    let shutdown = Shutdown::new();
    let settings = CheckoutSettings::from_env(
        &EnvSource::from_pairs([
            ("PROMO_URL", ""),
            ("CHECKOUT_PRICES", r#"{"milk": 18500, "bread": 15000}"#),
        ]),
        "test",
    )
    .unwrap();
    let (app, svc) = checkout::build(&cfg, settings, Arc::new(WallClock), shutdown.clone())
        .await
        .unwrap();
    for sku in ["milk", "bread"] {
        app.saga
            .inventory
            .set_stock(
                qc_kit::Clock::now_ms(&WallClock),
                &SetStockCommand {
                    hub_id: HubId::parse("h1").unwrap(),
                    sku: Sku::parse(sku).unwrap(),
                    on_hand: 10_000_000,
                    buckets: 8,
                    reason: StockSetReason::AdminSet,
                    actor: "bench".into(),
                },
            )
            .await
            .unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    svc.ctx.mark_started();
    tokio::spawn(serve_until(listener, svc.router, shutdown.clone()));

    for (label, http) in [
        ("saga in process (Redis + Postgres)", false),
        ("POST /api/v1/checkout over HTTP", true),
    ] {
        let started = Instant::now();
        let tasks: Vec<_> = (0..conc)
            .map(|w| {
                let (app, base) = (app.clone(), base.clone());
                let client = reqwest::Client::new();
                tokio::spawn(async move {
                    let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
                    let mut i = w;
                    while i < n {
                        let id = if http { n + i } else { i };
                        let t = Instant::now();
                        if http {
                            let r = client
                                .post(format!("{base}/api/v1/checkout"))
                                .header("Idempotency-Key", format!("k{id}"))
                                .json(&body(id))
                                .send()
                                .await
                                .unwrap();
                            assert_eq!(r.status().as_u16(), 201);
                            let _ = r.bytes().await;
                        } else {
                            let req = CheckoutRequest::parse(&body(id)).unwrap();
                            let order_id = uuid::Uuid::new_v4().to_string();
                            app.saga
                                .run(
                                    &req,
                                    &format!("k{id}"),
                                    &order_id,
                                    qc_kit::Clock::now_ms(&WallClock),
                                )
                                .await
                                .unwrap();
                        }
                        h.record(t.elapsed().as_micros() as u64).unwrap();
                        i += conc;
                    }
                    h
                })
            })
            .collect();
        let mut all = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        for t in tasks {
            all.add(t.await.unwrap()).unwrap();
        }
        report(label, &all, started.elapsed().as_secs_f64());
    }
    shutdown.trigger();
    let mut c = redis_for_test(&store).await;
    delete_prefix(&mut c, &KeyPrefix::new(store.key_prefix.clone()))
        .await
        .unwrap();
    app.pool.close().await;
    qc_kit::pg::drop_schema(&store).await.unwrap();
}
