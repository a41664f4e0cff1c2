//! `modelplane.trainer.v1.Trainer`: submit, get and watch jobs.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use modelplane_proto::trainer as pb;
use modelplane_store::KvStore;
use modelplane_store::schema::{JobRecord, JobSpec, JobState};
use tonic::{Request, Response, Status};

use crate::jobs;

/// The gRPC face of the job queue.
pub struct TrainerService {
    pub(crate) store: Arc<dyn KvStore>,
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
        }),
        state: match job.state {
            JobState::Queued => pb::JobState::Queued,
            JobState::Running => pb::JobState::Running,
            JobState::Succeeded => pb::JobState::Succeeded,
            JobState::Failed => pb::JobState::Failed,
        } as i32,
        progress: Some(pb::Progress { epoch: job.epoch, epochs: job.epochs, loss: job.loss }),
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
        let spec = request.into_inner().spec.ok_or_else(|| Status::invalid_argument("spec is required"))?;
        tracing::Span::current().record("model", spec.model.as_str());
        let spec = JobSpec {
            model: spec.model,
            kind: spec.kind,
            dataset: spec.dataset,
            dataset_sha256: spec.dataset_sha256,
            target: spec.target,
            params: spec.params.into_iter().collect(),
        };
        Ok(Response::new(job_to_pb(jobs::submit(&*self.store, spec).await?)))
    }

    async fn get_job(&self, request: Request<pb::GetJobRequest>) -> Result<Response<pb::Job>, Status> {
        let request = request.into_inner();
        let (job, _) = jobs::get(&*self.store, required_id(&request.id)?).await?;
        Ok(Response::new(job_to_pb(job)))
    }

    type WatchJobStream = Pin<Box<dyn Stream<Item = Result<pb::Job, Status>> + Send>>;

    async fn watch_job(&self, request: Request<pb::WatchJobRequest>) -> Result<Response<Self::WatchJobStream>, Status> {
        let request = request.into_inner();
        let stream = jobs::watch(self.store.clone(), required_id(&request.id)?).await?;
        Ok(Response::new(stream.map(|item| item.map(job_to_pb).map_err(Status::from)).boxed()))
    }
}
