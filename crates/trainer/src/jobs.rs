//! The job queue in the KvStore: submit, read, watch.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use modelplane_model::{ModelKind, TrainParams};
use modelplane_store::schema::{self, JobRecord, JobSpec, JobState};
use modelplane_store::KvStore;

use crate::{Error, Result};

/// Checks a spec the way training will, so a bad one is refused at submission.
pub fn validate_spec(spec: &JobSpec) -> Result<()> {
    schema::validate_name("model name", &spec.model).map_err(Error::InvalidArgument)?;
    schema::validate_name("dataset name", &spec.dataset).map_err(Error::InvalidArgument)?;
    ModelKind::parse(&spec.kind).map_err(|err| Error::InvalidArgument(err.to_string()))?;
    TrainParams::from_map(&spec.params).map_err(|err| Error::InvalidArgument(err.to_string()))?;
    if spec.target.trim().is_empty() {
        return Err(Error::InvalidArgument("target column is required".into()));
    }
    Ok(())
}

/// Queues a job; any trainer may claim it.
pub async fn submit(store: &dyn KvStore, spec: JobSpec) -> Result<JobRecord> {
    validate_spec(&spec)?;
    let record = JobRecord {
        id: uuid::Uuid::new_v4().to_string(),
        spec,
        state: JobState::Queued,
        epoch: 0,
        epochs: 0,
        loss: 0.0,
        claimed_by: String::new(),
        error: String::new(),
        version: 0,
        metrics: Default::default(),
        created_unix_ms: schema::now_unix_ms(),
        finished_unix_ms: 0,
    };
    store.put(&schema::job_key(&record.id), schema::encode(&record), None).await?;
    tracing::info!(job = %record.id, model = %record.spec.model, "job queued");
    Ok(record)
}

/// A job's record and the revision it was read at.
pub async fn get(store: &dyn KvStore, id: &str) -> Result<(JobRecord, i64)> {
    let key = schema::job_key(id);
    let kv = store.get(&key).await?.ok_or_else(|| Error::NotFound(format!("job {id:?} not found")))?;
    Ok((schema::decode(&key, &kv.value)?, kv.mod_revision))
}

/// The job's record now and after every change, ending after a terminal state.
pub async fn watch(store: Arc<dyn KvStore>, id: &str) -> Result<impl Stream<Item = Result<JobRecord>> + Send + 'static> {
    let (first, revision) = get(&*store, id).await?;
    let key = schema::job_key(id);
    let changes = store.watch(&key, revision + 1).await?;
    let done = first.state.is_terminal();
    let updates = changes
        .filter_map(move |event| {
            let key = key.clone();
            async move {
                match event {
                    Ok(event) if event.key == key && event.kind == modelplane_store::EventKind::Put => {
                        Some(schema::decode::<JobRecord>(&key, &event.value).map_err(Error::from))
                    }
                    Ok(_) => None,
                    Err(err) => Some(Err(Error::from(err))),
                }
            }
        })
        .boxed();
    let updates = if done { futures::stream::empty().boxed() } else { updates };
    // Yield up to and including the first terminal record (or error), then end at once
    // instead of waiting for a change that will never come.
    let records = futures::stream::once(async move { Ok(first) }).chain(updates).boxed();
    let stream = futures::stream::unfold((records, false), |(mut records, finished)| async move {
        if finished {
            return None;
        }
        let item = records.next().await?;
        let finished = match &item {
            Ok(record) => record.state.is_terminal(),
            Err(_) => true,
        };
        Some((item, (records, finished)))
    });
    Ok(stream)
}
