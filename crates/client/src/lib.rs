//! The registry as its callers see it: the CLI, trainers, workers and routers all reach
//! the registry through [`Registry`], the one place a registry channel is opened.
//!
//! Uploads stream from any reader in chunks of at most 1 MiB, hashing as they go and
//! declaring the sha256 in a final commit message, so a file of any size is read once
//! and never held whole. Downloads stream into any writer, verify the sha256 of what
//! arrived, and resume from where a broken stream stopped. Both report progress through
//! a [`Progress`].
#![forbid(unsafe_code)]

mod download;
mod error;
mod progress;
mod upload;

use modelplane_proto::registry::registry_client::RegistryClient;
use modelplane_service::TracedChannel;

pub use download::Downloaded;
pub use error::{Error, Result};
pub use progress::{Progress, Silent};
pub use upload::Source;

/// Metadata naming the caller for the registry's audit log.
const ACTOR_METADATA: &str = "x-modelplane-actor";

/// A registry endpoint. Cheap to clone: clones share one lazily connecting channel.
#[derive(Clone)]
pub struct Registry {
    grpc: RegistryClient<TracedChannel>,
    actor: Option<tonic::metadata::AsciiMetadataValue>,
}

impl Registry {
    /// A registry at `addr` (`host:port` or `http://host:port`), called with
    /// `credentials`; the first call connects and a lost connection is re-established on
    /// the next call.
    pub fn connect(addr: &str, credentials: &modelplane_service::Credentials) -> Result<Self> {
        let channel = modelplane_service::connect_lazy(addr, credentials)
            .map_err(|err| Error::Endpoint(format!("registry address {addr:?}: {err}")))?;
        let grpc = RegistryClient::new(channel)
            .max_decoding_message_size(modelplane_service::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(modelplane_service::MAX_MESSAGE_BYTES);
        Ok(Self { grpc, actor: None })
    }

    /// The same registry, with every request naming `actor` for the audit log (an actor
    /// that is not valid metadata is left out).
    pub fn acting_as(mut self, actor: &str) -> Self {
        self.actor = actor.parse().ok();
        self
    }

    /// A request carrying this client's actor.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(actor) = &self.actor {
            request.metadata_mut().insert(ACTOR_METADATA, actor.clone());
        }
        request
    }

    /// The generated client, for the unary calls (pass [`Registry::request`] to name the
    /// actor).
    pub fn grpc(&self) -> RegistryClient<TracedChannel> {
        self.grpc.clone()
    }
}
