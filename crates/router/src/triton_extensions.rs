//! Triton's extensions on the router: statistics summed over every worker, the
//! repository index from the deployments, and load/unload as deploy/undeploy through
//! the registry (so they are audited like any other deployment change).

use std::collections::BTreeMap;

use http::HeaderValue;
use modelplane_proto::inference as pb;
use modelplane_proto::registry as rpb;
use modelplane_proto::registry::registry_client::RegistryClient;
use modelplane_service::Caller;
use tonic::Request;

use crate::Error;
use crate::service::RouterService;
use crate::worker_link::method;

/// Who RepositoryModelLoad/Unload are recorded as in the audit log.
const ACTOR: &str = "router/triton-repository-api";

impl RouterService {
    /// Every worker's statistics for the matching versions, summed per version.
    pub(crate) async fn statistics(
        &self,
        request: pb::ModelStatisticsRequest,
        caller: Option<&Caller>,
    ) -> Result<pb::ModelStatisticsResponse, Error> {
        let table = self.table.borrow().clone();
        if !request.name.is_empty() && !table.catalog.has_model(&request.name) {
            return Err(Error::NotFound(format!("model {:?} not found", request.name)));
        }
        let calls = table.workers().into_iter().map(|replica| {
            let (client, request) = (replica.client.clone(), request.clone());
            async move {
                client.unary::<_, pb::ModelStatisticsResponse>(method::MODEL_STATISTICS, &request, None).await
            }
        });
        let mut merged: BTreeMap<(String, String), pb::ModelStatistics> = BTreeMap::new();
        for answer in futures::future::join_all(calls).await {
            let Ok(answer) = answer else { continue };
            for stats in answer.model_stats {
                if caller.is_some_and(|caller| !caller.may_use_model(&stats.name)) {
                    continue;
                }
                let entry =
                    merged.entry((stats.name.clone(), stats.version.clone())).or_insert_with(|| pb::ModelStatistics {
                        name: stats.name.clone(),
                        version: stats.version.clone(),
                        ..Default::default()
                    });
                add(entry, &stats);
            }
        }
        Ok(pb::ModelStatisticsResponse { model_stats: merged.into_values().collect() })
    }

    /// Each deployed target version: READY with a ready replica, else UNAVAILABLE with
    /// the reason (no worker has room for it, or it is still loading).
    pub(crate) fn index(&self, ready_only: bool, caller: Option<&Caller>) -> pb::RepositoryIndexResponse {
        let table = self.table.borrow().clone();
        let mut models = Vec::new();
        let visible =
            table.catalog.deployments().filter(|d| caller.is_none_or(|caller| caller.may_use_model(&d.model)));
        for deployment in visible {
            for target in table.catalog.resolved_targets(&deployment.model) {
                let ready = !table.replicas(&deployment.model, target.version).is_empty();
                if ready_only && !ready {
                    continue;
                }
                models.push(pb::repository_index_response::ModelIndex {
                    name: deployment.model.clone(),
                    version: target.version.to_string(),
                    state: if ready { "READY" } else { "UNAVAILABLE" }.into(),
                    reason: match (ready, table.shortfall(&deployment.model)) {
                        (true, _) => String::new(),
                        (false, Some(shortfall)) => shortfall.to_owned(),
                        (false, None) => "no worker reports it ready yet".into(),
                    },
                });
            }
        }
        pb::RepositoryIndexResponse { models }
    }

    fn registry(&self) -> Result<RegistryClient<modelplane_service::TracedChannel>, Error> {
        let addr = self.config.registry_addr.as_deref().ok_or_else(|| {
            Error::FailedPrecondition(
                "this router has no registry address (--registry); deploy with `modelplane deploy`".into(),
            )
        })?;
        // The router's TLS (its certificate too), but no key of its own: each call
        // carries its caller's (see `acting`).
        let transport = modelplane_service::Credentials { api_key: None, tls: self.config.credentials.tls.clone() };
        let registry =
            modelplane_client::Registry::connect(addr, &transport).map_err(|err| Error::Internal(err.to_string()))?;
        Ok(registry.grpc())
    }

