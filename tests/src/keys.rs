//! API keys of the clusters under test, given the way an operator gives them: one admin
//! key per test process, which each registry imports (`MODELPLANE_ADMIN_KEY_FILE`) and
//! each `modelplane up` finds in its data dir; a key file per service process, made on
//! its first start (`MODELPLANE_API_KEY_FILE`); and the admin key for every CLI command
//! (`MODELPLANE_API_KEY`) and every gRPC step of [`crate::flow`]. Tests of what callers
//! without a key, or with lesser keys, get make their own.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result};
use rand::Rng;

/// The admin key of this test process (random, made on first use).
pub fn admin_key() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut rng = rand::rng();
        format!("mpk_{}_{}", hex::encode(rng.random::<[u8; 8]>()), hex::encode(rng.random::<[u8; 32]>()))
    })
}

/// [`admin_key`] as the typed clients take it.
pub fn admin_credentials() -> modelplane_service::Credentials {
    let key = modelplane_service::credentials::ApiKey::parse(admin_key());
    // The key is made in the one form `parse` takes.
    modelplane_service::Credentials::with_key(key.expect("the harness makes well-formed keys"))
}

/// Writes [`admin_key`] to `path` (mode 0600) unless the file is there already.
pub fn write_admin_key(path: &Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(format!("{}\n", admin_key()).as_bytes())?;
    Ok(())
}

/// The environment that gives the `modelplane` process `name`, run with `args` and
/// logging into `log_dir`, its key.
pub(crate) fn key_env(name: &str, args: &[String], log_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let admin_file = log_dir.join("admin.key");
    Ok(match args.first().map(String::as_str) {
        Some("registry") => {
            write_admin_key(&admin_file)?;
            vec![("MODELPLANE_ADMIN_KEY_FILE".into(), admin_file)]
        }
        Some("trainer" | "worker" | "router") => {
            vec![("MODELPLANE_API_KEY_FILE".into(), log_dir.join("keys").join(format!("{name}.key")))]
        }
        Some("up") => {
            let data_dir = args
                .iter()
                .position(|arg| arg == "--data-dir")
                .and_then(|at| args.get(at + 1))
                .map_or_else(|| PathBuf::from("modelplane-data"), PathBuf::from);
            write_admin_key(&data_dir.join("admin.key"))?;
            Vec::new()
        }
        _ => Vec::new(),
    })
}

/// A tonic interceptor that calls as [`admin_key`].
#[derive(Clone, Copy, Debug, Default)]
pub struct AsAdmin;

impl tonic::service::Interceptor for AsAdmin {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let value = format!("Bearer {}", admin_key())
            .parse()
            .map_err(|_| tonic::Status::internal("the test admin key is not a header value"))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}
