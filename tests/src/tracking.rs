//! Harness for Tracking: an instance on a loopback socket over live Redis (a fresh prefix, or a
//! shared one for several instances), a driver's WebSocket, a customer's SSE reader, and fixes
//! along a straight street.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use qc_kit::config::{EnvSource, StoreConfig};
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::ManualClock;
use qc_services::platform::config::PlatformConfig;
use qc_services::platform::shutdown::Shutdown;
use qc_services::tracking::{self, TrackingApp, TrackingConfig};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::T0_MS;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A tracking instance under test.
pub struct TestTracking {
    pub app: Arc<TrackingApp>,
    pub base: String,
    pub store: StoreConfig,
    pub shutdown: Shutdown,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
    pub jobs: Vec<tokio::task::JoinHandle<()>>,
}

impl TestTracking {
    /// On `store` (shared by instances of one test) with `env` settings and `clock`; `extra`
    /// routes (a test page) are served beside the service's.
    pub async fn start_with(
        store: &StoreConfig,
        env: &[(&str, &str)],
        clock: Arc<ManualClock>,
        extra: Option<axum::Router>,
    ) -> Self {
        let mut cfg =
            PlatformConfig::from_env(&EnvSource::from_pairs([("INSTANCE_ID", "test")])).unwrap();
        cfg.store = store.clone();
        let tcfg = TrackingConfig::from_env(&EnvSource::from_pairs(env.iter().copied())).unwrap();
        let shutdown = Shutdown::new();
        let (app, mut svc) = tracking::build(&cfg, tcfg, clock, shutdown.clone())
            .await
            .unwrap_or_else(|e| panic!("tracking did not start: {e}"));
        let jobs = std::mem::take(&mut svc.jobs);
        if let Some(r) = extra {
            svc.router = svc.router.merge(r);
        }
        let (base, server) = crate::serve_loopback(svc, &shutdown).await;
        Self {
            app,
            base,
            store: store.clone(),
            shutdown,
            server,
            jobs,
        }
    }

    pub async fn start(store: &StoreConfig, clock: Arc<ManualClock>) -> Self {
        Self::start_with(store, &[], clock, None).await
    }

    pub fn ws_url(&self, driver: &str, order: &str) -> String {
        format!(
            "{}/ws/driver/location?driver_id={driver}&order_id={order}",
            self.base.replace("http://", "ws://")
        )
    }

    /// A driver's socket (panics if the handshake is refused).
    pub async fn ws(&self, driver: &str, order: &str) -> Ws {
        connect(&self.ws_url(driver, order)).await
    }

    pub fn prefix(&self) -> KeyPrefix {
        KeyPrefix::new(self.store.key_prefix.clone())
    }

    /// Stops the server and its jobs; Ok when they all ended.
    pub async fn stop(self) {
        self.shutdown.trigger();
        let _ = self.server.await;
        for j in self.jobs {
            let _ = j.await;
        }
    }
}

pub async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url)
        .await
        .unwrap_or_else(|e| panic!("ws connect {url}: {e}"))
        .0
}

/// The HTTP status a refused WebSocket handshake got.
pub async fn refused_status(url: &str) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => panic!("the handshake to {url} was accepted"),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("ws connect {url}: {e}"),
    }
}

/// The device time of fix `i` (5 s apart from T0).
pub fn fix_ms(i: i64) -> i64 {
    T0_MS + i * 5_000
}

/// Fix `i` of a rider going north at 10 m/s from (-6.2, 106.8), 8 m accuracy.
pub fn fix(i: i64) -> Value {
    json!({"lat": -6.2 + (i as f64 * 50.0) / 111_195.0, "lng": 106.8, "accuracy": 8.0,
           "speed": 10.0, "bearing": 0.0,
           "timestamp": qc_tracking::model::rfc3339_ms(fix_ms(i))})
}

/// Sends a text frame and reads the reply (skipping pings).
pub async fn send(ws: &mut Ws, text: String) -> Value {
    ws.send(Message::text(text)).await.unwrap();
    reply(ws).await
}

/// The next text reply.
pub async fn reply(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a reply within 5 s")
            .expect("the socket is open")
            .expect("a frame");
        match m {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a reply, got {other:?}"),
        }
    }
}

/// Reads until the server closes; the close code (skipping pings and replies).
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a close within 5 s")
        {
            Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// One SSE frame.
#[derive(Debug, Clone, PartialEq)]
pub struct SseFrame {
    pub id: Option<i64>,
    pub event: String,
    pub data: String,
    pub comment: Option<String>,
    pub retry: Option<u64>,
}

impl SseFrame {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

/// A customer's stream, read frame by frame.
pub struct Sse {
    pub status: u16,
    body: Option<futures::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>>,
    buf: String,
}

impl Sse {
    pub async fn open(base: &str, query: &str, last_event_id: Option<i64>) -> Sse {
        let mut req = reqwest::Client::new().get(format!("{base}/sse/order/tracking?{query}"));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        Sse {
            status,
            body: Some(resp.bytes_stream().map(|r| r.map(|b| b.to_vec())).boxed()),
            buf: String::new(),
        }
    }

    /// The next frame, or None when the stream ended (panics after 5 s of silence).
    pub async fn next(&mut self) -> Option<SseFrame> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                let mut f = SseFrame {
                    id: None,
                    event: String::new(),
                    data: String::new(),
                    comment: None,
                    retry: None,
                };
                for line in raw.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        f.id = Some(v.parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        f.event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        f.data = v.to_string();
                    } else if let Some(v) = line.strip_prefix("retry: ") {
                        f.retry = Some(v.parse().unwrap());
                    } else if let Some(v) = line.strip_prefix(':') {
                        f.comment = Some(v.trim().to_string());
                    }
                }
                return Some(f);
            }
            let body = self.body.as_mut()?;
            let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
                .await
                .expect("an SSE frame within 5 s");
            match chunk {
                Some(Ok(b)) => self.buf.push_str(std::str::from_utf8(&b).unwrap()),
                _ => {
                    self.body = None;
                    return None;
                }
            }
        }
    }

    /// The next frame that carries an event (skipping keep-alives).
    pub async fn next_event(&mut self) -> Option<SseFrame> {
        loop {
            let f = self.next().await?;
            if f.comment.is_none() {
                return Some(f);
            }
        }
    }
}
