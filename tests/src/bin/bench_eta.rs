//! ETA `calculate` benchmark (BENCHMARKS.md): one calculation in process (the engine over the
//! Redis adapter: sticky read, two filter reads, score windows, sticky write, latest write) and
//! over HTTP on loopback, p50/p99, with warm filters and calibration windows. Every call uses a
//! new order id, so none is served from the sticky cache.
//!
//! `cargo run --release -p qc-tests --bin bench_eta -- [calls]`

use std::sync::Arc;
use std::time::Instant;

use qc_eta::engine::{self, Model};
use qc_eta::model::CalculateInput;
use qc_eta::EtaStore;
use qc_kit::config::EnvSource;
use qc_kit::testing::{delete_prefix, isolated_store_config};
use qc_kit::ManualClock;
use qc_services::eta::{self, EtaConfig};
use qc_services::platform::config::PlatformConfig;
use qc_services::platform::server::serve_until;
use qc_services::platform::shutdown::Shutdown;
use serde_json::json;

fn report(label: &str, h: &hdrhistogram::Histogram<u64>, secs: f64) {
    println!(
        "{label}: {} calls, p50 {} µs, p99 {} µs, {:.0}/s",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.len() as f64 / secs
    );
}

#[tokio::main]
async fn main() {
    let calls: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let store = isolated_store_config();
    let mut cfg = PlatformConfig::from_env(&EnvSource::from_pairs([])).unwrap();
    cfg.store = store.clone();
    let shutdown = Shutdown::new();
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let (app, svc) = eta::build(
        &cfg,
        EtaConfig::from_env(&EnvSource::from_pairs([])).unwrap(),
        clock.clone(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    // Warm state: learned filters and full calibration windows for the hub.
    for i in 0..50 {
        let body = json!({"hub_id": "hub-1", "hub_lat": -6.2, "hub_lng": 106.816666,
            "cust_lat": -6.25 + f64::from(i % 5) * 0.002, "cust_lng": 106.85, "actual_travel_s": 1500.0});
        let input = serde_json::from_value(body).unwrap();
        engine::observe(&app.store, input, qc_kit::Clock::now_ms(&*clock), 420)
            .await
            .unwrap()
            .unwrap();
    }
    for _ in 0..qc_eta::calibrate::WINDOW {
        app.store.scores_push("hub-1", 2, 0.3).await.unwrap();
    }
    let request = |i: usize| {
        let cust = (-6.25 + (i % 5) as f64 * 0.002, 106.85);
        CalculateInput::placed(
            format!("bench-{i}"),
            "hub-1",
            5,
            (-6.2, 106.816666),
            cust,
            3,
            5,
        )
    };
    // Where a calculation's time goes: each store step alone.
    let n = 2000;
    let step = |label: &'static str| (label, hdrhistogram::Histogram::<u64>::new(3).unwrap());
    let mut steps = [
        step("sticky read"),
        step("filters read"),
        step("windows read"),
        step("sticky write"),
        step("latest write"),
    ];
    for i in 0..n {
        let key = format!("step-{i}");
        let t = Instant::now();
        app.store.sticky_get(&key).await.unwrap();
        steps[0].1.record(t.elapsed().as_micros() as u64).unwrap();
        let t = Instant::now();
        app.store.kf_get("hub-1", "hub-1:qqgurq").await.unwrap();
        steps[1].1.record(t.elapsed().as_micros() as u64).unwrap();
        let t = Instant::now();
        app.store.scores("hub-1", 2).await.unwrap();
        steps[2].1.record(t.elapsed().as_micros() as u64).unwrap();
        let t = Instant::now();
        app.store.sticky_put(&key, 0, "fp", "{}").await.unwrap();
        steps[3].1.record(t.elapsed().as_micros() as u64).unwrap();
        let t = Instant::now();
        app.store.latest_put(&key, "{}").await.unwrap();
        steps[4].1.record(t.elapsed().as_micros() as u64).unwrap();
    }
    for (label, h) in &steps {
        println!(
            "  step {label:<13} p50 {} µs, p99 {} µs",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99)
        );
    }
    let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let started = Instant::now();
    for i in 0..calls {
        let req = request(i).validate().unwrap();
        let t = Instant::now();
        let r = engine::calculate(&app.store, &req, 1_800_000_000_000, 2, Model::FULL).await;
        h.record(t.elapsed().as_micros() as u64).unwrap();
        assert!(!r.cached && r.calibration == "hub_band");
    }
    report(
        "in process (engine + Redis)",
        &h,
        started.elapsed().as_secs_f64(),
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/eta/calculate", listener.local_addr().unwrap());
    svc.ctx.mark_started();
    tokio::spawn(serve_until(listener, svc.router, shutdown.clone()));
    let http = reqwest::Client::new();
    let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let started = Instant::now();
    for i in 0..calls {
        let r = request(calls + i);
        let body = json!({"order_id": r.order_id, "hub_id": r.hub_id, "item_count": r.item_count,
            "hub_lat": r.hub_lat, "hub_lng": r.hub_lng, "cust_lat": r.cust_lat, "cust_lng": r.cust_lng,
            "queue_depth": r.queue_depth, "drivers_avail": r.drivers_avail});
        let t = Instant::now();
        let resp = http.post(&url).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
        h.record(t.elapsed().as_micros() as u64).unwrap();
    }
    report(
        "over HTTP (one client, sequential)",
        &h,
        started.elapsed().as_secs_f64(),
    );
    shutdown.trigger();
    let mut conn = app.store.connection();
    delete_prefix(
        &mut conn,
        &qc_kit::redis_kit::KeyPrefix::new(store.key_prefix.clone()),
    )
    .await
    .unwrap();
    qc_kit::pg::drop_schema(&store).await.unwrap();
}
