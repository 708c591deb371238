//! The capacity commands through the binary, as a user runs them: `sim sweep` and
//! `sim sweep-merge`, and `sim plan` (on a small three-hour day whose demand peaks in the middle
//! hour, the plan meets every SLO on its confirming runs with fewer rider-hours than the smallest
//! flat staffing, and the scenario file it writes is the plan).

use std::path::Path;
use std::process::{Command, Output};

use sim::run::{run, RunOptions};
use sim::scenario::Scenario;

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("sim runs")
}

fn smoke() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios/smoke.toml")
        .display()
        .to_string()
}

fn ok(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

const VARY: &str = "hubs[*].riders=8..18:10";

/// The recommendation holds on seeds the sweep never used: every fresh run at the recommended
/// value meets every SLO, and the next lower grid value misses one on average.
#[test]
fn the_recommended_value_holds_on_fresh_seeds_and_the_next_lower_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let text = ok(&sim(&[
        "sweep",
        &smoke(),
        "--vary",
        VARY,
        "--replications",
        "4",
        "--out",
        d,
        "--quiet",
    ]));
    assert!(text.contains("recommended hubs[*].riders = 18"), "{text}");
    let summary: serde_json::Value =
        serde_json::from_slice(&read(dir.path(), "sweep.json")).unwrap();
    assert_eq!(summary["recommended"], 18.0);
    let used: Vec<u64> = summary["seeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    let fresh: Vec<u64> = (1000..1004).filter(|s| !used.contains(s)).collect();
    let door_p90 = |riders: u32, seed: u64| {
        let sc =
            Scenario::load(Path::new(&smoke()), &[format!("hubs[*].riders={riders}")]).unwrap();
        let out = run(
            &sc,
            &RunOptions {
                seed: Some(seed),
                progress: false,
                ..RunOptions::default()
            },
        )
        .unwrap();
        assert!(out.summary.invariants.hold());
        out.summary.slo
    };
    let mut lower_door = Vec::new();
    for seed in &fresh {
        let at = door_p90(18, *seed);
        assert!(at.iter().all(|s| s.met), "seed {seed} at 18 riders: {at:?}");
        let below = door_p90(8, *seed);
        let door = below
            .iter()
            .find(|s| s.name == "click_to_door_p90_min")
            .unwrap();
        lower_door.push(door.actual - door.target);
    }
    let mean_excess = lower_door.iter().sum::<f64>() / lower_door.len() as f64;
    println!("at 8 riders click-to-door p90 exceeds its SLO by {mean_excess:.1} min on average");
    assert!(mean_excess > 0.0, "{lower_door:?}");
    let html = String::from_utf8(read(dir.path(), "capacity.html")).unwrap();
    assert!(html.contains("id=\"recommended\"") && html.contains("hubs[*].riders = 18"));
    assert_eq!(
        html.matches("<div class=\"chart band\"><svg").count(),
        4,
        "one chart per SLO"
    );
    assert!(html.contains("95% confidence band") && html.contains("recommended 18"));
}

/// Results depend on the grid and seeds only: 1 and 2 threads, and 3 shards merged, write the
/// same sweep.json bytes and the same per-run table.
#[test]
fn threads_and_shards_give_identical_sweeps() {
    let root = tempfile::tempdir().unwrap();
    let dir = |n: &str| root.path().join(n);
    let d = |n: &str| dir(n).display().to_string();
    let base = [
        "--vary",
        "hubs[*].riders=6..12:6",
        "--vary",
        "hubs[*].pickers=2..3:1",
    ];
    let sweep = |extra: &[&str]| {
        let mut args = vec!["sweep", "--replications", "2", "--quiet"];
        let s = smoke();
        args.push(&s);
        args.extend(base);
        args.extend(extra);
        ok(&sim(&args))
    };
    sweep(&["--threads", "1", "--out", &d("one")]);
    sweep(&["--threads", "2", "--out", &d("two")]);
    for i in 1..=3 {
        let shard = format!("{i}/3");
        let text = sweep(&["--shard", &shard, "--out", &d(&format!("s{i}"))]);
        assert!(text.contains(&format!("shard-{i}-of-3.json")), "{text}");
    }
    let merged = ok(&sim(&[
        "sweep-merge",
        &d("s1"),
        &d("s2"),
        &d("s3"),
        "--out",
        &d("merged"),
    ]));
    assert!(merged.contains("grid points meet every SLO"), "{merged}");
    let one = read(&dir("one"), "sweep.json");
    assert!(!one.is_empty());
    assert_eq!(one, read(&dir("two"), "sweep.json"), "1 vs 2 threads");
    assert_eq!(
        one,
        read(&dir("merged"), "sweep.json"),
        "unsharded vs 3 shards merged"
    );
    let summary: serde_json::Value = serde_json::from_slice(&one).unwrap();
    assert_eq!(summary["points"].as_array().unwrap().len(), 4);
    let html = String::from_utf8(read(&dir("one"), "capacity.html")).unwrap();
    assert!(html.contains("id=\"heatmap\""), "two keys draw a heat map");
    // sweep.parquet: one row per run, in run order, equal for both thread counts.
    assert_eq!(
        read(&dir("one"), "sweep.parquet"),
        read(&dir("two"), "sweep.parquet")
    );
}

fn fails_with(args: &[&str], needle: &str) {
    let out = sim(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in {err}"
    );
}

#[test]
fn bad_sweep_input_exits_2_naming_the_problem() {
    let s = smoke();
    let sweep = |extra: &[&'static str], needle: &str| {
        let mut args = vec!["sweep", s.as_str()];
        args.extend(extra);
        fails_with(&args, needle);
    };
    sweep(&["--vary", "hubs[*].colour=1..2:1"], "colour");
    sweep(
        &["--vary", "demand.orders_per_hourz=10..20:5"],
        "orders_per_hourz",
    );
    sweep(&["--vary", "hubs[*].riders=10..4:2"], "reversed");
    sweep(
        &["--vary", "hubs[*].riders=4..10:0"],
        "step must be positive",
    );
    sweep(&["--vary", "hubs[*].riders=4..10"], "no step");
    sweep(&["--vary", "hubs[*].riders=a..10:1"], "not a number");
    sweep(
        &["--vary", "hubs[*].riders=4..6:1", "--replications", "0"],
        "--replications",
    );
    sweep(
        &["--vary", "hubs[*].riders=4..6:1", "--shard", "4/3"],
        "--shard",
    );
    sweep(
        &["--vary", "hubs[*].riders=4..6:1", "--shard", "0/3"],
        "--shard",
    );
    sweep(&[], "at least one --vary");
    sweep(&["--vary", "hubs[*].pickers=0..2:1"], "pickers");

    // Merging shards of two different sweeps.
    let root = tempfile::tempdir().unwrap();
    let d = |n: &str| root.path().join(n).display().to_string();
    for (name, range, shard) in [("a", "6..8:2", "1/2"), ("b", "6..10:2", "2/2")] {
        let vary = format!("hubs[*].riders={range}");
        ok(&sim(&[
            "sweep",
            &s,
            "--vary",
            &vary,
            "--replications",
            "1",
            "--shard",
            shard,
            "--out",
            &d(name),
            "--quiet",
        ]));
    }
    fails_with(&["sweep-merge", &d("a"), &d("b")], "different sweep");
    fails_with(&["sweep-merge", &d("a")], "shard 2/2 is missing");
    fails_with(&["sweep-merge", &d("empty")], "reading");
}

/// The smoke city over 11:00-14:00 with a lunch hour three times as busy as its shoulders.
const DAY: [&str; 4] = [
    "--set",
    "scenario.duration=\"3h\"",
    "--set",
    "demand.hourly_profile=[0,0,0,0,0,0,0,0,0,0,0,0.5,1.5,0.5,0,0,0,0,0,0,0,0,0,0]",
];

#[test]
fn the_plan_meets_every_slo_with_fewer_rider_hours_than_flat_staffing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let smoke = smoke();
    let mut args = vec![
        "plan",
        smoke.as_str(),
        "--replications",
        "3",
        "--out",
        d,
        "--quiet",
    ];
    args.extend(DAY);
    let stdout = ok(&sim(&args));
    let plan: reports::plan::PlanSummary =
        serde_json::from_slice(&std::fs::read(dir.path().join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan.hours, vec![11, 12, 13]);
    assert!(plan.plan.meets && plan.flat.meets, "{plan:#?}");
    assert!(
        plan.plan.rider_hours < plan.flat.rider_hours,
        "plan {} vs flat {} rider-hours",
        plan.plan.rider_hours,
        plan.flat.rider_hours
    );
    // The lunch hour needs more riders than the quiet hour before it.
    let riders_at = |i: usize| plan.plan.hubs.iter().map(|h| h.riders[i]).sum::<u32>();
    assert!(riders_at(1) > riders_at(0), "{:?}", plan.plan.hubs);
    assert!(stdout.contains("rider-hours"), "{stdout}");

    // plan.toml is the confirmed plan: rerun on the confirming seeds, it gives the same figures.
    let planned = Scenario::load(&dir.path().join("plan.toml"), &[]).unwrap();
    assert!(planned.hubs.iter().all(|h| h.riders_by_hour.is_some()));
    let door: Vec<f64> = plan
        .confirm_seeds
        .iter()
        .map(|seed| {
            let opts = RunOptions {
                seed: Some(*seed),
                ..RunOptions::default()
            };
            let out = run(&planned, &opts).unwrap();
            assert!(out.summary.invariants.hold());
            out.summary
                .slo
                .iter()
                .find(|s| s.name == "click_to_door_p90_min")
                .unwrap()
                .actual
        })
        .collect();
    let mean = door.iter().sum::<f64>() / door.len() as f64;
    let confirmed = plan
        .plan
        .confirm
        .iter()
        .find(|b| b.name == "click_to_door_p90_min")
        .unwrap();
    assert!(
        (mean - confirmed.mean).abs() < 1e-9,
        "{mean} vs {confirmed:?}"
    );

    let html = std::fs::read_to_string(dir.path().join("plan.html")).unwrap();
    assert!(html.contains("id=\"saved\"") && html.contains("<table id=\"riders\">"));
}

#[test]
fn bad_plan_input_exits_2_naming_the_problem() {
    let smoke = smoke();
    for (extra, needle) in [
        (
            vec!["--replications", "1"],
            "--replications must be at least 2",
        ),
        (vec!["--set", "hubs[0].ridrs=3"], "ridrs"),
        (vec!["--set", "hubs[0].riders_by_hour=[1,2]"], "not both"),
    ] {
        let mut args = vec!["plan", smoke.as_str(), "--quiet"];
        args.extend(extra);
        fails_with(&args, needle);
    }
}
