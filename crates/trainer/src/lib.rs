//! The trainer: a job system over the KvStore. `SubmitJob` queues a job; every trainer
//! claims queued jobs with a lease-bound compare-and-swap, trains with
//! `modelplane-model` off the async runtime, streams progress into the job record and
//! registers the artifact as a new version with its metrics and lineage.
#![forbid(unsafe_code)]

mod config;
mod error;
mod grpc;
pub mod jobs;
mod promotion;
mod runner;

use std::sync::Arc;
use std::time::Duration;

use modelplane_proto::trainer::trainer_server::TrainerServer;
use modelplane_service::Shutdown;
use modelplane_store::{KvStore, LeaseKeeper};
use tokio::net::TcpListener;

pub use config::TrainerConfig;
pub use error::{Error, Result};
pub use grpc::TrainerService;

/// Serves the trainer API on `listener` and runs claimed jobs until `shutdown`.
pub async fn serve(
    config: TrainerConfig,
    store: Arc<dyn KvStore>,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<()> {
    config.validate().map_err(Error::InvalidArgument)?;
    let tls = config.access.tls.clone();
    let auth = modelplane_store::KeyCache::auth_layer(store.clone(), &config.access)
        .await
        .map_err(|err| Error::Unavailable(err.to_string()))?;
    let registry = modelplane_client::Registry::connect(&config.registry_addr, &config.credentials)
        .map_err(|err| Error::InvalidArgument(err.to_string()))?
        .acting_as(&format!("trainer/{}", config.id));
    let lease = Arc::new(
        LeaseKeeper::start(store.clone(), config.lease_ttl)
            .await
            .map_err(|err| Error::Unavailable(format!("cannot take a lease from the store: {err}")))?,
    );
    let runner =
        Arc::new(runner::Runner { store: store.clone(), registry, config: config.clone(), lease: lease.clone() });
    let jobs = tokio::spawn(runner.run(shutdown.clone()));

    tracing::info!(id = %config.id, addr = ?listener.local_addr().ok(), "trainer serving");
    let service = TrainerServer::new(TrainerService { store, max_dataset_bytes: config.max_dataset_bytes });
    let served = modelplane_service::serve_grpc(
        "trainer",
        service,
        listener,
        shutdown,
        Duration::ZERO,
        auth,
        tls.as_ref(),
        None,
    )
    .await;
    let _ = jobs.await;
    if let Ok(lease) = Arc::try_unwrap(lease) {
        // Jobs still running are released: another trainer claims them at once.
        if let Err(err) = lease.revoke().await {
            tracing::warn!(error = %err, "revoking the trainer lease failed; it will expire");
        }
    }
    served.map_err(|err| Error::Internal(format!("trainer server: {err}")))
}
