//! `sim`: run, validate and benchmark scenarios (10-simulator §1).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use sim::engine::Queue;
use sim::run::{run, write_outputs, Backend, RunOptions};
use sim::scenario::Scenario;

/// A run allocates many small, short-lived objects (orders, holds, log strings): mimalloc's
/// thread-local free lists make that a fraction of glibc malloc's cost (BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `println!` that ignores a closed stdout (`sim sweep ... | head -1` must not panic).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

const USAGE: &str = "usage:
  sim run      <scenario.toml> [--seed N] [--backend memory|live] [--out DIR] [--set key=value]... [--keep] [--quiet]
  sim validate <scenario.toml> [--set key=value]...
  sim sweep    <scenario.toml> --vary KEY=FROM..TO:STEP [--vary ...] [--replications N] [--threads T]
               [--shard I/N] [--out DIR] [--set key=value]...
  sim sweep-merge <DIR>... [--out DIR]      joins the shard-*.json files of a sharded sweep
  sim plan     <scenario.toml> [--replications N] [--threads T] [--out DIR] [--set key=value]...
               per hub and hour, the fewest pickers and riders that meet every SLO
  sim bench-engine [--events N]
  sim eta-gate [--bless] [--root DIR]   ETA-accuracy regression gate (exit 1 on a regression);
                                        --bless rewrites reports/baselines/eta_accuracy.json";

struct Args {
    command: String,
    file: Option<PathBuf>,
    seed: Option<u64>,
    backend: Backend,
    out: Option<PathBuf>,
    sets: Vec<String>,
    keep: bool,
    quiet: bool,
    events: u64,
    bless: bool,
    root: PathBuf,
    vary: Vec<String>,
    replications: Option<u32>,
    threads: Option<usize>,
    shard: Option<String>,
    /// Further positional arguments (`sweep-merge`'s folders).
    rest: Vec<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let command = it.next().ok_or("missing command")?;
    let mut a = Args {
        command,
        file: None,
        seed: None,
        backend: Backend::Memory,
        out: None,
        sets: Vec::new(),
        keep: false,
        quiet: false,
        events: 20_000_000,
        bless: false,
        root: PathBuf::from("."),
        vary: Vec::new(),
        replications: None,
        threads: None,
        shard: None,
        rest: Vec::new(),
    };
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--seed" => {
                a.seed = Some(
                    value("--seed")?
                        .parse()
                        .map_err(|_| "--seed takes an unsigned integer")?,
                )
            }
            "--backend" => {
                let v = value("--backend")?;
                a.backend = Backend::parse(&v)
                    .ok_or(format!("--backend must be memory or live, got {v:?}"))?;
            }
            "--out" => a.out = Some(PathBuf::from(value("--out")?)),
            "--set" => a.sets.push(value("--set")?),
            "--keep" => a.keep = true,
            "--bless" => a.bless = true,
            "--root" => a.root = PathBuf::from(value("--root")?),
            "--quiet" => a.quiet = true,
            "--events" => {
                a.events = value("--events")?
                    .parse()
                    .map_err(|_| "--events takes an integer")?
            }
            "--vary" => a.vary.push(value("--vary")?),
            "--replications" => {
                a.replications = Some(
                    value("--replications")?
                        .parse()
                        .map_err(|_| "--replications takes an unsigned integer")?,
                )
            }
            "--threads" => {
                a.threads = Some(
                    value("--threads")?
                        .parse()
                        .ok()
                        .filter(|t| *t > 0)
                        .ok_or("--threads takes a positive integer")?,
                )
            }
            "--shard" => a.shard = Some(value("--shard")?),
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            s if a.file.is_none() => a.file = Some(PathBuf::from(s)),
            s if a.command == "sweep-merge" => a.rest.push(PathBuf::from(s)),
            s => return Err(format!("unexpected argument {s:?}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match args.command.as_str() {
        "run" | "validate" => {
            let Some(file) = &args.file else {
                eprintln!("error: {} needs a scenario file\n{USAGE}", args.command);
                return ExitCode::from(2);
            };
            let sc = match Scenario::load(file, &args.sets) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{}: invalid scenario:\n{e}", file.display());
                    return ExitCode::from(2);
                }
            };
            if args.command == "validate" {
                say!(
                    "{}: ok ({} hubs, {} SKUs, {})",
                    file.display(),
                    sc.hubs.len(),
                    sc.catalog.skus,
                    sc.scenario.duration
                );
                return ExitCode::SUCCESS;
            }
            run_command(&sc, &args)
        }
        "sweep" => sweep_command(&args),
        "sweep-merge" => merge_command(&args),
        "plan" => plan_command(&args),
        "bench-engine" => {
            bench_engine(args.events);
            ExitCode::SUCCESS
        }
        "eta-gate" => match sim::gate::gate(&args.root, args.bless) {
            Ok(report) => {
                say!("{report}");
                ExitCode::SUCCESS
            }
            Err(report) => {
                eprintln!("{report}");
                ExitCode::from(1)
            }
        },
        other => {
            eprintln!("error: unknown command {other:?}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run_command(sc: &Scenario, args: &Args) -> ExitCode {
    let opts = RunOptions {
        backend: args.backend,
        seed: args.seed,
        keep: args.keep,
        progress: !args.quiet,
    };
    let seed = args.seed.unwrap_or(sc.scenario.seed);
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("reports/runs/{}-{seed}", sc.scenario.name)));
    let out = match run(sc, &opts) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = write_outputs(&out, &dir) {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    print_summary(&out, &dir);
    if out.summary.invariants.hold() {
        ExitCode::SUCCESS
    } else {
        eprintln!("INVARIANTS VIOLATED:");
        for d in &out.summary.invariants.details {
            eprintln!("  {d}");
        }
        ExitCode::from(1)
    }
}

