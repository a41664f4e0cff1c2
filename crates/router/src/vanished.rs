//! Workers whose records left the store but that may still be answering.
//!
//! A worker's record lives under a lease. When etcd stalls (a slow disk, a long pause)
//! or the workers lose their way to it while the router does not, the leases lapse
//! although the workers are alive and serving, and etcd deletes their records, often
//! all at once. Dropping those replicas would fail every request until the workers
//! re-register. So a record that vanished stays routable for a grace period, long
//! enough for a worker that lost its lease to put its record back; a worker that is
//! really gone fails its first request, becomes a suspect (tried last) and leaves the
//! table when the grace ends. A worker that drained first had already said it was not
//! accepting, and its last record says so here too.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use modelplane_store::schema::WorkerRecord;

/// The last record of each worker that is no longer in the store, and when it went.
#[derive(Default)]
pub struct VanishedWorkers {
    grace: Duration,
    last_seen: HashMap<String, WorkerRecord>,
    vanished: HashMap<String, (WorkerRecord, Instant)>,
}

impl VanishedWorkers {
    /// Keeps a vanished worker routable for `grace` (zero: not at all).
    pub fn new(grace: Duration) -> Self {
        Self { grace, ..Default::default() }
    }

    /// The workers to route to: those in the store (`live`, as of `now`) and those that
    /// left it less than the grace period ago.
    pub fn merge(&mut self, live: HashMap<String, WorkerRecord>, now: Instant) -> HashMap<String, WorkerRecord> {
        for (id, record) in self.last_seen.drain() {
            if !live.contains_key(&id) {
                self.vanished.entry(id).or_insert((record, now));
            }
        }
        let grace = self.grace;
        self.vanished.retain(|id, (record, since)| {
            let keep = !live.contains_key(id) && now.duration_since(*since) < grace;
            if !keep && !live.contains_key(id) {
                tracing::info!(worker = %id, addr = %record.addr, "worker gone from the store past the grace period");
            } else if keep && *since == now {
                tracing::warn!(worker = %id, addr = %record.addr, ?grace, "worker record left the store; still routing to it during the grace period");
            }
            keep
        });
        self.last_seen = live.clone();
        let mut merged = live;
        for (id, (record, _)) in &self.vanished {
            merged.insert(id.clone(), record.clone());
        }
        merged
    }

    /// When the next vanished worker's grace ends, if any is held.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.vanished.values().map(|(_, since)| *since + self.grace).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> WorkerRecord {
        WorkerRecord {
            id: id.into(),
            addr: format!("{id}:7003"),
            loaded: vec![],
            accepting: true,
            memory_capacity_bytes: None,
        }
    }

    fn live(ids: &[&str]) -> HashMap<String, WorkerRecord> {
        ids.iter().map(|id| ((*id).to_owned(), record(id))).collect()
    }

    fn ids(workers: &HashMap<String, WorkerRecord>) -> Vec<&str> {
        let mut ids: Vec<&str> = workers.keys().map(String::as_str).collect();
        ids.sort();
        ids
    }

    #[test]
    fn a_vanished_worker_is_routed_to_until_its_grace_ends() {
        let grace = Duration::from_secs(30);
        let mut vanished = VanishedWorkers::new(grace);
        let start = Instant::now();
        assert_eq!(ids(&vanished.merge(live(&["a", "b"]), start)), ["a", "b"]);
        // Both leases lapsed at once (etcd stalled): neither leaves the table.
        let later = start + Duration::from_secs(1);
        assert_eq!(ids(&vanished.merge(live(&[]), later)), ["a", "b"]);
        assert_eq!(vanished.next_expiry(), Some(later + grace));
        // `a` re-registers; `b` stays away past the grace period and goes.
        assert_eq!(ids(&vanished.merge(live(&["a"]), later + Duration::from_secs(2))), ["a", "b"]);
        assert_eq!(ids(&vanished.merge(live(&["a"]), later + grace)), ["a"]);
        assert_eq!(vanished.next_expiry(), None);
        // Gone for good: it does not come back with the next change.
        assert_eq!(ids(&vanished.merge(live(&["a"]), later + grace * 2)), ["a"]);
    }

    #[test]
    fn a_worker_that_comes_back_starts_a_fresh_grace_when_it_leaves_again() {
        let grace = Duration::from_secs(10);
        let mut vanished = VanishedWorkers::new(grace);
        let start = Instant::now();
        vanished.merge(live(&["a"]), start);
        vanished.merge(live(&[]), start + Duration::from_secs(1));
        vanished.merge(live(&["a"]), start + Duration::from_secs(2));
        let left_again = start + Duration::from_secs(20);
        assert_eq!(ids(&vanished.merge(live(&[]), left_again)), ["a"]);
        assert_eq!(vanished.next_expiry(), Some(left_again + grace));
    }

    #[test]
    fn without_a_grace_period_the_store_alone_decides() {
        let mut vanished = VanishedWorkers::new(Duration::ZERO);
        let start = Instant::now();
        vanished.merge(live(&["a"]), start);
        assert!(vanished.merge(live(&[]), start).is_empty());
        assert_eq!(vanished.next_expiry(), None);
    }
}
