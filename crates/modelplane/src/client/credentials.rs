//! Which API key the CLI calls with: `--api-key-file` (or MODELPLANE_API_KEY_FILE), else
//! MODELPLANE_API_KEY, else the user's credentials file, else the admin key `modelplane
//! up` keeps in its data dir, else none (anonymous: inference on `up`, nothing on a
//! cluster).

use std::path::PathBuf;

use anyhow::{Result, bail};
use modelplane_service::Credentials;
use modelplane_service::credentials::ApiKey;
use modelplane_service::tls::ClientTls;

use crate::Endpoints;

/// The CLI's credentials for `endpoints`: its key and its TLS settings.
pub(crate) fn credentials(endpoints: &Endpoints) -> Result<Credentials> {
    let tls = match &endpoints.tls_ca {
        None => None,
        Some(ca) => {
            let identity = endpoints.tls_client_cert.as_deref().zip(endpoints.tls_client_key.as_deref());
            Some(ClientTls::load(ca, identity).map_err(anyhow::Error::msg)?)
        }
    };
    Ok(Credentials { tls, ..api_key(endpoints)? })
}

fn api_key(endpoints: &Endpoints) -> Result<Credentials> {
    if let Some(path) = &endpoints.api_key_file {
        return Ok(Credentials::with_key(ApiKey::read_file(path).map_err(anyhow::Error::msg)?));
    }
    if let Ok(text) = std::env::var("MODELPLANE_API_KEY") {
        return match ApiKey::parse(&text) {
            Ok(key) => Ok(Credentials::with_key(key)),
            Err(err) => bail!("MODELPLANE_API_KEY: {err}"),
        };
    }
    for path in [user_credentials_file(), Some(up_admin_key_file())].into_iter().flatten() {
        if path.exists() {
            return Ok(Credentials::with_key(ApiKey::read_file(&path).map_err(anyhow::Error::msg)?));
        }
    }
    Ok(Credentials::default())
}

/// `$XDG_CONFIG_HOME/modelplane/credentials`, else `~/.config/modelplane/credentials`.
fn user_credentials_file() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(config.join("modelplane").join("credentials"))
}

/// The admin key of a `modelplane up` whose data dir is MODELPLANE_DATA_DIR or the default.
fn up_admin_key_file() -> PathBuf {
    let data_dir = std::env::var_os("MODELPLANE_DATA_DIR").map_or_else(crate::default_data_dir, PathBuf::from);
    data_dir.join(crate::ADMIN_KEY_FILE)
}
