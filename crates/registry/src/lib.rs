//! The registry: source of truth for models, immutable numbered versions, aliases,
//! deployments and datasets.
//!
//! Metadata lives in the KvStore (so registry replicas are stateless); blobs (artifacts
//! and datasets) live in an `object_store` under their sha256. [`Registry`] is the
//! domain API; [`grpc`] adapts it to `modelplane.registry.v1`.
#![forbid(unsafe_code)]

mod audit;
mod blob_upload;
mod blobs;
mod config;
mod datasets;
mod deployments;
mod describe;
mod domain;
mod error;
pub mod grpc;
mod keys;
mod known_workers;
mod lifecycle;
mod paging;
mod transfer;
mod upload;
mod workers;

use std::sync::Arc;
use std::time::Duration;

use modelplane_proto::registry::registry_server::RegistryServer;
use modelplane_service::Shutdown;
use modelplane_store::KvStore;
use tokio::net::TcpListener;

pub use audit::{ACTOR_METADATA, ANONYMOUS};
pub use blob_upload::{BlobWriter, StagedBlob};
pub use blobs::{BlobStore, BlobStream};
pub use config::{BlobLocation, DEFAULT_MAX_BLOB_BYTES, RegistryConfig};
pub use datasets::DatasetUpload;
pub use domain::{Registry, VersionUpload};
pub use error::{Error, Result};
pub use paging::Page;
pub use upload::UploadPart;
pub use workers::WorkerView;

/// Serves the registry API (plus health and reflection) on `listener` until `shutdown`.
pub async fn serve(
    config: RegistryConfig,
    store: Arc<dyn KvStore>,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<()> {
    config.validate().map_err(Error::InvalidArgument)?;
    let tls = config.access.tls.clone();
    let blobs = BlobStore::open(&config.blob_store).await?;
    let registry = Registry::new(store.clone(), blobs, config.clone());
    match registry.remove_orphans(config.orphan_grace).await {
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "orphan sweep failed; will try at the next start"),
    }
    let auth = modelplane_store::KeyCache::auth_layer(store, &config.access).await?;
    tokio::spawn({
        let (registry, shutdown) = (registry.clone(), shutdown.clone());
        async move { registry.remember_workers(shutdown).await }
    });
    let service = RegistryServer::new(grpc::RegistryService::new(registry))
        .max_decoding_message_size(modelplane_service::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(modelplane_service::MAX_MESSAGE_BYTES);
    tracing::info!(addr = ?listener.local_addr().ok(), blobs = %config.blob_store, "registry serving");
    modelplane_service::serve_grpc("registry", service, listener, shutdown, Duration::ZERO, auth, tls.as_ref(), None)
        .await
        .map_err(|err| Error::Internal(format!("registry server: {err}")))?;
    Ok(())
}
