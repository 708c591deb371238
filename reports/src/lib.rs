//! Run reports (10-simulator §5): a pure function from a run folder (`events.parquet`,
//! `summary.json`) to a self-contained `report.html` with inline SVG charts. Aggregation is done
//! with polars, drawing with plotters; nothing is fetched from a network.

pub mod capacity;
mod charts;
pub mod plan;

use std::fs::File;
use std::path::Path;

use polars::prelude::*;
use serde_json::Value;

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
    let summary: Value = serde_json::from_str(&text)
        .map_err(|e| ReportError::Read(summary_path.display().to_string(), e.to_string()))?;
    let html = build_html(&events, &summary)?;
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

fn num(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => {
            if *b {
                "yes".into()
            } else {
                "NO".into()
            }
        }
        Value::String(s) => esc(s),
        Value::Null => "–".into(),
        other => esc(&other.to_string()),
    }
}

/// Minutes after midnight of the run's start ("HH:MM"), for clock labels.
fn start_hours(summary: &Value) -> f64 {
    summary["scenario"]["start"]
        .as_str()
        .and_then(|s| s.split_once(':'))
        .and_then(|(h, m)| Some(h.parse::<f64>().ok()? + m.parse::<f64>().ok()? / 60.0))
        .unwrap_or(0.0)
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = String::from("<table><thead><tr>");
    for h in headers {
        t.push_str(&format!("<th>{}</th>", esc(h)));
    }
    t.push_str("</tr></thead><tbody>");
    for r in rows {
        t.push_str("<tr>");
        for c in r {
            t.push_str(&format!("<td>{c}</td>"));
        }
        t.push_str("</tr>");
    }
    t.push_str("</tbody></table>");
    t
}

/// One table row of `keys` read from `obj`.
fn row(obj: &Value, keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| num(&obj[*k])).collect()
}

/// Paid orders that did not reach the door, by reason (none: nothing).
fn lost_by_reason(reasons: &Value) -> String {
    let Some(m) = reasons.as_object().filter(|m| !m.is_empty()) else {
        return String::new();
    };
    let headers: Vec<&str> = m.keys().map(String::as_str).collect();
    table(&headers, vec![m.values().map(num).collect()])
}

/// A table of the objects in `rows` (a JSON array), one column per key.
fn rows_table(headers: &[&str], rows: &Value, keys: &[&str]) -> String {
    table(
        headers,
        rows.as_array()
            .map(|a| a.iter().map(|r| row(r, keys)).collect())
            .unwrap_or_default(),
    )
}

