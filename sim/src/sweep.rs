//! `sim sweep` (10-simulator §1): a grid of scenario values × replications, each run
//! single-threaded and deterministic, spread over threads; replication k of every grid point
//! uses the same seed (common random numbers). Results are kept by run index, so they do not
//! depend on the thread count; `--shard I/N` runs every N-th run and `sweep-merge` joins shards
//! into the same `sweep.json` as one unsharded sweep.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use polars::prelude::*;
use reports::capacity::{capacity_html, MetricBand, PointSummary, SweepSummary};
use serde::{Deserialize, Serialize};

use crate::rng::{fnv, Streams, FNV_OFFSET};
use crate::run::{run, RunOptions};
use crate::scenario::Scenario;
use crate::summary::SloRow;

/// Overrides every capacity run (sweep and plan) starts from, before the user's `--set`: GPS
/// feeds nothing a capacity run measures (its streams are its own), and it is most of a run's
/// cost. `--set gps.enabled=true` turns it back on.
pub const CAPACITY_DEFAULTS: [&str; 1] = ["gps.enabled=false"];

/// `CAPACITY_DEFAULTS` followed by `overrides`.
pub fn capacity_overrides(overrides: &[String]) -> Vec<String> {
    CAPACITY_DEFAULTS
        .iter()
        .map(|s| s.to_string())
        .chain(overrides.iter().cloned())
        .collect()
}

/// At most this many runs in one sweep (grid points × replications).
pub const MAX_RUNS: usize = 100_000;

/// `KEY=FROM..TO:STEP`: the values FROM, FROM+STEP, ... up to TO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vary {
    pub key: String,
    pub values: Vec<f64>,
    /// All of FROM, TO and STEP were integers: values are written as TOML integers.
    pub integer: bool,
}

impl Vary {
    pub fn parse(spec: &str) -> Result<Self, String> {
        let form = "expected KEY=FROM..TO:STEP, e.g. hubs[*].riders=4..20:2";
        let (key, range) = spec
            .split_once('=')
            .ok_or_else(|| format!("--vary {spec:?}: {form}"))?;
        let key = key.trim();
        let (bounds, step) = range
            .split_once(':')
            .ok_or_else(|| format!("--vary {spec:?}: no step; {form}"))?;
        let (from, to) = bounds
            .split_once("..")
            .ok_or_else(|| format!("--vary {spec:?}: no range; {form}"))?;
        if key.is_empty() {
            return Err(format!("--vary {spec:?}: no key; {form}"));
        }
        let num = |s: &str| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("--vary {key}: {s:?} is not a number"))
        };
        let (a, b, step_v) = (num(from)?, num(to)?, num(step)?);
        if step_v <= 0.0 {
            return Err(format!(
                "--vary {key}: the step must be positive, got {step}"
            ));
        }
        if b < a {
            return Err(format!(
                "--vary {key}: the range {from}..{to} is reversed (FROM must not exceed TO)"
            ));
        }
        let count = ((b - a) / step_v + 1e-9).floor() as usize + 1;
        if count > MAX_RUNS {
            return Err(format!("--vary {key}: {count} values; at most {MAX_RUNS}"));
        }
        let integer = [from, to, step]
            .iter()
            .all(|s| s.trim().parse::<i64>().is_ok());
        let values = (0..count)
            .map(|i| {
                let v = a + step_v * i as f64;
                // Decimal steps: keep 1e-9 precision so 0.1 + 0.2 prints as 0.3.
                (v * 1e9).round() / 1e9
            })
            .collect();
        Ok(Self {
            key: key.to_string(),
            values,
            integer,
        })
    }

    /// The value as a `--set` override.
    fn assignment(&self, v: f64) -> String {
        if self.integer {
            format!("{}={}", self.key, v as i64)
        } else {
            format!("{}={v:?}", self.key)
        }
    }
}

/// `--shard I/N` (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 1, count: 1 };

    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("--shard {s:?}: expected I/N with 1 <= I <= N, e.g. 2/8");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }

    fn owns(self, run: usize) -> bool {
        run % self.count as usize == (self.index - 1) as usize
    }
}

