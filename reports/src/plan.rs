//! The staffing plan of `sim plan` (issue #10): per hub and local hour, the fewest pickers and
//! riders that meet every SLO, against the smallest flat staffing that meets them. The typed
//! summary here is what `plan.json` holds; `plan.html` is drawn from it alone.

use serde::{Deserialize, Serialize};

use crate::capacity::MetricBand;
use crate::charts::{self, Series2};
use crate::{esc, ReportError};

/// `plan.json`: a function of the scenario, the replications and the code (no timings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSummary {
    pub scenario: String,
    pub seed: u64,
    pub replications: u32,
    /// Seeds of the search runs, and of the confirming runs (different ones).
    pub search_seeds: Vec<u64>,
    pub confirm_seeds: Vec<u64>,
    /// The local hours the scenario's demand covers, in run order (the planned hours).
    pub hours: Vec<u32>,
    /// Hours after the demand in which the last orders are still delivered: they keep the last
    /// planned hour's staffing.
    pub drain_hours: Vec<u32>,
    /// The smallest flat staffing (the same count all day per hub) that meets every SLO.
    pub flat: Staffing,
    /// The plan: a count per hub and planned hour.
    pub plan: Staffing,
    /// Rider-hours (and picker-hours) the plan saves against `flat`, over the demand window.
    pub rider_hours_saved: f64,
    pub picker_hours_saved: f64,
    /// Simulation runs the search and the confirmations took.
    pub runs: u64,
    /// Hubs whose own orders miss an SLO whatever their staffing (doubling it stopped helping):
    /// the search holds them to the level staffing reaches, +5%. The confirmation is city-wide.
    pub held: Vec<HeldHub>,
}

/// What a hub's orders were held to in the search, where that differs from the SLO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldHub {
    pub hub: String,
    pub pick_wait_p90_s: f64,
    pub click_to_door_p90_min: f64,
    pub lost_rate: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Staffing {
    /// Per hub, in scenario order.
    pub hubs: Vec<HubStaffing>,
    /// People on shift × hours within the demand window.
    pub rider_hours: f64,
    /// Riders on shift in each planned hour, all hubs (time-averaged over the part of the hour
    /// the demand covers: shifts may start or end within it).
    pub riders_on_shift: Vec<f64>,
    pub picker_hours: f64,
    /// Each SLO over the confirming runs (fresh seeds): mean and 95% band.
    pub confirm: Vec<MetricBand>,
    /// Every band meets its SLO and every run's invariants held.
    pub meets: bool,
    /// Rounds in which the confirming runs missed an SLO and staffing was raised.
    pub repairs: u32,
}

/// One hub's staffing: one count per planned hour (flat staffing repeats one value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HubStaffing {
    pub hub: String,
    pub pickers: Vec<u32>,
    pub riders: Vec<u32>,
}

