//! The job queue in the KvStore: submit, read, watch.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use modelplane_model::{ModelKind, TrainParams};
use modelplane_store::KvStore;
use modelplane_store::schema::{self, DatasetRecord, JobRecord, JobSpec, JobState};

use crate::{Error, Result};

/// Checks a spec the way training will, so a bad one is refused at submission.
pub fn validate_spec(spec: &JobSpec) -> Result<()> {
    schema::validate_name("model name", &spec.model).map_err(Error::InvalidArgument)?;
    schema::validate_name("dataset name", &spec.dataset).map_err(Error::InvalidArgument)?;
    let kind = ModelKind::parse(&spec.kind).map_err(|err| Error::InvalidArgument(err.to_string()))?;
    TrainParams::from_map(kind, &spec.params).map_err(|err| Error::InvalidArgument(err.to_string()))?;
    if let Some(rule) = &spec.promote_if {
        schema::validate_name("promote_if.alias", &rule.alias).map_err(Error::InvalidArgument)?;
        if rule.metric.trim().is_empty() {
            return Err(Error::InvalidArgument(
                "promote_if.metric is required, e.g. accuracy, f1_macro, r2 or rmse".into(),
            ));
        }
    }
    if spec.target.trim().is_empty() {
        return Err(Error::InvalidArgument("target column is required".into()));
    }
    Ok(())
}

/// The dataset a spec names (its newest upload unless a sha256 is given).
pub(crate) async fn find_dataset(store: &dyn KvStore, spec: &JobSpec) -> Result<DatasetRecord> {
    modelplane_store::find_dataset(store, &spec.dataset, &spec.dataset_sha256).await?.ok_or_else(|| {
        match spec.dataset_sha256.as_str() {
            "" => Error::NotFound(format!("dataset {:?} not found; upload it first", spec.dataset)),
            sha => Error::NotFound(format!("dataset {:?} has no upload with sha256 {sha}", spec.dataset)),
        }
    })
}

/// Queues a job; any trainer may claim it. The spec is checked first: kind, parameters
/// and their ranges, the dataset's existence, its size limit and its target column.
pub async fn submit(store: &dyn KvStore, spec: JobSpec, max_dataset_bytes: u64) -> Result<JobRecord> {
    validate_spec(&spec)?;
    let dataset = find_dataset(store, &spec).await?;
    if dataset.size_bytes > max_dataset_bytes {
        return Err(Error::ResourceExhausted(format!(
            "dataset {:?} is {} bytes; this trainer accepts at most {max_dataset_bytes}",
            spec.dataset, dataset.size_bytes
        )));
    }
    if let Some(column) = spec.params.get("text_column").filter(|c| !c.is_empty())
        && !dataset.columns.iter().any(|c| c == column)
    {
        return Err(Error::InvalidArgument(format!(
            "text column {column:?} is not in dataset {:?}; its columns are {}",
            spec.dataset,
            dataset.columns.join(", ")
        )));
    }
    if !dataset.columns.iter().any(|c| c == &spec.target) {
        return Err(Error::InvalidArgument(format!(
            "target column {:?} is not in dataset {:?}; its columns are {}",
            spec.target,
            spec.dataset,
            dataset.columns.join(", ")
        )));
    }
    let record = JobRecord {
        id: uuid::Uuid::new_v4().to_string(),
        spec,
        state: JobState::Queued,
        epoch: 0,
        epochs: 0,
        loss: 0.0,
        validation_loss: None,
        rows_per_second: 0.0,
        eta_seconds: 0.0,
        cancel_requested: false,
        promotion: String::new(),
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

/// Cancels a job: a queued one at once, a running one by asking its trainer to stop
/// after the current epoch. A job that already ended is FAILED_PRECONDITION-free: it is
/// returned as it is, so cancelling twice is harmless.
pub async fn cancel(store: &dyn KvStore, id: &str) -> Result<JobRecord> {
    let key = schema::job_key(id);
    loop {
        let (mut job, revision) = get(store, id).await?;
        match job.state {
            state if state.is_terminal() => return Ok(job),
            JobState::Queued => {
                job.state = JobState::Cancelled;
                job.finished_unix_ms = schema::now_unix_ms();
            }
            _ => job.cancel_requested = true,
        }
        if store.compare_and_swap(&key, revision, schema::encode(&job), None).await? {
            tracing::info!(job = %id, state = ?job.state, "cancel requested");
            return Ok(job);
        }
    }
}

/// Jobs newest first, filtered by state and model when given.
pub async fn list(store: &dyn KvStore, state: Option<JobState>, model: &str) -> Result<Vec<JobRecord>> {
    let snapshot = store.range(schema::JOBS).await?;
    let mut jobs: Vec<JobRecord> =
        snapshot.kvs.iter().map(|kv| schema::decode::<JobRecord>(&kv.key, &kv.value)).collect::<Result<_, _>>()?;
    jobs.retain(|job| state.is_none_or(|s| job.state == s) && (model.is_empty() || job.spec.model == model));
    jobs.sort_by_key(|job| std::cmp::Reverse(job.created_unix_ms));
    Ok(jobs)
}

/// The job's record now and after every change, ending after a terminal state.
pub async fn watch(
    store: Arc<dyn KvStore>,
    id: &str,
) -> Result<impl Stream<Item = Result<JobRecord>> + Send + 'static> {
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
