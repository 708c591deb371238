//! `sim plan` (issue #10): per hub and local hour, the fewest pickers and riders that meet every
//! SLO, and what that saves against the smallest flat staffing that meets them.
//!
//! The search judges each hub on its own orders (placed after the warm-up): the 90th
//! percentiles of pick wait and click-to-door and the share of paid orders lost must be within
//! the scenario's SLOs, pooled over the search replications. Every hub is bisected at once (one
//! set of runs per step, each hub reading its own orders), which assumes hubs barely affect each
//! other; the confirming runs check that assumption.
//!
//! 1. An upper bound: the scenario's own staffing, doubled for any hub that misses.
//! 2. The smallest flat staffing: pickers, then riders (with the scenario's shifts).
//! 3. The plan, hour by hour in run order, starting from the flat staffing: per hour, pickers
//!    then riders, judged on the orders of that hour and the one before (a cut may push work of
//!    the previous hour into this one). The last planned hour's staffing also covers the drain
//!    (orders still being delivered after demand ends).
//! 4. Both are confirmed on fresh seeds (twice as many as the search used): each SLO's 95% band
//!    over the replications must be within it. A miss raises the staffing of the hubs (and hours) that missed and confirms again.

use std::cell::Cell;
use std::io::IsTerminal;
use std::time::Instant;

use reports::capacity::MetricBand;
use reports::plan::{HeldHub, HubStaffing, PlanSummary, Staffing as StaffingSummary};

use crate::fleet::riders_for;
use crate::rng::Streams;
use crate::run::{run, RunOptions};
use crate::scenario::{hour_slots, Scenario};
use crate::summary::{round3, Dist, SloRow};
use crate::world::{OrderState, HOUR_MS};

/// Confirmation rounds that may raise staffing before the planner gives up.
const MAX_REPAIRS: u32 = 6;
/// Doublings of a missing hub's staffing when looking for an upper bound.
const MAX_DOUBLINGS: u32 = 5;
const MAX_PICKERS: u32 = 1000;
const MAX_RIDERS: u32 = 5000;

#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub replications: u32,
    pub threads: usize,
    pub progress: bool,
}

/// Staffing of every hub: 24 counts per hub of each kind. `flat` writes the first count as
/// `pickers = n` / `riders = n` (riders then follow the scenario's shifts).
#[derive(Debug, Clone, PartialEq)]
struct Staffing {
    flat: bool,
    pickers: Vec<[u32; 24]>,
    riders: Vec<[u32; 24]>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Pickers,
    Riders,
}

impl Staffing {
    fn counts(&mut self, kind: Kind) -> &mut Vec<[u32; 24]> {
        match kind {
            Kind::Pickers => &mut self.pickers,
            Kind::Riders => &mut self.riders,
        }
    }

    fn get(&self, kind: Kind, hub: usize, hour: usize) -> u32 {
        match kind {
            Kind::Pickers => self.pickers[hub][hour],
            Kind::Riders => self.riders[hub][hour],
        }
    }
}

/// A planned hour: the virtual window `[start, end)` of the demand period it covers.
#[derive(Debug, Clone, Copy)]
struct Slot {
    hour: usize,
    start: i64,
    end: i64,
}

/// What the judge needs of one order placed after the warm-up.
#[derive(Debug, Clone, Copy)]
struct Fact {
    hub: u32,
    slot: u32,
    wait_s: Option<f64>,
    door_s: Option<f64>,
    lost: bool,
}

/// One run, reduced.
struct RunFacts {
    facts: Vec<Fact>,
    slo: Vec<SloRow>,
    invariants_ok: bool,
}

/// A hub's figures over some of its hours: the upper end of each metric's 95% band over the
/// runs (`None`: no orders).
#[derive(Debug, Clone, Copy)]
struct Figures {
    wait: Option<f64>,
    door: Option<f64>,
    lost: Option<f64>,
}

/// What a hub is held to: the SLOs, or for a hub no staffing brings within one, the best level
/// staffing reaches (+5%).
#[derive(Debug, Clone, Copy)]
struct Targets {
    wait: f64,
    door: f64,
    lost: f64,
}

/// Slack over the best level staffing reaches, for a hub held to it.
const RELAXED_SLACK: f64 = 0.05;

