//! The Tracking service (09-tracking, port 8099): drivers' GPS over WebSocket through the
//! `qc-tracking` tracker (validate → filter → store → publish in Redis), customers' SSE streams
//! fed by Redis pub/sub (so any instance serves any order), position, history and the status
//! endpoint Dispatch calls. No state outside Redis except the tracker's per-driver filters and
//! this instance's sockets and streams.

mod fanout;
mod handlers;
mod sse;
mod ws;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use qc_kit::config::{ConfigError, EnvReader, EnvSource};
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::SharedClock;
use qc_tracking::token::{self, Role, TokenError};
use qc_tracking::{KfParams, Limits, RedisTrackingStore, Tracker};
use redis::aio::ConnectionManager;
use tokio::sync::{oneshot, Notify};

pub use fanout::{Event, FanoutLimits};

use crate::platform::config::{PlatformConfig, ServiceId};
use crate::platform::error::ApiError;
use crate::platform::middleware::internal_only;
use crate::platform::ops::ServiceCtx;
use crate::platform::server::{assemble, BuiltService};
use crate::platform::shutdown::Shutdown;

/// `TRACKING_*` settings (09; README lists them).
#[derive(Debug, Clone, PartialEq)]
pub struct TrackingConfig {
    pub auth_required: bool,
    /// `HMAC_SECRET`: signs drivers' and customers' tokens (required when auth is on).
    pub hmac_secret: String,
    pub enforce_assignment: bool,
    pub limits: Limits,
    pub kf: KfParams,
    pub trail_max: usize,
    pub sse_keepalive_ms: u64,
    pub sse_queue: usize,
    pub sse_per_order: usize,
    pub max_sse: usize,
    pub sse_write_timeout_ms: u64,
    pub ws_ping_ms: u64,
    pub ws_idle_ms: u64,
    pub ws_max_frame_bytes: usize,
    pub ws_max_frames_per_s: usize,
    pub redis_timeout_ms: u64,
}

fn flag(r: &mut EnvReader<'_>, name: &str, default: bool) -> bool {
    r.choice(
        name,
        if default { "true" } else { "false" },
        &["true", "false"],
    ) == "true"
}

/// A duration in (fractional) seconds, as ms; at least 10 ms.
fn secs_ms(r: &mut EnvReader<'_>, name: &str, default: f64) -> u64 {
    (r.number(name, default, 0.01, 86_400.0) * 1000.0) as u64
}

fn parse_bounds(v: &str) -> Result<(f64, f64, f64, f64), String> {
    let n: Vec<f64> = v
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| "expected minLat,minLng,maxLat,maxLng".to_string())?;
    match n.as_slice() {
        [a, b, c, d]
            if (-90.0..=90.0).contains(a)
                && (-90.0..=90.0).contains(c)
                && (-180.0..=180.0).contains(b)
                && (-180.0..=180.0).contains(d)
                && a < c
                && b < d =>
        {
            Ok((*a, *b, *c, *d))
        }
        _ => Err("expected minLat,minLng,maxLat,maxLng with min < max, within the globe".into()),
    }
}

