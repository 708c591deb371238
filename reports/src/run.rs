//! `report.html` of one run: one function per section, each reading the typed summary (and the
//! event log for its charts); `build_html` puts them on the page.

use std::fmt::Display;

use polars::prelude::DataFrame;

use crate::charts::{self, Series2};
use crate::summary::{Dist, LatencySummary, Summary};
use crate::{esc, per_bucket, sample_sums, values_s, Points, ReportError};

/// The whole page.
pub fn build_html(events: &DataFrame, s: &Summary) -> Result<String, ReportError> {
    let offset = start_hours(&s.scenario.start);
    let sections = [
        ("Orders", orders(events, s, offset)?),
        ("Service levels", service(events, s)?),
        ("Picking", picking(events, offset)?),
        ("Riders and dispatch", riders(events, s, offset)?),
        ("ETA accuracy", eta(s)?),
        ("GPS tracking", gps(s)?),
        ("Promotions", promo(s)),
        ("Search", search(s)),
        ("Flash sale", flash_sale(s)),
        ("Hubs", hubs(s)),
        ("Inventory", inventory(s)?),
        ("Invariants", invariants(s)),
        ("Store latency", latency(s)?),
    ];
    let title = format!(
        "{} — seed {} — {} backend",
        esc(&s.scenario.name),
        s.scenario.seed,
        esc(&s.engine.backend)
    );
    let mut body = String::new();
    for (heading, html) in sections {
        body += &format!("<h2>{heading}</h2>{html}\n");
    }
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
{body}</body></html>
"#,
        hash = esc(&s.event_log_hash),
    ))
}

/// Hours after midnight of the run's start ("HH:MM"), for clock labels.
fn start_hours(start: &str) -> f64 {
    start
        .split_once(':')
        .and_then(|(h, m)| Some(h.parse::<f64>().ok()? + m.parse::<f64>().ok()? / 60.0))
        .unwrap_or(0.0)
}

/// Moves chart points from hours since the start to hours of the day.
fn clock(points: Points, offset: f64) -> Points {
    points.into_iter().map(|(x, y)| (x + offset, y)).collect()
}

fn figure(svg: String) -> String {
    format!("<figure>{svg}</figure>")
}

/// A number as it is.
fn c(v: impl Display) -> String {
    v.to_string()
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "NO" }.to_string()
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = String::from("<table><thead><tr>");
    for h in headers {
        t += &format!("<th>{}</th>", esc(h));
    }
    t += "</tr></thead><tbody>";
    for r in rows {
        t += "<tr>";
        for cell in r {
            t += &format!("<td>{cell}</td>");
        }
        t += "</tr>";
    }
    t + "</tbody></table>"
}

fn orders(events: &DataFrame, s: &Summary, offset: f64) -> Result<String, ReportError> {
    let o = &s.orders;
    let mut html = table(
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
        vec![vec![
            c(o.placed),
            c(o.delivered),
            c(o.cancelled_stockout),
            c(o.cancelled_payment),
            c(o.cancelled_abandoned),
            c(o.cancelled_hold_expired),
            c(o.cancelled_dispatch),
            c(o.unserviceable),
            c(o.in_progress),
        ]],
    );
    if !o.lost_by_reason.is_empty() {
        let headers: Vec<&str> = o.lost_by_reason.keys().map(String::as_str).collect();
        html += &table(
            &headers,
            vec![o.lost_by_reason.values().map(|n| c(*n)).collect()],
        );
    }
    html += &figure(charts::lines(
        "Orders and stockouts per 15 minutes",
        "time of day",
        "orders",
        &[
            Series2::new(
                "orders placed",
                clock(per_bucket(events, "order_placed")?, offset),
                0,
            ),
            Series2::new(
                "lost to stockout",
                clock(per_bucket(events, "stockout")?, offset),
                1,
            ),
        ],
        true,
    )?);
    Ok(html)
}

