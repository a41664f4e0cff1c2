//! Cumulative per-version counters behind ModelStatistics (Triton's field meanings).

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
}

impl Stats {
    /// Records one request's outcome.
    pub fn record(&self, ok: bool, elapsed: Duration, rows: u64) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        self.last_inference_ms.store(u64::try_from(now.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
        if ok {
            self.success.add(elapsed);
            self.rows.fetch_add(rows, Ordering::Relaxed);
        } else {
            self.fail.add(elapsed);
        }
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
        }
    }
}
