//! Flash-sale benchmark (BENCHMARKS.md, issue #15): a burst of buyers for a few units, each a
//! token mint then a checkout, through the flash-sale core over Redis in process and through
//! the service over HTTP on loopback; admission decisions per second (checkouts answered
//! reserved or queued) and checkout latency, each next to a trivial `EVALSHA` (`return 1`)
//! measured in the same run with the same concurrency.
//!
//! `cargo run --release -p qc-tests --bin bench_flashsale -- [buyers] [concurrency]`

use std::sync::Arc;
use std::time::Instant;

use futures::stream::{self, StreamExt};
use qc_flashsale::app::{Caller, CheckoutRequest, Ids};
use qc_flashsale::model::SaleConfig;
use qc_flashsale::FlashStore;
use qc_kit::config::EnvSource;
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::testing::{delete_prefix, isolated_store_config, redis_for_test};
use qc_kit::{Clock, WallClock};
use qc_services::flashsale;
use qc_services::platform::config::PlatformConfig;
use qc_services::platform::server::serve_until;
use qc_services::platform::shutdown::Shutdown;
use serde_json::json;

struct Rand;
impl Ids for Rand {
    fn next(&mut self) -> String {
        uuid::Uuid::new_v4().simple().to_string()[..16].to_string()
    }
}

fn line(label: &str, h: &hdrhistogram::Histogram<u64>, secs: f64, base: Option<f64>) -> f64 {
    let rate = h.len() as f64 / secs;
    println!(
        "{label}: {} calls, {:.0}/s{}, p50 {:.2} ms, p99 {:.2} ms",
        h.len(),
        rate,
        base.map(|b| format!(" ({:.2}× EVALSHA)", rate / b))
            .unwrap_or_default(),
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0
    );
    rate
}

/// Runs `f(i)` for i in 0..n with `conc` in flight; latency of each call.
async fn burst<F, Fut>(n: usize, conc: usize, f: F) -> (hdrhistogram::Histogram<u64>, f64)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    let times: Vec<u64> = stream::iter(0..n)
        .map(|i| {
            let fut = f(i);
            async move {
                let t = Instant::now();
                fut.await;
                t.elapsed().as_micros().max(1) as u64
            }
        })
        .buffer_unordered(conc)
        .collect()
        .await;
    let secs = started.elapsed().as_secs_f64();
    let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    for t in times {
        h.record(t).unwrap();
    }
    (h, secs)
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let conc: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(64);
    let store = isolated_store_config();
    let mut cfg = PlatformConfig::from_env(&EnvSource::from_pairs([])).unwrap();
    cfg.store = store.clone();
    let shutdown = Shutdown::new();
    let settings =
        flashsale::FlashSettings::from_env(&EnvSource::from_pairs([("FLASH_JOBS", "off")]), "test")
            .unwrap();
    let (app, svc) = flashsale::build(&cfg, settings, Arc::new(WallClock), shutdown.clone())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    svc.ctx.mark_started();
    tokio::spawn(serve_until(listener, svc.router, shutdown.clone()));

    // The floor: a script that does nothing, same connection, same concurrency.
    let trivial = redis::Script::new("return 1");
    let conn = app.conn.clone();
    let (h, secs) = burst(n, conc, |_| {
        let (s, mut c) = (trivial.clone(), conn.clone());
        async move {
            let _: i64 = s.invoke_async(&mut c).await.unwrap();
        }
    })
    .await;
    let evalsha = line("trivial EVALSHA (return 1)", &h, secs, None);

    for (label, http, pid) in [
        ("checkout in process (core over Redis)", false, "bench-core"),
        ("POST /flash-sale/checkout over HTTP", true, "bench-http"),
    ] {
        let now = WallClock.now_ms();
        assert_eq!(
            app.core
                .init(&SaleConfig::new(pid, 100, now), true)
                .await
                .status,
            200
        );
        // Tokens first (one mint each), so the burst measures the checkout alone.
        let mut tokens = Vec::with_capacity(n);
        for i in 0..n {
            let c = Caller {
                user_id: format!("u{i}"),
                device: format!("d{i}"),
                account_age_days: None,
            };
            let nonce = format!("{:032x}", (i as u128) << 8 | u128::from(http));
            let m = app.core.mint(&c, pid, "", &nonce, WallClock.now_ms()).await;
            assert_eq!(m.status, 200, "{m:?}");
            tokens.push(m.body["data"]["token"].as_str().unwrap().to_string());
        }
        let tokens = Arc::new(tokens);
        let client = reqwest::Client::new();
        let decided = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (h, secs) = burst(n, conc, |i| {
            let (app, tokens, client, base, decided) = (app.clone(), tokens.clone(), client.clone(), base.clone(), decided.clone());
            async move {
                let body = json!({"product_id": pid, "user_id": format!("u{i}"), "device_fp": format!("d{i}"),
                    "token": tokens[i], "quantity": 1, "idempotency_key": pid});
                let status = if http {
                    client.post(format!("{base}/flash-sale/checkout")).json(&body).send().await.unwrap().status().as_u16()
                } else {
                    let r = CheckoutRequest::parse(&body).unwrap();
                    app.core.checkout(&r, None, &mut Rand, WallClock.now_ms()).await.status
                };
                if status == 200 || status == 202 {
                    decided.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
        .await;
        line(label, &h, secs, Some(evalsha));
        let v = app.core.store.stock(pid).await.unwrap().unwrap();
        println!(
            "  decided {} of {n} (reserved {}, queued {}), remaining {}",
            decided.load(std::sync::atomic::Ordering::Relaxed),
            v.reserved_qty,
            v.queue_length,
            v.remaining
        );
        assert_eq!(v.reserved_qty, 100);
    }
    shutdown.trigger();
    let mut c = redis_for_test(&store).await;
    delete_prefix(&mut c, &KeyPrefix::new(store.key_prefix.clone()))
        .await
        .unwrap();
    qc_kit::pg::drop_schema(&store).await.unwrap();
}