/// The sweep's definition: what every shard must agree on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    pub scenario: String,
    pub seed: u64,
    pub text: String,
    pub overrides: Vec<String>,
    pub vary: Vec<Vary>,
    pub replications: u32,
}

impl Grid {
    /// Checks the whole grid up front: every point must be a valid scenario (an unknown key or a
    /// value out of its bounds is named before any run starts).
    pub fn new(
        text: &str,
        overrides: &[String],
        vary: Vec<Vary>,
        replications: u32,
    ) -> Result<Self, String> {
        if vary.is_empty() {
            return Err("sweep needs at least one --vary KEY=FROM..TO:STEP".into());
        }
        if replications == 0 {
            return Err("--replications must be at least 1".into());
        }
        let mut keys: Vec<&str> = vary.iter().map(|v| v.key.as_str()).collect();
        keys.sort_unstable();
        if keys.windows(2).any(|w| w[0] == w[1]) {
            return Err("--vary names a key twice".into());
        }
        let points: usize = vary.iter().map(|v| v.values.len()).product();
        if points.saturating_mul(replications as usize) > MAX_RUNS {
            return Err(format!(
                "{points} grid points × {replications} replications is more than {MAX_RUNS} runs"
            ));
        }
        let base =
            Scenario::parse(text, overrides).map_err(|e| format!("invalid scenario:\n{e}"))?;
        let grid = Self {
            scenario: base.scenario.name,
            seed: base.scenario.seed,
            text: text.to_string(),
            overrides: overrides.to_vec(),
            vary,
            replications,
        };
        for p in grid.points() {
            grid.scenario_at(&p).map_err(|e| {
                let at: Vec<String> = grid.assignments(&p);
                format!("invalid scenario at {}:\n{e}", at.join(", "))
            })?;
        }
        Ok(grid)
    }

    /// Every grid point, the last key varying fastest.
    pub fn points(&self) -> Vec<Vec<f64>> {
        let mut out: Vec<Vec<f64>> = vec![Vec::new()];
        for v in &self.vary {
            out = out
                .into_iter()
                .flat_map(|p| {
                    v.values.iter().map(move |x| {
                        let mut q = p.clone();
                        q.push(*x);
                        q
                    })
                })
                .collect();
        }
        out
    }

    pub fn total_runs(&self) -> usize {
        self.points().len() * self.replications as usize
    }

    /// Replication k's seed, the same at every grid point (common random numbers).
    pub fn seeds(&self) -> Vec<u64> {
        (0..u64::from(self.replications))
            .map(|k| Streams::new(self.seed).replication_seed(k))
            .collect()
    }

    fn assignments(&self, point: &[f64]) -> Vec<String> {
        self.vary
            .iter()
            .zip(point)
            .map(|(v, x)| v.assignment(*x))
            .collect()
    }

    fn scenario_at(&self, point: &[f64]) -> Result<Scenario, crate::scenario::ScenarioError> {
        let mut sets = capacity_overrides(&self.overrides);
        sets.extend(self.assignments(point));
        Scenario::parse(&self.text, &sets)
    }

    /// Identifies the sweep: shards of different sweeps refuse to merge.
    pub fn fingerprint(&self) -> String {
        let text = serde_json::to_string(self).expect("a grid serialises");
        format!("{:016x}", fnv(FNV_OFFSET, text.as_bytes()))
    }
}

/// One run's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    pub run: usize,
    pub point: usize,
    pub replication: u32,
    pub seed: u64,
    pub values: Vec<f64>,
    pub slo: Vec<SloRow>,
    pub invariants_ok: bool,
}

/// What a shard writes (`shard-I-of-N.json`) and `sweep-merge` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardFile {
    pub fingerprint: String,
    pub shard: Shard,
    pub grid: Grid,
    pub runs: Vec<RunRow>,
}

