//! Steady inference load that a test runs across an event (a flip, a kill, a freeze, an
//! outage) and judges by what it served, never by how fast: the test waits until every
//! client has been answered some more times after the event, so a slow machine only
//! takes longer, and a fast one cannot end the load before the event has been crossed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};

use crate::flow::predict;

/// What each client of a [`Load`] sends, back to back.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// Router `host:port`.
    pub router: String,
    /// Model name.
    pub model: String,
    /// Version or alias ("" for the deployment's choice).
    pub version: String,
    /// FP32 rows of the `input` tensor.
    pub rows: Vec<Vec<f32>>,
    /// Send the tensor as raw bytes instead of typed contents.
    pub raw: bool,
    /// Concurrent clients.
    pub clients: usize,
    /// Pause between one client's requests.
    pub pause: Duration,
}

/// Clients sending [`LoadSpec`]'s request until [`Load::stop`]; the first failed request
/// fails the load.
pub struct Load {
    during: String,
    answered: Vec<Arc<AtomicU64>>,
    failure: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<ClientTally>>,
}

/// What one client saw.
#[derive(Default)]
struct ClientTally {
    by_version: BTreeMap<String, u64>,
    slowest: Duration,
}

/// What the whole load saw.
#[derive(Debug, Default)]
pub struct LoadTally {
    /// Requests answered, by the version that answered them.
    pub by_version: BTreeMap<String, u64>,
    /// The longest any request took.
    pub slowest: Duration,
}

impl Load {
    /// Starts the clients; `during` says what happens meanwhile, for failure messages.
    pub fn start(spec: &LoadSpec, during: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let failure = Arc::new(Mutex::new(None));
        let answered: Vec<Arc<AtomicU64>> = (0..spec.clients).map(|_| Arc::default()).collect();
        let tasks = answered
            .iter()
            .map(|count| {
                let (spec, stop, failure, count) = (spec.clone(), stop.clone(), failure.clone(), count.clone());
                let during = during.to_owned();
                tokio::spawn(async move {
                    let mut tally = ClientTally::default();
                    while !stop.load(Ordering::Acquire) {
                        let started = Instant::now();
                        match predict(&spec.router, &spec.model, &spec.version, &spec.rows, spec.raw).await {
                            Ok((_, version)) => *tally.by_version.entry(version).or_default() += 1,
                            Err(err) => {
                                let message = format!("a request failed while {during}: {err:#}");
                                if let Ok(mut first) = failure.lock() {
                                    first.get_or_insert(message);
                                }
                                break;
                            }
                        }
                        tally.slowest = tally.slowest.max(started.elapsed());
                        count.fetch_add(1, Ordering::AcqRel);
                        if !spec.pause.is_zero() {
                            tokio::time::sleep(spec.pause).await;
                        }
                    }
                    tally
                })
            })
            .collect();
        Self { during: during.to_owned(), answered, failure, stop, tasks }
    }

    fn failed(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    /// Waits until every client has been answered `more` times since this call. Fails
    /// at once if a request fails, and after `timeout`, which only bounds a hang.
    pub async fn each_answered(&self, more: u64, timeout: Duration) -> Result<()> {
        let targets: Vec<u64> = self.answered.iter().map(|n| n.load(Ordering::Acquire) + more).collect();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(failure) = self.failed() {
                bail!(failure);
            }
            let counts: Vec<u64> = self.answered.iter().map(|n| n.load(Ordering::Acquire)).collect();
            if counts.iter().zip(&targets).all(|(count, target)| count >= target) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "while {}, the clients were answered {counts:?} times after {timeout:?}; each needed {more} more \
                     (targets {targets:?})",
                    self.during
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the clients and returns what they saw; fails if any request failed.
    pub async fn stop(mut self) -> Result<LoadTally> {
        self.stop.store(true, Ordering::Release);
        let mut total = LoadTally::default();
        for task in std::mem::take(&mut self.tasks) {
            let tally = tokio::time::timeout(Duration::from_secs(120), task)
                .await
                .map_err(|_| anyhow!("a load client did not stop within 120 s while {}", self.during))??;
            for (version, count) in tally.by_version {
                *total.by_version.entry(version).or_default() += count;
            }
            total.slowest = total.slowest.max(tally.slowest);
        }
        match self.failed() {
            Some(failure) => bail!(failure),
            None => Ok(total),
        }
    }
}