/// Renders `plan.html` (self-contained: inline SVG, no network).
pub fn plan_html(s: &PlanSummary) -> Result<String, ReportError> {
    let mut body = format!(
        "<h1>Staffing plan: {}</h1><p>Per hub and local hour, the fewest pickers and riders whose \
         orders meet every SLO, found by per-hub bisection hour by hour over {} replication(s) \
         (seeds {:?}), then confirmed on fresh seeds {:?}. {} runs in all.</p>",
        esc(&s.scenario),
        s.replications,
        s.search_seeds,
        s.confirm_seeds,
        s.runs
    );
    let share = if s.flat.rider_hours > 0.0 {
        s.rider_hours_saved / s.flat.rider_hours * 100.0
    } else {
        0.0
    };
    body += &format!(
        "<p class=\"saved\" id=\"saved\">The plan needs <b>{:.1} rider-hours</b> where the smallest \
         flat staffing that meets the SLOs needs {:.1}: <b>{:.1} rider-hours saved ({share:.0}%)</b>, \
         and {:.1} picker-hours ({:.1} against {:.1}), at equal SLO.</p>",
        s.plan.rider_hours,
        s.flat.rider_hours,
        s.rider_hours_saved,
        s.picker_hours_saved,
        s.plan.picker_hours,
        s.flat.picker_hours
    );
    if !s.plan.meets || !s.flat.meets {
        body +=
            "<p class=\"no\">The confirming runs missed an SLO (see below): the figures are not \
                 at equal SLO.</p>";
    }
    if !s.held.is_empty() {
        body +=
            "<p id=\"held\">Hubs whose own orders miss an SLO whatever their staffing (doubling \
                 it stopped helping), held in the search to the level staffing reaches, +5%:</p>\
                 <table><tr><th>hub</th><th>pick wait p90 (s)</th><th>click to door p90 (min)</th>\
                 <th>lost rate</th></tr>";
        for h in &s.held {
            body += &format!(
                "<tr><td>{}</td><td>{:.1}</td><td>{:.2}</td><td>{:.4}</td></tr>",
                esc(&h.hub),
                h.pick_wait_p90_s,
                h.click_to_door_p90_min,
                h.lost_rate
            );
        }
        body += "</table>";
    }
    body += "<div class=\"chart\">";
    body += &riders_by_hour_chart(s)?;
    body += "</div>";
    body += "<h2>Riders per hub and hour</h2>";
    body += &hour_table(s, "riders", |h| &h.riders);
    body += "<p>Flat riders are each hub's pool, split over the day by the scenario's shifts \
             (`riders.shifts`); the chart above counts who is on shift.</p>";
    body += "<h2>Pickers per hub and hour</h2>";
    body += &hour_table(s, "pickers", |h| &h.pickers);
    body += "<h2>Confirming runs</h2>";
    body += &confirm_table(s);
    Ok(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Staffing plan: {}</title><style>\
         body{{font-family:sans-serif;margin:24px;color:#222}} table{{border-collapse:collapse}} \
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} .saved{{font-size:1.2em}} \
         .no{{color:#b00}} td.less{{background:#e3f4e3}}</style></head><body>{body}</body></html>",
        esc(&s.scenario)
    ))
}

/// City-wide riders on shift per planned hour: the plan against flat staffing.
fn riders_by_hour_chart(s: &PlanSummary) -> Result<String, ReportError> {
    // Steps: each hour's count holds from its start to the next hour.
    let steps = |st: &Staffing| -> Vec<(f64, f64)> {
        s.hours
            .iter()
            .zip(&st.riders_on_shift)
            .flat_map(|(h, y)| [(f64::from(*h), *y), (f64::from(*h) + 1.0, *y)])
            .collect()
    };
    charts::lines(
        "Riders on shift, all hubs",
        "local time",
        "riders",
        &[
            Series2::new("plan", steps(&s.plan), 0),
            Series2::new("smallest flat staffing", steps(&s.flat), 1),
        ],
        true,
    )
}

/// Hubs × planned hours for one kind of staff, the flat value beside; cells below it shaded.
fn hour_table(s: &PlanSummary, kind: &str, of: impl Fn(&HubStaffing) -> &Vec<u32>) -> String {
    let mut t = format!("<table id=\"{kind}\"><tr><th>hub</th>");
    for h in &s.hours {
        t += &format!("<th>{h:02}:00</th>");
    }
    t += "<th>flat</th></tr>";
    for (plan, flat) in s.plan.hubs.iter().zip(&s.flat.hubs) {
        let flat_v = of(flat).first().copied().unwrap_or(0);
        t += &format!("<tr><td>{}</td>", esc(&plan.hub));
        for v in of(plan) {
            let cls = if *v < flat_v { " class=\"less\"" } else { "" };
            t += &format!("<td{cls}>{v}</td>");
        }
        t += &format!("<td>{flat_v}</td></tr>");
    }
    t + "</table>"
}

fn confirm_table(s: &PlanSummary) -> String {
    let mut t = String::from(
        "<table id=\"confirm\"><tr><th>SLO</th><th>target</th><th>plan mean [95% band]</th>\
         <th>flat mean [95% band]</th></tr>",
    );
    for (p, f) in s.plan.confirm.iter().zip(&s.flat.confirm) {
        let cell = |m: &MetricBand| {
            let cls = if m.meets { "" } else { " class=\"no\"" };
            format!("<td{cls}>{:.3} [{:.3}, {:.3}]</td>", m.mean, m.lo, m.hi)
        };
        t += &format!(
            "<tr><td>{}</td><td>≤ {}</td>{}{}</tr>",
            esc(&p.name),
            p.target,
            cell(p),
            cell(f)
        );
    }
    t + "</table>"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staffing(riders: Vec<u32>, hours: f64) -> Staffing {
        Staffing {
            hubs: vec![HubStaffing {
                hub: "h<1>".into(),
                pickers: vec![2; riders.len()],
                riders,
            }],
            rider_hours: hours,
            riders_on_shift: vec![hours / 3.0; 3],
            picker_hours: 6.0,
            confirm: vec![MetricBand::of(
                "click_to_door_p90_min",
                20.0,
                &[15.0, 16.0, 17.0],
            )],
            meets: true,
            repairs: 0,
        }
    }

    #[test]
    fn the_page_shows_the_savings_the_tables_and_the_chart() {
        let s = PlanSummary {
            scenario: "t".into(),
            seed: 1,
            replications: 3,
            search_seeds: vec![1, 2, 3],
            confirm_seeds: vec![4, 5, 6],
            hours: vec![11, 12, 13],
            drain_hours: vec![14],
            flat: staffing(vec![9, 9, 9], 27.0),
            plan: staffing(vec![6, 9, 7], 22.0),
            rider_hours_saved: 5.0,
            picker_hours_saved: 0.0,
            runs: 42,
            held: vec![],
        };
        let html = plan_html(&s).unwrap();
        assert!(
            html.contains("<b>5.0 rider-hours saved (19%)</b>"),
            "{html}"
        );
        assert!(html.contains("<td>h&lt;1&gt;</td><td class=\"less\">6</td><td>9</td>"));
        assert!(html.contains("<th>11:00</th><th>12:00</th><th>13:00</th><th>flat</th>"));
        assert!(html.contains("<svg") && html.contains("smallest flat staffing"));
        assert!(!html.contains("missed an SLO"));
    }
}