/// Runs this shard's share of the grid on `threads` threads (each thread takes the next run
/// index from a shared counter); rows come back in run order whatever the thread count.
pub fn run_grid(
    grid: &Grid,
    shard: Shard,
    threads: usize,
    progress: bool,
) -> Result<Vec<RunRow>, String> {
    let points = grid.points();
    let seeds = grid.seeds();
    let reps = grid.replications as usize;
    let mine: Vec<usize> = (0..points.len() * reps)
        .filter(|r| shard.owns(*r))
        .collect();
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let rows = crate::pool::map(
        mine.len(),
        threads,
        |i| {
            let r = mine[i];
            let (point, k) = (r / reps, r % reps);
            grid.scenario_at(&points[point])
                .map_err(|e| e.to_string())
                .and_then(|sc| {
                    let opts = RunOptions {
                        seed: Some(seeds[k]),
                        progress: false,
                        ..RunOptions::default()
                    };
                    run(&sc, &opts).map_err(|e| e.to_string())
                })
                .map(|out| RunRow {
                    run: r,
                    point,
                    replication: k as u32,
                    seed: seeds[k],
                    values: points[point].clone(),
                    slo: out.summary.slo.clone(),
                    invariants_ok: out.summary.invariants.hold(),
                })
        },
        |n| {
            if progress {
                report_progress("sweep", n, mine.len(), started, tty);
            }
        },
    );
    if progress && tty {
        eprintln!();
    }
    rows.into_iter().collect()
}

pub(crate) fn report_progress(what: &str, done: usize, total: usize, started: Instant, tty: bool) {
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let rate = done as f64 / secs;
    let eta = (total - done) as f64 / rate.max(1e-9);
    let line = format!("{what} {done}/{total} runs  {rate:.2} runs/s  ETA {eta:.0} s");
    if tty {
        let width = 30;
        let filled = done * width / total.max(1);
        eprint!(
            "\r[{}{}] {line}   ",
            "#".repeat(filled),
            "-".repeat(width - filled)
        );
    } else if done * 10 / total.max(1) != (done - 1) * 10 / total.max(1) || done == total {
        eprintln!("{line}");
    }
}

