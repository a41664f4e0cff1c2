//! Client commands: thin wrappers over the registry, trainer and router gRPC APIs, one
//! module per subcommand group. What they share is here: the output format, channels
//! and how a failed call is told to the user.

use anyhow::{Context, Result};
use clap::ValueEnum;
use modelplane_proto::registry::registry_client::RegistryClient;
use modelplane_service::TracedChannel;

use crate::Endpoints;

mod archive;
mod credentials;
mod datasets;
mod deploy;
mod keys;
mod models;
mod predict;
mod train;
mod transfer;

pub use datasets::{DatasetsCommand, datasets};
pub use deploy::{AliasCommand, DeployArgs, alias, deploy};
pub use keys::{KeysCommand, keys};
pub use models::{ModelsCommand, models};
pub use predict::{PredictArgs, predict};
pub use train::{TrainArgs, train};

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    /// For people: progress bars, summaries, one block per item.
    Text,
    /// One JSON object per line: per event of a job, per item of a list.
    Json,
}

/// A channel to `addr` carrying the CLI's credentials (see [`credentials`]).
pub(crate) fn channel(endpoints: &Endpoints, addr: &str) -> Result<TracedChannel> {
    let credentials = credentials::credentials(endpoints)?;
    modelplane_service::connect_lazy(addr, &credentials).with_context(|| format!("bad endpoint {addr:?}"))
}

/// Who the CLI's mutations are recorded as: `cli/` and `MODELPLANE_ACTOR`, else `USER`.
fn actor() -> String {
    let user = std::env::var("MODELPLANE_ACTOR").or_else(|_| std::env::var("USER")).unwrap_or_default();
    format!("cli/{user}")
}

/// The registry, acting as the user for the audit log.
pub(crate) fn registry_client(endpoints: &Endpoints) -> Result<modelplane_client::Registry> {
    let credentials = credentials::credentials(endpoints)?;
    Ok(modelplane_client::Registry::connect(&endpoints.registry, &credentials)?.acting_as(&actor()))
}

/// The generated registry client, for unary calls.
pub(crate) fn registry(endpoints: &Endpoints) -> Result<RegistryClient<TracedChannel>> {
    Ok(registry_client(endpoints)?.grpc())
}

/// A request that names the user for the audit log (to the trainer, which has no typed
/// client).
pub(crate) fn as_user<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(actor) = actor().parse() {
        request.metadata_mut().insert("x-modelplane-actor", actor);
    }
    request
}

pub(crate) fn status_error(what: &str, status: tonic::Status) -> anyhow::Error {
    // A call that never reached the service says why only in its sources (refused
    // connection, TLS handshake, a server speaking TLS to a plaintext client...).
    let mut causes = String::new();
    let mut source = std::error::Error::source(&status);
    while let Some(cause) = source {
        causes.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    let hint = match status.code() {
        tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::Unavailable if !causes.is_empty() => {
            " (if the service speaks TLS, pass --tls-ca, and under mTLS --tls-client-cert/--tls-client-key)"
        }
        _ => "",
    };
    anyhow::anyhow!("{what}: {}{causes} ({:?}){hint}", status.message(), status.code())
}
