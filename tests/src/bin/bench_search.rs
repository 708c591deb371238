//! Search benchmark (BENCHMARKS.md, issue #14), in process: the index and autocomplete built
//! from a generated catalog, then a mix of queries (both languages, units, typos, prefixes,
//! no-hit words) searched one after another with stock for every candidate, and autocomplete
//! prefixes of one to six characters.
//!
//! `cargo run --release -p qc-tests --bin bench_search -- [products] [rounds]`

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
