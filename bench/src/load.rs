//! Closed-loop load: N concurrent clients, each sending its next request when the previous one
//! is answered, for a fixed time; latencies of every request after the warm-up.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one phase measured.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Requests answered in the measured window.
    pub requests: u64,
    /// Units of work done (checks in a batch count one each).
    pub units: u64,
    pub errors: u64,
    pub secs: f64,
    /// Nanoseconds, sorted.
    pub latencies: Vec<u64>,
}

impl Stats {
    pub fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.units as f64 / self.secs
        } else {
            0.0
        }
    }

    /// The `q` quantile (0..=1) of the latencies, in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let idx = ((self.latencies.len() as f64 - 1.0) * q).round() as usize;
        self.latencies[idx.min(self.latencies.len() - 1)] as f64 / 1e6
    }

    pub fn p50(&self) -> f64 {
        self.quantile_ms(0.50)
    }

    pub fn p99(&self) -> f64 {
        self.quantile_ms(0.99)
    }

    pub fn from_latencies(mut latencies: Vec<u64>) -> Self {
        latencies.sort_unstable();
        Self {
            requests: latencies.len() as u64,
            units: latencies.len() as u64,
            latencies,
            ..Self::default()
        }
    }
}

/// One request's result: how many units it did, or that it failed.
pub type Outcome = Result<u64, ()>;

/// Runs `clients` loops of `request(client, n)` for `warmup + duration`; only the requests that
/// start after the warm-up are counted.
pub async fn closed_loop<F, Fut>(
    clients: usize,
    warmup: Duration,
    duration: Duration,
    request: F,
) -> Stats
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send,
{
    let request = Arc::new(request);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(16 * 1024);
            let (mut units, mut errors) = (0u64, 0u64);
            let mut n = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let outcome = request(c, n).await;
                n += 1;
                let t1 = Instant::now();
                if t0 >= measure_from && t1 <= end {
                    match outcome {
                        Ok(u) => {
                            units += u;
                            lat.push((t1 - t0).as_nanos() as u64);
                        }
                        Err(()) => errors += 1,
                    }
                }
            }
            (lat, units, errors)
        }));
    }
    let mut all = Vec::new();
    let (mut units, mut errors) = (0, 0);
    for t in tasks {
        let (lat, u, e) = t.await.expect("load task");
        all.extend(lat);
        units += u;
        errors += e;
    }
    let mut stats = Stats::from_latencies(all);
    stats.units = units;
    stats.errors = errors;
    stats.secs = duration.as_secs_f64();
    stats
}