fn service(events: &DataFrame, s: &Summary) -> Result<String, ReportError> {
    let slo = table(
        &["SLO", "target", "actual", "met"],
        s.slo
            .iter()
            .map(|r| vec![esc(&r.name), c(r.target), c(r.actual), yes_no(r.met)])
            .collect(),
    );
    let dist_row = |name: &str, d: &Dist| {
        vec![
            esc(name),
            c(d.count),
            c(d.mean),
            c(d.p50),
            c(d.p90),
            c(d.p95),
            c(d.p99),
            c(d.max),
        ]
    };
    let sv = &s.service;
    let dists = table(
        &["seconds", "n", "mean", "p50", "p90", "p95", "p99", "max"],
        vec![
            dist_row("wait for a picker", &sv.pick_wait_s),
            dist_row("pick time", &sv.pick_time_s),
            dist_row("click to handover", &sv.click_to_handover_s),
            dist_row("click to door", &sv.click_to_door_s),
        ],
    ) + &table(
        &["delivered within 10 min", "within 15 min"],
        vec![vec![c(sv.within_10_min), c(sv.within_15_min)]],
    );
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
    let target = s
        .slo
        .iter()
        .find(|r| r.name == "click_to_door_p90_min")
        .map(|r| r.target);
    let chart = charts::cdf(
        "Click to door (delivered orders)",
        "minutes",
        &cdf,
        target,
        0.9,
    )?;
    Ok(slo + &dists + &figure(chart))
}

fn picking(events: &DataFrame, offset: f64) -> Result<String, ReportError> {
    let (queue, busy) = sample_sums(events, "hub_sample")?;
    let queue_svg = charts::lines(
        "Picking queue and busy pickers (all hubs)",
        "time of day",
        "orders / pickers",
        &[
            Series2::new("orders waiting for a picker", clock(queue, offset), 2),
            Series2::new("pickers busy", clock(busy, offset), 3),
        ],
        true,
    )?;
    let waits = values_s(events, "pick_started")?;
    let wait_svg = charts::histogram("Wait for a picker", "seconds", "orders", &waits, 30)?;
    Ok(figure(queue_svg) + &figure(wait_svg))
}

fn riders(events: &DataFrame, s: &Summary, offset: f64) -> Result<String, ReportError> {
    let r = &s.riders;
    let d = &s.dispatch;
    let tables = table(
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
        vec![vec![
            c(r.riders),
            c(r.utilisation),
            c(r.orders_per_rider_hour),
            c(r.offers),
            c(r.offers_rejected),
            c(r.offers_timed_out),
            c(r.reassignments),
            c(r.repooled),
        ]],
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
        vec![vec![
            esc(&d.matcher),
            c(d.batches),
            c(d.batching_rate),
            c(d.mean_pickup_km),
            c(d.greedy_cost),
            c(d.optimal_cost),
            c(d.greedy_gap_pct),
        ]],
    );
    let (busy, on) = sample_sums(events, "rider_sample")?;
    let chart = charts::lines(
        "Riders on shift and busy (all hubs)",
        "time of day",
        "riders",
        &[
            Series2::new("on shift", clock(on, offset), 3),
            Series2::new("busy", clock(busy, offset), 0),
        ],
        true,
    )?;
    Ok(tables + &figure(chart))
}

