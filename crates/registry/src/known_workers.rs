//! The workers the registry saw serving last, so its placement checks keep judging by
//! them while no worker is live.
//!
//! With no live worker the registry cannot tell a cluster being set up (anything may be
//! deployed; the workers that come will place it) from one whose only worker is
//! restarting or whose lease lapsed for a moment (a deployment larger than that worker
//! must still be refused). For `grace` after the last accepting worker was seen, the
//! checks treat it as the second case. Only the last non-empty set is kept, never a union
//! of sets: a worker that restarts under a new id must not count twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use modelplane_store::schema::WorkerRecord;

/// The accepting workers of the last sighting that had any, and when that was.
#[derive(Clone, Debug, Default)]
pub(crate) struct KnownWorkers {
    last: Arc<Mutex<Option<Sighting>>>,
}

#[derive(Debug)]
struct Sighting {
    at: Instant,
    workers: HashMap<String, WorkerRecord>,
}

/// Workers last seen `ago`, none of which is live now.
#[derive(Debug)]
pub(crate) struct Remembered {
    pub ago: Duration,
    pub workers: HashMap<String, WorkerRecord>,
}

impl KnownWorkers {
    /// Records the workers listed now; a listing without an accepting worker changes
    /// nothing, so a draining worker is remembered as it was while it served.
    pub fn observe(&self, listed: &HashMap<String, WorkerRecord>) {
        self.observe_at(listed, Instant::now());
    }

    fn observe_at(&self, listed: &HashMap<String, WorkerRecord>, now: Instant) {
        let accepting: HashMap<String, WorkerRecord> =
            listed.iter().filter(|(_, worker)| worker.accepting).map(|(id, w)| (id.clone(), w.clone())).collect();
        if accepting.is_empty() {
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *last = Some(Sighting { at: now, workers: accepting });
    }

    /// The last accepting workers if they were seen within `grace`.
    pub fn within(&self, grace: Duration) -> Option<Remembered> {
        self.within_at(grace, Instant::now())
    }

    fn within_at(&self, grace: Duration, now: Instant) -> Option<Remembered> {
        let last = self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let sighting = last.as_ref()?;
        let ago = now.saturating_duration_since(sighting.at);
        (ago <= grace).then(|| Remembered { ago, workers: sighting.workers.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: &str, accepting: bool) -> (String, WorkerRecord) {
        let record = WorkerRecord {
            id: id.into(),
            addr: "127.0.0.1:1".into(),
            loaded: Vec::new(),
            accepting,
            memory_capacity_bytes: Some(1 << 20),
        };
        (id.to_owned(), record)
    }

    #[test]
    fn remembers_the_last_accepting_workers_for_the_grace() {
        let known = KnownWorkers::default();
        let start = Instant::now();
        let grace = Duration::from_secs(60);
        assert!(known.within_at(grace, start).is_none(), "nothing seen yet: a cluster being set up");

        known.observe_at(&HashMap::from([worker("a", true), worker("b", true)]), start);
        // `a` drains, then both leave: neither listing replaces the last serving set.
        let draining = start + Duration::from_secs(1);
        known.observe_at(&HashMap::from([worker("a", false), worker("b", true)]), draining);
        known.observe_at(&HashMap::from([worker("a", false)]), start + Duration::from_secs(2));
        known.observe_at(&HashMap::new(), start + Duration::from_secs(3));

        let remembered = known.within_at(grace, start + Duration::from_secs(30)).expect("seen 29 s ago");
        assert_eq!(remembered.ago, Duration::from_secs(29));
        assert_eq!(remembered.workers.keys().collect::<Vec<_>>(), ["b"], "the last set with an accepting worker");
        assert!(known.within_at(grace, draining + grace + Duration::from_millis(1)).is_none(), "forgotten");
    }

    #[test]
    fn a_worker_back_under_a_new_id_replaces_the_old_one() {
        let known = KnownWorkers::default();
        let start = Instant::now();
        known.observe_at(&HashMap::from([worker("worker-1f3a", true)]), start);
        known.observe_at(&HashMap::new(), start + Duration::from_secs(1));
        known.observe_at(&HashMap::from([worker("worker-9c2e", true)]), start + Duration::from_secs(5));
        let remembered = known.within_at(Duration::from_secs(60), start + Duration::from_secs(6)).expect("seen");
        assert_eq!(remembered.workers.keys().collect::<Vec<_>>(), ["worker-9c2e"]);
    }
}
