//! The security flags of the server roles: who is admitted without a key, how failed
//! authentications are slowed down, and the key each service presents to the others.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use modelplane_service::access::{Role, ServerAccess};
use modelplane_service::tls::{ClientTls, ServerTls};
use modelplane_service::{CertificateRoles, Credentials};
use modelplane_store::KvStore;
use modelplane_store::api_key::{KeySpec, ensure_key_file_patiently};

/// What a caller without a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AnonymousRole {
    /// Inference and model metadata (Triton's default: open inference).
    Predictor,
    /// Read-only: registry, statistics, jobs, audit.
    Viewer,
    /// Nothing but health and reflection.
    None,
}

impl AnonymousRole {
    fn role(self) -> Option<Role> {
        match self {
            AnonymousRole::Predictor => Some(Role::Predictor),
            AnonymousRole::Viewer => Some(Role::Viewer),
            AnonymousRole::None => None,
        }
    }
}

/// How a server admits its callers.
#[derive(Args, Clone, Debug)]
pub struct AccessArgs {
    /// What a caller without an API key may do (cluster roles: none; `up`: predictor).
    #[arg(long, env = "MODELPLANE_ANONYMOUS_ROLE", value_enum)]
    pub anonymous_role: Option<AnonymousRole>,
    /// Failed authentications one client address may make in a minute before it is
    /// refused (RESOURCE_EXHAUSTED, REST 429) for the rest of it; 0: no limit.
    #[arg(long, env = "MODELPLANE_AUTH_FAILURES_PER_MINUTE", default_value_t = modelplane_service::DEFAULT_FAILURES_PER_MINUTE)]
    pub auth_failures_per_minute: u32,
    /// PEM certificate chain to serve TLS with (on every listener of the role); read
    /// again when the file changes.
    #[arg(long, env = "MODELPLANE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "MODELPLANE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA that clients' certificates must chain to (mTLS: a client without one is
    /// refused at the handshake).
    #[arg(long, env = "MODELPLANE_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// `NAME=ROLE`: a caller that sends no API key but a client certificate (verified
    /// against --tls-client-ca) with this DNS or URI name acts as ROLE; `*.SUFFIX`
    /// matches the names under SUFFIX. Repeat the flag (or separate by commas).
    #[arg(long = "mtls-role", env = "MODELPLANE_MTLS_ROLES", value_delimiter = ',', requires = "tls_client_ca")]
    pub mtls_roles: Vec<String>,
}

impl AccessArgs {
    /// The settings, with `default` for callers without a key unless the flag says; the
    /// TLS files are loaded once here, so a bad one stops start-up before a port is bound.
    pub fn access(&self, default: AnonymousRole) -> Result<ServerAccess> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                let tls = ServerTls { cert: cert.clone(), key: key.clone(), client_ca: self.tls_client_ca.clone() };
                tls.acceptor(modelplane_service::tls::ALPN_H2).map_err(anyhow::Error::msg)?;
                Some(tls)
            }
            _ => None,
        };
        Ok(ServerAccess {
            anonymous: self.anonymous_role.unwrap_or(default).role(),
            failures_per_minute: self.auth_failures_per_minute,
            tls,
            certificate_roles: CertificateRoles::parse(&self.mtls_roles).map_err(anyhow::Error::msg)?,
        })
    }
}

/// How a client checks the servers it calls and proves itself to them over TLS.
#[derive(Args, Clone, Debug)]
pub struct ClientTlsArgs {
    /// PEM CA the servers' certificates must chain to; setting it turns TLS on for every
    /// call this process makes.
    #[arg(long, env = "MODELPLANE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// PEM certificate presented to servers that ask for one (mTLS).
    #[arg(long, env = "MODELPLANE_TLS_CLIENT_CERT", requires_all = ["tls_ca", "tls_client_key"])]
    pub tls_client_cert: Option<PathBuf>,
    /// PEM private key of --tls-client-cert.
    #[arg(long, env = "MODELPLANE_TLS_CLIENT_KEY", requires = "tls_client_cert")]
    pub tls_client_key: Option<PathBuf>,
}

impl ClientTlsArgs {
    /// The settings, read once (`None`: plaintext).
    pub fn load(&self) -> Result<Option<ClientTls>> {
        let Some(ca) = &self.tls_ca else { return Ok(None) };
        let identity = self.tls_client_cert.as_deref().zip(self.tls_client_key.as_deref());
        Ok(Some(ClientTls::load(ca, identity).map_err(anyhow::Error::msg)?))
    }
}

/// How long a starting service waits for the store to answer before it gives up.
pub const STORE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// The key a service presents to the registry and the workers, and its client TLS.
#[derive(Args, Clone, Debug)]
pub struct ServiceKeyArgs {
    #[command(flatten)]
    pub tls: ClientTlsArgs,
    /// File holding this service's API key. A file that does not exist yet is created
    /// (mode 0600) with a new key of the service's identity (`worker` or `service`); a
    /// key in the file that the store does not know yet (e.g. from a Kubernetes Secret)
    /// is stored with that identity. Without it the service's calls carry no key.
    #[arg(long, env = "MODELPLANE_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
}

impl ServiceKeyArgs {
    /// The credentials of the service `name` with `role`. A process that can write the
    /// store could write key records itself, so letting it make its own key grants
    /// nothing it did not have.
    pub async fn credentials(&self, store: &dyn KvStore, name: &str, role: Role) -> Result<Credentials> {
        let tls = self.tls.load()?;
        let Some(path) = &self.api_key_file else {
            tracing::warn!(
                service = name,
                "no --api-key-file: this service's calls to the registry and workers carry no key \
                 and are refused unless those admit anonymous callers"
            );
            return Ok(Credentials { api_key: None, tls });
        };
        Ok(Credentials { tls, ..service_key(store, path, name, role).await? })
    }
}

/// The key in `path` for the service `name`, made or stored as
/// [`modelplane_store::api_key::ensure_key_file`] does, waiting for a store that is not up yet.
pub async fn service_key(store: &dyn KvStore, path: &Path, name: &str, role: Role) -> Result<Credentials> {
    let spec = KeySpec { name, role, model_prefix: "", expires_unix_ms: None, created_by: name };
    let made = !path.exists();
    let key = ensure_key_file_patiently(store, path, &spec, STORE_PATIENCE)
        .await
        .with_context(|| format!("the API key of {name}"))?;
    if made {
        // The other services learn of a new key through their watch of the keys prefix
        // (milliseconds); a first call before that would be refused as unknown.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    tracing::info!(service = name, key_id = key.id(), "presenting its API key");
    Ok(Credentials::with_key(key))
}
