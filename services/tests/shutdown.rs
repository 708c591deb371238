//! The `qc` binary on SIGTERM: a request in flight finishes, new connections are refused,
//! and the process exits 0.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let store = qc_kit::testing::isolated_store_config();
    let port = qc_kit::testing::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_qc"))
        .args(["serve", "inventory"])
        .env("PORT", port.to_string())
        .env("REDIS_URL", &store.redis_url)
        .env("DATABASE_URL", &store.database_url)
        .env("QC_KEY_PREFIX", &store.key_prefix)
        .env("QC_DB_SCHEMA", &store.db_schema)
        .env("SHUTDOWN_TIMEOUT_SECS", "10")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    common::wait_ready(port, Duration::from_secs(30));

    // Start a request and send only half its body: it is in flight when SIGTERM arrives.
    let body = br#"{"hub_id":"hub-s","sku":"bread","quantity":12}"#;
    let mut inflight = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        inflight,
        "POST /admin/stock HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    inflight.write_all(&body[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_millis(300));

    // New connections are no longer accepted while the in-flight one drains.
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "listener still open during drain"
    );

    inflight.write_all(&body[10..]).unwrap();
    let mut reply = String::new();
    inflight.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains(r#""set":true"#), "{reply}");

    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut logs = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(logs.contains(r#""msg":"shutdown complete""#), "{logs}");
    for line in logs.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        for field in ["ts", "level", "service", "instance", "msg"] {
            assert!(v.get(field).is_some(), "{field} missing in {line}");
        }
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut conn = qc_kit::testing::redis_for_test(&store).await;
        let prefix = qc_kit::redis_kit::KeyPrefix::new(store.key_prefix.clone());
        let on_hand: Option<i64> = redis::cmd("GET")
            .arg(format!("{}inv:{{hub-s}}:stock:bread", store.key_prefix))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(on_hand, Some(12), "the drained request took effect");
        qc_kit::testing::delete_prefix(&mut conn, &prefix)
            .await
            .unwrap();
        qc_kit::pg::drop_schema(&store).await.unwrap();
    });
}
