//! Search benchmark (BENCHMARKS.md, issue #14). In process: the index and autocomplete built
//! from a generated catalog, then a mix of queries (both languages, units, typos, prefixes,
//! no-hit words) searched one after another with stock for every candidate, and autocomplete
//! prefixes of one to six characters. With `http`: the same catalog written into Catalog's
//! Postgres, stock for half of it in Redis, Catalog and Search served on loopback; Search's
//! first build from the feed is timed, then `GET /search` (hub-scoped: stock by MGET) and
//! `GET /autocomplete` from concurrent clients.
//!
//! `cargo run --release -p qc-tests --bin bench_search -- [products] [rounds] [http [clients]]`

use std::collections::HashMap;
use std::time::Instant;

use qc_catalog::generate::catalog;
use qc_search::autocomplete::{entries, Autocomplete};
use qc_search::index::{qty_of, Doc, Index, Request};
use qc_search::rank::Weights;

const QUERIES: &[&str] = &[
    "susu",
    "milk",
    "susu uht 1l",
    "milk 1 liter",
    "telur ayam",
    "eggs",
    "tel",
    "indomei goreng",
    "chiken",
    "beras 5kg",
    "minyak goreng 2l",
    "kopi",
    "coffee arabica",
    "teh melati",
    "sabun mandi",
    "shampoo",
    "popok bayi",
    "keripik kentang",
    "chocolate bar",
    "qwxzyv",
    "air mineral 1500ml",
    "roti tawar",
    "daging sapi giling",
    "udang",
    "mangga",
];

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(40);
    if args.next().as_deref() == Some("http") {
        let clients = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(http::run(n, rounds, clients));
        return;
    }
    let before = rss_mb();
    let docs: Vec<Doc> = catalog(n, 7)
        .iter()
        .map(|g| Doc::from_input(g.input()))
        .collect();
    let t = Instant::now();
    let mut ac = Autocomplete::new();
    for d in &docs {
        ac.add(&entries(&d.name, &d.brand, &d.tags));
    }
    ac.refresh();
    let ix = Index::build(docs).expect("index");
    let build = t.elapsed();
    println!(
        "{n} products: index and autocomplete built in {:.2} s, {:.0} MB resident ({} autocomplete entries)",
        build.as_secs_f64(),
        rss_mb() - before,
        ac.len()
    );
    // Every other sku in stock, so stock ordering does work.
    let stock: HashMap<String, i64> = ix
        .docs()
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(i, d)| (d.sku.clone(), (i % 40) as i64))
        .collect();
    let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let mut tiers = [0usize; 5];
    for _ in 0..rounds {
        for q in QUERIES {
            let req = Request {
                hub: Some("jkt-01".into()),
                ..Request::new(q)
            };
            let t = Instant::now();
            let c = ix.candidates(&req, 0).expect("search");
            let qty = qty_of(&ix.skus(&c), &stock);
            let r = ix.finish(&c, Some(&qty), &req, &Weights::default(), 0);
            h.record(t.elapsed().as_micros().max(1) as u64).unwrap();
            tiers[usize::from(r.tier)] += 1;
        }
    }
    println!(
        "search in process ({} queries, stock for every candidate): p50 {} µs, p99 {} µs, max {} µs; tiers {tiers:?}",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max()
    );
    let mut a = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let prefixes = [
        "s", "su", "sus", "susu", "ultra", "indomi", "k", "ko", "te", "tel", "b", "be",
    ];
    for _ in 0..rounds * 10 {
        for p in prefixes {
            let t = Instant::now();
            let out = ac.lookup(p, 10);
            a.record(t.elapsed().as_nanos().max(1) as u64).unwrap();
            assert!(out.len() <= 10);
        }
    }
    println!(
        "autocomplete in process ({} lookups): p50 {} ns, p99 {} ns, max {} ns",
        a.len(),
        a.value_at_quantile(0.5),
        a.value_at_quantile(0.99),
        a.max()
    );
}

mod http {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use futures::stream::{self, StreamExt};
    use qc_catalog::generate::catalog;
    use qc_catalog::{CatalogRepo, Write};
    use qc_inventory::{HubId, SetStockCommand, Sku, StockSetReason, StockStore};
    use qc_kit::config::EnvSource;
    use qc_kit::redis_kit::KeyPrefix;
    use qc_kit::testing::{delete_prefix, isolated_store_config, redis_for_test};
    use qc_kit::WallClock;
    use qc_services::platform::config::PlatformConfig;
    use qc_services::platform::server::serve_until;
    use qc_services::platform::shutdown::Shutdown;
    use qc_services::{catalog as catalog_svc, search};

    use super::QUERIES;

