//! Tracking benchmarks (BENCHMARKS.md, issue #11):
//! - `filter [steps]`: one Kalman step, and one whole ingest (validate → filter → memory store)
//!   in process, ns each;
//! - `ingest [connections] [fixes per connection]`: fixes validated, filtered, stored and
//!   published in Redis per second over real WebSockets to an in-process service, each
//!   connection waiting for its reply before the next frame (as the protocol requires);
//! - `fanout [subscribers] [fixes]`: latency from a fix's send over WebSocket to its arrival at
//!   each of N SSE subscribers of the order.
//!
//! `cargo run --release -p qc-tests --bin bench_tracking -- filter|ingest|fanout [args]`; for the
//! service's own CPU, `serve [seconds]` in one process and `ingest` with
//! `TRACKING_BENCH_TARGET=<addr>` in another.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use qc_kit::config::EnvSource;
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::testing::{delete_prefix, isolated_store_config, redis_for_test};
use qc_kit::{Clock, WallClock};
use qc_services::platform::config::PlatformConfig;
use qc_services::platform::shutdown::Shutdown;
use qc_services::tracking::{self, TrackingConfig};
use qc_tracking::model::rfc3339_ms;
use qc_tracking::{Filter, Fix, KfParams, Limits, MemoryTrackingStore, Tracker};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// Fix `i` of a rider going north at 10 m/s, fixes `step_ms` apart from `t0`.
fn fix_at(t0: i64, i: i64, step_ms: i64, lng: f64) -> Fix {
    Fix {
        lat: -6.2 + (i as f64 * 10.0 * step_ms as f64 / 1000.0) / 111_195.0,
        lng,
        accuracy: 8.0,
        timestamp_ms: t0 + i * step_ms,
        speed: Some(10.0),
        bearing: Some(0.0),
    }
}

fn filter_bench(steps: usize) {
    let kf = KfParams::default();
    let t0 = 1_800_000_000_000;
    let (mut f, _) = Filter::seed(&fix_at(t0, 0, 5000, 106.8), &kf);
    let fixes: Vec<Fix> = (1..=steps as i64)
        .map(|i| fix_at(t0, i, 5000, 106.8))
        .collect();
    let started = Instant::now();
    let mut sum = 0.0;
    for (i, x) in fixes.iter().enumerate() {
        // Re-seed every 1,000 steps so the track never needs a re-anchor.
        if i % 1000 == 999 {
            f = Filter::seed(x, &kf).0;
            continue;
        }
        let (next, out) = f.step(x, &kf).expect("a clean track");
        sum += out.speed;
        f = next;
    }
    let ns = started.elapsed().as_nanos() as f64 / steps as f64;
    println!(
        "kalman step: {ns:.0} ns ({steps} steps; mean speed {:.2} m/s)",
        sum / steps as f64
    );

    let tracker = Tracker::new(
        MemoryTrackingStore::new(),
        Limits::default(),
        KfParams::default(),
    );
    let drivers = 1000;
    let per = (steps / drivers).max(1);
    let started = Instant::now();
    for i in 0..per as i64 {
        for d in 0..drivers {
            let x = fix_at(t0, i, 5000, 106.8 + d as f64 * 0.001);
            let now = x.timestamp_ms;
            futures::executor::block_on(tracker.ingest(
                &format!("d{d}"),
                &format!("o{d}"),
                &x,
                now,
            ))
            .expect("accepted");
        }
    }
    let n = per * drivers;
    let ns = started.elapsed().as_nanos() as f64 / n as f64;
    println!("ingest in process (validate, filter, memory store, event JSON): {ns:.0} ns ({n} fixes, {drivers} drivers)");
}

async fn start(env: &[(&str, &str)]) -> (String, qc_kit::config::StoreConfig, Shutdown) {
    let store = isolated_store_config();
    let mut cfg = PlatformConfig::from_env(&EnvSource::from_pairs([])).unwrap();
    cfg.store = store.clone();
    let shutdown = Shutdown::new();
    let tcfg = TrackingConfig::from_env(&EnvSource::from_pairs(env.iter().copied())).unwrap();
    let (_, svc) = tracking::build(&cfg, tcfg, Arc::new(WallClock), shutdown.clone())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    svc.ctx.mark_started();
    tokio::spawn(qc_services::platform::server::serve_until(
        listener,
        svc.router,
        shutdown.clone(),
    ));
    (base, store, shutdown)
}

/// Bench limits: fixes 100 ms apart in device time, no per-socket rate cap.
const BENCH_ENV: [(&str, &str); 3] = [
    ("TRACKING_MIN_INTERVAL_SECS", "0"),
    ("TRACKING_MAX_FUTURE_SECS", "3600"),
    ("TRACKING_WS_MAX_FRAMES_PER_S", "100000"),
];

fn frame(t0: i64, i: i64, lng: f64) -> String {
    let x = fix_at(t0, i, 100, lng);
    json!({"lat": x.lat, "lng": x.lng, "accuracy": 8.0, "speed": 10.0, "bearing": 0.0,
           "timestamp": rfc3339_ms(x.timestamp_ms)})
    .to_string()
}

