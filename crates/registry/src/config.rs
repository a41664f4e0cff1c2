use std::path::PathBuf;
use std::str::FromStr;

/// Where blobs (artifacts and datasets) live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobLocation {
    /// A local directory (`/data/blobs`, `file:///data/blobs`).
    Local(PathBuf),
    /// An S3-compatible bucket (`s3://bucket[/prefix]`); endpoint, region and
    /// credentials come from the standard `AWS_*` environment variables.
    S3 { bucket: String, prefix: String },
}

impl FromStr for BlobLocation {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("blob store is empty; expected a directory, file:///dir or s3://bucket[/prefix]".into());
        }
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("blob store {text:?} names no bucket; expected s3://bucket[/prefix]"));
            }
            return Ok(Self::S3 { bucket: bucket.into(), prefix: prefix.trim_matches('/').into() });
        }
        if let Some(path) = text.strip_prefix("file://") {
            return Ok(Self::Local(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(format!(
                "blob store scheme {scheme:?} is not supported; expected a directory, file:///dir or s3://bucket[/prefix]"
            ));
        }
        Ok(Self::Local(PathBuf::from(text)))
    }
}

impl std::fmt::Display for BlobLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(dir) => write!(f, "{}", dir.display()),
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// Default limit of one artifact or dataset: a policy, not a memory bound (uploads
/// stream to the blob store).
pub const DEFAULT_MAX_BLOB_BYTES: u64 = 64 << 30;

/// Registry settings.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Where blobs (artifacts and datasets) are kept under their sha256.
    pub blob_store: BlobLocation,
    /// Largest artifact accepted.
    pub max_artifact_bytes: u64,
    /// Largest dataset accepted.
    pub max_dataset_bytes: u64,
    /// Unreferenced blobs older than this are removed at start-up.
    pub orphan_grace: std::time::Duration,
    /// While no worker is live, placement checks judge by the workers last seen serving
    /// for this long after they were seen (a restart, a lapsed lease); after it, or
    /// before any worker was seen, anything may be deployed.
    pub worker_absence_grace: std::time::Duration,
    /// How callers are admitted.
    pub access: modelplane_service::access::ServerAccess,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            blob_store: BlobLocation::Local(PathBuf::from("modelplane-data/blobs")),
            max_artifact_bytes: DEFAULT_MAX_BLOB_BYTES,
            max_dataset_bytes: DEFAULT_MAX_BLOB_BYTES,
            orphan_grace: std::time::Duration::from_secs(600),
            worker_absence_grace: std::time::Duration::from_secs(600),
            access: Default::default(),
        }
    }
}

impl RegistryConfig {
    /// Checks the settings before any port is bound.
    pub fn validate(&self) -> Result<(), String> {
        if matches!(&self.blob_store, BlobLocation::Local(dir) if dir.as_os_str().is_empty()) {
            return Err("blob directory is empty; expected a path".into());
        }
        if self.max_artifact_bytes == 0 || self.max_dataset_bytes == 0 {
            return Err("size limits must be greater than zero".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_locations_parse_paths_and_urls() {
        assert_eq!("/data/blobs".parse(), Ok(BlobLocation::Local("/data/blobs".into())));
        assert_eq!("file:///data/blobs".parse(), Ok(BlobLocation::Local("/data/blobs".into())));
        assert_eq!("s3://models".parse(), Ok(BlobLocation::S3 { bucket: "models".into(), prefix: String::new() }));
        assert_eq!(
            "s3://models/prod/blobs/".parse(),
            Ok(BlobLocation::S3 { bucket: "models".into(), prefix: "prod/blobs".into() })
        );
        let unsupported = "gs://models".parse::<BlobLocation>().expect_err("gs is not supported");
        assert!(unsupported.contains("\"gs\" is not supported"), "{unsupported}");
        assert!("s3:///x".parse::<BlobLocation>().expect_err("no bucket").contains("names no bucket"));
        assert!("".parse::<BlobLocation>().is_err());
    }
}
