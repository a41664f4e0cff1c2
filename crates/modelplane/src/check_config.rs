//! `modelplane ROLE --check-config`: the settings a role would start with, checked as
//! start-up checks them (flags, MODELPLANE_* variables, the `--config` file and every
//! file they name), without opening the store or binding a port. CI runs it on the
//! arguments of the Kubernetes manifests, so they cannot drift from the binary.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::access_args::ServiceKeyArgs;
use crate::roles::{MetricsArgs, StoreArgs};

/// The `--check-config` flag of every server role.
#[derive(Args, Clone, Debug)]
pub struct CheckConfigArgs {
    /// Check the settings (flags, environment, `--config` file and the files they name)
    /// as start-up would, then exit: 0 with one line on stdout, or 1 with the error.
    /// Opens no store, binds no port.
    #[arg(long)]
    pub check_config: bool,
}

/// Prints that `role`'s settings passed.
pub fn passed(role: &str) -> Result<()> {
    println!("modelplane: {role} configuration is valid");
    Ok(())
}

/// The store URL and etcd access (TLS files, user and password) as a connect reads them.
pub fn store(args: &StoreArgs) -> Result<()> {
    let access = args.etcd_access()?;
    modelplane_store::check_connect_settings(&args.store, &access)
        .with_context(|| format!("--store {}", args.store))?;
    Ok(())
}

/// An address the role would listen on: `HOST:PORT` (an IP, or a name such as
/// `localhost`); `allow_empty` for listeners that are off when empty.
pub fn listen(flag: &str, addr: &str, allow_empty: bool) -> Result<()> {
    if addr.is_empty() && allow_empty {
        return Ok(());
    }
    host_port(addr).with_context(|| format!("--{flag} {addr:?}"))
}

/// `HOST:PORT` with a port number; IPv6 literals in brackets.
pub fn host_port(addr: &str) -> Result<()> {
    if addr.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let Some((host, port)) = addr.rsplit_once(':') else { bail!("expected HOST:PORT") };
    if host.is_empty() || host.contains(['/', ' ']) {
        bail!("expected HOST:PORT, with a host name or IP before the colon");
    }
    port.parse::<u16>().map(|_| ()).map_err(|_| anyhow::anyhow!("{port:?} is not a port number"))
}

/// An address the role calls: `HOST:PORT`, `http://HOST:PORT` or `https://HOST:PORT`.
pub fn endpoint(addr: &str) -> Result<()> {
    let bare = addr.strip_prefix("https://").or_else(|| addr.strip_prefix("http://")).unwrap_or(addr);
    host_port(bare.trim_end_matches('/'))
}

/// Where the registry keeps blobs: a local directory is made at start-up if missing; an
/// S3 bucket's settings (the `AWS_*` variables) are checked without a request.
pub fn blob_store(location: &modelplane_registry::BlobLocation) -> Result<()> {
    modelplane_registry::BlobStore::check_settings(location).map_err(anyhow::Error::msg)
}

/// The metrics listener, when set.
pub fn metrics(args: &MetricsArgs) -> Result<()> {
    listen("metrics-listen", &args.metrics_listen, true)
}

/// A key file the role reads at start-up, or creates when it is missing: an existing
/// one must hold a well-formed key, a missing one must be creatable (its directory
/// exists).
pub fn key_file(flag: &str, path: &Path) -> Result<()> {
    if path.exists() {
        modelplane_service::credentials::ApiKey::read_file(path)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("--{flag}"))?;
        return Ok(());
    }
    match path.parent() {
        Some(dir) if dir.as_os_str().is_empty() || dir.is_dir() => Ok(()),
        _ => bail!("--{flag} {}: neither the file nor its directory exists", path.display()),
    }
}

/// What a service presents to others: its client TLS files and its API key file.
pub fn service_key(args: &ServiceKeyArgs) -> Result<()> {
    args.tls.load()?;
    match &args.api_key_file {
        Some(path) => key_file("api-key-file", path),
        None => Ok(()),
    }
}
