//! Deployments: which versions of a model serve, with what weights and shadows, checked
//! against the versions and the workers' memory before they are stored.

use modelplane_store::schema::{self, DeploymentRecord};

use crate::workers::Change;
use crate::{Error, Registry, Result};

impl Registry {
    /// Creates or replaces a model's deployment after checking every target exists.
    pub async fn set_deployment(&self, deployment: DeploymentRecord) -> Result<DeploymentRecord> {
        let model = deployment.model.clone();
        self.get_model(&model).await?;
        if deployment.targets.iter().all(|t| t.shadow) {
            return Err(Error::InvalidArgument(
                "a deployment needs at least one target that is not a shadow (shadows only get copies)".into(),
            ));
        }
        for (index, target) in deployment.targets.iter().enumerate() {
            match (&target.version, &target.alias) {
                (Some(version), None) => {
                    if self.get_version(&model, &version.to_string()).await?.archived {
                        return Err(Error::FailedPrecondition(format!(
                            "{model} v{version} is archived; it cannot be deployed"
                        )));
                    }
                }
                (None, Some(alias)) => {
                    self.get_alias(&model, alias).await?;
                }
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "target {index} must name exactly one of a version number or an alias"
                    )));
                }
            }
            if target.weight == 0 && !target.shadow {
                return Err(Error::InvalidArgument(format!("target {index} has weight 0; expected at least 1")));
            }
        }
        deployment
            .batching
            .validate()
            .map_err(|err| Error::InvalidArgument(format!("deployment of {model}: batching: {err}")))?;
        deployment
            .resources
            .validate()
            .map_err(|err| Error::InvalidArgument(format!("deployment of {model}: {err}")))?;
        let need = self.replica_need(&deployment, None).await?;
        self.check_some_worker_fits(&model, need, deployment.resources.memory_bytes.is_some()).await?;
        let before = self.get_deployment_opt(&model).await?;
        let mut deployment = deployment;
        deployment.created_unix_ms = before.as_ref().map_or_else(schema::now_unix_ms, |before| before.created_unix_ms);
        if before.is_some() {
            let what = format!("the deployment of {model} stays as it is");
            self.check_keeps_replicas(&model, Change::Deployment(&deployment), &what).await?;
        }
        self.store.put(&schema::deployment_key(&model), schema::encode(&deployment), None).await?;
        tracing::info!(model = %model, targets = deployment.targets.len(), "deployment set");
        let text = |d: &DeploymentRecord| String::from_utf8_lossy(&schema::encode(d)).into_owned();
        self.audit("set_deployment", &model, "", before.as_ref().map(text).unwrap_or_default(), text(&deployment), "")
            .await;
        Ok(deployment)
    }

    pub(crate) async fn get_deployment_opt(&self, model: &str) -> Result<Option<DeploymentRecord>> {
        let key = schema::deployment_key(model);
        match self.store.get(&key).await? {
            Some(kv) => Ok(Some(schema::decode(&key, &kv.value)?)),
            None => Ok(None),
        }
    }

    /// A model's deployment.
    pub async fn get_deployment(&self, model: &str) -> Result<DeploymentRecord> {
        self.get_deployment_opt(model)
            .await?
            .ok_or_else(|| Error::NotFound(format!("model {model:?} has no deployment")))
    }

    /// Every deployment.
    pub async fn list_deployments(&self) -> Result<Vec<DeploymentRecord>> {
        let snapshot = self.store.range(schema::DEPLOYMENTS).await?;
        Ok(snapshot.kvs.iter().map(|kv| schema::decode(&kv.key, &kv.value)).collect::<Result<_, _>>()?)
    }

    /// Removes a model's deployment: workers unload it, the router stops serving it.
    pub async fn delete_deployment(&self, model: &str) -> Result<()> {
        let before = self.get_deployment(model).await?;
        self.store.delete(&schema::deployment_key(model)).await?;
        let text = String::from_utf8_lossy(&schema::encode(&before)).into_owned();
        self.audit("delete_deployment", model, "", text, String::new(), "").await;
        Ok(())
    }
}
