//! The embedded store's lease clock: when each lease runs out, kept apart from the data
//! so that a keep-alive never waits for a write's commit (a commit syncs to disk, and a
//! slow disk must not cost a live owner its lease).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::LeaseId;

/// How often expired leases are looked for.
pub(super) const EXPIRY_TICK: Duration = Duration::from_millis(200);

struct Deadline {
    ttl: Duration,
    expires: Instant,
}

/// Live leases and when each runs out.
pub(super) struct Leases {
    live: HashMap<LeaseId, Deadline>,
    next: LeaseId,
    last_sweep: Instant,
}

impl Leases {
    /// Lease ids start from `seed`, so ids of an earlier process are not reused.
    pub(super) fn new(seed: LeaseId, now: Instant) -> Self {
        Self { live: HashMap::new(), next: seed, last_sweep: now }
    }

    pub(super) fn grant(&mut self, ttl: Duration, now: Instant) -> LeaseId {
        self.next += 1;
        self.live.insert(self.next, Deadline { ttl, expires: now + ttl });
        self.next
    }

    /// Restarts the lease's time to live; false when it is not live.
    pub(super) fn keep_alive(&mut self, lease: LeaseId, now: Instant) -> bool {
        match self.live.get_mut(&lease) {
            Some(deadline) => {
                deadline.expires = now + deadline.ttl;
                true
            }
            None => false,
        }
    }

    pub(super) fn is_live(&self, lease: LeaseId) -> bool {
        self.live.contains_key(&lease)
    }

    /// Ends the lease (nothing happens if it was not live).
    pub(super) fn remove(&mut self, lease: LeaseId) {
        self.live.remove(&lease);
    }

    /// The leases whose time ran out by `now`, no longer live. A sweep that comes more
    /// than a tick late means the process (or the whole machine) stalled: the owners
    /// could not refresh either, so every lease gets the stalled time back first — as
    /// etcd extends leases when a new leader takes over, rather than expire them all.
    pub(super) fn sweep(&mut self, now: Instant) -> Vec<LeaseId> {
        let late = now.saturating_duration_since(self.last_sweep + EXPIRY_TICK);
        self.last_sweep = now;
        if late >= EXPIRY_TICK {
            tracing::warn!(stalled = ?late, "lease expiry ran late; extending every lease by the stall");
            for deadline in self.live.values_mut() {
                deadline.expires += late;
            }
        }
        let expired: Vec<LeaseId> =
            self.live.iter().filter(|(_, deadline)| deadline.expires <= now).map(|(id, _)| *id).collect();
        for lease in &expired {
            self.live.remove(lease);
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sweeps every tick from `from` for `span`; returns the leases that expired.
    fn sweep_steadily(leases: &mut Leases, from: Instant, span: Duration) -> Vec<LeaseId> {
        let mut expired = Vec::new();
        let mut at = from;
        while at < from + span {
            at += EXPIRY_TICK;
            expired.extend(leases.sweep(at));
        }
        expired
    }

    #[test]
    fn a_lease_nobody_keeps_alive_expires_after_its_ttl() {
        let start = Instant::now();
        let mut leases = Leases::new(0, start);
        let kept = leases.grant(Duration::from_secs(1), start);
        let dropped = leases.grant(Duration::from_secs(1), start);
        assert!(sweep_steadily(&mut leases, start, Duration::from_millis(800)).is_empty());
        assert!(leases.keep_alive(kept, start + Duration::from_millis(800)));
        let expired = sweep_steadily(&mut leases, start + Duration::from_millis(800), Duration::from_millis(600));
        assert_eq!(expired, vec![dropped]);
        assert!(leases.is_live(kept) && !leases.is_live(dropped));
        assert!(!leases.keep_alive(dropped, start + Duration::from_secs(2)), "an expired lease cannot be revived");
    }

    #[test]
    fn a_stall_longer_than_the_ttl_does_not_expire_leases_their_owners_could_not_refresh() {
        let start = Instant::now();
        let mut leases = Leases::new(0, start);
        let lease = leases.grant(Duration::from_secs(5), start);
        // Nothing ran for 6 s (a commit stuck on the disk, a paused VM): the first sweep
        // after it must leave the owner time to refresh.
        let resumed = start + Duration::from_secs(6);
        assert!(leases.sweep(resumed).is_empty(), "the lease expired during a stall");
        assert!(leases.keep_alive(lease, resumed + EXPIRY_TICK));
        // An owner that stays silent after the stall still loses its lease on time.
        let expired = sweep_steadily(&mut leases, resumed, Duration::from_millis(5400));
        assert_eq!(expired, vec![lease]);
    }
}
