//! `--config FILE`: a TOML file of settings for a role. Its values become the defaults
//! of that subcommand's flags, so the order of precedence is flags, then `MODELPLANE_*`
//! environment variables, then the file, then built-in defaults.
//!
//! ```toml
//! # modelplane worker --config worker.toml
//! store = "http://etcd:2379"
//! listen = "0.0.0.0:7003"
//! cache-dir = "/var/cache/modelplane"
//! ```

use std::path::PathBuf;

use clap::CommandFactory;

/// The `--config` value from the raw arguments, else `MODELPLANE_CONFIG`.
fn config_path(args: &[String]) -> Option<PathBuf> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("MODELPLANE_CONFIG").map(PathBuf::from)
}

fn value_text(key: &str, value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(text) => Ok(text.clone()),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Float(x) => Ok(x.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(format!("setting {key:?} is a {}; expected a string, number or boolean", other.type_str())),
    }
}

/// The command line parser with the config file's settings (if any) as defaults of the
/// chosen subcommand. Errors are one line: what is wrong and where.
pub fn command(args: &[String]) -> Result<clap::Command, String> {
    let command = crate::Cli::command();
    let Some(path) = config_path(args) else { return Ok(command) };
    let Some(name) = args.iter().skip(1).find(|a| !a.starts_with('-')).cloned() else { return Ok(command) };
    let Some(subcommand) = command.find_subcommand(&name) else { return Ok(command) };
    let text = std::fs::read_to_string(&path).map_err(|err| format!("cannot read config {}: {err}", path.display()))?;
    let table: toml::Table =
        text.parse().map_err(|err| format!("config {} is not valid TOML: {err}", path.display()))?;
    let known: Vec<String> = subcommand
        .get_arguments()
        .filter(|arg| arg.get_long().is_some() && arg.get_id() != "config")
        .map(|arg| arg.get_id().to_string())
        .collect();
    let mut settings = Vec::new();
    for (key, value) in &table {
        let id = key.replace('-', "_");
        if !known.contains(&id) {
            let names: Vec<String> = known.iter().map(|k| k.replace('_', "-")).collect();
            return Err(format!(
                "config {}: unknown setting {key:?} for `modelplane {name}`; expected one of {}",
                path.display(),
                names.join(", ")
            ));
        }
        settings.push((id, value_text(key, value).map_err(|err| format!("config {}: {err}", path.display()))?));
    }
    Ok(command.mut_subcommand(&name, |mut sub| {
        for (id, value) in settings {
            sub = sub.mut_arg(id, |arg| arg.default_value(value).required(false));
        }
        sub
    }))
}
