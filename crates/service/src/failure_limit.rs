//! Slows down key guessing: an address that failed authentication too often in the last
//! minute is refused (RESOURCE_EXHAUSTED) without its credentials being looked at, until
//! the minute is over. Refusing even a right key from it is the point: answering a
//! right key differently would let the guessing go on.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The default allowance of failed authentications per address and minute.
pub const DEFAULT_FAILURES_PER_MINUTE: u32 = 30;

const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; beyond it, finished windows are dropped first.
const MAX_ADDRESSES: usize = 65_536;

/// Failed authentications per client address in fixed one-minute windows.
pub struct FailureLimit {
    per_minute: u32,
    by_addr: Mutex<HashMap<IpAddr, Window>>,
}

struct Window {
    started: Instant,
    failures: u32,
}

impl FailureLimit {
    /// `per_minute == 0` turns the limit off.
    pub fn new(per_minute: u32) -> Self {
        Self { per_minute, by_addr: Mutex::new(HashMap::new()) }
    }

    /// How long `addr` stays refused, if it is.
    pub fn blocked_for(&self, addr: IpAddr) -> Option<Duration> {
        if self.per_minute == 0 {
            return None;
        }
        let by_addr = self.by_addr.lock().unwrap_or_else(|p| p.into_inner());
        let window = by_addr.get(&addr)?;
        let left = WINDOW.checked_sub(window.started.elapsed())?;
        (window.failures >= self.per_minute).then_some(left)
    }

    /// Counts one failed authentication from `addr`.
    pub fn record_failure(&self, addr: IpAddr) {
        if self.per_minute == 0 {
            return;
        }
        let mut by_addr = self.by_addr.lock().unwrap_or_else(|p| p.into_inner());
        if by_addr.len() >= MAX_ADDRESSES && !by_addr.contains_key(&addr) {
            by_addr.retain(|_, window| window.started.elapsed() < WINDOW);
            if by_addr.len() >= MAX_ADDRESSES {
                // Under a flood from many addresses, forget the oldest half rather than grow.
                let mut starts: Vec<Instant> = by_addr.values().map(|w| w.started).collect();
                starts.sort_unstable();
                let cutoff = starts[starts.len() / 2];
                by_addr.retain(|_, window| window.started > cutoff);
            }
        }
        let window = by_addr.entry(addr).or_insert(Window { started: Instant::now(), failures: 0 });
        if window.started.elapsed() >= WINDOW {
            *window = Window { started: Instant::now(), failures: 0 };
        }
        window.failures = window.failures.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_its_allowance_and_others_are_not() {
        let limit = FailureLimit::new(3);
        let (guesser, other): (IpAddr, IpAddr) = ("10.0.0.1".parse().expect("ip"), "10.0.0.2".parse().expect("ip"));
        for _ in 0..2 {
            limit.record_failure(guesser);
            assert_eq!(limit.blocked_for(guesser), None);
        }
        limit.record_failure(guesser);
        let left = limit.blocked_for(guesser).expect("refused after three failures");
        assert!(left > Duration::from_secs(50), "{left:?}");
        assert_eq!(limit.blocked_for(other), None);
        let off = FailureLimit::new(0);
        (0..100).for_each(|_| off.record_failure(guesser));
        assert_eq!(off.blocked_for(guesser), None, "0 turns the limit off");
    }
}