impl Figures {
    fn verdict(&self, t: &Targets) -> Verdict {
        let within = |x: Option<f64>, target: f64| x.is_none_or(|x| x <= target);
        Verdict {
            wait_ok: within(self.wait, t.wait),
            door_ok: within(self.door, t.door),
            lost_ok: within(self.lost, t.lost),
        }
    }
}

/// The confirming runs of a staffing: each SLO's band, whether all meet, and the rounds of
/// raised staffing it took.
struct Confirmation {
    bands: Vec<MetricBand>,
    meets: bool,
    repairs: u32,
}

/// A hub's verdict over some of its hours.
#[derive(Debug, Clone, Copy)]
struct Verdict {
    wait_ok: bool,
    door_ok: bool,
    lost_ok: bool,
}

impl Verdict {
    fn meets(self) -> bool {
        self.wait_ok && self.door_ok && self.lost_ok
    }
}

struct Planner<'a> {
    doc: &'a toml::Value,
    base: &'a Scenario,
    hubs: usize,
    slots: Vec<Slot>,
    drain_hours: Vec<usize>,
    search_seeds: Vec<u64>,
    confirm_seeds: Vec<u64>,
    threads: usize,
    progress: bool,
    runs: Cell<u64>,
    started: Instant,
    /// Per hub, what its orders are held to.
    targets: Vec<Targets>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Bad input (exit 2).
    #[error("{0}")]
    Input(String),
    /// A run failed, or no staffing within the bounds meets the SLOs (exit 1).
    #[error("{0}")]
    Failed(String),
}

/// Plans the scenario `doc` (after `--set` overrides) with its runs from `run_doc` (the same with
/// the capacity defaults); returns the summary and `doc` with the plan applied.
pub fn plan(
    run_doc: &toml::Value,
    doc: &toml::Value,
    opts: &PlanOptions,
) -> Result<(PlanSummary, toml::Value), PlanError> {
    if opts.replications < 2 {
        return Err(PlanError::Input(
            "--replications must be at least 2 (a confidence band needs two runs)".into(),
        ));
    }
    let base = Scenario::from_document(run_doc.clone())
        .map_err(|e| PlanError::Input(format!("invalid scenario:\n{e}")))?;
    let (summary, staffing) = plan_valid(run_doc, &base, opts).map_err(PlanError::Failed)?;
    Ok((summary, apply(doc, &staffing)))
}

fn plan_valid(
    doc: &toml::Value,
    base: &Scenario,
    opts: &PlanOptions,
) -> Result<(PlanSummary, Staffing), String> {
    // The confirmation runs twice as many replications as the search, on other seeds: a
    // staffing at the edge of its SLO passes a few lucky seeds more easily than many.
    let seeds: Vec<u64> = (0..3 * u64::from(opts.replications))
        .map(|k| Streams::new(base.scenario.seed).replication_seed(k))
        .collect();
    let (search_seeds, confirm_seeds) = seeds.split_at(opts.replications as usize);
    let mut p = Planner {
        doc,
        base,
        hubs: base.hubs.len(),
        slots: slots(base),
        drain_hours: drain_hours(base),
        search_seeds: search_seeds.to_vec(),
        confirm_seeds: confirm_seeds.to_vec(),
        threads: opts.threads,
        progress: opts.progress,
        runs: Cell::new(0),
        started: Instant::now(),
        targets: vec![
            Targets {
                wait: base.slo.pick_wait_p90_s,
                door: base.slo.click_to_door_p90_min * 60.0,
                lost: base.slo.max_lost_rate,
            };
            base.hubs.len()
        ],
    };
    let kinds: &[Kind] = if base.dispatch.enabled {
        &[Kind::Pickers, Kind::Riders]
    } else {
        &[Kind::Pickers]
    };

    let mut flat = p.upper_bound()?;
    for &kind in kinds {
        p.say(&format!("smallest flat {}", kind_name(kind)));
        p.bisect(&mut flat, kind, None)?;
    }
    p.say("confirming the flat staffing");
    let (flat, flat_check) = p.confirm(flat, kinds)?;

    let mut hourly = p.hourly_from(&flat);
    for s in 0..p.slots.len() {
        for &kind in kinds {
            p.say(&format!("{:02}:00 {}", p.slots[s].hour, kind_name(kind)));
            p.bisect(&mut hourly, kind, Some(s))?;
        }
    }
    p.say("confirming the plan");
    let (hourly, plan_check) = p.confirm(hourly, kinds)?;

    let flat_summary = p.summarise(&flat, flat_check)?;
    let plan_summary = p.summarise(&hourly, plan_check)?;
    let summary = PlanSummary {
        scenario: base.scenario.name.clone(),
        seed: base.scenario.seed,
        replications: opts.replications,
        search_seeds: p.search_seeds.clone(),
        confirm_seeds: p.confirm_seeds.clone(),
        hours: p.slots.iter().map(|s| s.hour as u32).collect(),
        drain_hours: p.drain_hours.iter().map(|h| *h as u32).collect(),
        rider_hours_saved: round3(flat_summary.rider_hours - plan_summary.rider_hours),
        picker_hours_saved: round3(flat_summary.picker_hours - plan_summary.picker_hours),
        flat: flat_summary,
        plan: plan_summary,
        runs: p.runs.get(),
        held: p.held(),
    };
    Ok((summary, hourly))
}