fn eta(s: &Summary) -> Result<String, ReportError> {
    let e = &s.eta;
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
        vec![vec![
            esc(&e.model),
            c(e.orders),
            c(e.mae_s),
            c(e.bias_s),
            c(e.naive_mae_s),
            c(e.mae_improvement_vs_naive),
            c(e.coverage_p50),
            c(e.coverage_p80),
            c(e.coverage_p95),
            c(e.revision_rate),
        ]],
    );
    let calibration = charts::calibration(
        "ETA calibration: stated quantile vs observed",
        &[
            Series2::new(
                "calibrated (served)",
                vec![
                    (0.5, e.coverage_p50),
                    (0.8, e.coverage_p80),
                    (0.95, e.coverage_p95),
                ],
                0,
            ),
            Series2::new(
                "Gaussian composition",
                vec![
                    (0.5, e.gaussian_coverage_p50),
                    (0.8, e.gaussian_coverage_p80),
                    (0.95, e.gaussian_coverage_p95),
                ],
                1,
            ),
        ],
    )?;
    let errors: Vec<f64> = e
        .error_histogram
        .iter()
        .flat_map(|b| std::iter::repeat_n(f64::from(b.lo_min) + 0.5, b.count as usize))
        .collect();
    let error_svg = charts::histogram(
        "ETA error: actual − promised p50 (delivered orders)",
        "minutes (positive = later than promised)",
        "orders",
        &errors,
        41,
    )?;
    Ok(eta_table
        + "<p class=\"note\">Promised at payment; measured from payment to the door, orders \
           placed after the warm-up. Coverage = share delivered by the stated quantile; naive = \
           the hub's historical mean.</p>"
        + &figure(calibration)
        + &figure(error_svg))
}

fn flash_sale(s: &Summary) -> String {
    let f = &s.flash_sale;
    if f.units == 0 {
        return "<p class=\"note\">No flash sale in this run (<code>flash_sale.enabled = false</code>).</p>"
            .into();
    }
    let pct = |v: f64| format!("{:.1}%", v * 100.0);
    let units = table(
        &[
            "units",
            "to humans",
            "to bots",
            "humans' share",
            "oversell",
            "still reserved",
            "orders recorded",
        ],
        vec![vec![
            c(f.units),
            c(f.units_to_humans),
            c(f.units_to_bots),
            pct(f.humans_share),
            c(f.oversell),
            c(f.reserved_at_end),
            c(f.orders_recorded),
        ]],
    );
    let people = table(
        &["", "count", "requests", "with a unit", "refused as bots"],
        vec![
            vec![
                "humans".into(),
                c(f.humans),
                c(f.human_requests),
                c(f.humans_with_units),
                format!("{} ({})", c(f.humans_blocked), pct(f.humans_blocked_share)),
            ],
            vec![
                "bots".into(),
                c(f.bots),
                c(f.bot_requests),
                c(f.bots_with_units),
                format!("{} ({})", c(f.bots_blocked), pct(f.bots_blocked_share)),
            ],
        ],
    );
    let q = &f.queue_wait_s;
    let queue = table(
        &[
            "admitted from the queue",
            "wait p50",
            "p90",
            "max",
            "fairness (admission vs arrival, Spearman)",
            "expired",
        ],
        vec![vec![
            c(f.admitted),
            format!("{:.0} s", q.p50),
            format!("{:.0} s", q.p90),
            format!("{:.0} s", q.max),
            format!("{:.3}", f.fairness),
            c(f.expired),
        ]],
    );
    let answers = table(
        &["answer", "count"],
        f.answers.iter().map(|(k, v)| vec![esc(k), c(v)]).collect(),
    );
    format!(
        "<p>Humans and bots compete for {} units through the production flash-sale core: tokens \
         bound to user, device and product, the bot score, the waiting room with its admission \
         passes, and the reaper.</p>{units}{people}{queue}{answers}",
        c(f.units)
    )
}

fn search(s: &Summary) -> String {
    let se = &s.search;
    if se.all.searches == 0 {
        return "<p class=\"note\">Nobody searched in this run (<code>search.share = 0</code>).</p>"
            .into();
    }
    let pct = |v: f64| format!("{:.1}%", v * 100.0);
    let row = |kind: &str, r: &crate::summary::SearchRow| {
        vec![
            esc(kind),
            c(r.searches),
            pct(r.zero_result_rate),
            pct(r.top1_rate),
            pct(r.top3_rate),
            pct(r.first_page_rate),
            format!("{:.3}", r.mrr),
        ]
    };
    let mut rows: Vec<Vec<String>> = se.by_kind.iter().map(|(k, r)| row(k, r)).collect();
    rows.push(row("all", &se.all));
    let quality = table(
        &[
            "query",
            "searches",
            "zero results",
            "wanted item first",
            "in the top 3",
            "on the first page",
            "mean reciprocal rank",
        ],
        rows,
    );
    let outcome = table(
        &[
            "shoppers who searched",
            "items substituted",
            "items dropped",
            "left with nothing",
        ],
        vec![vec![
            c(se.shoppers),
            c(se.substituted),
            c(se.dropped),
            c(se.shoppers_left),
        ]],
    );
    format!(
        "<p>Shoppers type what they want (its Indonesian name, its English words, the name \
         half typed, or with a typo) and the search core answers with the hub's stock; the rank \
         is where the product they wanted came.</p>{quality}{outcome}"
    )
}