    /// Deploys `model` unless it already is: to its `production` alias when it has
    /// one, else its latest version.
    pub(crate) async fn load(&self, model: &str, authorization: Option<HeaderValue>) -> Result<(), Error> {
        let table = self.table.borrow().clone();
        if !table.catalog.has_model(model) {
            return Err(Error::NotFound(format!("model {model:?} not found in the registry")));
        }
        if !table.catalog.resolved_targets(model).is_empty() {
            return Ok(());
        }
        let target = if table.catalog.alias(model, "production").is_some() {
            rpb::DeploymentTarget { alias: "production".into(), weight: 100, ..Default::default() }
        } else {
            let version = table.catalog.latest_version(model).ok_or_else(|| {
                Error::FailedPrecondition(format!("model {model:?} has no version that is not archived"))
            })?;
            rpb::DeploymentTarget { version, weight: 100, ..Default::default() }
        };
        let deployment = rpb::Deployment { model: model.to_owned(), targets: vec![target], ..Default::default() };
        let request = acting(rpb::SetDeploymentRequest { deployment: Some(deployment) }, authorization)?;
        self.registry()?.set_deployment(request).await?;
        Ok(())
    }

    /// Removes `model`'s deployment.
    pub(crate) async fn unload(&self, model: &str, authorization: Option<HeaderValue>) -> Result<(), Error> {
        let request = acting(rpb::DeleteDeploymentRequest { model: model.to_owned() }, authorization)?;
        self.registry()?.delete_deployment(request).await?;
        Ok(())
    }
}

/// A registry request on behalf of the caller whose `authorization` it carries. A
/// caller without a key is refused here: the registry could otherwise take the router's
/// certificate, which may map to a role (`--mtls-role`), for the caller's identity.
fn acting<T>(message: T, authorization: Option<HeaderValue>) -> Result<Request<T>, Error> {
    let refused = || {
        Error::Unauthenticated(
            "deploying through the router needs an API key with the deployer role              (authorization: Bearer KEY); the router passes it on to the registry"
                .into(),
        )
    };
    let mut value = authorization
        .and_then(|value| tonic::metadata::MetadataValue::try_from(value.as_bytes()).ok())
        .ok_or_else(refused)?;
    value.set_sensitive(true);
    let mut request = Request::new(message);
    request.metadata_mut().insert("x-modelplane-actor", tonic::metadata::MetadataValue::from_static(ACTOR));
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

fn add_duration(total: &mut Option<pb::StatisticDuration>, more: &Option<pb::StatisticDuration>) {
    if let Some(more) = more {
        let total = total.get_or_insert_with(Default::default);
        total.count += more.count;
        total.ns += more.ns;
    }
}

fn add(total: &mut pb::ModelStatistics, more: &pb::ModelStatistics) {
    total.last_inference = total.last_inference.max(more.last_inference);
    total.inference_count += more.inference_count;
    total.execution_count += more.execution_count;
    if let Some(more) = &more.inference_stats {
        let stats = total.inference_stats.get_or_insert_with(Default::default);
        add_duration(&mut stats.success, &more.success);
        add_duration(&mut stats.fail, &more.fail);
        add_duration(&mut stats.queue, &more.queue);
        add_duration(&mut stats.compute_infer, &more.compute_infer);
    }
    for batch in &more.batch_stats {
        let position = total.batch_stats.iter().position(|b| b.batch_size == batch.batch_size);
        let entry = match position {
            Some(i) => &mut total.batch_stats[i],
            None => {
                let at = total.batch_stats.partition_point(|b| b.batch_size < batch.batch_size);
                total
                    .batch_stats
                    .insert(at, pb::InferBatchStatistics { batch_size: batch.batch_size, ..Default::default() });
                &mut total.batch_stats[at]
            }
        };
        add_duration(&mut entry.compute_infer, &batch.compute_infer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker_stats(executions: &[(u64, u64)]) -> pb::ModelStatistics {
        pb::ModelStatistics {
            execution_count: executions.iter().map(|(_, count)| count).sum(),
            batch_stats: executions
                .iter()
                .map(|&(batch_size, count)| pb::InferBatchStatistics {
                    batch_size,
                    compute_infer: Some(pb::StatisticDuration { count, ns: count * 1000 }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn batch_statistics_of_workers_add_up_per_batch_size_in_order() {
        let mut total = pb::ModelStatistics::default();
        add(&mut total, &worker_stats(&[(1, 5), (8, 2)]));
        add(&mut total, &worker_stats(&[(4, 1), (8, 3), (16, 1)]));
        let merged: Vec<(u64, u64, u64)> = total
            .batch_stats
            .iter()
            .map(|b| {
                let infer = b.compute_infer.unwrap_or_default();
                (b.batch_size, infer.count, infer.ns)
            })
            .collect();
        assert_eq!(merged, vec![(1, 5, 5000), (4, 1, 1000), (8, 5, 5000), (16, 1, 1000)]);
        assert_eq!(total.execution_count, 12);
    }
}