/// Writes `plan.json`, `plan.html` and `plan.toml` (the scenario with the plan applied, after
/// `header`) into `dir`.
pub fn write_plan(
    dir: &std::path::Path,
    summary: &PlanSummary,
    planned: &toml::Value,
    header: &str,
) -> Result<(), String> {
    let json = serde_json::to_string_pretty(summary).expect("a plan serialises");
    let html = reports::plan::plan_html(summary).map_err(|e| e.to_string())?;
    let toml = toml::to_string(planned).map_err(|e| e.to_string())?;
    for (name, bytes) in [
        ("plan.json", json),
        ("plan.html", html),
        ("plan.toml", format!("{header}{toml}")),
    ] {
        std::fs::write(dir.join(name), bytes).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Pickers => "pickers",
        Kind::Riders => "riders",
    }
}

/// The local hours the demand covers, as windows of virtual time.
fn slots(sc: &Scenario) -> Vec<Slot> {
    hour_slots(sc.start_of_day_ms(), 0, sc.duration_ms())
        .map(|(hour, start, end)| Slot { hour, start, end })
        .collect()
}

/// Local hours after the demand until the last deadline, when the last orders are still being
/// delivered (planned hours excluded).
fn drain_hours(sc: &Scenario) -> Vec<usize> {
    let end = sc.duration_ms();
    let last = end + (sc.dispatch.deadline_min * 60_000.0).round() as i64;
    let planned: Vec<usize> = slots(sc).iter().map(|s| s.hour).collect();
    let mut out = Vec::new();
    for (hour, _, _) in hour_slots(sc.start_of_day_ms(), end, last) {
        if !planned.contains(&hour) && !out.contains(&hour) {
            out.push(hour);
        }
    }
    out
}

/// The scenario document with `staffing` in place of each hub's staffing keys.
fn apply(doc: &toml::Value, staffing: &Staffing) -> toml::Value {
    let mut doc = doc.clone();
    let hubs = doc
        .get_mut("hubs")
        .and_then(toml::Value::as_array_mut)
        .expect("a validated scenario has hubs");
    for (i, hub) in hubs.iter_mut().enumerate() {
        let t = hub.as_table_mut().expect("hubs are tables");
        for k in ["pickers", "pickers_by_hour", "riders", "riders_by_hour"] {
            t.remove(k);
        }
        let list = |v: &[u32; 24]| {
            toml::Value::Array(
                v.iter()
                    .map(|n| toml::Value::Integer(i64::from(*n)))
                    .collect(),
            )
        };
        if staffing.flat {
            t.insert(
                "pickers".into(),
                toml::Value::Integer(staffing.pickers[i][0].into()),
            );
            t.insert(
                "riders".into(),
                toml::Value::Integer(staffing.riders[i][0].into()),
            );
        } else {
            t.insert("pickers_by_hour".into(), list(&staffing.pickers[i]));
            t.insert("riders_by_hour".into(), list(&staffing.riders[i]));
        }
    }
    doc
}

/// The nearest-rank 90th percentile; `None` without samples.
fn p90(xs: Vec<f64>) -> Option<f64> {
    (!xs.is_empty()).then(|| Dist::of(xs).p90)
}

