//! Changing and removing what the registry holds: model labels and description,
//! deletions that refuse while something still uses the thing, archiving.

use std::collections::BTreeMap;

use modelplane_store::schema::{self, ModelRecord, VersionRecord};

use crate::{Error, Registry, Result};

impl Registry {
    /// Changes a model's description and labels (compare-and-swap, audited).
    pub async fn update_model(
        &self,
        name: &str,
        description: Option<String>,
        set_labels: BTreeMap<String, String>,
        remove_labels: Vec<String>,
    ) -> Result<(ModelRecord, BTreeMap<String, u64>)> {
        for key in set_labels.keys() {
            schema::validate_name("label key", key).map_err(Error::InvalidArgument)?;
        }
        let key = schema::model_key(name);
        loop {
            let kv = self.store.get(&key).await?.ok_or_else(|| Error::NotFound(format!("model {name:?} not found")))?;
            let before: ModelRecord = schema::decode(&key, &kv.value)?;
            let mut record = before.clone();
            if let Some(description) = &description {
                record.description = description.clone();
            }
            record.labels.extend(set_labels.clone());
            for label in &remove_labels {
                record.labels.remove(label);
            }
            if self.store.compare_and_swap(&key, kv.mod_revision, schema::encode(&record), None).await? {
                let text = |r: &ModelRecord| format!("description {:?} labels {:?}", r.description, r.labels);
                self.audit("update_model", name, "", text(&before), text(&record), "").await;
                return self.get_model(name).await;
            }
        }
    }

    /// What still uses a version: aliases pointing at it and deployment targets.
    async fn users_of_version(&self, model: &str, version: u64) -> Result<Vec<String>> {
        let (_, aliases) = self.get_model(model).await?;
        let mut users: Vec<String> =
            aliases.iter().filter(|(_, v)| **v == version).map(|(alias, _)| format!("alias {alias:?}")).collect();
        if let Some(deployment) = self.get_deployment_opt(model).await? {
            for target in &deployment.targets {
                let resolved = match (&target.version, &target.alias) {
                    (Some(number), _) => Some(*number),
                    (None, Some(alias)) => aliases.get(alias).copied(),
                    _ => None,
                };
                if resolved == Some(version) {
                    users.push(match &target.alias {
                        Some(alias) => format!("the deployment (through alias {alias:?})"),
                        None => "the deployment".to_owned(),
                    });
                }
            }
        }
        Ok(users)
    }

    /// Deletes a model, its versions and aliases; refused while it is deployed. Its blobs
    /// go with the next orphan sweep.
    pub async fn delete_model(&self, name: &str) -> Result<()> {
        self.get_model(name).await?;
        if let Some(deployment) = self.get_deployment_opt(name).await? {
            return Err(Error::FailedPrecondition(format!(
                "model {name:?} is deployed ({} target(s)); delete its deployment first",
                deployment.targets.len()
            )));
        }
        let children = self.store.range(&format!("{}/", schema::model_key(name))).await?;
        for kv in &children.kvs {
            self.store.delete(&kv.key).await?;
        }
        self.store.delete(&schema::model_key(name)).await?;
        self.audit("delete_model", name, "", format!("{} keys", children.kvs.len() + 1), String::new(), "").await;
        Ok(())
    }

    /// Archives a version: it stays downloadable but leaves listings and can no longer
    /// be aliased or deployed. Refused while an alias or the deployment uses it.
    pub async fn archive_version(&self, model: &str, version: u64) -> Result<VersionRecord> {
        let users = self.users_of_version(model, version).await?;
        if !users.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "{model} v{version} is in use by {}; move them to another version first",
                users.join(", ")
            )));
        }
        let key = schema::version_key(model, version);
        loop {
            let kv = self
                .store
                .get(&key)
                .await?
                .ok_or_else(|| Error::NotFound(format!("model {model:?} has no version {version}")))?;
            let mut record: VersionRecord = schema::decode(&key, &kv.value)?;
            if record.archived {
                return Ok(record);
            }
            record.archived = true;
            if self.store.compare_and_swap(&key, kv.mod_revision, schema::encode(&record), None).await? {
                self.audit("archive_version", model, &version.to_string(), "active".into(), "archived".into(), "")
                    .await;
                return Ok(record);
            }
        }
    }

    /// Deletes a version; refused while an alias or the deployment uses it. The number
    /// is never handed out again.
    pub async fn delete_version(&self, model: &str, version: u64) -> Result<()> {
        let record = self.get_version(model, &version.to_string()).await?;
        let users = self.users_of_version(model, version).await?;
        if !users.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "{model} v{version} is in use by {}; move them to another version first",
                users.join(", ")
            )));
        }
        self.store.delete(&schema::version_key(model, version)).await?;
        self.audit(
            "delete_version",
            model,
            &version.to_string(),
            format!("sha256 {}", record.sha256),
            String::new(),
            "",
        )
        .await;
        Ok(())
    }
}