fn promo(s: &Summary) -> String {
    let p = &s.promo;
    if p.orders_tried == 0 {
        return "<p class=\"note\">No promotions in this run (<code>promo.enabled = false</code>).</p>"
            .into();
    }
    let overall = table(
        &[
            "orders that tried",
            "discounted",
            "flagged (ring)",
            "rules applied",
            "given back",
            "discount granted",
            "per discounted order",
            "overspend",
        ],
        vec![vec![
            c(p.orders_tried),
            c(p.orders_discounted),
            c(p.orders_flagged),
            c(p.redemptions),
            c(p.releases),
            format!("Rp {}", c(p.discount_total)),
            format!("Rp {}", c(p.discount_per_order)),
            format!("Rp {}", c(p.overspend)),
        ]],
    );
    let rules = table(
        &["rule", "redemptions held", "spent", "budget"],
        p.rules
            .iter()
            .map(|r| {
                vec![
                    esc(&r.rule),
                    c(r.redemptions),
                    format!("Rp {}", c(r.spent)),
                    if r.budget > 0 {
                        format!("Rp {}", c(r.budget))
                    } else {
                        "—".into()
                    },
                ]
            })
            .collect(),
    );
    let fraud = table(
        &[
            "rings",
            "shopping",
            "detectable (> limit accounts)",
            "caught",
            "honest shoppers",
            "honest flagged",
        ],
        vec![vec![
            c(p.rings),
            c(p.rings_active),
            c(p.rings_detectable),
            format!("{} ({:.0}%)", p.rings_caught, p.rings_caught_share * 100.0),
            c(p.honest_shoppers),
            format!(
                "{} ({:.2}%)",
                p.honest_flagged,
                p.honest_flagged_share * 100.0
            ),
        ]],
    );
    format!("{overall}{rules}{fraud}")
}

fn gps(s: &Summary) -> Result<String, ReportError> {
    let g = &s.gps;
    if g.fixes_sent == 0 {
        return Ok(
            "<p class=\"note\">No GPS in this run (<code>gps.enabled = false</code>).</p>".into(),
        );
    }
    let rejected: Vec<String> = g
        .good_rejected
        .iter()
        .map(|(k, v)| format!("{} {v}", esc(k)))
        .collect();
    let t = table(
        &[
            "fixes sent",
            "dropped",
            "accepted",
            "outliers sent",
            "outliers rejected",
            "good fixes rejected / 10k",
            "raw RMSE m",
            "raw RMSE m (no outliers)",
            "filtered RMSE m",
            "filtered vs raw",
        ],
        vec![vec![
            c(g.fixes_sent),
            c(g.dropped),
            c(g.accepted),
            c(g.outliers_sent),
            format!(
                "{} ({:.2}%)",
                g.outliers_rejected,
                g.outliers_rejected_share * 100.0
            ),
            format!("{} ({})", c(g.good_rejected_per_10k), rejected.join(", ")),
            c(g.raw_rmse_m),
            c(g.raw_good_rmse_m),
            c(g.filtered_rmse_m),
            format!("{:.0}% lower", g.filtered_improvement * 100.0),
        ]],
    );
    let raw: Points = g.trip.iter().map(|p| (p.0, p.1)).collect();
    let filtered: Points = g
        .trip
        .iter()
        .filter(|p| p.2 >= 0.0)
        .map(|p| (p.0, p.2))
        .collect();
    let chart = charts::lines(
        "Position error over one order's trip",
        "seconds since its first fix",
        "metres from the true position",
        &[
            Series2::new("raw fix", raw, 1),
            Series2::new("Tracking's filtered position", filtered, 0),
        ],
        false,
    )?;
    Ok(
        t + "<p class=\"note\">Every fix goes through the tracking core (validation, Kalman \
            filter, innovation gate). Raw RMSE counts every fix sent, outliers included (what a \
            map of raw fixes would show); filtered RMSE is Tracking's output for accepted \
            fixes.</p>"
            + &figure(chart),
    )
}

