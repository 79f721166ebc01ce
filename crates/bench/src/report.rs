//! What a run measured: a table for people, JSON for machines, progress on
//! stderr while it runs.

use std::{collections::BTreeMap, time::Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

#[derive(Default)]
pub struct Report {
    rows: Vec<(String, String)>,
    json: Map<String, Value>,
}

impl Report {
    pub fn add(&mut self, key: &str, label: &str, value: Value, shown: String) {
        self.rows.push((label.to_owned(), shown));
        self.json.insert(key.to_owned(), value);
    }

    pub fn number(&mut self, key: &str, label: &str, v: f64, unit: &str) {
        let shown = if v.abs() >= 100.0 {
            format!("{v:.0} {unit}")
        } else {
            format!("{v:.2} {unit}")
        };
        self.add(key, label, json!(v), shown.trim_end().to_owned());
    }

    pub fn count(&mut self, key: &str, label: &str, n: u64) {
        self.add(key, label, json!(n), n.to_string());
    }

    /// p50 … max of a histogram of microseconds, shown in milliseconds.
    pub fn latency(&mut self, key: &str, label: &str, h: &Histogram<u64>) {
        let ms = |us: u64| us as f64 / 1000.0;
        let q = |p: f64| ms(h.value_at_quantile(p));
        let value = json!({
            "count": h.len(), "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99),
            "p999_ms": q(0.999), "max_ms": ms(h.max()),
        });
        let shown = format!(
            "p50 {:.2} · p90 {:.2} · p99 {:.2} · p99.9 {:.2} · max {:.2} ms (n={})",
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            ms(h.max()),
            h.len()
        );
        self.add(key, label, value, shown);
    }

    pub fn statuses(&mut self, key: &str, label: &str, s: &BTreeMap<u16, u64>) {
        let shown = if s.is_empty() {
            "none".to_owned()
        } else {
            s.iter()
                .map(|(k, v)| {
                    let k = if *k == 0 {
                        "no answer".to_owned()
                    } else {
                        k.to_string()
                    };
                    format!("{k}: {v}")
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let value: Map<String, Value> = s.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        self.add(key, label, Value::Object(value), shown);
    }

    pub fn print(&self, mode: &str, as_json: bool) {
        if as_json {
            let mut out = self.json.clone();
            out.insert("mode".into(), json!(mode));
            println!("{}", Value::Object(out));
            return;
        }
        let width = self.rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        println!("parley-bench {mode}");
        for (label, value) in &self.rows {
            println!("  {label:<width$}  {value}");
        }
    }
}

pub fn histogram() -> Histogram<u64> {
    // 1 µs .. 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant histogram bounds are valid")
}

/// A line on stderr at most every half second.
pub struct Progress {
    last: Instant,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            last: Instant::now(),
        }
    }
}

impl Progress {
    pub fn tick(&mut self, line: impl FnOnce() -> String) {
        if self.last.elapsed().as_millis() >= 500 {
            self.last = Instant::now();
            eprintln!("{}", line());
        }
    }
}
