//! Prometheus metrics (00-platform "Ops endpoints"), rendered as text format 0.0.4.
//! A small registry of our own: the metric set is fixed and tiny, and this keeps the
//! services' dependency tree lean.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

pub const DURATION_BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Cumulative counts per bucket bound, then +Inf = count.
    buckets: [u64; 8],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.buckets[i] += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    durations: BTreeMap<(String, String), Histogram>,
    counters: BTreeMap<(&'static str, String), f64>,
    gauges: BTreeMap<(&'static str, String), f64>,
    histograms: BTreeMap<(&'static str, String), Histogram>,
    help: BTreeMap<&'static str, &'static str>,
}

/// One service's metrics.
#[derive(Debug)]
pub struct Metrics {
    service: &'static str,
    in_flight: AtomicI64,
    inner: Mutex<Inner>,
}

fn render_labels(labels: &Labels) -> String {
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}=\"{}\"",
                v.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            )
        })
        .collect();
    parts.join(",")
}

impl Metrics {
    pub fn new(service: &'static str) -> Self {
        Self {
            service,
            in_flight: AtomicI64::new(0),
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn request_finished(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let mut m = self.lock();
        *m.requests
            .entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
        m.durations
            .entry((method.to_string(), route.to_string()))
            .or_default()
            .observe(seconds);
    }

    /// Adds to a counter (`name` ends in `_total`).
    pub fn count(&self, name: &'static str, help: &'static str, labels: Labels, by: f64) {
        let mut m = self.lock();
        m.help.insert(name, help);
        *m.counters
            .entry((name, render_labels(&labels)))
            .or_default() += by;
    }

    pub fn gauge(&self, name: &'static str, help: &'static str, labels: Labels, value: f64) {
        let mut m = self.lock();
        m.help.insert(name, help);
        m.gauges.insert((name, render_labels(&labels)), value);
    }

    /// Adds an observation (seconds) to a histogram with [`DURATION_BUCKETS`].
    pub fn observe(&self, name: &'static str, help: &'static str, labels: Labels, seconds: f64) {
        let mut m = self.lock();
        m.help.insert(name, help);
        m.histograms
            .entry((name, render_labels(&labels)))
            .or_default()
            .observe(seconds);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let m = self.lock();
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP build_info Build information.\n# TYPE build_info gauge"
        );
        let _ = writeln!(
            out,
            "build_info{{service=\"{}\",version=\"{}\"}} 1",
            self.service,
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(out, "# HELP http_requests_in_flight Requests being served.\n# TYPE http_requests_in_flight gauge");
        let _ = writeln!(
            out,
            "http_requests_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP http_requests_total Requests served.\n# TYPE http_requests_total counter"
        );
        for ((method, route, status), n) in &m.requests {
            let _ = writeln!(out, "http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP http_request_duration_seconds Request latency.\n# TYPE http_request_duration_seconds histogram"
        );
        for ((method, route), h) in &m.durations {
            for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{method=\"{method}\",route=\"{route}\",le=\"{bound}\"}} {}",
                    h.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{method=\"{method}\",route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_sum{{method=\"{method}\",route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_count{{method=\"{method}\",route=\"{route}\"}} {}",
                h.count
            );
        }
        render_family(&mut out, "counter", &m.counters, &m.help);
        render_family(&mut out, "gauge", &m.gauges, &m.help);
        render_histograms(&mut out, &m.histograms, &m.help);
        out
    }
}

/// `# HELP` and `# TYPE` of `name`, once per name (`last` is the previous sample's name).
fn header<'a>(
    out: &mut String,
    name: &'a str,
    kind: &str,
    help: &BTreeMap<&'static str, &'static str>,
    last: &mut &'a str,
) {
    if name != *last {
        let _ = writeln!(
            out,
            "# HELP {name} {}\n# TYPE {name} {kind}",
            help.get(name).unwrap_or(&"")
        );
        *last = name;
    }
}

/// One `# HELP`/`# TYPE` header per metric name, then its labelled samples.
fn render_family(
    out: &mut String,
    kind: &str,
    samples: &BTreeMap<(&'static str, String), f64>,
    help: &BTreeMap<&'static str, &'static str>,
) {
    let mut last = "";
    for ((name, labels), v) in samples {
        header(out, name, kind, help, &mut last);
        let _ = writeln!(out, "{name}{{{labels}}} {v}");
    }
}

fn render_histograms(
    out: &mut String,
    samples: &BTreeMap<(&'static str, String), Histogram>,
    help: &BTreeMap<&'static str, &'static str>,
) {
    let mut last = "";
    for ((name, labels), h) in samples {
        header(out, name, "histogram", help, &mut last);
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {}",
                h.buckets[i]
            );
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::new("inventory");
        m.request_started();
        m.request_finished("GET", "/stock/{hub_id}/{sku}", 200, 0.003);
        m.request_started();
        m.request_finished("GET", "/stock/{hub_id}/{sku}", 200, 0.2);
        let text = m.render();
        assert!(text.contains(r#"le="0.001"} 0"#), "{text}");
        assert!(text.contains(r#"le="0.005"} 1"#), "{text}");
        assert!(text.contains(r#"le="0.5"} 2"#), "{text}");
        assert!(text.contains(r#"le="+Inf"} 2"#), "{text}");
        assert!(text.contains(
            r#"http_requests_total{method="GET",route="/stock/{hub_id}/{sku}",status="200"} 2"#
        ));
        assert!(text.contains("http_requests_in_flight 0"));
        assert!(text.contains(r#"build_info{service="inventory""#));
    }

    #[test]
    fn domain_counters_render_with_help_once() {
        let m = Metrics::new("inventory");
        m.gauge("lag", "Lag.", vec![("hub_id", "h".into())], 3.0);
        m.count("x_total", "X things.", vec![("result", "ok".into())], 1.0);
        m.count(
            "x_total",
            "X things.",
            vec![("result", "bad\"q".into())],
            2.0,
        );
        let text = m.render();
        assert_eq!(text.matches("# TYPE x_total counter").count(), 1);
        assert!(text.contains(r#"x_total{result="bad\"q"} 2"#), "{text}");
        assert!(
            text.contains("# TYPE lag gauge\nlag{hub_id=\"h\"} 3"),
            "{text}"
        );
        m.observe("pub_seconds", "Publish.", vec![], 0.002);
        m.observe("pub_seconds", "Publish.", vec![], 0.2);
        let text = m.render();
        assert!(text.contains("# TYPE pub_seconds histogram"), "{text}");
        assert!(
            text.contains("pub_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(text.contains("pub_seconds_bucket{le=\"+Inf\"} 2"), "{text}");
        assert!(text.contains("pub_seconds_count{} 2"), "{text}");
    }
}
