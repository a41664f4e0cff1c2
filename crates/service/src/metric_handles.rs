//! Metric handles registered once and then reused. Each `metrics::counter!` call builds,
//! hashes and looks up a labelled key in the recorder; on the inference path those
//! lookups were ~5 % of the router's instructions per request (callgrind, see
//! docs/benchmarks.md). A hot path keeps its handles here instead.

use std::collections::HashMap;
use std::sync::RwLock;

/// Handles by a string label (a method, a model) and a small copyable rest of the key.
///
/// Only handles of the recorder [`crate::metrics::install`] installed are kept: a
/// handle belongs to the recorder it was registered with, and a test's local recorder
/// must see its own registrations, so without the process recorder every call registers.
pub struct HandleCache<K, H> {
    handles: RwLock<HashMap<String, Vec<(K, H)>>>,
}

impl<K, H> Default for HandleCache<K, H> {
    fn default() -> Self {
        Self { handles: RwLock::new(HashMap::new()) }
    }
}

impl<K: Copy + Eq, H: Clone> HandleCache<K, H> {
    /// The handle for (`label`, `key`), registered by `register` the first time.
    pub fn get(&self, label: &str, key: K, register: impl FnOnce() -> H) -> H {
        if !crate::metrics::installed() {
            return register();
        }
        let cached = {
            let handles = self.handles.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            handles.get(label).and_then(|keyed| keyed.iter().find(|(k, _)| *k == key).map(|(_, h)| h.clone()))
        };
        if let Some(handle) = cached {
            return handle;
        }
        let handle = register();
        let mut handles = self.handles.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let keyed = handles.entry(label.to_owned()).or_default();
        if !keyed.iter().any(|(k, _)| *k == key) {
            keyed.push((key, handle.clone()));
        }
        handle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_the_process_recorder_every_call_registers() {
        let cache = HandleCache::<u8, u32>::default();
        let mut registered = 0;
        for _ in 0..3 {
            cache.get("model", 1, || {
                registered += 1;
                7
            });
        }
        assert_eq!(registered, 3, "nothing is cached for a recorder this module did not install");
    }
}
