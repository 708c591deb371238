//! Starting against a Redis that accepts connections but never answers: while the service waits
//! it answers `/health` 200 and 503 elsewhere; then it gives up with a message naming the
//! (redacted) URL and exits non-zero. No credential reaches the logs.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_service_waiting_for_its_stores_is_alive_but_not_ready_then_fails_clearly() {
    // A "Redis" that accepts and never replies.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming().flatten() {
            held.push(c);
        }
    });
    let port = qc_kit::testing::free_port();
    let store = qc_kit::testing::isolated_store_config();
    let mut child = Command::new(env!("CARGO_BIN_EXE_qc"))
        .args(["serve", "inventory"])
        .env("PORT", port.to_string())
        .env(
            "REDIS_URL",
            format!("redis://:hunter2@127.0.0.1:{silent_port}/"),
        )
        .env("REDIS_TIMEOUT_MS", "3000")
        .env("DATABASE_URL", &store.database_url)
        .env("QC_DB_SCHEMA", &store.db_schema)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(2);
    let health = loop {
        if let Some(r) = common::get(port, "/health") {
            break r;
        }
        assert!(Instant::now() < deadline, "no answer while starting");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let ready = common::get(port, "/ready").unwrap();
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(
        ready.contains(r#""code":"UNAVAILABLE""#) && ready.contains("starting"),
        "{ready}"
    );
    let other = common::get(port, "/stock/h/s").unwrap();
    assert!(other.starts_with("HTTP/1.1 503"), "{other}");
    assert!(
        other.contains(r#""request_id":""#) && !other.contains(r#""request_id":"""#),
        "{other}"
    );

    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let mut logs = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(
        logs.contains(&format!("redis://***@127.0.0.1:{silent_port}/")),
        "{logs}"
    );
    assert!(logs.contains("cannot start"), "{logs}");
    assert!(!logs.contains("hunter2"), "a credential leaked: {logs}");
}

#[test]
fn invalid_configuration_is_listed_by_name_and_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_qc"))
        .args(["serve", "inventory"])
        .env("PORT", "70000")
        .env("QC_KEY_PREFIX", "bad{prefix")
        .env("LOG_LEVEL", "loud")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for name in ["PORT", "QC_KEY_PREFIX", "LOG_LEVEL"] {
        assert!(err.contains(name), "{name} not named in: {err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_qc"))
        .args(["serve", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown service"));
}
