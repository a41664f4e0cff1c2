//! `modelplane.trainer.v1.Trainer`: submit, get and watch jobs.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use modelplane_proto::trainer as pb;
use modelplane_service::Caller;
use modelplane_service::access::{Permission, allows};
use modelplane_store::KvStore;
use modelplane_store::schema::{JobRecord, JobSpec, JobState};
use tonic::{Request, Response, Status};

use crate::jobs;

/// The gRPC face of the job queue.
pub struct TrainerService {
    pub(crate) store: Arc<dyn KvStore>,
    pub(crate) max_dataset_bytes: u64,
}

fn job_to_pb(job: JobRecord) -> pb::Job {
    pb::Job {
        id: job.id,
        spec: Some(pb::JobSpec {
            model: job.spec.model,
            kind: job.spec.kind,
            dataset: job.spec.dataset,
            dataset_sha256: job.spec.dataset_sha256,
            target: job.spec.target,
            params: job.spec.params.into_iter().collect(),
            promote_if: job.spec.promote_if.map(|rule| pb::PromoteRule {
                alias: rule.alias,
                metric: rule.metric,
                lower_is_better: rule.lower_is_better,
            }),
        }),
        state: match job.state {
            JobState::Queued => pb::JobState::Queued,
            JobState::Running => pb::JobState::Running,
            JobState::Succeeded => pb::JobState::Succeeded,
            JobState::Failed => pb::JobState::Failed,
            JobState::Cancelled => pb::JobState::Cancelled,
        } as i32,
        progress: Some(pb::Progress {
            epoch: job.epoch,
            epochs: job.epochs,
            loss: job.loss,
            validation_loss: job.validation_loss,
            rows_per_second: job.rows_per_second,
            eta_seconds: job.eta_seconds,
        }),
        cancel_requested: job.cancel_requested,
        promotion: job.promotion,
        claimed_by: job.claimed_by,
        error: job.error,
        version: job.version,
        metrics: job.metrics.into_iter().collect(),
        created_unix_ms: job.created_unix_ms,
        finished_unix_ms: job.finished_unix_ms,
    }
}

fn required_id(id: &str) -> Result<&str, Status> {
    if id.trim().is_empty() { Err(Status::invalid_argument("job id is required")) } else { Ok(id) }
}

#[tonic::async_trait]
impl pb::trainer_server::Trainer for TrainerService {
    async fn submit_job(&self, request: Request<pb::SubmitJobRequest>) -> Result<Response<pb::Job>, Status> {
        let caller = request.extensions().get::<Caller>().cloned();
        let spec = request.into_inner().spec.ok_or_else(|| Status::invalid_argument("spec is required"))?;
        tracing::Span::current().record("model", spec.model.as_str());
        if let Some(caller) = &caller {
            caller.reach(&spec.model)?;
            // The job's promotion flips an alias as the trainer service; the submitter
            // must be allowed to flip it.
            if spec.promote_if.is_some() && !allows(caller.role, Permission::Promote) {
                return Err(Status::permission_denied(format!(
                    "promote_if flips an alias, which a {} key may not do; submit without it and promote with a deployer key",
                    caller.role.name()
                )));
            }
        }
        let spec = JobSpec {
            model: spec.model,
            kind: spec.kind,
            dataset: spec.dataset,
            dataset_sha256: spec.dataset_sha256,
            target: spec.target,
            params: spec.params.into_iter().collect(),
            promote_if: spec.promote_if.map(|rule| modelplane_store::schema::PromoteRule {
                alias: rule.alias,
                metric: rule.metric,
                lower_is_better: rule.lower_is_better,
            }),
        };
        Ok(Response::new(job_to_pb(jobs::submit(&*self.store, spec, self.max_dataset_bytes).await?)))
    }

    async fn get_job(&self, request: Request<pb::GetJobRequest>) -> Result<Response<pb::Job>, Status> {
        let extensions = request.extensions().clone();
        let request = request.into_inner();
        let (job, _) = jobs::get(&*self.store, required_id(&request.id)?).await?;
        modelplane_service::reach_model(&extensions, &job.spec.model)?;
        Ok(Response::new(job_to_pb(job)))
    }

    async fn cancel_job(&self, request: Request<pb::CancelJobRequest>) -> Result<Response<pb::Job>, Status> {
        let extensions = request.extensions().clone();
        let request = request.into_inner();
        let id = required_id(&request.id)?;
        let (job, _) = jobs::get(&*self.store, id).await?;
        modelplane_service::reach_model(&extensions, &job.spec.model)?;
        Ok(Response::new(job_to_pb(jobs::cancel(&*self.store, id).await?)))
    }

    async fn list_jobs(&self, request: Request<pb::ListJobsRequest>) -> Result<Response<pb::ListJobsResponse>, Status> {
        let caller = request.extensions().get::<Caller>().cloned();
        let request = request.into_inner();
        let state = match pb::JobState::try_from(request.state) {
            Ok(pb::JobState::Unspecified) => None,
            Ok(pb::JobState::Queued) => Some(JobState::Queued),
            Ok(pb::JobState::Running) => Some(JobState::Running),
            Ok(pb::JobState::Succeeded) => Some(JobState::Succeeded),
            Ok(pb::JobState::Failed) => Some(JobState::Failed),
            Ok(pb::JobState::Cancelled) => Some(JobState::Cancelled),
            Err(_) => {
                return Err(Status::invalid_argument(format!("state {} is not a JobState", request.state)));
            }
        };
        let mut jobs = jobs::list(&*self.store, state, &request.model).await?;
        jobs.retain(|job| caller.as_ref().is_none_or(|caller| caller.may_use_model(&job.spec.model)));
        Ok(Response::new(pb::ListJobsResponse { jobs: jobs.into_iter().map(job_to_pb).collect() }))
    }

    type WatchJobStream = Pin<Box<dyn Stream<Item = Result<pb::Job, Status>> + Send>>;

    async fn watch_job(&self, request: Request<pb::WatchJobRequest>) -> Result<Response<Self::WatchJobStream>, Status> {
        let extensions = request.extensions().clone();
        let request = request.into_inner();
        let (job, _) = jobs::get(&*self.store, required_id(&request.id)?).await?;
        modelplane_service::reach_model(&extensions, &job.spec.model)?;
        let stream = jobs::watch(self.store.clone(), required_id(&request.id)?).await?;
        Ok(Response::new(stream.map(|item| item.map(job_to_pb).map_err(Status::from)).boxed()))
    }
}