/// The whole page.
pub fn build_html(events: &DataFrame, summary: &Value) -> Result<String, ReportError> {
    let s = summary;
    let offset = start_hours(s);
    let shift = |v: Points| {
        v.into_iter()
            .map(|(x, y)| (x + offset, y))
            .collect::<Points>()
    };
    let placed = shift(per_bucket(events, "order_placed")?);
    let stockouts = shift(per_bucket(events, "stockout")?);
    let (queue, busy) = sample_sums(events, "hub_sample")?;
    let (riders_busy, riders_on) = sample_sums(events, "rider_sample")?;
    let waits = values_s(events, "pick_started")?;
    let mut door_min: Vec<f64> = values_s(events, "delivered")?
        .into_iter()
        .map(|v| v / 60.0)
        .collect();
    door_min.sort_by(f64::total_cmp);
    let n = door_min.len().max(1) as f64;
    let cdf: Points = door_min
        .iter()
        .enumerate()
        .map(|(i, m)| (*m, (i + 1) as f64 / n))
        .collect();
    let slo_min = s["slo"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["name"] == "click_to_door_p90_min"))
        .and_then(|r| r["target"].as_f64());

    let orders_svg = charts::lines(
        "Orders and stockouts per 15 minutes",
        "time of day",
        "orders",
        &[
            Series2::new("orders placed", placed, 0),
            Series2::new("lost to stockout", stockouts, 1),
        ],
        true,
    )?;
    let door_svg = charts::cdf(
        "Click to door (delivered orders)",
        "minutes",
        &cdf,
        slo_min,
        0.9,
    )?;
    let queue_svg = charts::lines(
        "Picking queue and busy pickers (all hubs)",
        "time of day",
        "orders / pickers",
        &[
            Series2::new("orders waiting for a picker", shift(queue), 2),
            Series2::new("pickers busy", shift(busy), 3),
        ],
        true,
    )?;
    let wait_svg = charts::histogram("Wait for a picker", "seconds", "orders", &waits, 30)?;
    let riders_svg = charts::lines(
        "Riders on shift and busy (all hubs)",
        "time of day",
        "riders",
        &[
            Series2::new("on shift", shift(riders_on), 3),
            Series2::new("busy", shift(riders_busy), 0),
        ],
        true,
    )?;
    let fill: Vec<(String, f64)> = s["skus"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .take(30)
                .map(|r| {
                    (
                        r["sku"].as_str().unwrap_or("?").to_string(),
                        r["fill_rate"].as_f64().unwrap_or(0.0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let e = &s["eta"];
    let cov = |prefix: &str| -> Points {
        [(0.5, "p50"), (0.8, "p80"), (0.95, "p95")]
            .iter()
            .map(|(lv, k)| {
                (
                    *lv,
                    e[format!("{prefix}coverage_{k}")].as_f64().unwrap_or(0.0),
                )
            })
            .collect()
    };
    let calibration_svg = charts::calibration(
        "ETA calibration: stated quantile vs observed",
        &[
            Series2::new("calibrated (served)", cov(""), 0),
            Series2::new("Gaussian composition", cov("gaussian_"), 1),
        ],
    )?;
    let errors: Vec<f64> = e["error_histogram"]
        .as_array()
        .map(|bins| {
            bins.iter()
                .flat_map(|b| {
                    let lo = b["lo_min"].as_f64().unwrap_or(0.0);
                    std::iter::repeat_n(lo + 0.5, b["count"].as_u64().unwrap_or(0) as usize)
                })
                .collect()
        })
        .unwrap_or_default();
    let error_svg = charts::histogram(
        "ETA error: actual − promised p50 (delivered orders)",
        "minutes (positive = later than promised)",
        "orders",
        &errors,
        41,
    )?;
    let eta_table = table(
        &[
            "model",
            "orders",
            "MAE s",
            "bias s",
            "naive MAE s",
            "vs naive",
            "p50",
            "p80",
            "p95",
            "revision rate",
        ],
        vec![row(
            e,
            &[
                "model",
                "orders",
                "mae_s",
                "bias_s",
                "naive_mae_s",
                "mae_improvement_vs_naive",
                "coverage_p50",
                "coverage_p80",
                "coverage_p95",
                "revision_rate",
            ],
        )],
    );
    let fill_svg = charts::bars(
        "Fill rate of the 30 most requested SKUs",
        "fill rate",
        &fill,
        Some(1.0),
    )?;

    let headline = table(
        &[
            "placed",
            "delivered",
            "stockout",
            "payment failed",
            "abandoned",
            "hold expired",
            "lost after payment",
            "unserviceable",
            "in progress",
        ],
        vec![row(
            &s["orders"],
            &[
                "placed",
                "delivered",
                "cancelled_stockout",
                "cancelled_payment",
                "cancelled_abandoned",
                "cancelled_hold_expired",
                "cancelled_dispatch",
                "unserviceable",
                "in_progress",
            ],
        )],
    ) + &lost_by_reason(&s["orders"]["lost_by_reason"]);
    let dist_keys = ["count", "mean", "p50", "p90", "p95", "p99", "max"];
    let dist_row = |name: &str, d: &Value| {
        let mut r = vec![esc(name)];
        r.extend(row(d, &dist_keys));
        r
    };
    let sv = &s["service"];
    let service = table(
        &["seconds", "n", "mean", "p50", "p90", "p95", "p99", "max"],
        vec![
            dist_row("wait for a picker", &sv["pick_wait_s"]),
            dist_row("pick time", &sv["pick_time_s"]),
            dist_row("click to handover", &sv["click_to_handover_s"]),
            dist_row("click to door", &sv["click_to_door_s"]),
        ],
    ) + &table(
        &["delivered within 10 min", "within 15 min"],
        vec![row(sv, &["within_10_min", "within_15_min"])],
    );
    let fleet = table(
        &[
            "riders",
            "utilisation",
            "orders / rider-hour",
            "offers",
            "rejected",
            "timed out",
            "reassignments",
            "re-pooled",
        ],
        vec![row(
            &s["riders"],
            &[
                "riders",
                "utilisation",
                "orders_per_rider_hour",
                "offers",
                "offers_rejected",
                "offers_timed_out",
                "reassignments",
                "repooled",
            ],
        )],
    ) + &table(
        &[
            "matcher",
            "batches",
            "batching rate",
            "mean pickup km",
            "greedy cost",
            "optimal cost",
            "greedy − optimal %",
        ],
        vec![row(
            &s["dispatch"],
            &[
                "matcher",
                "batches",
                "batching_rate",
                "mean_pickup_km",
                "greedy_cost",
                "optimal_cost",
                "greedy_gap_pct",
            ],
        )],
    );
    let hubs = rows_table(
        &[
            "hub",
            "pickers",
            "riders",
            "placed",
            "delivered",
            "stockouts",
            "pick wait p90 (s)",
            "picker utilisation",
            "click to door p90 (s)",
            "rider utilisation",
        ],
        &s["hubs"],
        &[
            "hub",
            "pickers",
            "riders",
            "placed",
            "delivered",
            "stockouts",
            "pick_wait_p90_s",
            "picker_utilisation",
            "click_to_door_p90_s",
            "rider_utilisation",
        ],
    );
    let slo = rows_table(
        &["SLO", "target", "actual", "met"],
        &s["slo"],
        &["name", "target", "actual", "met"],
    );
    let inventory = table(
        &[
            "reservations",
            "confirmed",
            "released",
            "expired (reaper)",
            "expired at payment",
            "units sold",
            "units restocked",
            "available at end",
            "held at end",
        ],
        vec![row(
            &s["inventory"],
            &[
                "reservations",
                "confirmed",
                "released",
                "expired_by_reaper",
                "expired_at_payment",
                "units_sold",
                "units_restocked",
                "units_available_at_end",
                "units_held_at_end",
            ],
        )],
    );
    let invariants = table(
        &[
            "oversell",
            "non-terminal orders",
            "conservation violations",
            "Redis/Postgres drift",
            "illegal rider transitions",
        ],
        vec![row(
            &s["invariants"],
            &[
                "oversell",
                "non_terminal_orders",
                "conservation_violations",
                "redis_pg_drift",
                "illegal_rider_transitions",
            ],
        )],
    );
    let latency_rows: Vec<(String, Value)> = s["latency"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let latency = if latency_rows.is_empty() {
        "<p class=\"note\">No store latency: this run used the in-memory backend (run with <code>--backend live</code> to measure Redis and Postgres).</p>".to_string()
    } else {
        let bars: Vec<(String, f64)> = latency_rows
            .iter()
            .flat_map(|(k, v)| {
                [
                    (format!("{k} p50"), v["p50_us"].as_f64().unwrap_or(0.0)),
                    (format!("{k} p99"), v["p99_us"].as_f64().unwrap_or(0.0)),
                ]
            })
            .collect();
        let svg = charts::bars("Store operation latency", "microseconds", &bars, None)?;
        table(
            &[
                "operation",
                "count",
                "p50 µs",
                "p99 µs",
                "p99.9 µs",
                "max µs",
            ],
            latency_rows
                .iter()
                .map(|(k, v)| {
                    let mut r = vec![esc(k)];
                    r.extend(row(v, &["count", "p50_us", "p99_us", "p999_us", "max_us"]));
                    r
                })
                .collect(),
        ) + &format!("<figure>{svg}</figure>")
    };
    let title = format!(
        "{} — seed {} — {} backend",
        esc(s["scenario"]["name"].as_str().unwrap_or("run")),
        num(&s["scenario"]["seed"]),
        esc(s["engine"]["backend"].as_str().unwrap_or("?"))
    );
    Ok(format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 24px auto; max-width: 1000px; color: #222; }}
h1 {{ font-size: 22px; }} h2 {{ font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }}
table {{ border-collapse: collapse; margin: 8px 0; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child {{ text-align: left; }}
figure {{ margin: 8px 0; }} .note {{ color: #666; font-size: 13px; }}
</style></head><body>
<h1>{title}</h1>
<p class="note">Event log hash {hash}. Generated from events.parquet and summary.json.</p>
<h2>Orders</h2>{headline}<figure>{orders_svg}</figure>
<h2>Service levels</h2>{slo}{service}<figure>{door_svg}</figure>
<h2>Picking</h2><figure>{queue_svg}</figure><figure>{wait_svg}</figure>
<h2>Riders and dispatch</h2>{fleet}<figure>{riders_svg}</figure>
<h2>ETA accuracy</h2>{eta_table}<p class="note">Promised at payment; measured from payment to the door, orders placed after the warm-up. Coverage = share delivered by the stated quantile; naive = the hub's historical mean.</p><figure>{calibration_svg}</figure><figure>{error_svg}</figure>
<h2>Hubs</h2>{hubs}
<h2>Inventory</h2>{inventory}<figure>{fill_svg}</figure>
<h2>Invariants</h2>{invariants}
<h2>Store latency</h2>{latency}
</body></html>
"#,
        hash = esc(s["event_log_hash"].as_str().unwrap_or("")),
    ))
}