fn hubs(s: &Summary) -> String {
    table(
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
        s.hubs
            .iter()
            .map(|h| {
                vec![
                    esc(&h.hub),
                    c(h.pickers),
                    c(h.riders),
                    c(h.placed),
                    c(h.delivered),
                    c(h.stockouts),
                    c(h.pick_wait_p90_s),
                    c(h.picker_utilisation),
                    c(h.click_to_door_p90_s),
                    c(h.rider_utilisation),
                ]
            })
            .collect(),
    )
}

fn inventory(s: &Summary) -> Result<String, ReportError> {
    let i = &s.inventory;
    let t = table(
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
        vec![vec![
            c(i.reservations),
            c(i.confirmed),
            c(i.released),
            c(i.expired_by_reaper),
            c(i.expired_at_payment),
            c(i.units_sold),
            c(i.units_restocked),
            c(i.units_available_at_end),
            c(i.units_held_at_end),
        ]],
    );
    let fill: Vec<(String, f64)> = s
        .skus
        .iter()
        .take(30)
        .map(|r| (r.sku.clone(), r.fill_rate))
        .collect();
    let chart = charts::bars(
        "Fill rate of the 30 most requested SKUs",
        "fill rate",
        &fill,
        Some(1.0),
    )?;
    Ok(t + &figure(chart))
}

fn invariants(s: &Summary) -> String {
    let v = &s.invariants;
    let mut html = table(
        &[
            "oversell",
            "non-terminal orders",
            "conservation violations",
            "Redis/Postgres drift",
            "dispatch refusals",
            "dispatch drift",
            "all hold",
        ],
        vec![vec![
            c(v.oversell),
            c(v.non_terminal_orders),
            c(v.conservation_violations),
            c(v.redis_pg_drift),
            c(v.dispatch_refusals),
            c(v.dispatch_drift),
            yes_no(v.hold()),
        ]],
    );
    for d in &v.details {
        html += &format!("<p class=\"note\">{}</p>", esc(d));
    }
    html
}

fn latency(s: &Summary) -> Result<String, ReportError> {
    if s.latency.is_empty() {
        return Ok(
            "<p class=\"note\">No store latency: this run used the in-memory backend (run \
                   with <code>--backend live</code> to measure Redis and Postgres).</p>"
                .to_string(),
        );
    }
    let rows: Vec<(&String, &LatencySummary)> = s.latency.iter().collect();
    let bars: Vec<(String, f64)> = rows
        .iter()
        .flat_map(|(k, v)| {
            [
                (format!("{k} p50"), v.p50_us as f64),
                (format!("{k} p99"), v.p99_us as f64),
            ]
        })
        .collect();
    let svg = charts::bars("Store operation latency", "microseconds", &bars, None)?;
    Ok(table(
        &[
            "operation",
            "count",
            "p50 µs",
            "p99 µs",
            "p99.9 µs",
            "max µs",
        ],
        rows.iter()
            .map(|(k, v)| {
                vec![
                    esc(k),
                    c(v.count),
                    c(v.p50_us),
                    c(v.p99_us),
                    c(v.p999_us),
                    c(v.max_us),
                ]
            })
            .collect(),
    ) + &figure(svg))
}