/// The grid's summary: per point, each SLO metric's mean and band over replications.
pub fn summarise(grid: &Grid, runs: &[RunRow]) -> SweepSummary {
    let points = grid.points();
    let mut by_point: Vec<Vec<&RunRow>> = vec![Vec::new(); points.len()];
    for r in runs {
        by_point[r.point].push(r);
    }
    let summaries: Vec<PointSummary> = points
        .iter()
        .zip(&by_point)
        .map(|(values, rows)| {
            let metrics: Vec<MetricBand> = rows
                .first()
                .map(|first| {
                    first
                        .slo
                        .iter()
                        .enumerate()
                        .map(|(m, slo)| {
                            let samples: Vec<f64> = rows.iter().map(|r| r.slo[m].actual).collect();
                            MetricBand::of(&slo.name, slo.target, &samples)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let invariants_ok = rows.iter().all(|r| r.invariants_ok);
            PointSummary {
                values: values.clone(),
                meets: invariants_ok && !metrics.is_empty() && metrics.iter().all(|m| m.meets),
                metrics,
                invariants_ok,
            }
        })
        .collect();
    let recommended = if grid.vary.len() == 1 {
        summaries.iter().find(|p| p.meets).map(|p| p.values[0])
    } else {
        None
    };
    SweepSummary {
        scenario: grid.scenario.clone(),
        seed: grid.seed,
        seeds: grid.seeds(),
        fingerprint: grid.fingerprint(),
        replications: grid.replications,
        keys: grid.vary.iter().map(|v| v.key.clone()).collect(),
        points: summaries,
        recommended,
    }
}

/// Writes `sweep.json`, `sweep.parquet` (one row per run) and `capacity.html` into `dir`.
pub fn write_sweep(dir: &Path, grid: &Grid, runs: &[RunRow]) -> Result<SweepSummary, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let summary = summarise(grid, runs);
    let json = serde_json::to_string_pretty(&summary).expect("a summary serialises");
    write(&dir.join("sweep.json"), json.as_bytes())?;
    let html = capacity_html(&summary).map_err(|e| e.to_string())?;
    write(&dir.join("capacity.html"), html.as_bytes())?;
    write_parquet(&dir.join("sweep.parquet"), grid, runs).map_err(|e| e.to_string())?;
    Ok(summary)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn write_parquet(path: &Path, grid: &Grid, runs: &[RunRow]) -> PolarsResult<()> {
    let mut cols = vec![
        Column::new(
            "run".into(),
            runs.iter().map(|r| r.run as u64).collect::<Vec<_>>(),
        ),
        Column::new(
            "replication".into(),
            runs.iter().map(|r| r.replication).collect::<Vec<_>>(),
        ),
        Column::new(
            "seed".into(),
            runs.iter().map(|r| r.seed).collect::<Vec<_>>(),
        ),
    ];
    for (i, v) in grid.vary.iter().enumerate() {
        cols.push(Column::new(
            v.key.as_str().into(),
            runs.iter().map(|r| r.values[i]).collect::<Vec<_>>(),
        ));
    }
    if let Some(first) = runs.first() {
        for (m, slo) in first.slo.iter().enumerate() {
            cols.push(Column::new(
                slo.name.as_str().into(),
                runs.iter().map(|r| r.slo[m].actual).collect::<Vec<_>>(),
            ));
        }
    }
    cols.push(Column::new(
        "invariants_ok".into(),
        runs.iter().map(|r| r.invariants_ok).collect::<Vec<_>>(),
    ));
    let mut df = DataFrame::new(runs.len(), cols)?;
    ParquetWriter::new(std::fs::File::create(path)?).finish(&mut df)?;
    Ok(())
}

/// Writes this shard's runs to `dir/shard-I-of-N.json`.
pub fn write_shard(dir: &Path, grid: &Grid, shard: Shard, runs: Vec<RunRow>) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let file = ShardFile {
        fingerprint: grid.fingerprint(),
        shard,
        grid: grid.clone(),
        runs,
    };
    let json = serde_json::to_string(&file).expect("a shard serialises");
    write(
        &dir.join(format!("shard-{}-of-{}.json", shard.index, shard.count)),
        json.as_bytes(),
    )
}

/// Reads every `shard-*.json` under `dirs` and joins them: all from one sweep, each shard once,
/// every run present.
pub fn merge(dirs: &[&Path]) -> Result<(Grid, Vec<RunRow>), String> {
    let mut files: Vec<ShardFile> = Vec::new();
    for dir in dirs {
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
        let mut names: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("shard-") && n.ends_with(".json"))
            })
            .collect();
        names.sort();
        for path in names {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            let file: ShardFile = serde_json::from_str(&text)
                .map_err(|e| format!("{}: not a sweep shard: {e}", path.display()))?;
            files.push(file);
        }
    }
    let Some(first) = files.first() else {
        return Err("no shard-*.json files in the given folders".into());
    };
    let (fingerprint, count) = (first.fingerprint.clone(), first.shard.count);
    let grid = first.grid.clone();
    let mut seen = vec![false; count as usize];
    for f in &files {
        if f.fingerprint != fingerprint || f.grid.fingerprint() != fingerprint {
            return Err(format!(
                "shard {}/{} belongs to a different sweep (fingerprint {} vs {fingerprint})",
                f.shard.index, f.shard.count, f.fingerprint
            ));
        }
        if f.shard.count != count {
            return Err(format!(
                "shards split the sweep differently: {}/{} and ?/{count}",
                f.shard.index, f.shard.count
            ));
        }
        let slot = &mut seen[(f.shard.index - 1) as usize];
        if *slot {
            return Err(format!("shard {}/{count} given twice", f.shard.index));
        }
        *slot = true;
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        return Err(format!("shard {}/{count} is missing", missing + 1));
    }
    let mut runs: Vec<RunRow> = files.into_iter().flat_map(|f| f.runs).collect();
    runs.sort_by_key(|r| r.run);
    if runs.len() != grid.total_runs() || runs.iter().enumerate().any(|(i, r)| r.run != i) {
        return Err("the shards do not hold every run of the sweep exactly once".into());
    }
    Ok((grid, runs))
}
