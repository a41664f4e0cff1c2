/// Router settings.
#[derive(Clone, Debug, Default)]
pub struct RouterConfig {
    /// Attempts on distinct replicas for one request before giving up (0: every replica).
    pub max_attempts: usize,
}

impl RouterConfig {
    /// Checks the settings before any port is bound.
    pub fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}