/// `serve [seconds]`: the service alone (its CPU measured apart from the load generator's),
/// printing its address; `ingest` then targets it with `TRACKING_BENCH_TARGET=<addr>`.
async fn serve(seconds: usize) {
    let (addr, store, shutdown) = start(&BENCH_ENV).await;
    println!("{addr}");
    tokio::time::sleep(Duration::from_secs(seconds as u64)).await;
    shutdown.trigger();
    cleanup(&store).await;
}

async fn ingest_bench(conns: usize, per: usize) {
    let target = std::env::var("TRACKING_BENCH_TARGET").ok();
    let (addr, store, shutdown) = match target {
        Some(a) => (a, None, None),
        None => {
            let (a, s, d) = start(&BENCH_ENV).await;
            (a, Some(s), Some(d))
        }
    };
    let t0 = WallClock.now_ms();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let url = format!("ws://{addr}/ws/driver/location?driver_id=d{c}&order_id=o{c}");
        tasks.push(tokio::spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
            let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
            for i in 0..per as i64 {
                let sent = Instant::now();
                ws.send(Message::text(frame(t0, i, 106.8 + c as f64 * 0.001)))
                    .await
                    .unwrap();
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(t))) => {
                            assert!(t.as_str().contains("\"ok\""), "{t}");
                            break;
                        }
                        Some(Ok(_)) => continue,
                        other => panic!("{other:?}"),
                    }
                }
                h.record(sent.elapsed().as_micros() as u64).unwrap();
            }
            h
        }));
    }
    let mut all = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    for t in tasks {
        all.add(t.await.unwrap()).unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ingest over WebSocket into Redis: {} fixes on {conns} connections in {secs:.2} s = {:.0} fixes/s; round trip p50 {} µs, p99 {} µs",
        all.len(),
        all.len() as f64 / secs,
        all.value_at_quantile(0.5),
        all.value_at_quantile(0.99)
    );
    if let (Some(store), Some(shutdown)) = (store, shutdown) {
        shutdown.trigger();
        cleanup(&store).await;
    }
}

async fn fanout_bench(subs: usize, fixes: usize) {
    let per_order = subs.to_string();
    let mut env = BENCH_ENV.to_vec();
    env.push(("TRACKING_SSE_PER_ORDER", per_order.as_str()));
    let (addr, store, shutdown) = start(&env).await;
    let http = reqwest::Client::new();
    // Each subscriber reports (seq, arrival) for every position.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(i64, Instant)>();
    let mut ready = Vec::new();
    for s in 0..subs {
        let url = format!("http://{addr}/sse/order/tracking?order_id=o-f&user_id=u{s}");
        let resp = http.get(url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let tx = tx.clone();
        let (r_tx, r_rx) = tokio::sync::oneshot::channel::<()>();
        ready.push(r_rx);
        tokio::spawn(async move {
            let mut body = resp.bytes_stream();
            let mut buf = String::new();
            let mut r_tx = Some(r_tx);
            while let Some(Ok(chunk)) = body.next().await {
                let now = Instant::now();
                buf.push_str(std::str::from_utf8(&chunk).unwrap());
                while let Some(end) = buf.find("\n\n") {
                    let frame: String = buf.drain(..end + 2).collect();
                    if frame.contains("event: connected") {
                        if let Some(r) = r_tx.take() {
                            let _ = r.send(());
                        }
                    }
                    if let Some(id) = frame.strip_prefix("id: ") {
                        let seq: i64 = id.split('\n').next().unwrap().parse().unwrap();
                        let _ = tx.send((seq, now));
                    }
                }
            }
        });
    }
    drop(tx);
    for r in ready {
        r.await.unwrap();
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{addr}/ws/driver/location?driver_id=d-f&order_id=o-f"
    ))
    .await
    .unwrap();
    let t0 = WallClock.now_ms();
    let mut sent_at = Vec::new();
    let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let expected = subs * fixes;
    let mut received = 0;
    for i in 0..fixes as i64 {
        let sent = Instant::now();
        ws.send(Message::text(frame(t0, i, 106.8))).await.unwrap();
        sent_at.push(sent);
        // Wait for every subscriber to get this fix before the next (one fix per rider in
        // flight; a rider sends one every few seconds).
        while received < (i as usize + 1) * subs {
            let (seq, at) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("every subscriber within 10 s")
                .unwrap();
            h.record(at.duration_since(sent_at[(seq - 1) as usize]).as_micros() as u64)
                .unwrap();
            received += 1;
        }
    }
    assert_eq!(received, expected);
    println!(
        "SSE fan-out to {subs} subscribers of one order: {} deliveries, latency from the WebSocket send p50 {} µs, p99 {} µs, max {} µs",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max()
    );
    shutdown.trigger();
    cleanup(&store).await;
}

async fn cleanup(store: &qc_kit::config::StoreConfig) {
    let mut conn = redis_for_test(store).await;
    delete_prefix(&mut conn, &KeyPrefix::new(store.key_prefix.clone()))
        .await
        .unwrap();
}

#[tokio::main]
async fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("filter") => filter_bench(arg(2, 2_000_000)),
        Some("serve") => serve(arg(2, 60)).await,
        Some("ingest") => ingest_bench(arg(2, 200), arg(3, 500)).await,
        Some("fanout") => fanout_bench(arg(2, 1000), arg(3, 50)).await,
        _ => eprintln!("usage: bench_tracking filter [steps] | serve [seconds] | ingest [connections] [fixes] | fanout [subscribers] [fixes]"),
    }
}
