//! `troupe bench …`: benchmarks that print JSON lines, each next to a baseline measured in the
//! same process and run.

pub mod baseline;
pub mod local;
pub mod remote;
pub mod scale;

use std::time::Duration;

use serde::Serialize;

/// One benchmark result.
#[derive(Debug, Clone, Serialize)]
pub struct BenchLine {
    pub suite: &'static str,
    pub bench: &'static str,
    pub unit: &'static str,
    pub value: f64,
    pub baseline: Option<f64>,
    pub ratio: Option<f64>,
    /// Extra measurements (for example a p99 next to a p50).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl BenchLine {
    pub fn new(
        suite: &'static str,
        bench: &'static str,
        unit: &'static str,
        value: f64,
        baseline: Option<f64>,
    ) -> Self {
        let ratio = baseline.filter(|b| *b != 0.0).map(|b| value / b);
        BenchLine { suite, bench, unit, value, baseline, ratio, extra: serde_json::Map::new() }
    }

    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    pub fn print(&self, json: bool) {
        if json {
            emit(&serde_json::to_string(self).unwrap_or_default());
        } else {
            let baseline = self.baseline.map_or("-".to_string(), fmt_num);
            let ratio = self.ratio.map_or("-".to_string(), |r| format!("{r:.2}x"));
            let extra = if self.extra.is_empty() {
                String::new()
            } else {
                serde_json::to_string(&self.extra).unwrap_or_default()
            };
            emit(&format!(
                "{:<8} {:<18} {:>16} {:<10} baseline {:>16}  ratio {:>8} {}",
                self.suite,
                self.bench,
                fmt_num(self.value),
                self.unit,
                baseline,
                ratio,
                extra
            ));
        }
    }
}

/// Prints one line of results; if the reader has gone (`troupe bench … | head`), exits quietly
/// instead of panicking.
pub fn emit(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
        std::process::exit(0);
    }
}

fn fmt_num(v: f64) -> String {
    if v >= 1000.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// Medians of `runs` measurements of two contenders, taken alternately (a, b, a, b, ...) so
/// that both see the same machine conditions; this shared machine drifts during a run.
pub fn paired_medians(runs: usize, mut a: impl FnMut() -> f64, mut b: impl FnMut() -> f64) -> (f64, f64) {
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        xs.push(a());
        ys.push(b());
    }
    (median(xs), median(ys))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Whether benchmark `name` is selected by `--only` (a comma-separated list; `None` = all).
pub fn wanted(only: Option<&str>, name: &str) -> bool {
    only.is_none_or(|o| o.split(',').any(|o| o.trim() == name))
}

/// Rate in units per second.
pub fn per_sec(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}
