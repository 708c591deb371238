//! JSON log lines on stdout (00-platform "Logging"): `ts`, `level`, `service`, `instance`, `msg`
//! and the event's fields; `LOG_FORMAT=text` gives one readable line instead.

use std::fmt::Write as _;
use std::io::Write as _;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_string(),
            Value::String(format!("{value:?}")),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_string(), Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
}

struct LineLayer {
    service: String,
    instance: String,
    json: bool,
}

fn level_word(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        _ => "debug",
    }
}

impl<S: Subscriber> Layer<S> for LineLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        let msg = fields
            .0
            .remove("message")
            .unwrap_or(Value::String(String::new()));
        let ts = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let level = level_word(event.metadata().level());
        let line = if self.json {
            let mut obj = Map::new();
            obj.insert("ts".into(), Value::String(ts));
            obj.insert("level".into(), Value::String(level.into()));
            let service = fields
                .0
                .remove("service")
                .unwrap_or(Value::String(self.service.clone()));
            obj.insert("service".into(), service);
            obj.insert("instance".into(), Value::String(self.instance.clone()));
            obj.insert("msg".into(), msg);
            obj.extend(fields.0);
            Value::Object(obj).to_string()
        } else {
            let mut s = format!(
                "{ts} {:5} {}",
                level.to_uppercase(),
                msg.as_str().unwrap_or_default()
            );
            for (k, v) in &fields.0 {
                let _ = write!(
                    s,
                    " {k}={}",
                    v.as_str().map_or_else(|| v.to_string(), str::to_string)
                );
            }
            s
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }
}

/// Installs the global subscriber (once; later calls are ignored, as in tests).
pub fn init(service: &str, instance: &str, level: &str, format: &str) {
    let filter = EnvFilter::new(format!(
        "warn,qc_services={level},qc_inventory={level},qc_kit={level}"
    ));
    let layer = LineLayer {
        service: service.to_string(),
        instance: instance.to_string(),
        json: format != "text",
    };
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init();
    std::panic::set_hook(Box::new(|info| {
        let bt = std::backtrace::Backtrace::force_capture();
        tracing::error!(panic = %info, stack = %bt, "panic");
    }));
}
