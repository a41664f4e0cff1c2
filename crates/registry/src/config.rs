use std::path::PathBuf;

/// Registry settings.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Directory that holds blobs (artifacts and datasets) under their sha256.
    pub blob_dir: PathBuf,
    /// Largest artifact accepted.
    pub max_artifact_bytes: u64,
    /// Largest dataset accepted.
    pub max_dataset_bytes: u64,
    /// Unreferenced blobs older than this are removed at start-up.
    pub orphan_grace: std::time::Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            blob_dir: PathBuf::from("modelplane-data/blobs"),
            max_artifact_bytes: 1 << 30,
            max_dataset_bytes: 1 << 30,
            orphan_grace: std::time::Duration::from_secs(600),
        }
    }
}

impl RegistryConfig {
    /// Checks the settings before any port is bound.
    pub fn validate(&self) -> Result<(), String> {
        if self.blob_dir.as_os_str().is_empty() {
            return Err("blob directory is empty; expected a path".into());
        }
        if self.max_artifact_bytes == 0 || self.max_dataset_bytes == 0 {
            return Err("size limits must be greater than zero".into());
        }
        Ok(())
    }
}