/// One run reduced to what the judge and the confirmation read.
fn reduce(slots: &[Slot], sc: &Scenario, out: crate::run::RunOutput) -> RunFacts {
    let warmup = sc.warmup_ms();
    let facts = out
        .orders
        .iter()
        .filter(|o| o.placed_at >= warmup)
        .filter_map(|o| {
            let slot = slots
                .iter()
                .position(|s| s.start <= o.placed_at && o.placed_at < s.end)?;
            let lost = matches!(o.state, OrderState::Lost | OrderState::DispatchFailed);
            let reached = matches!(o.state, OrderState::Delivered | OrderState::HandedOver);
            (lost || reached).then(|| Fact {
                hub: o.hub.0 as u32,
                slot: slot as u32,
                wait_s: o
                    .paid_at
                    .zip(o.pick_started_at)
                    .map(|(p, s)| (s - p) as f64 / 1000.0),
                door_s: o.delivered_at.map(|d| (d - o.placed_at) as f64 / 1000.0),
                lost,
            })
        })
        .collect();
    RunFacts {
        facts,
        slo: out.summary.slo,
        invariants_ok: out.summary.invariants.hold(),
    }
}

impl Planner<'_> {
    fn say(&self, what: &str) {
        if self.progress {
            eprintln!(
                "plan: {what}  ({} runs, {:.0} s)",
                self.runs.get(),
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    fn scenario(&self, staffing: &Staffing) -> Result<Scenario, String> {
        Scenario::from_document(apply(self.doc, staffing)).map_err(|e| e.to_string())
    }

    /// Runs `staffing` on `seeds` in parallel.
    fn evaluate(&self, staffing: &Staffing, seeds: &[u64]) -> Result<Vec<RunFacts>, String> {
        let sc = self.scenario(staffing)?;
        let tty = std::io::stderr().is_terminal();
        let slots = &self.slots;
        let out = crate::pool::map(
            seeds.len(),
            self.threads,
            |i| {
                let opts = RunOptions {
                    seed: Some(seeds[i]),
                    ..RunOptions::default()
                };
                run(&sc, &opts)
                    .map(|o| reduce(slots, &sc, o))
                    .map_err(|e| e.to_string())
            },
            |_| {},
        );
        self.runs.set(self.runs.get() + seeds.len() as u64);
        if self.progress && tty {
            eprint!("\rplan: {} runs", self.runs.get());
        }
        out.into_iter().collect()
    }

    /// Hub `hub` over the orders placed in `slots` (all of them when `None`): per run, the 90th
    /// percentiles and the lost share of its orders, and the upper end of each one's 95% band
    /// over the runs (the criterion the confirming runs apply to the whole city).
    fn figures(&self, runs: &[RunFacts], hub: usize, slots: Option<&[usize]>) -> Figures {
        let (mut waits, mut doors, mut lost) = (Vec::new(), Vec::new(), Vec::new());
        for r in runs {
            let mine: Vec<&Fact> = r
                .facts
                .iter()
                .filter(|f| {
                    f.hub as usize == hub && slots.is_none_or(|s| s.contains(&(f.slot as usize)))
                })
                .collect();
            if mine.is_empty() {
                continue;
            }
            waits.extend(p90(mine.iter().filter_map(|f| f.wait_s).collect()));
            doors.extend(p90(mine.iter().filter_map(|f| f.door_s).collect()));
            lost.push(mine.iter().filter(|f| f.lost).count() as f64 / mine.len() as f64);
        }
        let upper = |xs: &[f64]| match xs.len() {
            0 => None,
            1 => Some(xs[0]),
            _ => Some(MetricBand::of("", 0.0, xs).hi),
        };
        Figures {
            wait: upper(&waits),
            door: if self.base.dispatch.enabled {
                upper(&doors)
            } else {
                None
            },
            lost: upper(&lost),
        }
    }

    fn judge(&self, runs: &[RunFacts], hub: usize, slots: Option<&[usize]>) -> Verdict {
        self.figures(runs, hub, slots).verdict(&self.targets[hub])
    }

    /// The slots a cut at `slot` is judged on: it and the one before.
    fn judged_slots(slot: usize) -> Vec<usize> {
        (slot.saturating_sub(1)..=slot).collect()
    }

    /// The scenario's own staffing as a flat upper bound, doubling each kind of staff at a hub
    /// that misses until every hub meets its SLOs. A hub whose figures stop improving when its
    /// staff doubles cannot be brought within the SLO by staffing (its service area is too large
    /// for the click-to-door target, say): it is held to the level reached, +5%.
    fn upper_bound(&mut self) -> Result<Staffing, String> {
        let mut s = Staffing {
            flat: true,
            pickers: self
                .base
                .hubs
                .iter()
                .map(|h| [h.pickers().pool().max(1); 24])
                .collect(),
            riders: self
                .base
                .hubs
                .iter()
                .map(|h| [h.riders().pool().max(1); 24])
                .collect(),
        };
        let mut before: Vec<Option<Figures>> = vec![None; self.hubs];
        for round in 0..=MAX_DOUBLINGS {
            self.say("checking the scenario's staffing as an upper bound");
            let runs = self.evaluate(&s, &self.search_seeds)?;
            let mut missing = false;
            for (h, before_h) in before.iter_mut().enumerate() {
                let f = self.figures(&runs, h, None);
                let v = f.verdict(&self.targets[h]);
                if v.meets() {
                    continue;
                }
                let improved = |now: Option<f64>, then: Option<f64>| match (now, then) {
                    (Some(n), Some(t)) => n < t * (1.0 - RELAXED_SLACK),
                    _ => true,
                };
                let b = *before_h;
                let stuck = round == MAX_DOUBLINGS
                    || b.is_some_and(|b| {
                        !improved(f.wait, b.wait)
                            && !improved(f.door, b.door)
                            && !improved(f.lost, b.lost)
                    });
                if stuck {
                    let relax = |x: Option<f64>, target: f64| {
                        x.map_or(target, |x| target.max(x * (1.0 + RELAXED_SLACK)))
                    };
                    let t = &mut self.targets[h];
                    (t.wait, t.door, t.lost) = (
                        relax(f.wait, t.wait),
                        relax(f.door, t.door),
                        relax(f.lost, t.lost),
                    );
                    continue;
                }
                missing = true;
                *before_h = Some(f);
                if !v.wait_ok || !v.lost_ok {
                    s.pickers[h] = [(s.pickers[h][0] * 2).min(MAX_PICKERS); 24];
                }
                if !v.door_ok || !v.lost_ok {
                    s.riders[h] = [(s.riders[h][0] * 2).min(MAX_RIDERS); 24];
                }
            }
            if !missing {
                return Ok(s);
            }
        }
        unreachable!("the last round relaxes every hub that still misses")
    }

    /// Hubs held to a level other than the SLOs.
    fn held(&self) -> Vec<HeldHub> {
        let slo = &self.base.slo;
        self.targets
            .iter()
            .zip(&self.base.hubs)
            .filter(|(t, _)| {
                t.wait != slo.pick_wait_p90_s
                    || t.door != slo.click_to_door_p90_min * 60.0
                    || t.lost != slo.max_lost_rate
            })
            .map(|(t, h)| HeldHub {
                hub: h.id.clone(),
                pick_wait_p90_s: round3(t.wait),
                click_to_door_p90_min: round3(t.door / 60.0),
                lost_rate: round3(t.lost),
            })
            .collect()
    }

    /// Sets `kind` at `hub` for `slot` (with the drain hours after the last slot), or for every
    /// hour when `slot` is `None`.
    fn set(&self, s: &mut Staffing, kind: Kind, hub: usize, slot: Option<usize>, v: u32) {
        let counts = &mut s.counts(kind)[hub];
        match slot {
            None => *counts = [v; 24],
            Some(i) => {
                counts[self.slots[i].hour] = v;
                if i + 1 == self.slots.len() {
                    for h in &self.drain_hours {
                        counts[*h] = v;
                    }
                }
            }
        }
    }

    /// Per hub at once: the smallest count of `kind` in 1..=current that meets (the current
    /// count is known to), for `slot` or for all hours.
    fn bisect(&self, s: &mut Staffing, kind: Kind, slot: Option<usize>) -> Result<(), String> {
        let hour = slot.map_or(0, |i| self.slots[i].hour);
        let judged = slot.map(Self::judged_slots);
        let mut lo = vec![0u32; self.hubs];
        let mut hi: Vec<u32> = (0..self.hubs).map(|h| s.get(kind, h, hour)).collect();
        loop {
            let active: Vec<usize> = (0..self.hubs).filter(|&h| hi[h] - lo[h] > 1).collect();
            if active.is_empty() {
                break;
            }
            let mut trial = s.clone();
            for &h in &active {
                self.set(&mut trial, kind, h, slot, (lo[h] + hi[h]) / 2);
            }
            let runs = self.evaluate(&trial, &self.search_seeds)?;
            for &h in &active {
                let mid = (lo[h] + hi[h]) / 2;
                if self.judge(&runs, h, judged.as_deref()).meets() {
                    hi[h] = mid;
                } else {
                    lo[h] = mid;
                }
            }
        }
        for (h, v) in hi.into_iter().enumerate() {
            self.set(s, kind, h, slot, v);
        }
        Ok(())
    }

    /// The flat staffing as the plan's starting point: every planned and drain hour at the flat
    /// count, nobody outside them.
    fn hourly_from(&self, flat: &Staffing) -> Staffing {
        let mut s = Staffing {
            flat: false,
            pickers: vec![[0; 24]; self.hubs],
            riders: vec![[0; 24]; self.hubs],
        };
        for h in 0..self.hubs {
            for slot in self
                .slots
                .iter()
                .map(|s| s.hour)
                .chain(self.drain_hours.iter().copied())
            {
                s.pickers[h][slot] = flat.pickers[h][0];
                s.riders[h][slot] = flat.riders[h][0];
            }
        }
        s
    }

    /// Runs `s` on the confirming seeds; while a band misses its SLO, raises the staffing of
    /// the hubs (and, for a plan, the hours) that missed by 5% (at least one person) and runs
    /// again.
    fn confirm(&self, mut s: Staffing, kinds: &[Kind]) -> Result<(Staffing, Confirmation), String> {
        for repairs in 0..=MAX_REPAIRS {
            let runs = self.evaluate(&s, &self.confirm_seeds)?;
            let bands: Vec<MetricBand> = runs[0]
                .slo
                .iter()
                .enumerate()
                .map(|(m, row)| {
                    let xs: Vec<f64> = runs.iter().map(|r| r.slo[m].actual).collect();
                    MetricBand::of(&row.name, row.target, &xs)
                })
                .collect();
            let invariants = runs.iter().all(|r| r.invariants_ok);
            let meets = invariants && bands.iter().all(|b| b.meets);
            let staffing_can_help = bands.iter().any(|b| !b.meets && b.name != "stockout_rate");
            if meets || !staffing_can_help || repairs == MAX_REPAIRS {
                return Ok((
                    s,
                    Confirmation {
                        bands,
                        meets,
                        repairs,
                    },
                ));
            }
            let hours: Vec<Option<usize>> = if s.flat {
                vec![None]
            } else {
                (0..self.slots.len()).map(Some).collect()
            };
            let mut raised = false;
            for h in 0..self.hubs {
                for &slot in &hours {
                    let only = slot.map(|i| vec![i]);
                    let v = self.judge(&runs, h, only.as_deref());
                    for &kind in kinds {
                        let short = match kind {
                            Kind::Pickers => !v.wait_ok,
                            Kind::Riders => !v.door_ok || !v.lost_ok,
                        };
                        if short {
                            self.raise(&mut s, kind, h, slot);
                            raised = true;
                        }
                    }
                }
            }
            if !raised {
                // No single hub misses, but a city-wide band does: raise everyone's riders.
                for h in 0..self.hubs {
                    for &slot in &hours {
                        self.raise(&mut s, *kinds.last().expect("a kind"), h, slot);
                    }
                }
            }
        }
        unreachable!("the loop returns")
    }

    fn raise(&self, s: &mut Staffing, kind: Kind, hub: usize, slot: Option<usize>) {
        let hour = slot.map_or(0, |i| self.slots[i].hour);
        let v = s.get(kind, hub, hour);
        let cap = match kind {
            Kind::Pickers => MAX_PICKERS,
            Kind::Riders => MAX_RIDERS,
        };
        self.set(s, kind, hub, slot, (v + (v / 20).max(1)).min(cap));
    }

    /// People × hours on shift within the demand window, and the confirmation, per staffing.
    fn summarise(&self, s: &Staffing, check: Confirmation) -> Result<StaffingSummary, String> {
        let sc = self.scenario(s)?;
        let end = sc.duration_ms();
        let riders = riders_for(&sc);
        let on_shift_ms = |from: i64, to: i64| -> i64 {
            riders
                .iter()
                .flat_map(|r| r.shifts.iter())
                .map(|&(a, b)| (b.min(to) - a.max(from)).max(0))
                .sum()
        };
        let rider_ms = on_shift_ms(0, end);
        let riders_on_shift = self
            .slots
            .iter()
            .map(|s| round3(on_shift_ms(s.start, s.end) as f64 / (s.end - s.start) as f64))
            .collect();
        let picker_ms: i64 = sc
            .hubs
            .iter()
            .map(|h| h.pickers().person_ms(sc.start_of_day_ms(), 0, end))
            .sum();
        let hubs = sc
            .hubs
            .iter()
            .map(|h| {
                let at = |staff: crate::scenario::Staff<'_>| {
                    self.slots.iter().map(|s| staff.at(s.hour)).collect()
                };
                HubStaffing {
                    hub: h.id.clone(),
                    pickers: at(h.pickers()),
                    riders: at(h.riders()),
                }
            })
            .collect();
        Ok(StaffingSummary {
            hubs,
            rider_hours: round3(rider_ms as f64 / HOUR_MS as f64),
            riders_on_shift,
            picker_hours: round3(picker_ms as f64 / HOUR_MS as f64),
            confirm: check.bands,
            meets: check.meets,
            repairs: check.repairs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(start: &str, duration: &str) -> Scenario {
        let text = format!(
            "version = 1\n[scenario]\nname = \"t\"\nstart = \"{start}\"\nduration = \"{duration}\"\n\
             [city]\nlat = -6.2\nlng = 106.8\nradius_km = 10\n[[hubs]]\nid = \"h\"\nlat = -6.2\nlng = 106.8\n"
        );
        Scenario::parse(&text, &[]).unwrap()
    }

    #[test]
    fn planned_hours_follow_the_demand_window_and_the_drain_its_deadline() {
        let sc = scenario("11:00", "3h");
        let hours: Vec<usize> = slots(&sc).iter().map(|s| s.hour).collect();
        assert_eq!(hours, vec![11, 12, 13]);
        // Deadline 60 min: the last orders are delivered by 15:00.
        assert_eq!(drain_hours(&sc), vec![14]);
        let sc = scenario("11:30", "2h");
        let s = slots(&sc);
        assert_eq!(
            s.iter().map(|s| s.hour).collect::<Vec<_>>(),
            vec![11, 12, 13]
        );
        assert_eq!(
            (s[0].start, s[0].end, s[2].end),
            (0, HOUR_MS / 2, 2 * HOUR_MS)
        );
        // Demand ends at 13:30 (a planned hour); the drain runs to 14:30.
        assert_eq!(drain_hours(&sc), vec![14]);
    }

    #[test]
    fn a_plan_is_written_as_hourly_keys_replacing_the_flat_ones() {
        let text = "version = 1\n[scenario]\nname = \"t\"\nduration = \"1h\"\n[city]\nlat = -6.2\n\
                    lng = 106.8\nradius_km = 10\n[[hubs]]\nid = \"h\"\nlat = -6.2\nlng = 106.8\n\
                    pickers = 3\nriders = 9\n";
        let doc = Scenario::document(text, &[]).unwrap();
        let mut s = Staffing {
            flat: false,
            pickers: vec![[0; 24]],
            riders: vec![[0; 24]],
        };
        (s.pickers[0][11], s.riders[0][11]) = (2, 7);
        let sc = Scenario::from_document(apply(&doc, &s)).unwrap();
        assert_eq!((sc.hubs[0].pickers, sc.hubs[0].riders), (None, None));
        assert_eq!(
            (sc.hubs[0].pickers().at(11), sc.hubs[0].riders().at(11)),
            (2, 7)
        );
        s.flat = true;
        (s.pickers[0], s.riders[0]) = ([5; 24], [6; 24]);
        let sc = Scenario::from_document(apply(&doc, &s)).unwrap();
        assert_eq!((sc.hubs[0].pickers, sc.hubs[0].riders), (Some(5), Some(6)));
        assert_eq!(sc.hubs[0].riders_by_hour, None);
    }
}
