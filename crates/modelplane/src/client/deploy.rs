//! `modelplane alias` and `modelplane deploy`: which version serves under which name, and where.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use modelplane_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use modelplane_proto::inference::{ModelReadyRequest, RepositoryIndexRequest};
use modelplane_proto::registry::{self as pb};

use super::{as_user, channel, registry, status_error};
use crate::Endpoints;

#[derive(Subcommand)]
pub enum AliasCommand {
    /// Point an alias at a version.
    Set {
        model: String,
        alias: String,
        version: u64,
        /// Why, for the audit log.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Delete an alias.
    Delete { model: String, alias: String },
}

#[derive(Args)]
pub struct DeployArgs {
    /// Model to deploy.
    pub model: String,
    /// Serve a fixed version.
    #[arg(long, conflicts_with = "alias")]
    pub version: Option<u64>,
    /// Serve whatever this alias points at (follows alias flips).
    #[arg(long)]
    pub alias: Option<String>,
    /// Also send a copy of every request to this version; its answers are dropped and
    /// show only in its statistics (repeat for several shadows).
    #[arg(long)]
    pub shadow: Vec<u64>,
    /// Workers that load it (0: every worker with room for it).
    #[arg(long, default_value_t = 0)]
    pub replicas: u32,
    /// Memory one replica takes, all its versions together (`512MiB`, `2GiB`); workers
    /// place it within their --memory-capacity (default: twice the artifacts' size).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<bytesize::ByteSize>,
    /// Most rows merged into one batch for this model's versions, 0 or 1: batching off
    /// (default: each worker's --max-batch-size).
    #[arg(long)]
    pub max_batch_size: Option<u32>,
    /// Microseconds the first request of a batch waits for more, at most 1000000
    /// (default: each worker's --max-queue-delay-us).
    #[arg(long)]
    pub max_queue_delay_us: Option<u64>,
    /// Requests that may wait per version before RESOURCE_EXHAUSTED (default: each
    /// worker's --queue-capacity).
    #[arg(long)]
    pub queue_capacity: Option<u32>,
    /// Seconds to wait until the router reports it ready (0: do not wait).
    #[arg(long, default_value_t = 60)]
    pub wait: u64,
}

pub async fn alias(command: AliasCommand, endpoints: &Endpoints) -> Result<()> {
    let mut client = registry(endpoints)?;
    match command {
        AliasCommand::Set { model, alias, version, reason } => {
            let response = client
                .set_alias(as_user(pb::SetAliasRequest { model: model.clone(), alias: alias.clone(), version, reason }))
                .await
                .map_err(|s| status_error("alias set failed", s))?
                .into_inner();
            match response.previous_version {
                0 => println!("{model}:{alias} -> v{version}"),
                previous => println!("{model}:{alias} -> v{version} (was v{previous})"),
            }
        }
        AliasCommand::Delete { model, alias } => {
            client
                .delete_alias(pb::DeleteAliasRequest { model: model.clone(), alias: alias.clone() })
                .await
                .map_err(|s| status_error("alias delete failed", s))?;
            println!("deleted {model}:{alias}");
        }
    }
    Ok(())
}

pub async fn deploy(args: DeployArgs, endpoints: &Endpoints) -> Result<()> {
    let target = match (args.version, args.alias) {
        (Some(version), None) => pb::DeploymentTarget { version, weight: 100, ..Default::default() },
        (None, Some(alias)) => pb::DeploymentTarget { alias, weight: 100, ..Default::default() },
        _ => bail!("name what to deploy: --version N or --alias NAME"),
    };
    let shadows =
        args.shadow.iter().map(|&version| pb::DeploymentTarget { version, shadow: true, ..Default::default() });
    let targets = std::iter::once(target).chain(shadows).collect();
    let batching = pb::Batching {
        max_batch_size: args.max_batch_size,
        max_queue_delay_us: args.max_queue_delay_us,
        queue_capacity: args.queue_capacity,
    };
    let deployment = pb::Deployment {
        model: args.model.clone(),
        targets,
        replicas: args.replicas,
        batching: (batching != pb::Batching::default()).then_some(batching),
        resources: args.memory.map(|memory| pb::Resources { memory_bytes: Some(memory.as_u64()) }),
    };
    registry(endpoints)?
        .set_deployment(as_user(pb::SetDeploymentRequest { deployment: Some(deployment) }))
        .await
        .map_err(|s| status_error("deploy failed", s))?;
    if args.wait == 0 {
        println!("deployed {}", args.model);
        return Ok(());
    }
    let mut router = GrpcInferenceServiceClient::new(channel(endpoints, &endpoints.router)?);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(args.wait);
    loop {
        let request = ModelReadyRequest { name: args.model.clone(), version: String::new() };
        if let Ok(response) = router.model_ready(request).await
            && response.into_inner().ready
        {
            println!("deployed {} (ready)", args.model);
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            // The router's repository index says why, when placement is the reason.
            let index = router.repository_index(RepositoryIndexRequest::default()).await.ok();
            let reason = index
                .into_iter()
                .flat_map(|index| index.into_inner().models)
                .find(|m| m.name == args.model && !m.reason.is_empty())
                .map_or_else(|| "check the workers".to_owned(), |m| m.reason);
            bail!("deployed {}, but it was not ready within {} s: {reason}", args.model, args.wait);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
