//! A latency histogram with fixed buckets, counted without locks, shown in
//! Prometheus' text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (and one past the last for the rest).
const BOUNDS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
pub struct Histogram {
    /// Per bucket, not cumulative; the last counts what passed every bound.
    counts: [AtomicU64; BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let bucket = BOUNDS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BOUNDS.len());
        self.counts[bucket].fetch_add(1, Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Relaxed);
    }

    /// Appends this histogram's `_bucket`, `_sum` and `_count` lines as `name{labels}`.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut seen = 0;
        for (i, count) in self.counts.iter().enumerate() {
            seen += count.load(Relaxed);
            let le = BOUNDS.get(i).map_or("+Inf".to_string(), f64::to_string);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {seen}");
        }
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {seen}");
    }
}

#[cfg(test)]
mod tests {
    use super::Histogram;
    use std::time::Duration;

    #[test]
    fn buckets_are_cumulative_and_the_rest_is_past_the_last_bound() {
        let h = Histogram::default();
        for ms in [0, 1, 3, 30, 150, 4000] {
            h.observe(Duration::from_millis(ms));
        }
        let mut out = String::new();
        h.render(&mut out, "w", "step=\"start\"");
        let line = |le: &str| {
            out.lines()
                .find(|l| l.starts_with(&format!("w_bucket{{step=\"start\",le=\"{le}\"}}")))
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_string)
        };
        assert_eq!(line("0.001").as_deref(), Some("2"), "{out}");
        assert_eq!(line("0.005").as_deref(), Some("3"), "{out}");
        assert_eq!(line("0.1").as_deref(), Some("4"), "{out}");
        assert_eq!(line("0.25").as_deref(), Some("5"), "{out}");
        assert_eq!(line("2.5").as_deref(), Some("5"), "{out}");
        assert_eq!(line("+Inf").as_deref(), Some("6"), "{out}");
        assert!(out.contains("w_sum{step=\"start\"} 4.184\n"), "{out}");
        assert!(out.contains("w_count{step=\"start\"} 6\n"), "{out}");
    }
}