impl TrackingConfig {
    pub fn read(r: &mut EnvReader<'_>) -> Self {
        let d = Limits::default();
        let k = KfParams::default();
        let bounds = r.checked("TRACKING_BOUNDS", "-90,-180,90,180", |v| {
            parse_bounds(v).map(|_| ())
        });
        let auth_required = flag(r, "TRACKING_AUTH_REQUIRED", false);
        let hmac_secret = r.checked("HMAC_SECRET", "", |v| {
            if auth_required && v.len() < 16 {
                Err("TRACKING_AUTH_REQUIRED=true needs a secret of at least 16 bytes".into())
            } else {
                Ok(())
            }
        });
        Self {
            auth_required,
            hmac_secret,
            enforce_assignment: flag(r, "TRACKING_ENFORCE_ASSIGNMENT", false),
            limits: Limits {
                bounds: parse_bounds(&bounds).unwrap_or(d.bounds),
                max_speed_mps: r.number("TRACKING_MAX_SPEED_MPS", d.max_speed_mps, 1.0, 1000.0),
                max_accuracy_m: r.number(
                    "TRACKING_MAX_ACCURACY_M",
                    d.max_accuracy_m,
                    1.0,
                    100_000.0,
                ),
                max_age_ms: r.number("TRACKING_MAX_AGE_SECS", 30, 1, 86_400) * 1000,
                max_future_ms: r.number("TRACKING_MAX_FUTURE_SECS", 5, 0, 3600) * 1000,
                min_interval_ms: (r.number("TRACKING_MIN_INTERVAL_SECS", 2.0, 0.0, 3600.0) * 1000.0)
                    as i64,
                min_move_m: r.number("TRACKING_MIN_MOVE_M", d.min_move_m, 0.0, 10_000.0),
                reject_zero: flag(r, "TRACKING_REJECT_ZERO", d.reject_zero),
                jump_recovery: r.number("TRACKING_JUMP_RECOVERY", d.jump_recovery, 1, 1000),
            },
            kf: KfParams {
                q: r.number("TRACKING_KF_Q", k.q, 0.0001, 10_000.0),
                min_sigma_m: r.number("TRACKING_KF_MIN_SIGMA_M", k.min_sigma_m, 0.1, 1000.0),
                gate_sigma: r.number("TRACKING_KF_GATE_SIGMA", k.gate_sigma, 0.0, 1000.0),
                reset_gap_ms: r.number("TRACKING_KF_RESET_GAP_SECS", 30, 1, 86_400) * 1000,
                device_speed_sigma: r.number(
                    "TRACKING_KF_DEVICE_SPEED_SIGMA",
                    k.device_speed_sigma,
                    0.0,
                    100.0,
                ),
            },
            trail_max: r.number(
                "TRACKING_TRAIL_MAX",
                qc_tracking::store::TRAIL_MAX,
                1,
                10_000,
            ),
            sse_keepalive_ms: secs_ms(r, "TRACKING_SSE_KEEPALIVE_SECS", 15.0),
            sse_queue: r.number("TRACKING_SSE_QUEUE", 32, 1, 10_000),
            sse_per_order: r.number("TRACKING_SSE_PER_ORDER", 20, 1, 10_000),
            max_sse: r.number("TRACKING_MAX_SSE", 10_000, 1, 1_000_000),
            sse_write_timeout_ms: secs_ms(r, "TRACKING_SSE_WRITE_TIMEOUT_SECS", 10.0),
            ws_ping_ms: secs_ms(r, "TRACKING_WS_PING_SECS", 30.0),
            ws_idle_ms: secs_ms(r, "TRACKING_WS_IDLE_SECS", 60.0),
            ws_max_frame_bytes: r.number("TRACKING_WS_MAX_FRAME_BYTES", 4096, 256, 1 << 20),
            ws_max_frames_per_s: r.number("TRACKING_WS_MAX_FRAMES_PER_S", 20, 1, 100_000),
            redis_timeout_ms: r.number("TRACKING_REDIS_TIMEOUT_MS", 500, 10, 60_000),
        }
    }

    pub fn from_env(env: &EnvSource) -> Result<Self, ConfigError> {
        let mut r = env.reader();
        let cfg = Self::read(&mut r);
        r.finish()?;
        Ok(cfg)
    }
}

/// This instance's driver sockets: one per driver; a newer one closes the older (code 4000).
#[derive(Debug, Default)]
pub struct Sockets {
    next_id: AtomicU64,
    by_driver: Mutex<HashMap<String, (u64, oneshot::Sender<()>)>>,
    /// Woken when a socket closes (the drain at shutdown waits on it).
    closed: Notify,
}

impl Sockets {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, oneshot::Sender<()>)>> {
        self.by_driver.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new socket of `driver_id`, replacing (and signalling) the older one.
    /// Returns its id and the signal that it has been replaced.
    fn register(&self, driver_id: &str) -> (u64, oneshot::Receiver<()>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Some((_, older)) = self.lock().insert(driver_id.to_string(), (id, tx)) {
            let _ = older.send(());
        }
        (id, rx)
    }

    /// Removes the entry only if it is still this socket's (not a newer one's).
    fn release(&self, driver_id: &str, id: u64) {
        let mut map = self.lock();
        if map.get(driver_id).is_some_and(|(cur, _)| *cur == id) {
            map.remove(driver_id);
        }
        drop(map);
        self.closed.notify_waiters();
    }