/// Exit 2 with the message: bad input.
fn usage_error(e: &str) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

fn sweep_command(args: &Args) -> ExitCode {
    use sim::sweep::{run_grid, write_shard, Grid, Shard, Vary};
    let Some(file) = &args.file else {
        return usage_error(&format!("sweep needs a scenario file\n{USAGE}"));
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return usage_error(&format!("cannot read {}: {e}", file.display())),
    };
    let vary: Result<Vec<Vary>, String> = args.vary.iter().map(|v| Vary::parse(v)).collect();
    let shard = match args.shard.as_deref().map(Shard::parse).transpose() {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    let grid =
        match vary.and_then(|v| Grid::new(&text, &args.sets, v, args.replications.unwrap_or(5))) {
            Ok(g) => g,
            Err(e) => return usage_error(&format!("{}: {e}", file.display())),
        };
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("reports/sweeps/{}", grid.scenario)));
    let started = Instant::now();
    let runs = match run_grid(&grid, shard.unwrap_or(Shard::WHOLE), threads, !args.quiet) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let secs = started.elapsed().as_secs_f64();
    say!(
        "{} runs on {threads} thread(s) in {secs:.2} s ({:.2} runs/s)",
        runs.len(),
        runs.len() as f64 / secs.max(1e-9)
    );
    if let Some(shard) = shard {
        return match write_shard(&dir, &grid, shard, runs) {
            Ok(()) => {
                say!(
                    "wrote {}/shard-{}-of-{}.json (join the shards with sim sweep-merge)",
                    dir.display(),
                    shard.index,
                    shard.count
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        };
    }
    finish_sweep(&dir, &grid, &runs)
}

fn plan_command(args: &Args) -> ExitCode {
    use sim::plan::{plan, PlanError, PlanOptions};
    let Some(file) = &args.file else {
        return usage_error(&format!("plan needs a scenario file\n{USAGE}"));
    };
    // Runs start from the capacity defaults (no GPS); plan.toml keeps the user's scenario.
    let docs = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read: {e}"))
        .and_then(|t| {
            let doc = |sets: &[String]| {
                Scenario::document(&t, sets).map_err(|e| format!("invalid scenario:\n{e}"))
            };
            Ok((
                doc(&sim::sweep::capacity_overrides(&args.sets))?,
                doc(&args.sets)?,
            ))
        });
    let (run_doc, user_doc) = match docs {
        Ok(d) => d,
        Err(e) => return usage_error(&format!("{}: {e}", file.display())),
    };
    let opts = PlanOptions {
        replications: args.replications.unwrap_or(5),
        threads: args.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        }),
        progress: !args.quiet,
    };
    let started = Instant::now();
    let (summary, planned) = match plan(&run_doc, &user_doc, &opts) {
        Ok(p) => p,
        Err(PlanError::Input(e)) => return usage_error(&format!("{}: {e}", file.display())),
        Err(PlanError::Failed(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("reports/plans/{}", summary.scenario)));
    let header = format!(
        "# The staffing plan `sim plan` found for {} (see plan.json and plan.html beside it).\n",
        file.display()
    );
    let written = std::fs::create_dir_all(&dir)
        .map_err(|e| e.to_string())
        .and_then(|()| sim::plan::write_plan(&dir, &summary, &planned, &header));
    if let Err(e) = written {
        eprintln!("error: writing {}: {e}", dir.display());
        return ExitCode::from(1);
    }
    say!(
        "{} runs on {} thread(s) in {secs:.1} s",
        summary.runs,
        opts.threads
    );
    say!(
        "plan: {:.1} rider-hours, {:.1} picker-hours; smallest flat staffing: {:.1} and {:.1}; \
         saved {:.1} rider-hours ({:.0}%)",
        summary.plan.rider_hours,
        summary.plan.picker_hours,
        summary.flat.rider_hours,
        summary.flat.picker_hours,
        summary.rider_hours_saved,
        summary.rider_hours_saved / summary.flat.rider_hours.max(1e-9) * 100.0
    );
    say!(
        "wrote {}/{{plan.json, plan.html, plan.toml}}",
        dir.display()
    );
    if summary.plan.meets && summary.flat.meets {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: the confirming runs missed an SLO (see plan.html)");
        ExitCode::from(1)
    }
}

