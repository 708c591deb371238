//! Run reports (10-simulator §5): a pure function from a run folder (`events.parquet`,
//! `summary.json`) to a self-contained `report.html` with inline SVG charts. Aggregation is done
//! with polars, drawing with plotters; nothing is fetched from a network.

pub mod capacity;
mod charts;
pub mod plan;
pub mod run;
pub mod summary;

use std::fs::File;
use std::path::Path;

use polars::prelude::*;

pub use charts::Series2;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("reading {0}: {1}")]
    Read(String, String),
    #[error("aggregating: {0}")]
    Polars(#[from] PolarsError),
    #[error("drawing: {0}")]
    Draw(String),
    #[error("writing report: {0}")]
    Write(#[from] std::io::Error),
}

/// Reads the run folder and writes `report.html` next to the inputs.
pub fn render_run(dir: &Path) -> Result<(), ReportError> {
    let events_path = dir.join("events.parquet");
    let file = File::open(&events_path)
        .map_err(|e| ReportError::Read(events_path.display().to_string(), e.to_string()))?;
    let events = ParquetReader::new(file).finish()?;
    let summary_path = dir.join("summary.json");
    let text = std::fs::read_to_string(&summary_path)
        .map_err(|e| ReportError::Read(summary_path.display().to_string(), e.to_string()))?;
    let summary: summary::Summary = serde_json::from_str(&text)
        .map_err(|e| ReportError::Read(summary_path.display().to_string(), e.to_string()))?;
    let html = run::build_html(&events, &summary)?;
    std::fs::write(dir.join("report.html"), html)?;
    Ok(())
}

const BUCKET_MS: i64 = 15 * 60_000;

/// (x, y) pairs for a chart.
pub type Points = Vec<(f64, f64)>;

/// The rows of `kind`.
fn rows_of(events: &DataFrame, kind: &str) -> Result<DataFrame, ReportError> {
    let mask = events.column("kind")?.str()?.equal(kind);
    Ok(events.filter(&mask)?)
}

/// An i64 column's values (the event log has no nulls).
fn ints(df: &DataFrame, name: &str) -> Result<Vec<i64>, ReportError> {
    Ok(df.column(name)?.i64()?.into_no_null_iter().collect())
}

/// Counts of rows of `kind` per 15-minute bucket: (bucket start in hours since run start, count).
pub fn per_bucket(events: &DataFrame, kind: &str) -> Result<Points, ReportError> {
    let mut counts = std::collections::BTreeMap::<i64, f64>::new();
    for t in ints(&rows_of(events, kind)?, "t_ms")? {
        *counts.entry(t.div_euclid(BUCKET_MS)).or_default() += 1.0;
    }
    Ok(counts
        .into_iter()
        .map(|(b, n)| ((b * BUCKET_MS) as f64 / 3_600_000.0, n))
        .collect())
}

/// Σ `qty` and Σ `value_ms` over hubs of the per-minute rows of `kind`, per sample time (hours
/// since start): for `hub_sample` the picking queue and busy pickers, for `rider_sample` busy
/// riders and riders on shift.
pub fn sample_sums(events: &DataFrame, kind: &str) -> Result<(Points, Points), ReportError> {
    let rows = rows_of(events, kind)?;
    let mut sums = std::collections::BTreeMap::<i64, (f64, f64)>::new();
    let (t, qty, value) = (
        ints(&rows, "t_ms")?,
        ints(&rows, "qty")?,
        ints(&rows, "value_ms")?,
    );
    for i in 0..t.len() {
        let e = sums.entry(t[i]).or_default();
        e.0 += qty[i] as f64;
        e.1 += value[i] as f64;
    }
    let hours = |t: i64| t as f64 / 3_600_000.0;
    Ok((
        sums.iter().map(|(t, (a, _))| (hours(*t), *a)).collect(),
        sums.iter().map(|(t, (_, b))| (hours(*t), *b)).collect(),
    ))
}

/// The `value_ms` of rows of `kind`, in seconds.
pub fn values_s(events: &DataFrame, kind: &str) -> Result<Vec<f64>, ReportError> {
    Ok(ints(&rows_of(events, kind)?, "value_ms")?
        .into_iter()
        .map(|v| v as f64 / 1000.0)
        .collect())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
