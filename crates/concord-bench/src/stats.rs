//! Latency recording and the report every workload prints.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies in microseconds, 1 µs .. 60 s at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let _ = h.record((d.as_micros() as u64).clamp(1, 60_000_000));
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub workload: String,
    pub endpoint: String,
    pub clients: usize,
    pub completed: u64,
    pub errors: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Workload-specific figures (e.g. lateness, throughput with watchers).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<(String, f64)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl Report {
    pub fn new(
        workload: &str,
        endpoint: &str,
        clients: usize,
        h: &Histogram<u64>,
        errors: u64,
        elapsed: Duration,
    ) -> Self {
        let ms = |q: f64| if h.is_empty() { 0.0 } else { h.value_at_quantile(q) as f64 / 1000.0 };
        let completed = h.len();
        Report {
            workload: workload.into(),
            endpoint: endpoint.into(),
            clients,
            completed,
            errors,
            seconds: elapsed.as_secs_f64(),
            ops_per_sec: completed as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: if h.is_empty() { 0.0 } else { h.max() as f64 / 1000.0 },
            extra: Vec::new(),
            first_error: None,
        }
    }

    pub fn with(mut self, name: &str, value: f64) -> Self {
        self.extra.push((name.into(), value));
        self
    }

    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string(self).expect("a report serializes"));
            return;
        }
        println!("{} against {} ({} clients)", self.workload, self.endpoint, self.clients);
        println!(
            "  completed {}  errors {}  in {:.2} s  =>  {:.0} ops/s",
            self.completed, self.errors, self.seconds, self.ops_per_sec
        );
        println!(
            "  latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms
        );
        for (name, value) in &self.extra {
            println!("  {name}: {value:.3}");
        }
        if let Some(e) = &self.first_error {
            println!("  first error: {e}");
        }
    }
}
