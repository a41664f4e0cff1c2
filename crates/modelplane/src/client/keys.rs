//! `modelplane keys`: create, list and revoke API keys (an admin key is needed). The
//! secret is printed once, or written to a file only its owner can read; the registry
//! keeps only a salted hash.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
use modelplane_proto::registry as pb;

use super::{OutputFormat, registry_client, status_error};
use crate::Endpoints;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Make a key and print its secret (shown only this once).
    Create {
        /// Who or what the key is for (the audit log's actor for its calls).
        name: String,
        /// admin, deployer, trainer, predictor, viewer, worker or service.
        #[arg(long)]
        role: String,
        /// Limit the key to models whose names start with this.
        #[arg(long = "models", default_value = "")]
        model_prefix: String,
        /// Lifetime, e.g. `30d`, `12h`, `90m`, `3600s` (default: no expiry).
        #[arg(long, value_parser = parse_lifetime)]
        expires: Option<Duration>,
        /// Write the key to this new file (mode 0600) instead of printing it.
        #[arg(long)]
        key_file: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        output: OutputFormat,
    },
    /// Every key, live, expired or revoked; never a secret.
    List {
        #[arg(long, value_enum, default_value = "text")]
        output: OutputFormat,
    },
    /// Revoke a key: it stops working on every service within a second.
    Revoke { id: String },
}

/// `30d`, `12h`, `90m`, `45s`, `2w`, or plain seconds.
fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let seconds_per = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{text:?}: unknown unit {unit:?}; expected s, m, h, d or w (e.g. 30d)")),
    };
    let count: u64 = number.parse().map_err(|_| format!("{text:?} is not a lifetime such as 30d or 12h"))?;
    match count.checked_mul(seconds_per) {
        Some(0) => Err("a key's lifetime must be longer than 0".into()),
        Some(seconds) => Ok(Duration::from_secs(seconds)),
        None => Err(format!("{text:?} is too long")),
    }
}

pub async fn keys(command: KeysCommand, endpoints: &Endpoints) -> Result<()> {
    let registry = registry_client(endpoints)?;
    let mut grpc = registry.grpc();
    match command {
        KeysCommand::Create { name, role, model_prefix, expires, key_file, output } => {
            let request = pb::CreateKeyRequest {
                name,
                role,
                model_prefix,
                expires_in_seconds: expires.map_or(0, |lifetime| lifetime.as_secs()),
            };
            let created = grpc
                .create_key(registry.request(request))
                .await
                .map_err(|status| status_error("cannot create the key", status))?
                .into_inner();
            let key = created.key.unwrap_or_default();
            if let Some(path) = &key_file {
                modelplane_store::api_key::write_private(path, &created.secret).with_context(|| {
                    format!("the key {} was made but not written to {}; revoke it", key.id, path.display())
                })?;
            }
            match output {
                OutputFormat::Json => {
                    let mut line = key_json(&key);
                    match &key_file {
                        Some(path) => line["key_file"] = path.display().to_string().into(),
                        None => line["secret"] = created.secret.clone().into(),
                    }
                    println!("{line}");
                }
                OutputFormat::Text => match &key_file {
                    Some(path) => println!("created key {} ({}, {}) in {}", key.id, key.name, key.role, path.display()),
                    None => {
                        println!("created key {} ({}, {}); it is shown only now:", key.id, key.name, key.role);
                        println!("{}", created.secret);
                    }
                },
            }
        }
        KeysCommand::List { output } => {
            let keys = grpc
                .list_keys(registry.request(pb::ListKeysRequest {}))
                .await
                .map_err(|status| status_error("cannot list keys", status))?
                .into_inner()
                .keys;
            for key in &keys {
                match output {
                    OutputFormat::Json => println!("{}", key_json(key)),
                    OutputFormat::Text => println!(
                        "{:<16}  {:<24}  {:<9}  models {:<12}  {}",
                        key.id,
                        key.name,
                        key.role,
                        if key.model_prefix.is_empty() { "*".to_owned() } else { format!("{}*", key.model_prefix) },
                        state(key)
                    ),
                }
            }
            if keys.is_empty() && output == OutputFormat::Text {
                println!("no keys");
            }
        }
        KeysCommand::Revoke { id } => {
            let key = grpc
                .revoke_key(registry.request(pb::RevokeKeyRequest { id }))
                .await
                .map_err(|status| status_error("cannot revoke the key", status))?
                .into_inner();
            println!("revoked key {} ({})", key.id, key.name);
        }
    }
    Ok(())
}

fn state(key: &pb::ApiKey) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX));
    if key.revoked_unix_ms != 0 {
        "revoked".into()
    } else if key.expires_unix_ms != 0 && key.expires_unix_ms <= now {
        "expired".into()
    } else if key.expires_unix_ms != 0 {
        format!("live, expires in {} h", (key.expires_unix_ms - now) / 3_600_000)
    } else {
        "live".into()
    }
}

fn key_json(key: &pb::ApiKey) -> serde_json::Value {
    serde_json::json!({
        "id": key.id,
        "name": key.name,
        "role": key.role,
        "model_prefix": key.model_prefix,
        "created_unix_ms": key.created_unix_ms,
        "created_by": key.created_by,
        "expires_unix_ms": key.expires_unix_ms,
        "revoked_unix_ms": key.revoked_unix_ms,
        "state": state(key),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_take_a_unit() {
        assert_eq!(parse_lifetime("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_lifetime("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_lifetime("45"), Ok(Duration::from_secs(45)));
        assert!(parse_lifetime("0d").is_err());
        assert!(parse_lifetime("3y").expect_err("unit").contains("unknown unit"));
        assert!(parse_lifetime("d").is_err());
    }
}
