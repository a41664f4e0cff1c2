//! Cumulative per-version counters behind ModelStatistics (Triton's field meanings),
//! mirrored as Prometheus metrics (Triton's `nv_inference_*` set, Prometheus names).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use modelplane_proto::inference as pb;

/// A count and the nanoseconds summed over it.
#[derive(Debug, Default)]
pub struct Duration64 {
    count: AtomicU64,
    ns: AtomicU64,
}

impl Duration64 {
    /// Counts one occurrence that took `elapsed`.
    pub fn add(&self, elapsed: Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.ns.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn snapshot(&self) -> pb::StatisticDuration {
        pb::StatisticDuration { count: self.count.load(Ordering::Relaxed), ns: self.ns.load(Ordering::Relaxed) }
    }
}

/// Counters of one loaded version.
#[derive(Debug, Default)]
pub struct Stats {
    /// The same events as Prometheus metrics labelled with model and version.
    exported: Exported,
    /// Requests answered, and their time from arrival to answer.
    pub success: Duration64,
    /// Requests refused or failed.
    pub fail: Duration64,
    /// Time requests waited in the batching queue.
    pub queue: Duration64,
    /// Model executions (a batch counts once) and their compute time.
    pub compute: Duration64,
    /// Rows inferred successfully.
    pub rows: AtomicU64,
    /// When the last request arrived, ms since the Unix epoch.
    pub last_inference_ms: AtomicU64,
    /// Executions and their compute time by rows per execution (Triton's batch_stats).
    by_batch_size: Mutex<BTreeMap<usize, (u64, u64)>>,
}

impl Stats {
    /// Counters for `model` version `version`, exported to the process's metrics recorder
    /// (a no-op when none is installed).
    pub fn new(model: &str, version: u64) -> Self {
        Self { exported: Exported::new(model, version), ..Default::default() }
    }

