//! Metrics both services record, written once: the process-wide Prometheus recorder with the
//! latency buckets, the counters of a live model, and a table of the handles that count
//! requests per command or query (the hot path looks them up by name, never builds a key).
//!
//! Names follow Prometheus conventions: counters end in `_total`, latencies are histograms in
//! seconds (`_seconds`, with [`LATENCY_BUCKETS`]). docs/operations.md ("Health and metrics")
//! lists every metric.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use followers_shared::error::ErrorCode;
use followers_store::LiveModel;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// The buckets of every `_seconds` histogram, in seconds: from half a millisecond (an answer
/// from memory) to 15 s (a command that waited out a JetStream leader election).
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0,
];

/// How often recorded histogram samples are folded into their buckets when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The exporter's settings: every `_seconds` metric is a histogram with [`LATENCY_BUCKETS`].
fn builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
}

/// The process-wide Prometheus recorder, installed at the first call (one per process, shared
/// by every service instance in it); none if another recorder was installed first. A thread
/// folds histogram samples into their buckets every few seconds, so memory stays bounded
/// whether or not `/metrics` is scraped.
pub fn recorder() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = builder().ok()?.install_recorder().ok()?;
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start the metrics upkeep thread");
            }
            Some(handle)
        })
        .clone()
}

/// Sets the counters of `model` (what it applied, stepped over and refused) and its position.
pub fn record_model(model: &LiveModel) {
    let (commits, events, unreadable) = model.counts();
    metrics::counter!("followers_commits_applied_total").absolute(commits);
    metrics::counter!("followers_events_applied_total").absolute(events);
    metrics::counter!("followers_commits_unreadable_total").absolute(unreadable);
    metrics::counter!("followers_commits_refused_total").absolute(model.refused());
    metrics::gauge!("followers_position").set(model.position().0 as f64);
}

/// The label value of a request whose command or query is not one of the known names.
pub const UNKNOWN: &str = "unknown";

/// The request metrics of one kind of request (commands or queries): a counter of requests by
/// name and outcome (`ok` or the error code) and a latency histogram by name. The handles are
/// made once per name; those of an error code on its first use.
#[derive(Debug)]
pub struct RequestMeters {
    requests: &'static str,
    label: &'static str,
    by_name: HashMap<&'static str, Meters>,
}

#[derive(Debug)]
struct Meters {
    name: &'static str,
    seconds: Histogram,
    ok: Counter,
    failed: Mutex<Vec<(ErrorCode, Counter)>>,
}

impl RequestMeters {
    /// Meters for `names` (and [`UNKNOWN`]): the counter `requests` and the histogram `seconds`,
    /// each labelled `label`. Make them after [`recorder`], or they record nowhere.
    pub fn new(
        requests: &'static str,
        seconds: &'static str,
        label: &'static str,
        names: &[&'static str],
    ) -> Self {
        let by_name = names
            .iter()
            .chain([&UNKNOWN])
            .map(|&name| {
                let meters = Meters {
                    name,
                    seconds: metrics::histogram!(seconds, label => name),
                    ok: metrics::counter!(requests, label => name, "outcome" => "ok"),
                    failed: Mutex::new(Vec::new()),
                };
                (name, meters)
            })
            .collect();
        Self {
            requests,
            label,
            by_name,
        }
    }

    /// Counts one request for `name` that ended with `error` (none: ok) after `elapsed`.
    pub fn record(&self, name: &str, error: Option<ErrorCode>, elapsed: Duration) {
        let Some(meters) = self.by_name.get(name).or(self.by_name.get(UNKNOWN)) else {
            return;
        };
        meters.seconds.record(elapsed.as_secs_f64());
        let Some(code) = error else {
            meters.ok.increment(1);
            return;
        };
        let mut failed = match meters.failed.lock() {
            Ok(failed) => failed,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((_, counter)) = failed.iter().find(|(c, _)| *c == code) {
            counter.increment(1);
            return;
        }
        let counter = metrics::counter!(
            self.requests,
            self.label => meters.name,
            "outcome" => code.as_str()
        );
        counter.increment(1);
        failed.push((code, counter));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn requests_are_counted_by_name_and_outcome_with_their_latency_in_buckets() {
        let recorder = builder().unwrap().build_recorder();
        let handle = recorder.handle();
        // (The counter of an error code is made at its first use: within the recorder too.)
        metrics::with_local_recorder(&recorder, || {
            let meters = RequestMeters::new("t_requests_total", "t_seconds", "name", &["a", "b"]);
            let ms = Duration::from_millis(3);
            meters.record("a", None, ms);
            meters.record("a", Some(ErrorCode::RecordExists), ms);
            meters.record("a", Some(ErrorCode::RecordExists), ms);
            meters.record("not-a-name", Some(ErrorCode::UnknownCommand), ms);
        });
        let text = handle.render();
        for line in [
            r#"t_requests_total{name="a",outcome="ok"} 1"#,
            r#"t_requests_total{name="a",outcome="record_exists"} 2"#,
            r#"t_requests_total{name="b",outcome="ok"} 0"#,
            r#"t_requests_total{name="unknown",outcome="unknown_command"} 1"#,
            "# TYPE t_seconds histogram",
            r#"t_seconds_bucket{name="a",le="0.0025"} 0"#,
            r#"t_seconds_bucket{name="a",le="0.005"} 3"#,
            r#"t_seconds_count{name="a"} 3"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
    }
}