fn merge_command(args: &Args) -> ExitCode {
    let mut dirs: Vec<&std::path::Path> = args.file.iter().map(PathBuf::as_path).collect();
    dirs.extend(args.rest.iter().map(PathBuf::as_path));
    if dirs.is_empty() {
        return usage_error(&format!("sweep-merge needs the shards' folders\n{USAGE}"));
    }
    let (grid, runs) = match sim::sweep::merge(&dirs) {
        Ok(m) => m,
        Err(e) => return usage_error(&e),
    };
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("reports/sweeps/{}", grid.scenario)));
    finish_sweep(&dir, &grid, &runs)
}

fn finish_sweep(
    dir: &std::path::Path,
    grid: &sim::sweep::Grid,
    runs: &[sim::sweep::RunRow],
) -> ExitCode {
    match sim::sweep::write_sweep(dir, grid, runs) {
        Ok(summary) => {
            match (summary.keys.len(), summary.recommended) {
                (1, Some(v)) => say!(
                    "recommended {} = {v} (smallest value whose bands meet every SLO)",
                    summary.keys[0]
                ),
                (1, None) => say!(
                    "no value of {} in the grid meets every SLO",
                    summary.keys[0]
                ),
                _ => say!(
                    "{} of {} grid points meet every SLO",
                    summary.points.iter().filter(|p| p.meets).count(),
                    summary.points.len()
                ),
            }
            say!(
                "wrote {}/{{sweep.json, sweep.parquet, capacity.html}}",
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn print_summary(out: &sim::run::RunOutput, dir: &std::path::Path) {
    let s = &out.summary;
    let o = &s.orders;
    let sv = &s.service;
    say!(
        "\n{} (seed {}, {} backend)",
        s.scenario.name,
        s.scenario.seed,
        s.engine.backend
    );
    say!("  orders           placed {}  delivered {}  stockout {}  payment failed {}  abandoned {}  lost {}  unserviceable {}",
        o.placed, o.delivered, o.cancelled_stockout, o.cancelled_payment, o.cancelled_abandoned, o.cancelled_dispatch, o.unserviceable);
    if o.handed_over > 0 {
        say!("  handed over      {} (dispatch off)", o.handed_over);
    }
    if !o.lost_by_reason.is_empty() {
        let reasons: Vec<String> = o
            .lost_by_reason
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        say!("  lost by reason   {}", reasons.join("  "));
    }
    say!(
        "  wait for picker  p50 {:.0}s  p90 {:.0}s  p99 {:.0}s",
        sv.pick_wait_s.p50,
        sv.pick_wait_s.p90,
        sv.pick_wait_s.p99
    );
    say!(
        "  click→handover   p50 {:.0}s  p90 {:.0}s  p99 {:.0}s",
        sv.click_to_handover_s.p50,
        sv.click_to_handover_s.p90,
        sv.click_to_handover_s.p99
    );
    say!(
        "  click→door       p50 {:.1} min  p90 {:.1} min  p99 {:.1} min  within 10 min {:.0}%  within 15 min {:.0}%",
        sv.click_to_door_s.p50 / 60.0,
        sv.click_to_door_s.p90 / 60.0,
        sv.click_to_door_s.p99 / 60.0,
        sv.within_10_min * 100.0,
        sv.within_15_min * 100.0
    );
    say!("  pickers busy     {:.0}%", sv.picker_utilisation * 100.0);
    let (r, d) = (&s.riders, &s.dispatch);
    say!(
        "  riders           {} riders {:.0}% busy, {:.2} orders/rider-hour, offers {} (rejected {}, timed out {}), reassignments {}, re-pooled {}",
        r.riders, r.utilisation * 100.0, r.orders_per_rider_hour, r.offers, r.offers_rejected, r.offers_timed_out, r.reassignments, r.repooled
    );
    say!(
        "  dispatch         {} matcher, {} batches, batching {:.0}%, pickup {:.2} km, greedy costs {:.1}% more than optimal",
        d.matcher, d.batches, d.batching_rate * 100.0, d.mean_pickup_km, d.greedy_gap_pct
    );
    let e = &s.eta;
    say!(
        "  eta              {} model, MAE {:.0}s (naive {:.0}s, {:.0}% better), bias {:+.0}s, coverage p50 {:.2} p80 {:.2} p95 {:.2}, revision rate {:.1}%",
        e.model,
        e.mae_s,
        e.naive_mae_s,
        e.mae_improvement_vs_naive * 100.0,
        e.bias_s,
        e.coverage_p50,
        e.coverage_p80,
        e.coverage_p95,
        e.revision_rate * 100.0
    );
    let g = &s.gps;
    if g.fixes_sent > 0 {
        say!(
            "  gps              {} fixes through Tracking, raw RMSE {:.1} m, filtered {:.1} m ({:.0}% lower), outliers rejected {:.1}%, good fixes refused {:.1} per 10k",
            g.fixes_sent,
            g.raw_rmse_m,
            g.filtered_rmse_m,
            g.filtered_improvement * 100.0,
            g.outliers_rejected_share * 100.0,
            g.good_rejected_per_10k
        );
    }
    let c = &s.checkout;
    say!(
        "  checkout         {} calls, {} sagas, {} confirmed ({:.1}%), failed {:?}, compensated {} (failures {}), replays {}, retries {}, outbox {} of {} relayed (lag p50 {} ms, max {} ms), charges without order {}, confirmed without dispatch row {}",
        c.calls,
        c.sagas,
        c.confirmed,
        c.conversion * 100.0,
        c.failed_by_code,
        c.compensated,
        c.compensation_failures,
        c.replays,
        c.retries,
        c.events_sent,
        c.events,
        c.outbox_lag_p50_ms,
        c.outbox_lag_max_ms,
        c.charges_without_order,
        c.confirmed_without_dispatch_row
    );
    for slo in &s.slo {
        say!(
            "  SLO {:<16} target {:<8} actual {:<8} {}",
            slo.name,
            slo.target,
            slo.actual,
            if slo.met { "met" } else { "MISSED" }
        );
    }
    let inv = &s.invariants;
    say!("  invariants       oversell {}  non-terminal {}  conservation {}  redis/pg drift {}  dispatch refusals {}  dispatch drift {}  -> {}",
        inv.oversell, inv.non_terminal_orders, inv.conservation_violations, inv.redis_pg_drift, inv.dispatch_refusals, inv.dispatch_drift, if inv.hold() { "ok" } else { "VIOLATED" });
    for (op, l) in &s.latency {
        say!(
            "  latency {:<10} n {}  p50 {}µs  p99 {}µs  p99.9 {}µs",
            op,
            l.count,
            l.p50_us,
            l.p99_us,
            l.p999_us
        );
    }
    say!(
        "  engine           {} events in {} ms ({:.2}M events/s, {:.0}× real time)",
        out.engine.events,
        out.engine.wall_ms,
        out.engine.events_per_s / 1e6,
        out.engine.speedup
    );
    say!(
        "  wrote            {}/{{events.parquet, summary.json, engine.json, report.html}}",
        dir.display()
    );
}

/// A pure event benchmark: a steady population of timers, each rescheduling itself.
fn bench_engine(events: u64) {
    let mut q: Queue<u32> = Queue::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..10_000u32 {
        q.at(i64::from(i), i);
    }
    let started = Instant::now();
    let mut checksum = 0u64;
    while q.processed() < events {
        let (t, id) = q.pop().expect("population is constant");
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        checksum = checksum.wrapping_add(u64::from(id));
        q.at(t + 1 + (x % 1000) as i64, id);
    }
    let secs = started.elapsed().as_secs_f64();
    say!(
        "engine: {events} events in {:.3} s = {:.2} M events/s on one core (queue of 10000; checksum {checksum})",
        secs,
        events as f64 / secs / 1e6
    );
}
