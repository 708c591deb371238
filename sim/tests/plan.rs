//! `sim plan` through the binary, as a user runs it: on a small three-hour day whose demand
//! peaks in the middle hour, the plan meets every SLO on its confirming runs with fewer
//! rider-hours than the smallest flat staffing, and the scenario file it writes is the plan.

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
    let out = sim(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
        let out = sim(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
