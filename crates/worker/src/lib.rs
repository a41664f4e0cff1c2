//! The inference worker: loads the versions deployments ask for and serves them over
//! the KServe v2 gRPC protocol, registered under a lease at `/workers/{id}`.
#![forbid(unsafe_code)]

mod batcher;
mod capacity;
mod classification;
mod codec;
mod config;
mod error;
mod grpc;
mod loader;
pub mod model_config;
mod state;
mod stats;

use std::sync::Arc;
use std::time::Duration;

use modelplane_proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use modelplane_service::Shutdown;
use modelplane_store::schema::{self, LoadState};
use modelplane_store::{Catalog, KvStore, LeaseKeeper, Mirror, placement};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use batcher::BatchPolicy;
pub use capacity::MemoryCapacity;
pub use config::WorkerConfig;
pub use error::{Error, Result};
pub use grpc::InferenceService;
pub use state::{LoadedModel, WorkerState};
pub use stats::Stats;

/// How long a draining worker waits after withdrawing itself before it stops accepting
/// connections, so routers see the withdrawal first.
pub(crate) const WITHDRAW_DELAY: Duration = Duration::from_millis(500);

/// Serves inference on `listener` until `shutdown`; then withdraws from the routing
/// table, drains in-flight requests and revokes its lease.
pub async fn serve(
    config: WorkerConfig,
    store: Arc<dyn KvStore>,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<()> {
    config.validate().map_err(Error::InvalidArgument)?;
    let tls = config.access.tls.clone();
    stats::describe_metrics();
    let local = listener.local_addr().map_err(|err| Error::Internal(err.to_string()))?;
    let addr = config.advertise_addr.clone().unwrap_or_else(|| local.to_string());
    let auth = modelplane_store::KeyCache::auth_layer(store.clone(), &config.access)
        .await
        .map_err(|err| Error::Unavailable(err.to_string()))?;
    let registry = modelplane_client::Registry::connect(&config.registry_addr, &config.credentials)
        .map_err(|err| Error::InvalidArgument(err.to_string()))?
        .acting_as(&format!("worker/{}", config.id));
    let lease = LeaseKeeper::start(store.clone(), config.lease_ttl)
        .await
        .map_err(|err| Error::Unavailable(format!("cannot register with the store: {err}")))?;

    let state = Arc::new(WorkerState::default());
    let models = Mirror::start(store.clone(), schema::MODELS);
    let deployments = Mirror::start(store.clone(), schema::DEPLOYMENTS);
    let workers = Mirror::start(store.clone(), schema::WORKERS);
    let (catalog_tx, catalog_rx) = watch::channel(Arc::new(Catalog::default()));
    let (ready_tx, ready_rx) = watch::channel(false);

    let memory_capacity = config.memory_capacity.resolve();
    match memory_capacity {
        Some(bytes) => tracing::info!(capacity = %placement::human_bytes(bytes), "memory for loaded versions"),
        None => tracing::info!("no memory limit for loaded versions"),
    }
    let loader = loader::Loader {
        state: state.clone(),
        config: config.clone(),
        registry,
        memory_capacity,
        shortfalls: Default::default(),
    };
    let identity = Identity { id: config.id.clone(), addr: addr.clone(), memory_capacity };
    publish_or_warn(&*store, &lease, &state, &identity, true).await;

    let reconcile = {
        let (store, state, shutdown) = (store.clone(), state.clone(), shutdown.clone());
        let mut lease_changes = lease.changes();
        let lease = Arc::new(lease);
        let lease_for_loop = lease.clone();
        let handle = tokio::spawn(async move {
            let lease = lease_for_loop;
            let mut models_rx = models.subscribe();
            let mut deployments_rx = deployments.subscribe();
            let mut workers_rx = workers.subscribe();
            let mut tick = tokio::time::interval(loader::LOADER_TICK);
            // Set until a publish succeeds, so a store outage only delays the record.
            let mut dirty = false;
            loop {
                let mut republish = false;
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = models_rx.changed() => {}
                    _ = deployments_rx.changed() => {}
                    _ = workers_rx.changed() => {}
                    _ = lease_changes.changed() => republish = true,
                    _ = state.changed.notified() => republish = true,
                    _ = tick.tick() => {}
                }
                let (models_state, deployments_state) = (models.current(), deployments.current());
                let synced = models_state.synced && deployments_state.synced;
                let catalog = Arc::new(Catalog::build(&models_state, &deployments_state));
                let live = modelplane_store::workers(&workers.current()).unwrap_or_default();
                if synced && loader.reconcile(&catalog, &live) {
                    republish = true;
                }
                catalog_tx.send_replace(catalog);
                let all_loaded = state.loaded().iter().all(|v| v.state != LoadState::Loading);
                ready_tx.send_if_modified(|ready| {
                    let now = synced && all_loaded;
                    std::mem::replace(ready, now) != now
                });
                if republish || dirty {
                    dirty = !publish_or_warn(&*store, &lease, &state, &identity, true).await;
                }
            }
            // Withdraw: routers stop picking this worker before connections close.
            publish_or_warn(&*store, &lease, &state, &identity, false).await;
        });
        (handle, lease)
    };

    let service = InferenceService {
        state: state.clone(),
        catalog: catalog_rx,
        ready: ready_rx.clone(),
        draining: shutdown.clone(),
    };
    tracing::info!(id = %config.id, %addr, "worker serving");
    let service = modelplane_service::ACCEPTED_COMPRESSIONS.into_iter().fold(
        GrpcInferenceServiceServer::new(service)
            .max_decoding_message_size(modelplane_service::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(modelplane_service::MAX_MESSAGE_BYTES),
        |server, encoding| server.accept_compressed(encoding),
    );
    let in_process = config.in_process.register(&addr, "worker", auth.clone(), service.clone());
    // The linger lets routers see the withdrawn record before connections close.
    let served = modelplane_service::serve_grpc(
        "worker",
        service,
        listener,
        shutdown.clone(),
        WITHDRAW_DELAY,
        auth,
        tls.as_ref(),
        // Ready (for Kubernetes' readiness probe too) once the versions it should hold
        // are loaded.
        Some(ready_rx),
    )
    .await;
    drop(in_process);
    let (handle, lease) = reconcile;
    let _ = handle.await;
    if let Ok(lease) = Arc::try_unwrap(lease)
        && let Err(err) = lease.revoke().await
    {
        tracing::warn!(error = %err, "revoking the worker lease failed; it will expire");
    }
    tracing::info!(id = %config.id, "worker stopped");
    served.map_err(|err| Error::Internal(format!("worker server: {err}")))
}

/// What the worker record says about the worker itself.
struct Identity {
    id: String,
    addr: String,
    memory_capacity: Option<u64>,
}

async fn publish_or_warn(
    store: &dyn KvStore,
    lease: &LeaseKeeper,
    state: &WorkerState,
    identity: &Identity,
    accepting: bool,
) -> bool {
    let Identity { id, addr, memory_capacity } = identity;
    match loader::publish(store, lease, state, id, addr, accepting, *memory_capacity).await {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(error = %err, "publishing the worker record failed; retrying");
            false
        }
    }
}
