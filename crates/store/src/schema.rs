//! The key layout under `/modelplane/v1/` and the JSON records stored at each key.
//! Every service reads and writes metadata through these, so the layout lives in one place.

use std::collections::BTreeMap;

use modelplane_kserve::Signature;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

pub use crate::format::{ARCHIVE_GRAPH, ArtifactFormat};
use crate::{Error, Result};

/// Root of every modelplane key.
pub const ROOT: &str = "/modelplane/v1/";
/// Prefix of model, version and alias keys.
pub const MODELS: &str = "/modelplane/v1/models/";
/// Prefix of deployment keys.
pub const DEPLOYMENTS: &str = "/modelplane/v1/deployments/";
/// Prefix of worker keys (each bound to its worker's lease).
pub const WORKERS: &str = "/modelplane/v1/workers/";
/// Prefix of training job keys.
pub const JOBS: &str = "/modelplane/v1/jobs/";
/// Prefix of job claims: `/claims/{job_id}` names the trainer, bound to its lease, so a
/// job whose trainer died becomes claimable again when the lease expires.
pub const CLAIMS: &str = "/modelplane/v1/claims/";
/// Prefix of audit entries, `/audit/{unix_ms:013}-{id}`, so keys sort by time.
pub const AUDIT: &str = "/modelplane/v1/audit/";
/// Prefix of dataset keys.
pub const DATASETS: &str = "/modelplane/v1/datasets/";
/// Prefix of API key records, `/keys/{id}` (the id is public; the secret is stored only
/// as a salted hash).
pub const KEYS: &str = "/modelplane/v1/keys/";

/// `/models/{model}`: the model record.
pub fn model_key(model: &str) -> String {
    format!("{MODELS}{model}")
}
/// `/models/{model}/versions/{n}`.
pub fn version_key(model: &str, version: u64) -> String {
    format!("{MODELS}{model}/versions/{version}")
}
/// Prefix of a model's versions.
pub fn versions_prefix(model: &str) -> String {
    format!("{MODELS}{model}/versions/")
}
/// `/models/{model}/aliases/{alias}`: the version number as decimal text.
pub fn alias_key(model: &str, alias: &str) -> String {
    format!("{MODELS}{model}/aliases/{alias}")
}
/// Prefix of a model's aliases.
pub fn aliases_prefix(model: &str) -> String {
    format!("{MODELS}{model}/aliases/")
}
/// `/deployments/{model}`.
pub fn deployment_key(model: &str) -> String {
    format!("{DEPLOYMENTS}{model}")
}
/// `/workers/{id}`.
pub fn worker_key(id: &str) -> String {
    format!("{WORKERS}{id}")
}
/// `/jobs/{id}`.
pub fn job_key(id: &str) -> String {
    format!("{JOBS}{id}")
}
/// `/audit/{unix_ms:013}-{id}`.
pub fn audit_key(unix_ms: i64, id: &str) -> String {
    format!("{AUDIT}{unix_ms:013}-{id}")
}
/// `/claims/{job_id}`.
pub fn claim_key(job_id: &str) -> String {
    format!("{CLAIMS}{job_id}")
}
/// `/datasets/{name}/{sha256}`.
pub fn dataset_key(name: &str, sha256: &str) -> String {
    format!("{DATASETS}{name}/{sha256}")
}
/// `/keys/{id}`.
pub fn api_key_key(id: &str) -> String {
    format!("{KEYS}{id}")
}
/// Prefix of every upload of one dataset name.
pub fn dataset_prefix(name: &str) -> String {
    format!("{DATASETS}{name}/")
}

/// What a key under [`MODELS`] holds.
#[derive(Debug, PartialEq, Eq)]
pub enum ModelsKey<'a> {
    /// `/models/{model}`.
    Model(&'a str),
    /// `/models/{model}/versions/{n}`.
    Version(&'a str, u64),
    /// `/models/{model}/aliases/{alias}`.
    Alias(&'a str, &'a str),
}

/// Classifies a key under [`MODELS`]; `None` for anything else.
pub fn parse_models_key(key: &str) -> Option<ModelsKey<'_>> {
    let rest = key.strip_prefix(MODELS)?;
    let mut parts = rest.split('/');
    let model = parts.next()?;
    match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => Some(ModelsKey::Model(model)),
        (Some("versions"), Some(n), None) => n.parse().ok().map(|n| ModelsKey::Version(model, n)),
        (Some("aliases"), Some(alias), None) => Some(ModelsKey::Alias(model, alias)),
        _ => None,
    }
}