    pub fn open(&self) -> usize {
        self.lock().len()
    }
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct TrackingApp {
    pub tracker: Tracker<RedisTrackingStore>,
    pub clock: SharedClock,
    pub cfg: TrackingConfig,
    pub ctx: Arc<ServiceCtx>,
    pub fanout: Arc<fanout::Fanout>,
    pub sockets: Sockets,
    /// WebSocket sessions running (a replaced socket may linger a moment after its entry is gone).
    pub sessions: AtomicU64,
    redis: ConnectionManager,
    prefix: KeyPrefix,
    instance: String,
}

impl TrackingApp {
    /// Checks a token when auth is required (09 "Auth"): `?token=` or `Authorization: Bearer`.
    fn authorize(
        &self,
        role: Role,
        subject: &str,
        order_id: &str,
        query_token: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<(), ApiError> {
        if !self.cfg.auth_required {
            return Ok(());
        }
        let bearer = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let given = query_token.or(bearer);
        let now_s = self.clock.now_ms().div_euclid(1000);
        token::verify(
            self.cfg.hmac_secret.as_bytes(),
            given,
            role,
            subject,
            order_id,
            now_s,
        )
        .map_err(|e| {
            let msg = match e {
                TokenError::Missing => "a token is required",
                TokenError::Malformed => "malformed token",
                TokenError::Expired => "token expired",
                TokenError::BadSignature => "invalid token",
            };
            ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", msg)
        })
    }

    /// `TRACKING_ENFORCE_ASSIGNMENT`: the driver must be the one Dispatch assigned.
    async fn check_assignment(&self, driver_id: &str, order_id: &str) -> Result<(), ApiError> {
        if !self.cfg.enforce_assignment {
            return Ok(());
        }
        let key = self
            .prefix
            .key(&format!("dispatch:{{dispatch}}:assignment:{order_id}"));
        let mut c = self.redis.clone();
        let assigned: Option<String> = qc_kit::redis_kit::bounded(
            self.cfg.redis_timeout_ms,
            redis::cmd("HGET")
                .arg(&key)
                .arg("driver_id")
                .query_async(&mut c),
        )
        .await
        .map_err(|e| ApiError::unavailable(format!("redis: {e}")))?;
        if assigned.as_deref() == Some(driver_id) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "the driver is not assigned to this order",
            ))
        }
    }

    fn conn_key(&self, driver_id: &str) -> String {
        self.prefix
            .key(&format!("tracking:driver:{driver_id}:conn"))
    }

    /// The cross-instance owner of a driver's socket (09 "where the reference falls short" 11):
    /// `tracking:driver:<id>:conn` holds the newest socket's `<instance>/<socket>` with a lease
    /// of three ping intervals. Claiming overwrites (the newest socket wins); Redis trouble is
    /// logged and never closes a socket.
    async fn claim_socket(&self, driver_id: &str, socket: u64) {
        let owner = format!("{}/{socket}", self.instance);
        let mut c = self.redis.clone();
        let r: Result<(), _> = qc_kit::redis_kit::bounded(
            self.cfg.redis_timeout_ms,
            redis::cmd("SET")
                .arg(self.conn_key(driver_id))
                .arg(owner)
                .arg("PX")
                .arg(self.cfg.ws_ping_ms * 3)
                .query_async(&mut c),
        )
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, driver_id, "socket lease not written");
        }
    }

    /// At each ping: false when a newer socket of the driver (on any instance) owns the lease;
    /// else the lease is renewed (or re-claimed if it lapsed).
    async fn still_owner(&self, driver_id: &str, socket: u64) -> bool {
        let owner = format!("{}/{socket}", self.instance);
        let mut c = self.redis.clone();
        let cur: Result<Option<String>, _> = qc_kit::redis_kit::bounded(
            self.cfg.redis_timeout_ms,
            redis::cmd("GET")
                .arg(self.conn_key(driver_id))
                .query_async(&mut c),
        )
        .await;
        match cur {
            Ok(Some(o)) if o != owner => false,
            Ok(_) => {
                self.claim_socket(driver_id, socket).await;
                true
            }
            Err(_) => true,
        }
    }

    /// On close: the lease goes only if it is still this socket's.
    async fn release_socket(&self, driver_id: &str, socket: u64) {
        let owner = format!("{}/{socket}", self.instance);
        let mut c = self.redis.clone();
        let key = self.conn_key(driver_id);
        let cur: Result<Option<String>, _> = qc_kit::redis_kit::bounded(
            self.cfg.redis_timeout_ms,
            redis::cmd("GET").arg(&key).query_async(&mut c),
        )
        .await;
        if cur.ok().flatten().as_deref() == Some(owner.as_str()) {
            let _: Result<(), _> = qc_kit::redis_kit::bounded(
                self.cfg.redis_timeout_ms,
                redis::cmd("DEL").arg(&key).query_async(&mut c),
            )
            .await;
        }
    }

    fn gauges(&self) {
        let m = &self.ctx.metrics;
        m.gauge(
            "tracking_ws_connections",
            "Driver WebSockets open on this instance.",
            vec![],
            self.sessions.load(Ordering::Relaxed) as f64,
        );
        m.gauge(
            "tracking_sse_subscribers",
            "Customer SSE streams open on this instance.",
            vec![],
            self.fanout.clients() as f64,
        );
    }
}

