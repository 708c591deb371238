//! The customer stream in a real browser (issue #11): a page's `EventSource` in headless
//! Chromium receives the positions a driver sends over WebSocket, with the ids the server gave
//! them; then a screenshot of the page replaying the trail. Chromium comes from Debian's
//! `chromium` package (`scripts/ensure-chromium.sh`, run by the test command); `CHROMIUM` names
//! another binary.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::{get, post};
use qc_kit::testing::{delete_prefix, isolated_store_config, redis_for_test};
use qc_kit::ManualClock;
use qc_tests::tracking::{fix, fix_ms, send, TestTracking};
use qc_tests::T0_MS;
use serde_json::Value;
use tokio::sync::Notify;

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Order o-b</title>
<style>body{font:15px sans-serif;margin:24px}td,th{padding:4px 10px;border-bottom:1px solid #ddd}
#state{font-weight:bold}</style></head>
<body><h2>Tracking order o-b</h2><p>Stream: <span id="state">connecting</span></p>
<table><thead><tr><th>id</th><th>seq</th><th>lat</th><th>lng</th><th>speed m/s</th><th>bearing</th></tr></thead>
<tbody id="rows"></tbody></table>
<script>
const want = Number(new URLSearchParams(location.search).get('want') || 5);
const replay = new URLSearchParams(location.search).get('replay');
const url = '/sse/order/tracking?order_id=o-b&user_id=u-b' + (replay ? '&last_event_id=0' : '');
const got = [];
const es = new EventSource(url);
es.addEventListener('connected', () => { document.getElementById('state').textContent = 'connected'; });
es.addEventListener('position', (e) => {
  const p = JSON.parse(e.data);
  got.push({id: e.lastEventId, seq: p.seq});
  const tr = document.createElement('tr');
  for (const v of [e.lastEventId, p.seq, p.lat.toFixed(6), p.lng.toFixed(6), p.speed, p.bearing]) {
    const td = document.createElement('td'); td.textContent = v; tr.appendChild(td);
  }
  document.getElementById('rows').appendChild(tr);
  document.getElementById('state').textContent = got.length + ' positions';
  if (got.length === want) {
    if (replay) { es.close(); document.getElementById('state').textContent += ', replayed from the trail'; }
    else { fetch('/test/report', {method: 'POST', body: JSON.stringify(got)}); }
  }
});
</script></body></html>"#;

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_source_in_chromium_receives_positions_sent_over_websocket() {
    let store = isolated_store_config();
    let clock = Arc::new(ManualClock::new(T0_MS));
    let report: Arc<(Mutex<Option<Value>>, Notify)> = Arc::default();
    let r = report.clone();
    let extra = axum::Router::new()
        .route("/test/page", get(|| async { axum::response::Html(PAGE) }))
        .route(
            "/test/report",
            post(move |body: String| async move {
                *r.0.lock().unwrap() = serde_json::from_str(&body).ok();
                r.1.notify_one();
            }),
        );
    let t = TestTracking::start_with(&store, &[], clock.clone(), Some(extra)).await;
    let profile = tempdir();
    let mut browser = tokio::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            &format!("--user-data-dir={profile}"),
            &format!("{}/test/page?want=5", t.base),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{} not found ({e}): run scripts/ensure-chromium.sh",
                chromium()
            )
        });
    // The page's stream is open once the fan-out has a client.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while t.app.fanout.clients() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the page never connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ws = t.ws("d-b", "o-b").await;
    let mut acked = Vec::new();
    for i in 0..5 {
        clock.set_ms(fix_ms(i));
        let r = send(&mut ws, fix(i).to_string()).await;
        acked.push(r["seq"].as_i64().unwrap());
    }
    tokio::time::timeout(Duration::from_secs(30), report.1.notified())
        .await
        .expect("the page reported what it received");
    let got = report.0.lock().unwrap().clone().unwrap();
    let ids: Vec<i64> = got
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().parse().unwrap())
        .collect();
    let seqs: Vec<i64> = got
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, acked, "EventSource's lastEventId is each event's seq");
    assert_eq!(seqs, acked);
    let _ = browser.kill().await;

    // A screenshot of the page replaying the trail (target/tracking-sse.png).
    let shot = format!("{}/../target/tracking-sse.png", env!("CARGO_MANIFEST_DIR"));
    let shooting = tokio::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            &format!("--user-data-dir={profile}"),
            "--window-size=900,420",
            "--virtual-time-budget=3000",
            &format!("--screenshot={shot}"),
            &format!("{}/test/page?replay=1&want=5", t.base),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    let status = tokio::time::timeout(Duration::from_secs(60), shooting)
        .await
        .expect("the screenshot within 60 s")
        .unwrap();
    assert!(status.success());
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000, "{shot}");
    t.stop().await;
    let mut conn = redis_for_test(&store).await;
    delete_prefix(
        &mut conn,
        &qc_kit::redis_kit::KeyPrefix::new(store.key_prefix.clone()),
    )
    .await
    .unwrap();
    let _ = std::fs::remove_dir_all(&profile);
}

fn tempdir() -> String {
    let dir = std::env::temp_dir().join(format!("qc-chromium-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.to_string_lossy().into_owned()
}