/// Checks a model, alias or dataset name: 1–128 characters of `[A-Za-z0-9_.-]`, not
/// starting with a dot and not all digits (a number would be taken for a version).
pub fn validate_name(what: &str, name: &str) -> std::result::Result<(), String> {
    let valid_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if name.is_empty() || name.len() > 128 || !valid_chars || name.starts_with('.') {
        return Err(format!(
            "{what} {name:?} is invalid; expected 1-128 characters of letters, digits, '_', '-' or '.', not starting with '.'"
        ));
    }
    if name.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("{what} {name:?} is invalid; it must not be a number (numbers name versions)"));
    }
    Ok(())
}

/// Encodes a record as JSON.
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    // Records are plain data with string keys: serialising them cannot fail.
    serde_json::to_vec(record).unwrap_or_default()
}

/// Decodes a JSON record, naming the key when it is corrupt.
pub fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|err| Error::Corrupt { key: key.to_owned(), reason: err.to_string() })
}

/// `/models/{model}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct ModelRecord {
    /// Model name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Who created it.
    pub owner: String,
    /// Creation time, ms since the Unix epoch.
    pub created_unix_ms: i64,
    /// Highest version number handed out; bumped by compare-and-swap.
    pub latest_version: u64,
    /// Free-form key/value labels, for filtering.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Where a version came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Lineage {
    /// Dataset name.
    pub dataset: String,
    /// Dataset content hash.
    pub dataset_sha256: String,
    /// Training job id.
    pub job_id: String,
    /// Hyperparameters.
    pub params: BTreeMap<String, String>,
    /// Target column.
    pub target: String,
    /// The version this one succeeds (0 for the first).
    #[serde(default)]
    pub parent_version: u64,
}

/// `/models/{model}/versions/{n}`: an immutable version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// Model name.
    pub model: String,
    /// Version number, from 1.
    pub version: u64,
    /// sha256 of the artifact, lowercase hex; the blob's name.
    pub sha256: String,
    /// Artifact size.
    pub size_bytes: u64,
    /// Model kind (linear, logistic…), or `onnx` for an ONNX graph ([`VersionRecord::format`]).
    pub kind: String,
    /// Inputs and outputs.
    pub signature: Signature,
    /// Held-out metrics.
    pub metrics: BTreeMap<String, f64>,
    /// Class labels of classifiers.
    pub labels: Vec<String>,
    /// Held-out confusion counts `[true][predicted]` of classifiers.
    #[serde(default)]
    pub confusion_matrix: Vec<Vec<u64>>,
    /// Each feature's share of the split gain (tree kinds).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub feature_importances: BTreeMap<String, f64>,
    /// Provenance.
    pub lineage: Lineage,
    /// Registration time, ms since the Unix epoch.
    pub created_unix_ms: i64,
    /// Hidden from listings, new aliases and new deployments.
    #[serde(default)]
    pub archived: bool,
}

impl VersionRecord {
    /// The format of the version's artifact.
    pub fn format(&self) -> ArtifactFormat {
        ArtifactFormat::of_kind(&self.kind)
    }
}

/// One weighted target of a deployment: a version number or an alias.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentTarget {
    /// A fixed version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// An alias, resolved whenever it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Share of traffic relative to the other targets.
    pub weight: u32,
    /// Receives a copy of the deployment's traffic; its answers are dropped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
}

/// `/deployments/{model}`: what the workers load and the router sends traffic to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    /// Model name.
    pub model: String,
    /// Weighted targets.
    pub targets: Vec<DeploymentTarget>,
    /// Workers that should load each target (0: every worker).
    pub replicas: u32,
    /// Batching of the versions this deployment loads, over the workers' own settings.
    #[serde(default, skip_serializing_if = "BatchingOverride::is_empty")]
    pub batching: BatchingOverride,
    /// What one replica needs from a worker; unset, it is estimated.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    /// When the model was first deployed (kept across redeploys), ms since the Unix
    /// epoch; 0 for deployments made before it was recorded. Older deployments are
    /// placed first, so a new one never pushes an existing one off a full worker.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub created_unix_ms: i64,
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

