//! A decoded view of the models and deployments prefixes, built from [`Mirror`] copies,
//! that the worker and router consult on every request without touching the store.

use std::collections::{BTreeMap, HashMap};

use crate::schema::{self, DeploymentRecord, ModelsKey, VersionRecord, WorkerRecord};
use crate::{MirrorState, Result};

/// One resolved deployment target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedTarget {
    /// The version it resolves to now.
    pub version: u64,
    /// Share of traffic.
    pub weight: u32,
    /// The alias it came from, if any.
    pub alias: Option<String>,
}

/// What a requested version (a number, an alias, or empty) names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requested<'a> {
    /// Empty: the deployment's weighted targets (never empty).
    Targets(&'a [ResolvedTarget]),
    /// A version number that exists.
    Number(u64),
    /// An alias and the existing version it points at.
    Alias(&'a str, u64),
}

/// Models, versions, aliases and deployments, decoded.
#[derive(Debug, Default)]
pub struct Catalog {
    models: BTreeMap<String, ModelEntry>,
    deployments: BTreeMap<String, DeploymentRecord>,
    /// Each deployment's targets resolved once when the catalog is built: requests that
    /// name no version look them up on every call.
    targets: HashMap<String, DeploymentTargets>,
}

/// A deployment's targets resolved to version numbers.
#[derive(Debug, Default)]
struct DeploymentTargets {
    serving: Vec<ResolvedTarget>,
    shadows: Vec<ResolvedTarget>,
}

#[derive(Debug, Default)]
struct ModelEntry {
    versions: BTreeMap<u64, VersionRecord>,
    aliases: BTreeMap<String, u64>,
}

impl Catalog {
    /// Decodes mirror copies of [`schema::MODELS`] and [`schema::DEPLOYMENTS`]. Corrupt
    /// records are skipped with a warning so one bad key cannot stop serving.
    pub fn build(models: &MirrorState, deployments: &MirrorState) -> Self {
        let mut catalog = Catalog::default();
        for (key, value) in &models.entries {
            match schema::parse_models_key(key) {
                Some(ModelsKey::Model(name)) => {
                    catalog.models.entry(name.to_owned()).or_default();
                }
                Some(ModelsKey::Version(name, number)) => match schema::decode::<VersionRecord>(key, value) {
                    Ok(record) => {
                        catalog.models.entry(name.to_owned()).or_default().versions.insert(number, record);
                    }
                    Err(err) => tracing::warn!(error = %err, "skipping corrupt version record"),
                },
                Some(ModelsKey::Alias(name, alias)) => {
                    match std::str::from_utf8(value).ok().and_then(|v| v.trim().parse().ok()) {
                        Some(version) => {
                            catalog
                                .models
                                .entry(name.to_owned())
                                .or_default()
                                .aliases
                                .insert(alias.to_owned(), version);
                        }
                        None => tracing::warn!(key = %key, "skipping corrupt alias"),
                    }
                }
                None => {}
            }
        }
        for (key, value) in &deployments.entries {
            match schema::decode::<DeploymentRecord>(key, value) {
                Ok(record) => {
                    catalog.deployments.insert(record.model.clone(), record);
                }
                Err(err) => tracing::warn!(error = %err, "skipping corrupt deployment"),
            }
        }
        catalog.targets = catalog
            .deployments
            .keys()
            .map(|model| {
                let targets = DeploymentTargets {
                    serving: catalog.targets_where(model, false),
                    shadows: catalog.targets_where(model, true),
                };
                (model.clone(), targets)
            })
            .collect();
        catalog
    }

    /// Resolves `version` of `model` against the catalog; the error is the not-found
    /// message (unknown model, no deployment, alias or version).
    pub fn lookup<'a>(&'a self, model: &str, version: &'a str) -> std::result::Result<Requested<'a>, String> {
        if !self.has_model(model) {
            return Err(format!("model {model:?} not found"));
        }
        let version = version.trim();
        if version.is_empty() {
            let targets = self.resolved_targets(model);
            if targets.is_empty() {
                return Err(format!("model {model:?} has no deployment; name a version or deploy it first"));
            }
            return Ok(Requested::Targets(targets));
        }
        let (requested, number) = match version.parse::<u64>() {
            Ok(number) => (Requested::Number(number), number),
            Err(_) => {
                let number =
                    self.alias(model, version).ok_or_else(|| format!("model {model:?} has no alias {version:?}"))?;
                (Requested::Alias(version, number), number)
            }
        };
        if self.version(model, number).is_none() {
            return Err(format!("model {model:?} has no version {number}"));
        }
        Ok(requested)
    }

    /// Whether a model record exists.
    pub fn has_model(&self, model: &str) -> bool {
        self.models.contains_key(model)
    }

    /// A version's record.
    pub fn version(&self, model: &str, version: u64) -> Option<&VersionRecord> {
        self.models.get(model)?.versions.get(&version)
    }

    /// The highest version of a model that is not archived.
    pub fn latest_version(&self, model: &str) -> Option<u64> {
        self.models.get(model)?.versions.values().rev().find(|v| !v.archived).map(|v| v.version)
    }

    /// The version an alias points at.
    pub fn alias(&self, model: &str, alias: &str) -> Option<u64> {
        self.models.get(model)?.aliases.get(alias).copied()
    }

    /// A model's deployment.
    pub fn deployment(&self, model: &str) -> Option<&DeploymentRecord> {
        self.deployments.get(model)
    }

    /// Every deployment.
    pub fn deployments(&self) -> impl Iterator<Item = &DeploymentRecord> {
        self.deployments.values()
    }

    /// A model's deployment targets (not shadows) resolved to version numbers; targets
    /// whose alias no longer exists are left out.
    pub fn resolved_targets(&self, model: &str) -> &[ResolvedTarget] {
        self.targets.get(model).map(|targets| targets.serving.as_slice()).unwrap_or_default()
    }

    /// A model's shadow targets, resolved like [`Self::resolved_targets`].
    pub fn shadow_targets(&self, model: &str) -> &[ResolvedTarget] {
        self.targets.get(model).map(|targets| targets.shadows.as_slice()).unwrap_or_default()
    }

    fn targets_where(&self, model: &str, shadow: bool) -> Vec<ResolvedTarget> {
        let Some(deployment) = self.deployments.get(model) else {
            return Vec::new();
        };
        deployment
            .targets
            .iter()
            .filter(|target| target.shadow == shadow)
            .filter_map(|target| {
                let version = match (&target.version, &target.alias) {
                    (Some(version), _) => Some(*version),
                    (None, Some(alias)) => self.alias(model, alias),
                    (None, None) => None,
                }?;
                Some(ResolvedTarget { version, weight: target.weight, alias: target.alias.clone() })
            })
            .collect()
    }
}

/// Live workers decoded from a mirror of [`schema::WORKERS`].
pub fn workers(state: &MirrorState) -> Result<HashMap<String, WorkerRecord>> {
    state
        .entries
        .iter()
        .map(|(key, value)| schema::decode::<WorkerRecord>(key, value).map(|record| (record.id.clone(), record)))
        .collect()
}

/// The upload of dataset `name` with `sha256`, or its newest upload when `sha256` is
/// empty; `None` when there is no such upload.
pub async fn find_dataset(
    store: &dyn crate::KvStore,
    name: &str,
    sha256: &str,
) -> Result<Option<schema::DatasetRecord>> {
    let snapshot = store.range(&schema::dataset_prefix(name)).await?;
    let mut records: Vec<schema::DatasetRecord> =
        snapshot.kvs.iter().map(|kv| schema::decode(&kv.key, &kv.value)).collect::<Result<_>>()?;
    records.sort_by_key(|r| r.created_unix_ms);
    Ok(if sha256.is_empty() {
        records.pop()
    } else {
        records.into_iter().find(|r| r.sha256.eq_ignore_ascii_case(sha256))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MirrorState;
    use crate::schema::{DeploymentTarget, ModelRecord};

    fn catalog() -> Catalog {
        let version = VersionRecord { model: "m".into(), version: 2, kind: "linear".into(), ..Default::default() };
        let models = MirrorState {
            entries: [
                (schema::model_key("m"), schema::encode(&ModelRecord { name: "m".into(), ..Default::default() })),
                (schema::version_key("m", 2), schema::encode(&version)),
                (schema::alias_key("m", "prod"), b"2".to_vec()),
            ]
            .into(),
            revision: 1,
            synced: true,
        };
        let deployment = DeploymentRecord {
            model: "m".into(),
            targets: vec![DeploymentTarget { version: None, alias: Some("prod".into()), weight: 1, shadow: false }],
            replicas: 0,
            batching: Default::default(),
            resources: Default::default(),
            created_unix_ms: 0,
        };
        let deployments = MirrorState {
            entries: [(schema::deployment_key("m"), schema::encode(&deployment))].into(),
            revision: 1,
            synced: true,
        };
        Catalog::build(&models, &deployments)
    }

    #[test]
    fn lookup_resolves_numbers_aliases_and_deployments() {
        let catalog = catalog();
        assert_eq!(catalog.lookup("m", "2"), Ok(Requested::Number(2)));
        assert_eq!(catalog.lookup("m", "prod"), Ok(Requested::Alias("prod", 2)));
        let targets = [ResolvedTarget { version: 2, weight: 1, alias: Some("prod".into()) }];
        assert_eq!(catalog.lookup("m", ""), Ok(Requested::Targets(&targets)));
        assert_eq!(catalog.lookup("x", ""), Err("model \"x\" not found".into()));
        assert_eq!(catalog.lookup("m", "3"), Err("model \"m\" has no version 3".into()));
        assert_eq!(catalog.lookup("m", "dev"), Err("model \"m\" has no alias \"dev\"".into()));
    }
}
