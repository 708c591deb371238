//! The ETA-accuracy regression gate (issue #5): the fixed regression scenarios must hold the
//! committed baseline within its tolerances, and the gate must fail, naming the metric, the
//! baseline and the tolerance, when the model is degraded on purpose.

use std::path::PathBuf;

use sim::gate::{check, gate, load_baseline, measure, table};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn eta_accuracy_holds_against_the_baseline() {
    match gate(&root(), false) {
        Ok(report) => println!("{report}"),
        Err(report) => panic!(
            "ETA accuracy regressed (if on purpose: `cargo run -p sim -- eta-gate --bless`):\n{report}"
        ),
    }
}

#[test]
fn the_gate_bites_when_the_model_ignores_traffic() {
    let base = load_baseline(&root()).unwrap();
    let (name, _, degraded) = measure(
        &root(),
        "scenarios/regression/rain.toml",
        &["eta.model=no_traffic".to_string()],
    )
    .unwrap();
    println!("{}", table(&[(format!("{name}*"), degraded.clone())]));
    let violations = check(&name, &degraded, &base);
    println!("{}", violations.join("\n"));
    assert!(
        !violations.is_empty(),
        "a model without traffic passed the gate"
    );
    for v in &violations {
        assert!(v.contains("baseline") && (v.contains("tolerance")), "{v}");
    }
    assert!(
        violations.iter().any(|v| v.contains("mae_s")),
        "ignoring the rain must cost MAE beyond the tolerance: {violations:?}"
    );
}

#[test]
fn an_uncalibrated_model_misses_the_coverage_bands() {
    let base = load_baseline(&root()).unwrap();
    let (name, _, raw) = measure(
        &root(),
        "scenarios/regression/lunch.toml",
        &["eta.model=uncalibrated".to_string()],
    )
    .unwrap();
    println!("{}", table(&[(format!("{name}*"), raw.clone())]));
    let violations = check(&name, &raw, &base);
    assert!(
        violations.iter().any(|v| v.contains("coverage_")),
        "{violations:?}"
    );
}

#[test]
fn the_gate_bites_when_every_re_estimate_moves_the_shown_eta() {
    let base = load_baseline(&root()).unwrap();
    let (name, _, churn) = measure(
        &root(),
        "scenarios/regression/lunch.toml",
        &["eta.model=always_revise".to_string()],
    )
    .unwrap();
    println!("{}", table(&[(format!("{name}*"), churn.clone())]));
    let violations = check(&name, &churn, &base);
    println!("{}", violations.join("\n"));
    assert!(
        violations.iter().any(|v| v.contains("revision_rate")),
        "{violations:?}"
    );
}