    async fn serve(
        svc: qc_services::platform::server::BuiltService,
        shutdown: &Shutdown,
    ) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        svc.ctx.mark_started();
        tokio::spawn(serve_until(listener, svc.router, shutdown.clone()));
        base
    }

    fn report(label: &str, h: &hdrhistogram::Histogram<u64>, secs: f64) {
        println!(
            "{label}: {} requests, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {:.0}/s",
            h.len(),
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0,
            h.len() as f64 / secs
        );
    }

    /// `clients` concurrent clients GET `urls`, each its share in turn.
    async fn load(urls: Vec<String>, clients: usize) -> (hdrhistogram::Histogram<u64>, f64) {
        let urls = Arc::new(urls);
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|w| {
                let urls = urls.clone();
                let client = reqwest::Client::new();
                tokio::spawn(async move {
                    let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
                    for url in urls.iter().skip(w).step_by(clients) {
                        let t = Instant::now();
                        let r = client.get(url).send().await.unwrap();
                        assert_eq!(r.status().as_u16(), 200, "{url}");
                        let _ = r.bytes().await.unwrap();
                        h.record(t.elapsed().as_micros().max(1) as u64).unwrap();
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

    pub async fn run(n: usize, rounds: usize, clients: usize) {
        let store = isolated_store_config();
        let mut cfg = PlatformConfig::from_env(&EnvSource::from_pairs([])).unwrap();
        cfg.store = store.clone();
        let shutdown = Shutdown::new();
        let (cat, svc) = catalog_svc::build(&cfg, Arc::new(WallClock), shutdown.clone())
            .await
            .unwrap();
        let catalog_url = serve(svc, &shutdown).await;
        let products = catalog(n, 7);
        let t = Instant::now();
        stream::iter(products.iter())
            .for_each_concurrent(8, |g| {
                let cat = cat.clone();
                async move {
                    cat.repo.write(&g.input(), Write::Upsert, 0).await.unwrap();
                }
            })
            .await;
        println!(
            "{n} products written to Catalog's Postgres in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let (app, svc) = search::build(
            &cfg,
            search::SearchSettings::from_env(&EnvSource::from_pairs([
                ("CATALOG_URL", catalog_url.as_str()),
                ("SEARCH_POLL_MS", "600000"),
            ]))
            .unwrap(),
            Arc::new(WallClock),
            shutdown.clone(),
        )
        .await
        .unwrap();
        let t = Instant::now();
        let base = serve(svc, &shutdown).await;
        // Stock for every other product at the hub (one SET per sku, 8 at a time).
        let hub = HubId::parse("jkt-01").unwrap();
        stream::iter(products.iter().step_by(2).enumerate())
            .for_each_concurrent(8, |(i, g)| {
                let (app, hub) = (app.clone(), hub.clone());
                async move {
                    app.stock
                        .set_stock(
                            0,
                            &SetStockCommand {
                                hub_id: hub,
                                sku: Sku::parse(&g.sku).unwrap(),
                                on_hand: (i % 40) as i64 + 1,
                                buckets: 1,
                                reason: StockSetReason::AdminSet,
                                actor: "bench".into(),
                            },
                        )
                        .await
                        .unwrap();
                }
            })
            .await;
        while app.current().is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!(
            "Search ready (feed read over HTTP and first build) {:.2} s after start",
            t.elapsed().as_secs_f64()
        );
        let enc = |q: &str| q.replace(' ', "%20");
        let urls: Vec<String> = (0..rounds)
            .flat_map(|_| QUERIES.iter())
            .map(|q| format!("{base}/search?q={}&hub_id=jkt-01", enc(q)))
            .collect();
        // Warm the connections and caches.
        let _ = load(urls[..QUERIES.len()].to_vec(), clients).await;
        let (h, secs) = load(urls, clients).await;
        report(
            &format!("GET /search over HTTP, hub-scoped, {clients} clients"),
            &h,
            secs,
        );
        let prefixes = [
            "s", "su", "sus", "susu", "ultra", "indomi", "k", "ko", "te", "tel", "b", "be",
        ];
        let urls: Vec<String> = (0..rounds * 4)
            .flat_map(|_| prefixes.iter())
            .map(|p| format!("{base}/autocomplete?q={p}"))
            .collect();
        let (h, secs) = load(urls, clients).await;
        report(
            &format!("GET /autocomplete over HTTP, {clients} clients"),
            &h,
            secs,
        );
        shutdown.trigger();
        let mut c = redis_for_test(&store).await;
        delete_prefix(&mut c, &KeyPrefix::new(store.key_prefix.clone()))
            .await
            .unwrap();
        cat.repo.pool().close().await;
        qc_kit::pg::drop_schema(&store).await.unwrap();
    }
}
