//! How the world calls the store: the memory adapter completes every call at once; the live
//! adapter (Redis + Postgres) blocks on a runtime and records each call's latency, which never
//! feeds back into virtual time.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Instant;

use futures::FutureExt;
use hdrhistogram::Histogram;
pub use reports::summary::LatencySummary;

/// Runs one store future to completion.
pub trait Exec {
    fn run<F: Future>(&mut self, op: &'static str, f: F) -> F::Output;
    /// Per-operation latency (live only).
    fn latency(&self) -> BTreeMap<String, LatencySummary> {
        BTreeMap::new()
    }
}

/// The memory adapter never waits, so one poll completes every call.
#[derive(Debug, Default)]
pub struct Immediate;

impl Exec for Immediate {
    fn run<F: Future>(&mut self, op: &'static str, f: F) -> F::Output {
        f.now_or_never()
            .unwrap_or_else(|| panic!("in-memory store operation {op} did not complete at once"))
    }
}

/// Blocks on a Tokio runtime; records wall-clock latency per operation in microseconds.
pub struct Blocking {
    pub rt: tokio::runtime::Runtime,
    hist: BTreeMap<&'static str, Histogram<u64>>,
}

impl Blocking {
    pub fn new(rt: tokio::runtime::Runtime) -> Self {
        Self {
            rt,
            hist: BTreeMap::new(),
        }
    }
}

impl Exec for Blocking {
    fn run<F: Future>(&mut self, op: &'static str, f: F) -> F::Output {
        let started = Instant::now();
        let out = self.rt.block_on(f);
        let us = started.elapsed().as_micros() as u64;
        let h = self
            .hist
            .entry(op)
            .or_insert_with(|| Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"));
        h.saturating_record(us.max(1));
        out
    }

    fn latency(&self) -> BTreeMap<String, LatencySummary> {
        self.hist
            .iter()
            .map(|(op, h)| {
                (
                    op.to_string(),
                    LatencySummary {
                        count: h.len(),
                        p50_us: h.value_at_quantile(0.5),
                        p99_us: h.value_at_quantile(0.99),
                        p999_us: h.value_at_quantile(0.999),
                        max_us: h.max(),
                    },
                )
            })
            .collect()
    }
}