/// What one replica of a deployment (every version it loads) needs from a worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Memory in bytes; unset: estimated from the artifacts (see `placement`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
}

impl Resources {
    /// Whether everything is left to the estimate.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Checks the settings that are given; the message says what is expected.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.memory_bytes == Some(0) {
            return Err("memory per replica is 0 bytes; expected a size such as 512MiB, or none to estimate it".into());
        }
        Ok(())
    }
}

/// The longest a batch may wait for more requests.
pub const MAX_QUEUE_DELAY_US: u64 = 1_000_000;

/// Per-deployment dynamic batching settings; `None` keeps the worker's setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchingOverride {
    /// Most rows merged into one execution (0 or 1: batching off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_size: Option<u32>,
    /// Microseconds the first request of a batch waits for more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue_delay_us: Option<u64>,
    /// Requests that may wait per version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_capacity: Option<u32>,
}

impl BatchingOverride {
    /// Whether every setting is left to the worker.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Checks the settings that are given; the message says what is expected.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.queue_capacity == Some(0) {
            return Err("queue capacity must be at least 1 request".into());
        }
        if let Some(delay) = self.max_queue_delay_us
            && delay > MAX_QUEUE_DELAY_US
        {
            return Err(format!("max queue delay {delay} µs is too long; expected at most {MAX_QUEUE_DELAY_US} µs"));
        }
        Ok(())
    }
}

/// Load state of one version on one worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadState {
    /// Downloading or loading.
    Loading,
    /// Serving.
    Ready,
    /// Loading failed; see the error.
    Failed,
}

/// A version a worker holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadedVersion {
    /// Model name.
    pub model: String,
    /// Version number.
    pub version: u64,
    /// Load state.
    pub state: LoadState,
    /// Why loading failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// Bytes its parameters take once loaded, measured (native models; not ONNX graphs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
}

/// `/workers/{id}`: a live worker, bound to its lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// Worker id.
    pub id: String,
    /// `host:port` of its inference gRPC endpoint.
    pub addr: String,
    /// Versions it holds and their state.
    pub loaded: Vec<LoadedVersion>,
    /// False while draining for shutdown.
    pub accepting: bool,
    /// Memory its loaded versions may take, in bytes; `None`: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_capacity_bytes: Option<u64>,
}

/// `/keys/{id}`: an API key, without its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Public identifier, the first part of the key a caller sends.
    pub id: String,
    /// Who or what the key is for; the audit log's actor for calls made with it.
    pub name: String,
    /// What the key may do.
    pub role: modelplane_service::access::Role,
    /// Model names the key is limited to (those starting with it); empty: every model.
    #[serde(default)]
    pub model_prefix: String,
    /// Lowercase hex of the random salt hashed with the secret.
    pub salt: String,
    /// Lowercase hex sha256 of salt then secret.
    pub secret_sha256: String,
    /// Creation time, ms since the Unix epoch.
    pub created_unix_ms: i64,
    /// The actor that created it.
    #[serde(default)]
    pub created_by: String,
    /// When it stops working, ms since the Unix epoch; none: never.
    #[serde(default)]
    pub expires_unix_ms: Option<i64>,
    /// When it was revoked, ms since the Unix epoch.
    #[serde(default)]
    pub revoked_unix_ms: Option<i64>,
}

/// `/datasets/{name}/{sha256}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetRecord {
    /// Dataset name.
    pub name: String,
    /// Content hash, lowercase hex; the blob's name.
    pub sha256: String,
    /// Size of the CSV.
    pub size_bytes: u64,
    /// Header columns.
    pub columns: Vec<String>,
    /// Data rows.
    pub rows: u64,
    /// Upload time, ms since the Unix epoch.
    pub created_unix_ms: i64,
}

/// `/audit/…`: one mutation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When, ms since the Unix epoch.
    pub unix_ms: i64,
    /// Who (the caller's `x-modelplane-actor`).
    pub actor: String,
    /// What: create_model, upload_version, set_alias, delete_alias, set_deployment, upload_dataset.
    pub action: String,
    /// The model concerned (empty for datasets).
    pub model: String,
    /// What within it: an alias, a version number, a dataset name.
    pub subject: String,
    /// State before, as text (empty when new).
    pub before: String,
    /// State after, as text (empty when deleted).
    pub after: String,
    /// Why, when the caller said.
    pub reason: String,
}

