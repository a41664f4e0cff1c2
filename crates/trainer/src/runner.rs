//! Claims queued jobs (or jobs whose trainer died), trains them off the async runtime,
//! streams progress into the job record and registers the result as a new version.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use modelplane_client::{Registry, Silent, Source};
use modelplane_model::{CsvOptions, Dataset, Model, ModelKind, TrainParams};
use modelplane_proto::registry::{self as pb, UploadManifest};
use modelplane_service::Shutdown;
use modelplane_store::schema::{self, JobRecord, JobState, PromoteRule};
use modelplane_store::{KvStore, LeaseKeeper, Mirror};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::promotion::{self, Current, Verdict};
use crate::{Error, Result, TrainerConfig};

/// Bytes of CSV in flight between the download and the parser.
const PIPE_BYTES: usize = 4 << 20;

/// Minimum time between two progress writes to the store.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

pub(crate) struct Runner {
    pub store: Arc<dyn KvStore>,
    pub registry: Registry,
    pub config: TrainerConfig,
    pub lease: Arc<LeaseKeeper>,
}

impl Runner {
    /// Watches the jobs and claims for work until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        let jobs = Mirror::start(self.store.clone(), schema::JOBS);
        let claims = Mirror::start(self.store.clone(), schema::CLAIMS);
        let (mut jobs_rx, mut claims_rx) = (jobs.subscribe(), claims.subscribe());
        let slots = Arc::new(Semaphore::new(self.config.max_concurrent_jobs));
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = jobs_rx.changed() => {}
                _ = claims_rx.changed() => {}
                _ = tick.tick() => {}
            }
            let (jobs_now, claims_now) = (jobs.current(), claims.current());
            if !jobs_now.synced || !claims_now.synced {
                continue;
            }
            let mut candidates: Vec<JobRecord> = jobs_now
                .entries
                .iter()
                .filter_map(|(key, value)| schema::decode::<JobRecord>(key, value).ok())
                .filter(|job| !job.state.is_terminal() && !claims_now.entries.contains_key(&schema::claim_key(&job.id)))
                .collect();
            candidates.sort_by_key(|job| job.created_unix_ms);
            for job in candidates {
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    break;
                };
                match self
                    .store
                    .compare_and_swap(
                        &schema::claim_key(&job.id),
                        0,
                        self.config.id.clone().into_bytes(),
                        Some(self.lease.current()),
                    )
                    .await
                {
                    Ok(true) => {
                        let runner = self.clone();
                        let span = tracing::info_span!("train_job", job = %job.id, model = %job.spec.model);
                        tokio::spawn(
                            async move {
                                runner.execute(job).await;
                                drop(permit);
                            }
                            .instrument(span),
                        );
                    }
                    Ok(false) => {}
                    Err(err) => tracing::warn!(error = %err, "claiming a job failed"),
                }
            }
        }
    }

    async fn execute(&self, mut job: JobRecord) {
        tracing::info!(previous_state = ?job.state, "claimed job");
        job.state = JobState::Running;
        job.claimed_by = self.config.id.clone();
        job.error.clear();
        let cancel = Arc::new(AtomicBool::new(false));
        self.save(&mut job, &cancel).await;
        let started = Instant::now();
        let outcome = if cancel.load(Ordering::Relaxed) {
            Err(Error::Cancelled)
        } else {
            self.train_and_register(&mut job, &cancel, started).await
        };
        match outcome {
            Ok(version) => {
                job.state = JobState::Succeeded;
                job.version = version.version;
                job.metrics = version.metrics.clone().into_iter().collect();
                tracing::info!(version = job.version, "job succeeded");
                if let Some(rule) = job.spec.promote_if.clone() {
                    job.promotion = match self.promote(&rule, &version).await {
                        Ok(decision) => decision,
                        Err(err) => format!("promotion not decided: {err}"),
                    };
                    tracing::info!(promotion = %job.promotion, "promote_if");
                }
            }
            Err(Error::Cancelled) => {
                job.state = JobState::Cancelled;
                tracing::info!("job cancelled");
            }
            Err(err) => {
                job.state = JobState::Failed;
                job.error = err.to_string();
                tracing::warn!(error = %job.error, "job failed");
            }
        }
        job.finished_unix_ms = schema::now_unix_ms();
        job.eta_seconds = 0.0;
        self.save(&mut job, &cancel).await;
        if let Err(err) = self.store.delete(&schema::claim_key(&job.id)).await {
            tracing::warn!(error = %err, "releasing the job claim failed; it expires with the lease");
        }
    }

    /// Writes the job record with a compare-and-swap so a cancellation requested in the
    /// meantime is kept (and noticed: it sets `cancel`).
    async fn save(&self, job: &mut JobRecord, cancel: &AtomicBool) {
        let key = schema::job_key(&job.id);
        for _ in 0..16 {
            let current = match self.store.get(&key).await {
                Ok(current) => current,
                Err(err) => {
                    tracing::warn!(job = %job.id, error = %err, "reading the job record failed");
                    return;
                }
            };
            let revision = current.as_ref().map_or(0, |kv| kv.mod_revision);
            if let Some(stored) = current.and_then(|kv| schema::decode::<JobRecord>(&key, &kv.value).ok())
                && stored.cancel_requested
            {
                job.cancel_requested = true;
                cancel.store(true, Ordering::Relaxed);
            }
            match self.store.compare_and_swap(&key, revision, schema::encode(&*job), None).await {
                Ok(true) => return,
                Ok(false) => continue,
                Err(err) => {
                    tracing::warn!(job = %job.id, error = %err, "writing the job record failed");
                    return;
                }
            }
        }
        tracing::warn!(job = %job.id, "job record kept changing; progress not written");
    }

    /// Streams the job's dataset from the registry into the CSV parser as it arrives,
    /// so only the parsed table is held; the download's sha256 is checked before the
    /// table is used.
    async fn load_dataset(
        &self,
        job: &JobRecord,
        classes: bool,
        params: &TrainParams,
    ) -> Result<(pb::Dataset, Dataset)> {
        let record = crate::jobs::find_dataset(&*self.store, &job.spec).await?;
        let rows_hint = usize::try_from(record.rows).unwrap_or(0);
        let (mut sink, source) = tokio::io::duplex(PIPE_BYTES);
        let target = job.spec.target.clone();
        let (text_column, categorical) = (params.text_column.clone(), params.categorical.clone());
        let parse = tokio::task::spawn_blocking(move || {
            let reader = tokio_util::io::SyncIoBridge::new(source);
            let options = CsvOptions {
                target: &target,
                classes,
                text_column: text_column.as_deref(),
                categorical: &categorical,
                rows_hint,
            };
            Dataset::from_csv_reader(std::io::BufReader::new(reader), options)
        });
        let registry = self.registry.clone();
        let download = async move {
            let downloaded = registry.download_dataset(&record.name, &record.sha256, &mut sink, &Silent).await;
            // The parser sees the end of the CSV once the pipe's writer is gone.
            drop(sink);
            downloaded
        };
        let (downloaded, parsed) = tokio::join!(download, parse);
        let parsed = parsed.map_err(|err| Error::Internal(format!("parsing task failed: {err}")))?;
        match (downloaded, parsed) {
            (Ok(downloaded), Ok(data)) => Ok((downloaded.record, data)),
            // A bad row stops the parser, which breaks the pipe: the row is the news.
            (Ok(_) | Err(modelplane_client::Error::Io(_)), Err(err)) => Err(Error::InvalidArgument(err.to_string())),
            // A download that failed cuts the CSV short: the download is the news.
            (Err(err), _) => Err(match err.code() {
                tonic::Code::DataLoss => Error::Internal(err.to_string()),
                _ => Error::Unavailable(format!("dataset download failed: {}", err.message())),
            }),
        }
    }

    async fn train_and_register(
        &self,
        job: &mut JobRecord,
        cancel: &Arc<AtomicBool>,
        started: Instant,
    ) -> Result<pb::ModelVersion> {
        let kind = ModelKind::parse(&job.spec.kind).map_err(|err| Error::InvalidArgument(err.to_string()))?;
        let params =
            TrainParams::from_map(kind, &job.spec.params).map_err(|err| Error::InvalidArgument(err.to_string()))?;
        let (dataset, data) = self.load_dataset(job, kind.is_classifier(), &params).await?;

        let (progress_tx, mut progress_rx) = tokio::sync::mpsc::unbounded_channel();
        let stop = cancel.clone();
        let training = tokio::task::spawn_blocking(move || {
            let model = modelplane_model::train(kind, data, &params, |progress| {
                let _ = progress_tx.send(progress);
                !stop.load(Ordering::Relaxed)
            })
            .map_err(|err| match err {
                modelplane_model::Error::Cancelled => Error::Cancelled,
                other => Error::InvalidArgument(other.to_string()),
            })?;
            model.to_artifact().map(|bytes| (model, bytes)).map_err(|err| Error::Internal(err.to_string()))
        });
        let mut last_write = Instant::now() - PROGRESS_EVERY;
        while let Some(progress) = progress_rx.recv().await {
            job.epoch = progress.epoch;
            job.epochs = progress.epochs;
            job.loss = progress.loss;
            job.validation_loss = progress.validation_loss;
            job.rows_per_second = progress.rows_per_second;
            let per_epoch = started.elapsed().as_secs_f64() / f64::from(progress.epoch.max(1));
            job.eta_seconds = per_epoch * f64::from(progress.epochs.saturating_sub(progress.epoch));
            if last_write.elapsed() >= PROGRESS_EVERY || progress.epoch == progress.epochs {
                last_write = Instant::now();
                self.save(job, cancel).await;
            }
        }
        let (model, artifact): (Model, Vec<u8>) =
            training.await.map_err(|err| Error::Internal(format!("training task failed: {err}")))??;
        self.upload(job, &dataset, &model, artifact, started.elapsed()).await
    }

    /// Applies a promote_if rule to a freshly registered version; returns what was
    /// decided and why (also the reason recorded in the audit log).
    async fn promote(&self, rule: &PromoteRule, version: &pb::ModelVersion) -> Result<String> {
        let mut registry = self.registry.grpc();
        let request = pb::GetVersionRequest { model: version.model.clone(), version: rule.alias.clone() };
        let current = match registry.get_version(self.registry.request(request)).await {
            Ok(current) => Some(current.into_inner()),
            Err(status) if status.code() == tonic::Code::NotFound => None,
            Err(status) => {
                return Err(Error::Unavailable(format!("reading alias {}: {}", rule.alias, status.message())));
            }
        };
        let current = current.as_ref().map(|current| Current { version: current.version, metrics: &current.metrics });
        let reason = match promotion::decide(rule, version.version, &version.metrics, current) {
            Verdict::Promote(reason) => reason,
            Verdict::Keep(outcome) => return Ok(outcome),
        };
        let request = self.registry.request(pb::SetAliasRequest {
            model: version.model.clone(),
            alias: rule.alias.clone(),
            version: version.version,
            reason: format!("promote_if: {reason}"),
        });
        registry
            .set_alias(request)
            .await
            .map_err(|status| Error::Unavailable(format!("setting alias {}: {}", rule.alias, status.message())))?;
        Ok(format!("promoted {} to v{}: {reason}", rule.alias, version.version))
    }

    async fn upload(
        &self,
        job: &JobRecord,
        dataset: &pb::Dataset,
        model: &Model,
        artifact: Vec<u8>,
        duration: Duration,
    ) -> Result<pb::ModelVersion> {
        let mut params = model.manifest.params.clone();
        params.insert("kind".into(), job.spec.kind.clone());
        params.insert("trainer".into(), self.config.id.clone());
        params.insert("trainer_version".into(), env!("CARGO_PKG_VERSION").into());
        params.insert("duration_ms".into(), duration.as_millis().to_string());
        let manifest = UploadManifest {
            model: job.spec.model.clone(),
            lineage: Some(pb::Lineage {
                dataset: dataset.name.clone(),
                dataset_sha256: dataset.sha256.clone(),
                job_id: job.id.clone(),
                params: params.into_iter().collect(),
                target: job.spec.target.clone(),
                // 0: the registry records the model's latest version at registration.
                parent_version: 0,
            }),
            create_model: true,
            ..Default::default()
        };
        self.registry
            .upload_version(manifest, Source::bytes(artifact), Arc::new(Silent))
            .await
            .map_err(|err| Error::Unavailable(format!("registering the version failed: {}", err.message())))
    }
}
