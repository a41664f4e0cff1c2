use std::time::Duration;

/// Trainer settings.
#[derive(Clone, Debug)]
pub struct TrainerConfig {
    /// Unique id, recorded as `claimed_by` on the jobs it runs.
    pub id: String,
    /// Registry endpoint: datasets come from it, versions go to it.
    pub registry_addr: String,
    /// Jobs this trainer runs at once.
    pub max_concurrent_jobs: usize,
    /// TTL of the claim lease: how soon another trainer takes over a job whose trainer died.
    pub lease_ttl: Duration,
    /// Largest dataset a job may train on; larger ones are refused at submission.
    pub max_dataset_bytes: u64,
    /// How callers are admitted.
    pub access: modelplane_service::access::ServerAccess,
    /// What it presents to the services it calls (the registry).
    pub credentials: modelplane_service::Credentials,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        Self {
            id: String::new(),
            registry_addr: "127.0.0.1:7001".into(),
            max_concurrent_jobs: 1,
            lease_ttl: Duration::from_secs(5),
            max_dataset_bytes: 16 << 30,
            access: Default::default(),
            credentials: Default::default(),
        }
    }
}

impl TrainerConfig {
    /// Checks the settings before any port is bound.
    pub fn validate(&self) -> Result<(), String> {
        modelplane_store::schema::validate_name("trainer id", &self.id)?;
        if self.max_concurrent_jobs == 0 {
            return Err("max concurrent jobs is 0; expected at least 1".into());
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return Err(format!("lease TTL {:?} is too short; expected at least 1s", self.lease_ttl));
        }
        if self.max_dataset_bytes == 0 {
            return Err("max dataset bytes is 0; expected a positive limit".into());
        }
        if self.registry_addr.trim().is_empty() {
            return Err("registry address is empty; expected host:port".into());
        }
        Ok(())
    }
}