    /// Records one request's outcome.
    pub fn record(&self, ok: bool, elapsed: Duration, rows: u64) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        self.last_inference_ms.store(u64::try_from(now.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
        if ok {
            self.success.add(elapsed);
            self.rows.fetch_add(rows, Ordering::Relaxed);
            self.exported.success.increment(1);
            self.exported.rows.increment(rows);
            self.exported.request_seconds.record(elapsed.as_secs_f64());
        } else {
            self.fail.add(elapsed);
            self.exported.failure.increment(1);
        }
    }

    /// Records how long one request waited in the batching queue.
    pub fn waited(&self, elapsed: Duration) {
        self.queue.add(elapsed);
        self.exported.queue_seconds.record(elapsed.as_secs_f64());
    }

    /// Records one model execution over `rows` rows (0: it failed before answering any,
    /// and counts in the compute time only).
    pub fn executed(&self, rows: usize, elapsed: Duration) {
        self.compute.add(elapsed);
        self.exported.compute_seconds.record(elapsed.as_secs_f64());
        if rows == 0 {
            return;
        }
        self.exported.batch_rows.record(rows as f64);
        let mut by_size = self.by_batch_size.lock().unwrap_or_else(|p| p.into_inner());
        let (count, ns) = by_size.entry(rows).or_default();
        *count += 1;
        *ns = ns.saturating_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Counts one request as in the batcher (queued or computing) until the guard drops.
    pub fn entered_batcher(&self) -> InBatcher {
        self.exported.in_batcher.increment(1.0);
        InBatcher(self.exported.in_batcher.clone())
    }

    /// The counters as Triton's ModelStatistics message.
    pub fn to_proto(&self, model: &str, version: u64) -> pb::ModelStatistics {
        let compute = self.compute.snapshot();
        pb::ModelStatistics {
            name: model.to_owned(),
            version: version.to_string(),
            last_inference: self.last_inference_ms.load(Ordering::Relaxed),
            inference_count: self.rows.load(Ordering::Relaxed),
            execution_count: compute.count,
            inference_stats: Some(pb::InferStatistics {
                success: Some(self.success.snapshot()),
                fail: Some(self.fail.snapshot()),
                queue: Some(self.queue.snapshot()),
                compute_infer: Some(compute),
                ..Default::default()
            }),
            batch_stats: self
                .by_batch_size
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(&rows, &(count, ns))| pb::InferBatchStatistics {
                    batch_size: rows as u64,
                    compute_infer: Some(pb::StatisticDuration { count, ns }),
                    ..Default::default()
                })
                .collect(),
        }
    }
}

/// Prometheus handles of one version, registered once so recording is an atomic add.
#[derive(Debug)]
struct Exported {
    success: metrics::Counter,
    failure: metrics::Counter,
    rows: metrics::Counter,
    request_seconds: metrics::Histogram,
    queue_seconds: metrics::Histogram,
    compute_seconds: metrics::Histogram,
    batch_rows: metrics::Histogram,
    in_batcher: metrics::Gauge,
}

/// Unlabelled statistics (tests) export nothing.
impl Default for Exported {
    fn default() -> Self {
        Self {
            success: metrics::Counter::noop(),
            failure: metrics::Counter::noop(),
            rows: metrics::Counter::noop(),
            request_seconds: metrics::Histogram::noop(),
            queue_seconds: metrics::Histogram::noop(),
            compute_seconds: metrics::Histogram::noop(),
            batch_rows: metrics::Histogram::noop(),
            in_batcher: metrics::Gauge::noop(),
        }
    }
}

/// Registers the help text of the worker's metrics (idempotent).
pub(crate) fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("modelplane_worker_requests_total", "Inference requests by model, version and outcome.");
    describe_counter!(
        "modelplane_worker_inference_rows_total",
        "Rows inferred successfully (Triton's inference count)."
    );
    describe_histogram!("modelplane_worker_request_duration_seconds", "Time from a request's arrival to its answer.");
    describe_histogram!("modelplane_worker_queue_duration_seconds", "Time requests waited in the batching queue.");
    describe_histogram!("modelplane_worker_compute_duration_seconds", "Time one model execution (a batch) took.");
    describe_histogram!("modelplane_worker_batch_rows", "Rows per model execution: how well batching merges requests.");
    describe_gauge!("modelplane_worker_batcher_requests", "Requests queued or computing in a version's batcher now.");
}

impl Exported {
    fn new(model: &str, version: u64) -> Self {
        let labels = [("model", model.to_owned()), ("version", version.to_string())];
        Self {
            success: metrics::counter!("modelplane_worker_requests_total", &labels_with(&labels, "success")),
            failure: metrics::counter!("modelplane_worker_requests_total", &labels_with(&labels, "failure")),
            rows: metrics::counter!("modelplane_worker_inference_rows_total", &labels),
            request_seconds: metrics::histogram!("modelplane_worker_request_duration_seconds", &labels),
            queue_seconds: metrics::histogram!("modelplane_worker_queue_duration_seconds", &labels),
            compute_seconds: metrics::histogram!("modelplane_worker_compute_duration_seconds", &labels),
            batch_rows: metrics::histogram!("modelplane_worker_batch_rows", &labels),
            in_batcher: metrics::gauge!("modelplane_worker_batcher_requests", &labels),
        }
    }
}

fn labels_with(labels: &[(&'static str, String); 2], outcome: &'static str) -> Vec<(&'static str, String)> {
    let mut all = labels.to_vec();
    all.push(("outcome", outcome.to_owned()));
    all
}

/// A request queued or computing in a batcher; see [`Stats::entered_batcher`].
#[derive(Debug)]
pub struct InBatcher(metrics::Gauge);

impl Drop for InBatcher {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executions_are_counted_by_batch_size_and_failed_ones_only_in_compute_time() {
        let stats = Stats::default();
        stats.executed(3, Duration::from_micros(30));
        stats.executed(1, Duration::from_micros(10));
        stats.executed(3, Duration::from_micros(50));
        stats.executed(0, Duration::from_micros(5));
        let proto = stats.to_proto("m", 2);
        assert_eq!(proto.execution_count, 4);
        let by_size: Vec<(u64, u64, u64)> = proto
            .batch_stats
            .iter()
            .map(|b| {
                let infer = b.compute_infer.unwrap_or_default();
                (b.batch_size, infer.count, infer.ns)
            })
            .collect();
        assert_eq!(by_size, vec![(1, 1, 10_000), (3, 2, 80_000)]);
    }
}
