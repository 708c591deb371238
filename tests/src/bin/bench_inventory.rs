//! Reserve benchmark (BENCHMARKS.md): throughput and latency of `reserve` directly through the
//! Redis adapter and through the HTTP service, each as a ratio to `redis-benchmark` running a
//! trivial EVALSHA against the same Redis in the same run.
//!
//! `cargo run --release -p qc-tests --bin bench_inventory -- [requests] [concurrency]`

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use qc_inventory::store::HoldPolicy;
use qc_inventory::*;
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::testing::{delete_prefix, isolated_store_config, redis_for_test};
use qc_tests::TestInventory;
use serde_json::json;

struct Run {
    label: String,
    per_s: f64,
    p50_us: u64,
    p99_us: u64,
}

fn parse_redis_benchmark(out: &str) -> (f64, f64) {
    // "EVALSHA ...: 123456.79 requests per second, p50=0.191 msec"
    let rps = out
        .split("requests per second")
        .next()
        .and_then(|s| s.rsplit(':').next())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    let p50 = out
        .split("p50=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(0.0);
    (rps, p50)
}

fn redis_benchmark(
    host: &str,
    port: &str,
    label: String,
    command: &[String],
    n: usize,
    c: usize,
    pipeline: usize,
) -> Run {
    let out = Command::new("redis-benchmark")
        .args(["-h", host, "-p", port, "-q", "-r", "1000000000"])
        .args([
            "-n",
            &n.to_string(),
            "-c",
            &c.to_string(),
            "-P",
            &pipeline.to_string(),
        ])
        .args(command)
        .output()
        .expect("redis-benchmark on PATH");
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    let last = text
        .lines()
        .rfind(|l| l.contains("requests per second"))
        .unwrap_or_default();
    let (rps, p50_ms) = parse_redis_benchmark(last);
    Run {
        label: format!("{label}, -c {c} -P {pipeline}"),
        per_s: rps,
        p50_us: (p50_ms * 1000.0) as u64,
        p99_us: 0,
    }
}

fn command(i: usize, hub: &HubId) -> ReserveCommand {
    ReserveCommand {
        reservation_id: ReservationId::new_random(),
        hub_id: hub.clone(),
        cart_id: CartId::parse(&format!("c{i}")).unwrap(),
        user_id: UserId::parse(&format!("u{}", i % 1000)).unwrap(),
        items: vec![Item {
            sku: Sku::parse(&format!("sku{}", i % 20)).unwrap(),
            quantity: 1,
        }],
        ttl_s: 900,
        idempotency_key: None,
    }
}

async fn drive<F, Fut>(label: String, n: usize, c: usize, op: F) -> Run
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..c {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).unwrap();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return h;
                }
                let t = Instant::now();
                assert!(op(i).await, "operation {i} failed");
                h.record(t.elapsed().as_micros() as u64).unwrap();
            }
        }));
    }
    let mut all = Histogram::<u64>::new(3).unwrap();
    for t in tasks {
        all.add(t.await.unwrap()).unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    Run {
        label,
        per_s: n as f64 / secs,
        p50_us: all.value_at_quantile(0.5),
        p99_us: all.value_at_quantile(0.99),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(100_000);
    let c = args.get(1).copied().unwrap_or(64);
    let cfg = isolated_store_config();
    let mut conn = redis_for_test(&cfg).await;
    let url = cfg
        .redis_url
        .trim_start_matches("redis://")
        .trim_end_matches('/');
    let (host, port) = url.split_once(':').unwrap_or((url, "6379"));
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg("return 1")
        .query_async(&mut conn)
        .await
        .unwrap();

    let trivial: Vec<String> = vec!["EVALSHA".into(), sha, "0".into()];
    let ref_n = n.max(200_000);
    let mut runs = vec![
        redis_benchmark(
            host,
            port,
            "redis-benchmark EVALSHA `return 1`".into(),
            &trivial,
            ref_n,
            c,
            1,
        ),
        redis_benchmark(
            host,
            port,
            "redis-benchmark EVALSHA `return 1`".into(),
            &trivial,
            ref_n,
            c,
            16,
        ),
    ];
    // The reserve script itself (fresh reservation keys per call): Redis's own ceiling for it.
    qc_kit::scripts::preload(&mut conn).await.unwrap();
    let p = format!("{}inv:{{ceiling}}:", cfg.key_prefix);
    let _: () = redis::cmd("SET")
        .arg(format!("{p}stock:s"))
        .arg(1_000_000_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let reserve_script: Vec<String> = [
        "EVALSHA",
        qc_kit::scripts::INVENTORY_RESERVE.get_hash(),
        "8",
        &format!("{p}res:__rand_int__"),
        &format!("{p}res:__rand_int__:items"),
        &format!("{p}expiry"),
        &format!("{p}idem:-"),
        &format!("{p}events"),
        &format!("{p}meta:s"),
        &format!("{p}reserved:s"),
        &format!("{p}stock:s"),
        "1800000000000",
        "__rand_int__",
        "ceiling",
        "c",
        "u",
        "900",
        "30",
        "86400",
        "0",
        "1",
        "s",
        "1",
        "1",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    runs.push(redis_benchmark(
        host,
        port,
        "redis-benchmark EVALSHA reserve script".into(),
        &reserve_script,
        ref_n,
        c,
        16,
    ));
    let prefix = KeyPrefix::new(cfg.key_prefix.clone());
    delete_prefix(&mut conn, &prefix).await.unwrap();

    // The Redis adapter, one multiplexed connection shared by `c` tasks.
    let store = Arc::new(RedisStore::new(
        conn.clone(),
        prefix.clone(),
        HoldPolicy::default(),
        5000,
    ));
    let hub = HubId::parse("bench-hub").unwrap();
    for s in 0..20 {
        let cmd = SetStockCommand {
            hub_id: hub.clone(),
            sku: Sku::parse(&format!("sku{s}")).unwrap(),
            on_hand: 1_000_000_000,
            buckets: 1,
            reason: StockSetReason::AdminSet,
            actor: "bench".into(),
        };
        store.set_stock(0, &cmd).await.unwrap();
    }
    {
        let (store, hub) = (store.clone(), hub.clone());
        runs.push(
            drive(
                format!("RedisStore::reserve (adapter), {c} tasks"),
                n,
                c,
                move |i| {
                    let (store, cmd) = (store.clone(), command(i, &hub));
                    async move {
                        matches!(
                            store.reserve(1_800_000_000_000, &cmd).await,
                            Ok(ReserveOutcome::Reserved { .. })
                        )
                    }
                },
            )
            .await,
        );
    }
    delete_prefix(&mut conn, &prefix).await.unwrap();

    // The HTTP service on a loopback socket (client and server share the machine's cores).
    let t = TestInventory::start().await;
    for s in 0..20 {
        t.set_stock("bench-hub", &format!("sku{s}"), 1_000_000_000)
            .await;
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(c)
        .build()
        .unwrap();
    let url = t.url("/reserve");
    let http_n = n / 2;
    runs.push(
        drive(format!("POST /reserve over HTTP, {c} clients"), http_n, c, move |i| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let body = json!({"hub_id": "bench-hub", "cart_id": format!("c{i}"), "user_id": format!("u{}", i % 1000),
                                  "items": [{"sku": format!("sku{}", i % 20), "quantity": 1}]});
                http.post(url).json(&body).send().await.map(|r| r.status().as_u16() == 201).unwrap_or(false)
            }
        })
        .await,
    );
    t.finish().await;

    let reference = runs[0].per_s.max(1.0);
    let pipelined = runs[1].per_s.max(1.0);
    let ceiling = runs[2].per_s.max(1.0);
    println!(
        "requests: adapter {n}, HTTP {http_n}; concurrency {c}; cores {}",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    println!("| run | ops/s | p50 µs | p99 µs | vs trivial -P 1 | vs trivial -P 16 | vs reserve script -P 16 |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in &runs {
        println!(
            "| {} | {:.0} | {} | {} | {:.2} | {:.2} | {:.2} |",
            r.label,
            r.per_s,
            r.p50_us,
            if r.p99_us == 0 {
                "-".to_string()
            } else {
                r.p99_us.to_string()
            },
            r.per_s / reference,
            r.per_s / pipelined,
            r.per_s / ceiling
        );
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
}
