//! Geo serviceability benchmark (BENCHMARKS.md): per-call cost in process with a warm cache,
//! and over HTTP on loopback, against the same running app.
//!
//! `cargo run --release -p qc-tests --bin bench_geo -- [calls]`

use std::sync::Arc;
use std::time::Instant;

use qc_geo::Point;
use qc_kit::config::EnvSource;
use qc_kit::testing::{delete_prefix, isolated_store_config};
use qc_kit::ManualClock;
use qc_services::geo::{self, GeoConfig};
use qc_services::platform::config::PlatformConfig;
use qc_services::platform::server::serve_until;
use qc_services::platform::shutdown::Shutdown;

#[tokio::main]
async fn main() {
    let calls: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let store = isolated_store_config();
    let mut cfg = PlatformConfig::from_env(&EnvSource::from_pairs([])).unwrap();
    cfg.store = store.clone();
    let shutdown = Shutdown::new();
    let (app, svc) = geo::build(
        &cfg,
        GeoConfig::from_env(&EnvSource::from_pairs([])).unwrap(),
        Arc::new(ManualClock::new(0)),
        shutdown.clone(),
        false,
    )
    .await
    .unwrap();
    // Twenty hubs over central Jakarta.
    for i in 0..20 {
        let hub = qc_geo::Hub {
            id: format!("hub-{i:02}"),
            name: String::new(),
            lat: -6.25 + f64::from(i % 5) * 0.025,
            lng: 106.78 + f64::from(i / 5) * 0.03,
            max_radius_km: 3.0,
            priority: 0,
            stock: 0.5,
            rider_avail: 0.5,
            active: true,
        };
        app.put_hub(&hub).await.unwrap();
    }
    // 1,000 distinct shopper points, each looked up once to warm both cache levels.
    let points: Vec<Point> = (0..1000)
        .map(|i| {
            Point::new(
                -6.25 + f64::from(i % 40) * 0.0025,
                106.78 + f64::from(i / 40) * 0.004,
            )
            .unwrap()
        })
        .collect();
    for p in &points {
        app.serviceability(*p).await;
    }
    let started = Instant::now();
    let mut served = 0usize;
    for i in 0..calls {
        served += usize::from(
            app.serviceability(points[i % points.len()])
                .await
                .hub
                .is_some(),
        );
    }
    let per_call_ns = started.elapsed().as_nanos() as f64 / calls as f64;
    println!("in process, warm cache: {calls} lookups, {per_call_ns:.0} ns per call ({served} serviceable)");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    svc.ctx.mark_started();
    tokio::spawn(serve_until(listener, svc.router, shutdown.clone()));
    let http = reqwest::Client::new();
    let n = 20_000;
    let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let started = Instant::now();
    for i in 0..n {
        let p = points[i % points.len()];
        let t = Instant::now();
        let r = http
            .get(format!("{url}/serviceability?lat={}&lng={}", p.lat, p.lng))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        h.record(t.elapsed().as_micros() as u64).unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "over HTTP (one client, sequential): {n} requests, p50 {} µs, p99 {} µs, {:.0} req/s",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        n as f64 / secs
    );
    println!(
        "ratio HTTP p50 / in-process: {:.0}x",
        h.value_at_quantile(0.5) as f64 * 1000.0 / per_call_ns
    );
    shutdown.trigger();
    let mut conn = app.store.conn.clone();
    delete_prefix(
        &mut conn,
        &qc_kit::redis_kit::KeyPrefix::new(store.key_prefix.clone()),
    )
    .await
    .unwrap();
    qc_kit::pg::drop_schema(&store).await.unwrap();
}
