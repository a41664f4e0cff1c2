use std::path::PathBuf;
use std::time::Duration;

use crate::{BatchPolicy, MemoryCapacity};

/// Worker settings.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Unique id; the key `/workers/{id}` carries it.
    pub id: String,
    /// `host:port` the router should dial; defaults to the listener's address.
    pub advertise_addr: Option<String>,
    /// Registry endpoint for artifact downloads.
    pub registry_addr: String,
    /// Where downloaded artifacts are cached by sha256.
    pub cache_dir: PathBuf,
    /// TTL of the worker's lease: how long a dead worker stays listed.
    pub lease_ttl: Duration,
    /// How long a version no longer deployed stays loaded after its replacement is
    /// ready, so routers that have not yet seen the change can still use it.
    pub unload_grace: Duration,
    /// Dynamic batching of every version this worker loads.
    pub batching: BatchPolicy,
    /// Memory the versions it loads may take; deployments are placed within it.
    pub memory_capacity: MemoryCapacity,
    /// Where the worker also registers its inference service under its advertised
    /// address, so a router in the same process (`modelplane up`) calls it directly.
    pub in_process: modelplane_service::InProcessServers,
    /// How callers are admitted.
    pub access: modelplane_service::access::ServerAccess,
    /// What it presents to the services it calls (the registry).
    pub credentials: modelplane_service::Credentials,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            id: String::new(),
            advertise_addr: None,
            registry_addr: "127.0.0.1:7001".into(),
            cache_dir: PathBuf::from("modelplane-data/cache"),
            lease_ttl: Duration::from_secs(5),
            unload_grace: Duration::from_secs(2),
            batching: BatchPolicy::default(),
            memory_capacity: MemoryCapacity::Auto,
            in_process: Default::default(),
            access: Default::default(),
            credentials: Default::default(),
        }
    }
}

impl WorkerConfig {
    /// Checks the settings before any port is bound.
    pub fn validate(&self) -> Result<(), String> {
        modelplane_store::schema::validate_name("worker id", &self.id)?;
        if self.registry_addr.trim().is_empty() {
            return Err("registry address is empty; expected host:port".into());
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return Err(format!("lease TTL {:?} is too short; expected at least 1s", self.lease_ttl));
        }
        if self.memory_capacity == MemoryCapacity::Bytes(0) {
            return Err("memory capacity 0 B leaves no room for any model; expected a size such as 4GiB, \
                        `auto` or `unlimited`"
                .into());
        }
        self.batching.validate()
    }
}
