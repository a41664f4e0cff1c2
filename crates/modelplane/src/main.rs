//! `modelplane`: every server role and every client command in one binary.

mod access_args;
mod bench;
mod check_config;
mod client;
mod config_file;
mod roles;
mod workers;

use std::path::PathBuf;

/// mimalloc rather than glibc's malloc: a request allocates and frees many small
/// buffers on whichever runtime thread runs it, and glibc's arenas and consolidation
/// were ~12 % of the serving path's CPU (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Args, FromArgMatches, Parser, Subcommand};

/// Model-as-a-Service: train, version, deploy and serve models over gRPC.
#[derive(Parser)]
#[command(name = "modelplane", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every service in one process on the embedded store (single node).
    Up(roles::UpArgs),
    /// Run the registry role.
    Registry(roles::RegistryArgs),
    /// Run the trainer role.
    Trainer(roles::TrainerArgs),
    /// Run an inference worker.
    Worker(roles::WorkerArgs),
    /// Run the router (the inference front door).
    Router(roles::RouterArgs),
    /// Upload and list datasets.
    Datasets {
        #[command(subcommand)]
        command: client::DatasetsCommand,
        #[command(flatten)]
        endpoints: Endpoints,
    },
    /// Train a new version of a model and follow its progress.
    Train {
        #[command(flatten)]
        args: client::TrainArgs,
        #[command(flatten)]
        endpoints: Endpoints,
    },
    /// List models and versions.
    Models {
        #[command(subcommand)]
        command: client::ModelsCommand,
        #[command(flatten)]
        endpoints: Endpoints,
    },
    /// Set or delete aliases.
    Alias {
        #[command(subcommand)]
        command: client::AliasCommand,
        #[command(flatten)]
        endpoints: Endpoints,
    },
    /// Deploy a model: what workers load and where the router sends traffic.
    Deploy {
        #[command(flatten)]
        args: client::DeployArgs,
        #[command(flatten)]
        endpoints: Endpoints,
    },
    /// List the live workers: memory capacity, memory placed on them, versions held.
    Workers {
        #[command(flatten)]
        args: workers::WorkersArgs,
        #[command(flatten)]
        endpoints: Endpoints,
    },
    /// Create, list and revoke API keys (admin).
    Keys {
        #[command(subcommand)]
        command: client::KeysCommand,
        #[command(flatten)]
        endpoints: Endpoints,
    },
    /// Run inference through the router (KServe v2 gRPC).
    Predict {
        #[command(flatten)]
        args: client::PredictArgs,
        #[command(flatten)]
        endpoints: Endpoints,
    },
    /// Measure throughput and p50/p99 latency of any KServe v2 gRPC server.
    Bench(bench::BenchArgs),
    /// Serve a bare echo of ModelInfer: the floor `bench` results are compared with.
    BenchEcho(bench::EchoArgs),
}

/// Where the client commands find the services.
#[derive(Args, Clone, Debug)]
pub struct Endpoints {
    /// Registry endpoint.
    #[arg(long, global = true, env = "MODELPLANE_REGISTRY", default_value = "127.0.0.1:7001")]
    pub registry: String,
    /// Trainer endpoint.
    #[arg(long, global = true, env = "MODELPLANE_TRAINER", default_value = "127.0.0.1:7002")]
    pub trainer: String,
    /// Router endpoint (KServe v2 gRPC).
    #[arg(long, global = true, env = "MODELPLANE_ROUTER", default_value = "127.0.0.1:8001")]
    pub router: String,
    /// File holding the API key to call with. Else MODELPLANE_API_KEY, else the
    /// credentials file in the user's config dir (~/.config/modelplane/credentials),
    /// else the admin key `modelplane up` made in its data dir (MODELPLANE_DATA_DIR,
    /// default ./modelplane-data).
    #[arg(long, global = true, env = "MODELPLANE_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
    /// PEM CA the services' certificates must chain to; setting it makes every call TLS.
    #[arg(long, global = true, env = "MODELPLANE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// PEM certificate to present to services that ask for one (mTLS).
    #[arg(long, global = true, env = "MODELPLANE_TLS_CLIENT_CERT", requires_all = ["tls_ca", "tls_client_key"])]
    pub tls_client_cert: Option<PathBuf>,
    /// PEM private key of --tls-client-cert.
    #[arg(long, global = true, env = "MODELPLANE_TLS_CLIENT_KEY", requires = "tls_client_cert")]
    pub tls_client_key: Option<PathBuf>,
}

/// Where `modelplane up` keeps its admin key, inside its data dir.
pub const ADMIN_KEY_FILE: &str = "admin.key";

/// Default data directory for `up` and the registry.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("modelplane-data")
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let command = match config_file::command(&args) {
        Ok(command) => command,
        Err(err) => {
            eprintln!("modelplane: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let cli = match Cli::from_arg_matches(&command.get_matches_from(&args)) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("modelplane: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => roles::up(args).await,
            Command::Registry(args) => roles::registry(args).await,
            Command::Trainer(args) => roles::trainer(args).await,
            Command::Worker(args) => roles::worker(args).await,
            Command::Router(args) => roles::router(args).await,
            Command::Datasets { command, endpoints } => client::datasets(command, &endpoints).await,
            Command::Train { args, endpoints } => client::train(args, &endpoints).await,
            Command::Models { command, endpoints } => client::models(command, &endpoints).await,
            Command::Alias { command, endpoints } => client::alias(command, &endpoints).await,
            Command::Deploy { args, endpoints } => client::deploy(args, &endpoints).await,
            Command::Workers { args, endpoints } => workers::workers(args, &endpoints).await,
            Command::Keys { command, endpoints } => client::keys(command, &endpoints).await,
            Command::Predict { args, endpoints } => client::predict(args, &endpoints).await,
            Command::Bench(args) => bench::bench(args).await,
            Command::BenchEcho(args) => bench::echo(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("modelplane: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
