/// Router settings.
#[derive(Clone, Debug, Default)]
pub struct RouterConfig {
    /// Attempts on distinct replicas for one request before giving up (0: every replica).
    pub max_attempts: usize,
    /// Registry endpoint, for Triton's RepositoryModelLoad/Unload (which deploy and
    /// undeploy); `None` refuses them.
    pub registry_addr: Option<String>,
}

impl RouterConfig {
    /// Checks the settings before any port is bound.
    pub fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}
