//! Promo `apply` benchmark (BENCHMARKS.md, issue #12): the engine in process over the Redis
//! counters, and the service over HTTP on loopback, each against a trivial EVALSHA (one INCR in
//! Lua) measured in the same run, so the figures read as a ratio to Redis's own floor. Five
//! live rules (two matching, one with every limit), a new user and order per call.
//!
//! `cargo run --release -p qc-tests --bin bench_promo -- [calls] [concurrency]`

use std::sync::Arc;
use std::time::Instant;

use qc_kit::config::EnvSource;
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::testing::{delete_prefix, isolated_store_config, redis_for_test};
use qc_kit::ManualClock;
use qc_promo::{Cart, RuleRepo};
use qc_services::platform::config::PlatformConfig;
use qc_services::platform::server::serve_until;
use qc_services::platform::shutdown::Shutdown;
use qc_services::promo::{self, PromoSettings};
use serde_json::json;

const NOW: i64 = 1_796_112_000_000;

fn report(label: &str, h: &hdrhistogram::Histogram<u64>, secs: f64) -> f64 {
    let rate = h.len() as f64 / secs;
    println!(
        "{label}: {} calls, p50 {} µs, p99 {} µs, {rate:.0}/s",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
    );
    rate
}

async fn run<F, Fut>(calls: usize, conc: usize, f: F) -> (hdrhistogram::Histogram<u64>, f64)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let f = Arc::new(f);
    let started = Instant::now();
    let tasks: Vec<_> = (0..conc)
        .map(|w| {
            let f = f.clone();
            tokio::spawn(async move {
                let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
                let mut i = w;
                while i < calls {
                    let t = Instant::now();
                    f(i).await;
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
    (all, started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() {
    let calls: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let conc: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(32);
    let store = isolated_store_config();
    let mut cfg = PlatformConfig::from_env(&EnvSource::from_pairs([])).unwrap();
    cfg.store = store.clone();
    let shutdown = Shutdown::new();
    let settings = PromoSettings::from_env(&EnvSource::from_pairs([]), "test").unwrap();
    let (app, svc) = promo::build(
        &cfg,
        settings,
        Arc::new(ManualClock::new(NOW)),
        shutdown.clone(),
    )
    .await
    .unwrap();
    for (i, body) in [
        json!({"name": "big", "priority": 5, "conditions": {"type": "min_transaction", "min_amount": 100000},
               "effect": {"type": "fixed", "value": 10000}}),
        json!({"name": "lunch", "priority": 3, "conditions": {"type": "and", "conditions": [
                  {"type": "time_slot", "start": "11:00", "end": "16:00"}, {"type": "area", "areas": ["jakarta"]}]},
               "effect": {"type": "percentage", "value": 10, "max_discount": 15000}, "stackable": true,
               "limits": {"max_total": 10000000, "max_daily": 10000000, "max_per_user": 5, "budget": 1000000000000i64}}),
        json!({"name": "ship", "priority": 1, "conditions": {"type": "min_transaction", "min_amount": 0},
               "effect": {"type": "free_shipping"}, "stackable": true}),
        json!({"name": "night", "conditions": {"type": "time_slot", "start": "22:00", "end": "02:00"},
               "effect": {"type": "fixed", "value": 5000}}),
        json!({"name": "dairy", "conditions": {"type": "category", "categories": ["dairy"]},
               "effect": {"type": "fixed", "value": 2000}}),
    ]
    .into_iter()
    .enumerate()
    {
        let rule = qc_promo::Rule {
            id: format!("rule-{i}"),
            body: qc_promo::RuleBody::parse(&body).unwrap(),
            created_at_ms: NOW,
            updated_at_ms: NOW,
            version: 1,
        };
        app.rules.create(&rule).await.unwrap();
    }
    app.reload().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    svc.ctx.mark_started();
    tokio::spawn(serve_until(listener, svc.router, shutdown.clone()));

    // The floor: one EVALSHA of a one-line script.
    let floor = redis::Script::new("return redis.call('INCR', KEYS[1])");
    let conn = redis_for_test(&store).await;
    let key = format!("{}bench:floor", store.key_prefix);
    let (h, secs) = {
        let (conn, key, floor) = (conn.clone(), key.clone(), floor.clone());
        run(calls, conc, move |_| {
            let (mut c, key, floor) = (conn.clone(), key.clone(), floor.clone());
            async move {
                let _: i64 = floor.key(&key).invoke_async(&mut c).await.unwrap();
            }
        })
        .await
    };
    let floor_rate = report("trivial EVALSHA", &h, secs);
    let floor_p99 = h.value_at_quantile(0.99);

    let (h, secs) = {
        let app = app.clone();
        run(calls, conc, move |i| {
            let app = app.clone();
            async move {
                let cart = Cart::parse(
                    &json!({"cart_total": 60000, "area": "Jakarta", "shipping_fee": 9000}),
                    Some(&format!("u{i}")),
                )
                .unwrap();
                let rules = app.rules_snapshot();
                let a = qc_promo::apply(
                    &app.counters,
                    &rules,
                    &cart,
                    &format!("p{i}"),
                    &app.engine,
                    NOW,
                )
                .await;
                assert!(a.total_discount > 0);
            }
        })
        .await
    };
    let rate = report("apply in process (engine over Redis)", &h, secs);
    println!(
        "  = {:.2}× the trivial EVALSHA's time per call (p99 {:.2}×)",
        floor_rate / rate,
        h.value_at_quantile(0.99) as f64 / floor_p99 as f64
    );

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(conc)
        .build()
        .unwrap();
    let (h, secs) = {
        let base = base.clone();
        run(calls, conc, move |i| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let r = http
                    .post(format!("{base}/api/v1/promo/apply"))
                    .header("Idempotency-Key", format!("h{i}"))
                    .json(&json!({"user_id": format!("hu{i}"), "cart": {"cart_total": 60000, "area": "Jakarta", "shipping_fee": 9000}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 200);
                let _ = r.bytes().await.unwrap();
            }
        })
        .await
    };
    let rate = report("apply over HTTP (idempotency key, stored answer)", &h, secs);
    println!(
        "  = {:.2}× the trivial EVALSHA's time per call (p99 {:.2}×)",
        floor_rate / rate,
        h.value_at_quantile(0.99) as f64 / floor_p99 as f64
    );
    shutdown.trigger();
    let mut c = conn.clone();
    delete_prefix(&mut c, &KeyPrefix::new(store.key_prefix.clone()))
        .await
        .unwrap();
    app.pool.close().await;
    qc_kit::pg::drop_schema(&store).await.unwrap();
}
