//! `modelplane train`: submit a job to the trainer and follow it to the version it registers.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use modelplane_proto::trainer::{self as tpb, trainer_client::TrainerClient};

use super::{OutputFormat, channel, status_error};
use crate::Endpoints;

#[derive(Args)]
pub struct TrainArgs {
    /// Model to add a version to (created if needed).
    pub model: String,
    /// Dataset name, as uploaded.
    #[arg(long)]
    pub dataset: String,
    /// Column to predict.
    #[arg(long)]
    pub target: String,
    /// Model kind: linear, logistic, softmax, mlp (classifier), mlp_regressor, gbdt,
    /// gbdt_regressor, random_forest, random_forest_regressor, decision_tree or
    /// decision_tree_regressor.
    #[arg(long, default_value = "linear")]
    pub kind: String,
    /// Hyperparameter as name=value: learning_rate, epochs, batch_size, l2, seed,
    /// validation_fraction; for MLPs also hidden (e.g. 64 or 128,64), activation
    /// (relu|tanh), optimizer (adam|sgd), momentum, early_stopping, patience,
    /// lr_schedule (constant|cosine).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Passes over the data.
    #[arg(long)]
    pub epochs: Option<u32>,
    /// Gradient step size.
    #[arg(long)]
    pub learning_rate: Option<f64>,
    /// Point ALIAS at the new version if it beats ALIAS's current one on METRIC
    /// (`production:accuracy`; add `:lower` for errors, e.g. `production:rmse:lower`).
    #[arg(long, value_name = "ALIAS:METRIC[:lower]")]
    pub promote_if: Option<String>,
    /// Return once the job is queued instead of following it.
    #[arg(long)]
    pub no_wait: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
}

fn job_json(job: &tpb::Job) -> serde_json::Value {
    let progress = job.progress.unwrap_or_default();
    serde_json::json!({
        "id": job.id,
        "state": tpb::JobState::try_from(job.state).map(|s| s.as_str_name()).unwrap_or("UNKNOWN"),
        "epoch": progress.epoch,
        "epochs": progress.epochs,
        "loss": progress.loss,
        "validation_loss": progress.validation_loss,
        "rows_per_second": progress.rows_per_second,
        "eta_seconds": progress.eta_seconds,
        "version": job.version,
        "metrics": job.metrics,
        "error": job.error,
        "promotion": job.promotion,
    })
}

fn parse_promote_rule(text: &str) -> Result<tpb::PromoteRule> {
    let parts: Vec<&str> = text.split(':').collect();
    match parts.as_slice() {
        [alias, metric] => {
            Ok(tpb::PromoteRule { alias: (*alias).into(), metric: (*metric).into(), lower_is_better: false })
        }
        [alias, metric, "lower"] => {
            Ok(tpb::PromoteRule { alias: (*alias).into(), metric: (*metric).into(), lower_is_better: true })
        }
        _ => bail!("--promote-if {text:?} is not ALIAS:METRIC or ALIAS:METRIC:lower"),
    }
}

pub async fn train(args: TrainArgs, endpoints: &Endpoints) -> Result<()> {
    let mut params: HashMap<String, String> = HashMap::new();
    for pair in &args.params {
        let (name, value) = pair.split_once('=').with_context(|| format!("--param {pair:?} is not NAME=VALUE"))?;
        params.insert(name.trim().to_owned(), value.trim().to_owned());
    }
    if let Some(epochs) = args.epochs {
        params.insert("epochs".into(), epochs.to_string());
    }
    if let Some(rate) = args.learning_rate {
        params.insert("learning_rate".into(), rate.to_string());
    }
    let mut client = TrainerClient::new(channel(endpoints, &endpoints.trainer)?);
    let spec = tpb::JobSpec {
        model: args.model.clone(),
        kind: args.kind.clone(),
        dataset: args.dataset.clone(),
        dataset_sha256: String::new(),
        target: args.target.clone(),
        params,
        promote_if: args.promote_if.as_deref().map(parse_promote_rule).transpose()?,
    };
    let job = client
        .submit_job(tpb::SubmitJobRequest { spec: Some(spec) })
        .await
        .map_err(|s| status_error("submit failed", s))?
        .into_inner();
    if args.no_wait {
        match args.output {
            OutputFormat::Json => println!("{}", job_json(&job)),
            OutputFormat::Text => println!("queued job {}", job.id),
        }
        return Ok(());
    }
    let mut stream = client
        .watch_job(tpb::WatchJobRequest { id: job.id.clone() })
        .await
        .map_err(|s| status_error("watch failed", s))?
        .into_inner();
    let bar = ProgressBar::hidden();
    if args.output == OutputFormat::Text {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] epoch {pos}/{len} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(format!("training {} (job {})", args.model, &job.id[..8.min(job.id.len())]));
    }
    let mut last = job;
    while let Some(update) = stream.message().await.map_err(|s| status_error("watch interrupted", s))? {
        let progress = update.progress.unwrap_or_default();
        match args.output {
            OutputFormat::Json => println!("{}", job_json(&update)),
            OutputFormat::Text => {
                bar.set_length(u64::from(progress.epochs.max(1)));
                bar.set_position(u64::from(progress.epoch));
                let eta = if progress.eta_seconds > 0.0 {
                    format!(" eta {:.0}s", progress.eta_seconds)
                } else {
                    String::new()
                };
                bar.set_message(format!(
                    "training {} loss {:.5} {:.0} rows/s{eta}",
                    args.model, progress.loss, progress.rows_per_second
                ));
            }
        }
        last = update;
    }
    bar.finish_and_clear();
    match tpb::JobState::try_from(last.state) {
        Ok(tpb::JobState::Succeeded) => {
            if args.output == OutputFormat::Text {
                let mut metrics: Vec<_> = last.metrics.iter().collect();
                metrics.sort_by(|a, b| a.0.cmp(b.0));
                let metrics: Vec<String> = metrics.iter().map(|(k, v)| format!("{k}={v:.4}")).collect();
                println!("trained {} version {} ({})", args.model, last.version, metrics.join(" "));
                if !last.promotion.is_empty() {
                    println!("{}", last.promotion);
                }
            }
            Ok(())
        }
        _ => bail!("job {} failed: {}", last.id, last.error),
    }
}