/// Point an alias at a new version when it beats the current one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoteRule {
    /// The alias to move.
    pub alias: String,
    /// The metric compared.
    pub metric: String,
    /// Smaller wins (losses, errors).
    pub lower_is_better: bool,
}

/// State of a training job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a trainer.
    Queued,
    /// Claimed and training.
    Running,
    /// Registered a version.
    Succeeded,
    /// Ended with an error.
    Failed,
    /// Cancelled before it finished.
    Cancelled,
}

/// What to train.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Model to register the version under.
    pub model: String,
    /// Model kind.
    pub kind: String,
    /// Dataset name.
    pub dataset: String,
    /// Dataset hash; empty for the newest upload.
    pub dataset_sha256: String,
    /// Target column.
    pub target: String,
    /// Hyperparameters.
    pub params: BTreeMap<String, String>,
    /// Optional promotion after success.
    #[serde(default)]
    pub promote_if: Option<PromoteRule>,
}

/// `/jobs/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Job id.
    pub id: String,
    /// What to train.
    pub spec: JobSpec,
    /// Where it is.
    pub state: JobState,
    /// Epoch done so far.
    pub epoch: u32,
    /// Epochs in all.
    pub epochs: u32,
    /// Latest epoch loss.
    pub loss: f64,
    /// Latest validation loss.
    #[serde(default)]
    pub validation_loss: Option<f64>,
    /// Training throughput of the latest epoch.
    #[serde(default)]
    pub rows_per_second: f64,
    /// Estimated seconds left.
    #[serde(default)]
    pub eta_seconds: f64,
    /// Cancellation was asked for while running.
    #[serde(default)]
    pub cancel_requested: bool,
    /// What the promote_if rule decided.
    #[serde(default)]
    pub promotion: String,
    /// Trainer that claimed it.
    pub claimed_by: String,
    /// Why it failed.
    pub error: String,
    /// Version registered on success.
    pub version: u64,
    /// Metrics of that version.
    pub metrics: BTreeMap<String, f64>,
    /// Submission time, ms since the Unix epoch.
    pub created_unix_ms: i64,
    /// End time, ms since the Unix epoch; 0 while running.
    pub finished_unix_ms: i64,
}

impl JobState {
    /// Succeeded or failed: nothing more will happen.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed | JobState::Cancelled)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_model_keys() {
        assert_eq!(parse_models_key(&model_key("m")), Some(ModelsKey::Model("m")));
        assert_eq!(parse_models_key(&version_key("m", 12)), Some(ModelsKey::Version("m", 12)));
        assert_eq!(parse_models_key(&alias_key("m", "prod")), Some(ModelsKey::Alias("m", "prod")));
        assert_eq!(parse_models_key("/modelplane/v1/models/m/versions/x"), None);
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("model", "digits-v2.1").is_ok());
        assert!(validate_name("model", "a/b").is_err());
        assert!(validate_name("alias", "12").is_err());
        assert!(validate_name("model", "").is_err());
    }

    #[test]
    fn deployments_written_before_batching_settings_still_decode() {
        let old = br#"{"model":"m","targets":[{"version":2,"weight":1}],"replicas":0}"#;
        let record: DeploymentRecord = decode("/modelplane/v1/deployments/m", old).expect("decodes");
        assert!(record.batching.is_empty());
        assert_eq!(encode(&record), old.to_vec(), "no batching key is written when nothing overrides");
    }

    #[test]
    fn batching_overrides_are_checked() {
        assert!(BatchingOverride::default().validate().is_ok());
        let fine = BatchingOverride {
            max_batch_size: Some(0),
            max_queue_delay_us: Some(MAX_QUEUE_DELAY_US),
            queue_capacity: Some(1),
        };
        assert!(fine.validate().is_ok());
        let empty_queue = BatchingOverride { queue_capacity: Some(0), ..Default::default() };
        assert!(empty_queue.validate().expect_err("capacity 0").contains("at least 1"));
        let long_wait = BatchingOverride { max_queue_delay_us: Some(MAX_QUEUE_DELAY_US + 1), ..Default::default() };
        assert!(long_wait.validate().expect_err("too long").contains("at most 1000000"));
    }
}