pub async fn build(
    cfg: &PlatformConfig,
    tcfg: TrackingConfig,
    clock: SharedClock,
    shutdown: Shutdown,
) -> Result<(Arc<TrackingApp>, BuiltService), String> {
    let store_cfg = &cfg.store;
    let conn = qc_kit::redis_kit::connect(&store_cfg.redis_url, store_cfg.redis_timeout_ms)
        .await
        .map_err(|e| format!("{e} (is Redis running? scripts/ensure-stores.sh starts one)"))?;
    let mut c = conn.clone();
    qc_kit::scripts::preload(&mut c)
        .await
        .map_err(|e| format!("loading Lua scripts: {e}"))?;
    let ctx = Arc::new(ServiceCtx::new(
        ServiceId::Tracking,
        shutdown.clone(),
        Some(conn.clone()),
        None,
        cfg.internal_api_token.clone(),
    ));
    let prefix = KeyPrefix::new(store_cfg.key_prefix.clone());
    let store = RedisTrackingStore::new(conn.clone(), prefix.clone(), tcfg.redis_timeout_ms)
        .with_trail_max(tcfg.trail_max);
    let channel_prefix = store.channel("");
    let (fanout, hub) = fanout::Fanout::start(
        store_cfg.redis_url.clone(),
        channel_prefix,
        FanoutLimits {
            queue: tcfg.sse_queue,
            per_order: tcfg.sse_per_order,
            total: tcfg.max_sse,
            write_timeout: Duration::from_millis(tcfg.sse_write_timeout_ms),
        },
        Duration::from_millis(tcfg.redis_timeout_ms.max(1000)),
        ctx.clone(),
    );
    let app = Arc::new(TrackingApp {
        tracker: Tracker::new(store, tcfg.limits.clone(), tcfg.kf),
        clock,
        cfg: tcfg,
        ctx: ctx.clone(),
        fanout,
        sockets: Sockets::default(),
        sessions: AtomicU64::new(0),
        redis: conn,
        prefix,
        // Unique per process: two processes may share a host name.
        instance: format!(
            "{}-{}",
            cfg.instance_id,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ),
    });
    let internal = internal_only(
        Router::new().route("/tracking/status/{order_id}", post(handlers::status)),
        &ctx,
    );
    let api = Router::new()
        .route("/ws/driver/location", get(ws::connect))
        .route("/sse/order/tracking", get(sse::stream))
        .route("/sse/order/tracking/{order_id}", get(sse::stream_path))
        .route("/tracking/position/{order_id}", get(handlers::position))
        .route("/tracking/history/{order_id}", get(handlers::history))
        .merge(internal)
        .with_state(app.clone());
    let drain = tokio::spawn(drain_sockets(app.clone(), shutdown));
    Ok((
        app,
        BuiltService {
            ctx: ctx.clone(),
            router: assemble(ctx, api),
            jobs: vec![hub, drain],
        },
    ))
}

/// At shutdown, waits until every driver socket has been closed (with 1001) by its session.
async fn drain_sockets(app: Arc<TrackingApp>, shutdown: Shutdown) {
    shutdown.wait().await;
    loop {
        let closed = app.sockets.closed.notified();
        if app.sessions.load(Ordering::SeqCst) == 0 {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), closed).await;
    }
}
