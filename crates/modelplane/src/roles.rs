//! Server roles: each parses its flags, validates them, binds and calls its crate's
//! `serve`. `up` runs all four in one process on the embedded store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use modelplane_service::Shutdown;
use modelplane_store::KvStore;
use tokio::net::TcpListener;

use crate::access_args::{AccessArgs, AnonymousRole, ServiceKeyArgs};
use crate::check_config::{self, CheckConfigArgs};
use modelplane_service::access::Role;

/// Store selection shared by the cluster roles, and the optional settings file.
#[derive(Args, Clone, Debug)]
pub struct StoreArgs {
    /// TOML file of settings for this role (keys are the long flag names); flags and
    /// MODELPLANE_* variables override it.
    #[arg(long, env = "MODELPLANE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Metadata store: `http://host:2379[,http://host2:2379]` for etcd, or a file path
    /// for the embedded store.
    #[arg(long, visible_alias = "etcd", env = "MODELPLANE_STORE")]
    pub store: String,
    /// PEM CA etcd's certificate must chain to (turns TLS on; the endpoints are https://).
    #[arg(long, env = "MODELPLANE_ETCD_CA")]
    pub etcd_ca: Option<PathBuf>,
    /// PEM client certificate for etcd's `--client-cert-auth`.
    #[arg(long, env = "MODELPLANE_ETCD_CERT", requires_all = ["etcd_ca", "etcd_key"])]
    pub etcd_cert: Option<PathBuf>,
    /// PEM private key of --etcd-cert.
    #[arg(long, env = "MODELPLANE_ETCD_KEY", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
    /// etcd user, when etcd has auth enabled. Its password comes from
    /// --etcd-password-file or MODELPLANE_ETCD_PASSWORD, never from a flag (the command line
    /// is visible to every user of the machine).
    #[arg(long, env = "MODELPLANE_ETCD_USER")]
    pub etcd_user: Option<String>,
    /// File holding the etcd user's password (a trailing newline is dropped).
    #[arg(long, env = "MODELPLANE_ETCD_PASSWORD_FILE", requires = "etcd_user")]
    pub etcd_password_file: Option<PathBuf>,
}

impl StoreArgs {
    /// How to reach a secured etcd, from the flags, the environment and files.
    pub(crate) fn etcd_access(&self) -> Result<modelplane_store::EtcdAccess> {
        let tls = match &self.etcd_ca {
            None => None,
            Some(ca) => {
                let identity = self.etcd_cert.as_deref().zip(self.etcd_key.as_deref());
                let tls = modelplane_service::tls::ClientTls::load(ca, identity).map_err(anyhow::Error::msg)?;
                Some(tls)
            }
        };
        let user = match &self.etcd_user {
            None => None,
            Some(name) => {
                let password = match &self.etcd_password_file {
                    Some(path) => std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read the etcd password file {}", path.display()))?
                        .trim_end_matches(['\r', '\n'])
                        .to_owned(),
                    None => std::env::var("MODELPLANE_ETCD_PASSWORD").map_err(|_| {
                        anyhow::anyhow!(
                            "--etcd-user {name} needs a password: --etcd-password-file or MODELPLANE_ETCD_PASSWORD"
                        )
                    })?,
                };
                Some(modelplane_store::EtcdUser { name: name.clone(), password })
            }
        };
        Ok(modelplane_store::EtcdAccess { tls, user })
    }
}

/// Where a cluster role serves Prometheus metrics.
#[derive(Args, Clone, Debug)]
pub struct MetricsArgs {
    /// Address to serve `GET /metrics` on (empty: none; the router also serves it on its
    /// REST address).
    #[arg(long, env = "MODELPLANE_METRICS_LISTEN", default_value = "")]
    pub metrics_listen: String,
}

impl MetricsArgs {
    /// Installs the recorder and, when an address is set, binds it and serves
    /// `/metrics` there until `shutdown`.
    async fn serve(&self, shutdown: &Shutdown) -> Result<()> {
        modelplane_service::metrics::install();
        if self.metrics_listen.is_empty() {
            return Ok(());
        }
        let listener = bind("metrics", &self.metrics_listen).await?;
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(err) = modelplane_service::metrics::serve(listener, shutdown).await {
                tracing::error!(error = %err, "metrics server failed");
            }
        });
        Ok(())
    }
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// TOML file of settings (keys are the long flag names); flags and MODELPLANE_*
    /// variables override it.
    #[arg(long, env = "MODELPLANE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for the embedded store, blobs and the artifact cache.
    #[arg(long, env = "MODELPLANE_DATA_DIR", default_value = "modelplane-data")]
    pub data_dir: PathBuf,
    /// Where blobs live (default: DATA_DIR/blobs); a directory or `s3://bucket[/prefix]`.
    #[arg(long, env = "MODELPLANE_BLOB_STORE")]
    pub blob_store: Option<modelplane_registry::BlobLocation>,
    /// Address every service binds to.
    #[arg(long, env = "MODELPLANE_BIND", default_value = "127.0.0.1")]
    pub bind: String,
    /// Router KServe v2 gRPC port (Triton's default).
    #[arg(long, env = "MODELPLANE_GRPC_PORT", default_value_t = 8001)]
    pub grpc_port: u16,
    /// Router KServe v2 REST port (Triton's default).
    #[arg(long, env = "MODELPLANE_HTTP_PORT", default_value_t = 8000)]
    pub http_port: u16,
    /// Registry port.
    #[arg(long, default_value_t = 7001)]
    pub registry_port: u16,
    /// Trainer port.
    #[arg(long, default_value_t = 7002)]
    pub trainer_port: u16,
    /// Worker port.
    #[arg(long, default_value_t = 7003)]
    pub worker_port: u16,
    /// Send the router's calls to the worker over loopback gRPC, as a cluster does,
    /// instead of calling it in process (to measure or debug the network path).
    #[arg(long, env = "MODELPLANE_ROUTER_VIA_NETWORK")]
    pub router_via_network: bool,
    #[command(flatten)]
    pub access: AccessArgs,
    /// The CA up's roles trust when they call each other over TLS (default: the
    /// --tls-client-ca, else the served certificate itself, when it is self-signed).
    #[arg(long, env = "MODELPLANE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    #[command(flatten)]
    pub batching: BatchArgs,
    #[command(flatten)]
    pub memory: MemoryArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// A size flag: a byte count or a size with a unit (`64GiB`, `500MB`).
fn parse_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|err| format!("{text:?} is not a size ({err}); expected bytes or e.g. 64GiB"))
}

#[derive(Args, Debug)]
pub struct RegistryArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    #[command(flatten)]
    pub check: CheckConfigArgs,
    /// Address to listen on.
    #[arg(long, env = "MODELPLANE_LISTEN", default_value = "0.0.0.0:7001")]
    pub listen: String,
    /// Where blobs (artifacts and datasets) live: a directory, or `s3://bucket[/prefix]`
    /// with the endpoint, region and credentials in the standard `AWS_*` variables.
    #[arg(long, visible_alias = "blob-dir", env = "MODELPLANE_BLOB_STORE", default_value = "modelplane-data/blobs")]
    pub blob_store: modelplane_registry::BlobLocation,
    /// Largest artifact accepted (bytes, or a size such as `8GiB`); uploads stream to
    /// the blob store, so this is policy, not memory.
    #[arg(long, env = "MODELPLANE_MAX_ARTIFACT_BYTES", default_value = "64GiB", value_parser = parse_size)]
    pub max_artifact_bytes: u64,
    /// Largest dataset accepted (bytes, or a size such as `8GiB`).
    #[arg(long, env = "MODELPLANE_MAX_DATASET_BYTES", default_value = "64GiB", value_parser = parse_size)]
    pub max_dataset_bytes: u64,
    /// At start-up, blobs no record references are removed once older than this.
    #[arg(long, env = "MODELPLANE_ORPHAN_GRACE_SECS", default_value_t = 600)]
    pub orphan_grace_secs: u64,
    /// While no worker is live (a restart, a lapsed lease), deployments are checked
    /// against the workers last seen serving for this long; 0 lets anything through.
    #[arg(long, env = "MODELPLANE_WORKER_ABSENCE_GRACE_SECS", default_value_t = 600)]
    pub worker_absence_grace_secs: u64,
    #[command(flatten)]
    pub access: AccessArgs,
    /// File with the first admin key (`bootstrap-admin`): created (mode 0600) with a new
    /// key when it does not exist, else its key (e.g. from a Kubernetes Secret) is stored.
    /// Make the other keys with `modelplane keys create`.
    #[arg(long, env = "MODELPLANE_ADMIN_KEY_FILE")]
    pub admin_key_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct TrainerArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    #[command(flatten)]
    pub check: CheckConfigArgs,
    /// Address to listen on.
    #[arg(long, env = "MODELPLANE_LISTEN", default_value = "0.0.0.0:7002")]
    pub listen: String,
    /// Registry endpoint.
    #[arg(long, env = "MODELPLANE_REGISTRY", default_value = "127.0.0.1:7001")]
    pub registry: String,
    /// Trainer id (default: trainer-<random>).
    #[arg(long, env = "MODELPLANE_ID")]
    pub id: Option<String>,
    /// Jobs run at once.
    #[arg(long, env = "MODELPLANE_MAX_CONCURRENT_JOBS", default_value_t = 1)]
    pub max_concurrent_jobs: usize,
    /// Seconds without a heartbeat after which another trainer takes over this one's jobs.
    #[arg(long, env = "MODELPLANE_LEASE_TTL_SECS", default_value_t = 5)]
    pub lease_ttl_secs: u64,
    /// Largest dataset a job may train on (bytes, or a size such as `4GiB`): the trainer
    /// holds the parsed table in memory, about as large as the CSV.
    #[arg(long, env = "MODELPLANE_MAX_DATASET_BYTES", default_value = "16GiB", value_parser = parse_size)]
    pub max_dataset_bytes: u64,
    #[command(flatten)]
    pub access: AccessArgs,
    #[command(flatten)]
    pub key: ServiceKeyArgs,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    #[command(flatten)]
    pub check: CheckConfigArgs,
    /// Address to listen on.
    #[arg(long, env = "MODELPLANE_LISTEN", default_value = "0.0.0.0:7003")]
    pub listen: String,
    /// Address routers dial (default: the listen address, or 127.0.0.1:port when
    /// listening on all interfaces).
    #[arg(long, env = "MODELPLANE_ADVERTISE")]
    pub advertise: Option<String>,
    /// Registry endpoint.
    #[arg(long, env = "MODELPLANE_REGISTRY", default_value = "127.0.0.1:7001")]
    pub registry: String,
    /// Worker id (default: worker-<random>).
    #[arg(long, env = "MODELPLANE_ID")]
    pub id: Option<String>,
    /// Artifact cache directory.
    #[arg(long, env = "MODELPLANE_CACHE_DIR", default_value = "modelplane-data/cache")]
    pub cache_dir: PathBuf,
    #[command(flatten)]
    pub batching: BatchArgs,
    #[command(flatten)]
    pub memory: MemoryArgs,
    #[command(flatten)]
    pub access: AccessArgs,
    #[command(flatten)]
    pub key: ServiceKeyArgs,
}

/// The memory a worker offers for loaded versions.
#[derive(Args, Clone, Debug)]
pub struct MemoryArgs {
    /// Memory the versions this worker loads may take: a size (`8GiB`), `unlimited`, or
    /// `auto` (80 % of the container's memory limit, else of the machine's memory).
    /// Deployments are placed on workers with room; one that fits no worker is refused.
    #[arg(long, env = "MODELPLANE_MEMORY_CAPACITY", default_value = "auto", value_name = "SIZE|auto|unlimited")]
    pub memory_capacity: modelplane_worker::MemoryCapacity,
}

/// Dynamic batching, per loaded version.
#[derive(Args, Clone, Debug)]
pub struct BatchArgs {
    /// Most rows merged into one batch (0 or 1: batching off).
    #[arg(long, env = "MODELPLANE_MAX_BATCH_SIZE", default_value_t = 64)]
    pub max_batch_size: usize,
    /// Microseconds the first request of a batch waits for more (0: take only what
    /// queued while the compute slots were busy, adding no latency).
    #[arg(long, env = "MODELPLANE_MAX_QUEUE_DELAY_US", default_value_t = 0)]
    pub max_queue_delay_us: u64,
    /// Requests that may wait per version; one more is refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "MODELPLANE_QUEUE_CAPACITY", default_value_t = 1024)]
    pub queue_capacity: usize,
}

impl BatchArgs {
    fn policy(&self) -> modelplane_worker::BatchPolicy {
        modelplane_worker::BatchPolicy {
            max_batch_size: self.max_batch_size,
            max_queue_delay: std::time::Duration::from_micros(self.max_queue_delay_us),
            queue_capacity: self.queue_capacity,
            ..Default::default()
        }
    }
}

#[derive(Args, Debug)]
pub struct RouterArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    #[command(flatten)]
    pub check: CheckConfigArgs,
    /// Address to listen on (KServe v2 gRPC).
    #[arg(long, env = "MODELPLANE_LISTEN", default_value = "0.0.0.0:8001")]
    pub listen: String,
    /// Address for KServe v2 REST/JSON (empty: no REST).
    #[arg(long, env = "MODELPLANE_HTTP_LISTEN", default_value = "0.0.0.0:8000")]
    pub http_listen: String,
    /// Registry endpoint, for Triton's RepositoryModelLoad/Unload (deploy/undeploy).
    #[arg(long, env = "MODELPLANE_REGISTRY", default_value = "127.0.0.1:7001")]
    pub registry: String,
    /// Over TLS, check every worker's certificate against this name instead of the host
    /// it advertises: on Kubernetes workers advertise pod IPs, which no certificate
    /// names (e.g. `worker.modelplane.svc`).
    #[arg(long, env = "MODELPLANE_WORKER_TLS_SERVER_NAME", requires = "tls_ca")]
    pub worker_tls_server_name: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub access: AccessArgs,
    #[command(flatten)]
    pub key: ServiceKeyArgs,
}

/// What one request and one client may take from the router.
#[derive(Args, Clone, Debug)]
pub struct LimitArgs {
    /// Most tensor elements in one inference request (0: no limit); more is INVALID_ARGUMENT.
    #[arg(long, env = "MODELPLANE_MAX_TENSOR_ELEMENTS", default_value_t = 64 << 20)]
    pub max_tensor_elements: u64,
    /// Most inference requests one client (its `x-modelplane-client` metadata, else its
    /// IP) may have in flight (0: no limit); more is RESOURCE_EXHAUSTED.
    #[arg(long, env = "MODELPLANE_MAX_REQUESTS_PER_CLIENT", default_value_t = 256)]
    pub max_requests_per_client: usize,
    /// Seconds a worker whose record left the store (its lease lapsed while etcd stalled
    /// or was out of its reach) stays routable; a worker that is really gone is tried
    /// last meanwhile, after its first failed call (0: drop it at once).
    #[arg(long, env = "MODELPLANE_VANISHED_WORKER_GRACE_SECS", default_value_t = 30)]
    pub vanished_worker_grace_secs: u64,
}

impl LimitArgs {
    fn apply(&self, config: modelplane_router::RouterConfig) -> modelplane_router::RouterConfig {
        modelplane_router::RouterConfig {
            max_tensor_elements: self.max_tensor_elements,
            max_requests_per_client: self.max_requests_per_client,
            vanished_worker_grace: std::time::Duration::from_secs(self.vanished_worker_grace_secs),
            ..config
        }
    }
}

fn random_id(role: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{role}-{}", &id[..8])
}

async fn bind(role: &str, addr: &str) -> Result<TcpListener> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("{role}: cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    // Test harnesses and scripts read this line to learn the port when binding :0.
    println!("modelplane: {role} listening on {local}");
    Ok(listener)
}

fn advertised(listener: &TcpListener, advertise: Option<String>) -> Result<String> {
    if let Some(addr) = advertise {
        return Ok(addr);
    }
    let local: SocketAddr = listener.local_addr()?;
    Ok(if local.ip().is_unspecified() { format!("127.0.0.1:{}", local.port()) } else { local.to_string() })
}

async fn connect_store(args: &StoreArgs) -> Result<Arc<dyn KvStore>> {
    let access = args.etcd_access()?;
    modelplane_store::connect_with(&args.store, &access)
        .await
        .with_context(|| format!("cannot open the store at {}", args.store))
}

/// Opens the blob store once before any port is bound, so a wrong bucket, endpoint or
/// credential stops start-up with one line instead of failing the first upload.
async fn check_blob_store(config: &modelplane_registry::RegistryConfig) -> Result<()> {
    modelplane_registry::BlobStore::open(&config.blob_store)
        .await
        .with_context(|| format!("cannot open the blob store {}", config.blob_store))?;
    Ok(())
}

/// `--check-config` of a role that calls the registry with its own key.
fn check_service(
    store: &StoreArgs,
    metrics: &MetricsArgs,
    key: &ServiceKeyArgs,
    listen: &str,
    registry: &str,
) -> Result<()> {
    check_config::store(store)?;
    check_config::listen("listen", listen, false)?;
    check_config::metrics(metrics)?;
    check_config::service_key(key)?;
    check_config::endpoint(registry).with_context(|| format!("--registry {registry:?}"))
}

/// Cancels the token on SIGTERM or Ctrl-C.
fn shutdown_on_signal() -> Shutdown {
    let shutdown = Shutdown::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        modelplane_service::termination_signal().await;
        tracing::info!("termination signal: draining");
        trigger.cancel();
    });
    shutdown
}

pub async fn registry(args: RegistryArgs) -> Result<()> {
    let _telemetry = modelplane_service::init("modelplane-registry");
    let config = modelplane_registry::RegistryConfig {
        blob_store: args.blob_store,
        max_artifact_bytes: args.max_artifact_bytes,
        max_dataset_bytes: args.max_dataset_bytes,
        orphan_grace: std::time::Duration::from_secs(args.orphan_grace_secs),
        worker_absence_grace: std::time::Duration::from_secs(args.worker_absence_grace_secs),
        access: args.access.access(AnonymousRole::None)?,
    };
    config.validate().map_err(anyhow::Error::msg)?;
    if args.check.check_config {
        check_config::store(&args.store)?;
        check_config::listen("listen", &args.listen, false)?;
        check_config::metrics(&args.metrics)?;
        check_config::blob_store(&config.blob_store)?;
        if let Some(path) = &args.admin_key_file {
            check_config::key_file("admin-key-file", path)?;
        }
        return check_config::passed("registry");
    }
    check_blob_store(&config).await?;
    let store = connect_store(&args.store).await?;
    if let Some(path) = &args.admin_key_file {
        bootstrap_admin_key(store.as_ref(), path).await?;
    }
    let shutdown = shutdown_on_signal();
    args.metrics.serve(&shutdown).await?;
    let listener = bind("registry", &args.listen).await?;
    modelplane_registry::serve(config, store, listener, shutdown).await?;
    Ok(())
}

pub async fn trainer(args: TrainerArgs) -> Result<()> {
    let _telemetry = modelplane_service::init("modelplane-trainer");
    let config = modelplane_trainer::TrainerConfig {
        id: args.id.unwrap_or_else(|| random_id("trainer")),
        registry_addr: args.registry,
        max_concurrent_jobs: args.max_concurrent_jobs,
        lease_ttl: std::time::Duration::from_secs(args.lease_ttl_secs),
        max_dataset_bytes: args.max_dataset_bytes,
        access: args.access.access(AnonymousRole::None)?,
        credentials: Default::default(),
    };
    config.validate().map_err(anyhow::Error::msg)?;
    if args.check.check_config {
        check_service(&args.store, &args.metrics, &args.key, &args.listen, &config.registry_addr)?;
        return check_config::passed("trainer");
    }
    let store = connect_store(&args.store).await?;
    let credentials = args.key.credentials(store.as_ref(), &config.id, Role::Service).await?;
    let config = modelplane_trainer::TrainerConfig { credentials, ..config };
    let shutdown = shutdown_on_signal();
    args.metrics.serve(&shutdown).await?;
    let listener = bind("trainer", &args.listen).await?;
    modelplane_trainer::serve(config, store, listener, shutdown).await?;
    Ok(())
}

pub async fn worker(args: WorkerArgs) -> Result<()> {
    let _telemetry = modelplane_service::init("modelplane-worker");
    let mut config = modelplane_worker::WorkerConfig {
        id: args.id.unwrap_or_else(|| random_id("worker")),
        registry_addr: args.registry,
        cache_dir: args.cache_dir,
        batching: args.batching.policy(),
        memory_capacity: args.memory.memory_capacity,
        access: args.access.access(AnonymousRole::None)?,
        ..Default::default()
    };
    config.validate().map_err(anyhow::Error::msg)?;
    if args.check.check_config {
        check_service(&args.store, &args.metrics, &args.key, &args.listen, &config.registry_addr)?;
        if let Some(advertise) = &args.advertise {
            check_config::host_port(advertise).with_context(|| format!("--advertise {advertise:?}"))?;
        }
        return check_config::passed("worker");
    }
    let store = connect_store(&args.store).await?;
    config.credentials = args.key.credentials(store.as_ref(), &config.id, Role::Worker).await?;
    let shutdown = shutdown_on_signal();
    args.metrics.serve(&shutdown).await?;
    let listener = bind("worker", &args.listen).await?;
    config.advertise_addr = Some(advertised(&listener, args.advertise)?);
    modelplane_worker::serve(config, store, listener, shutdown).await?;
    Ok(())
}

pub async fn router(args: RouterArgs) -> Result<()> {
    let _telemetry = modelplane_service::init("modelplane-router");
    let config = args.limits.apply(modelplane_router::RouterConfig {
        registry_addr: Some(args.registry.clone()),
        worker_tls_server_name: args.worker_tls_server_name.clone(),
        access: args.access.access(AnonymousRole::None)?,
        ..Default::default()
    });
    config.validate().map_err(anyhow::Error::msg)?;
    if args.check.check_config {
        check_service(&args.store, &args.metrics, &args.key, &args.listen, &args.registry)?;
        check_config::listen("http-listen", &args.http_listen, true)?;
        return check_config::passed("router");
    }
    let store = connect_store(&args.store).await?;
    let credentials = args.key.credentials(store.as_ref(), "router", Role::Service).await?;
    let config = modelplane_router::RouterConfig { credentials, ..config };
    let shutdown = shutdown_on_signal();
    args.metrics.serve(&shutdown).await?;
    let listener = bind("router", &args.listen).await?;
    let http = match args.http_listen.as_str() {
        "" => None,
        addr => Some(bind("router-http", addr).await?),
    };
    modelplane_router::serve(config, store, listener, http, shutdown).await?;
    Ok(())
}

pub async fn up(args: UpArgs) -> Result<()> {
    let _telemetry = modelplane_service::init("modelplane");
    // Every role of this process records into one registry, served on the REST port.
    modelplane_service::metrics::install();
    let blob_store =
        args.blob_store.unwrap_or_else(|| modelplane_registry::BlobLocation::Local(args.data_dir.join("blobs")));
    // Inference stays open on one node (the README's curl and tritonclient snippets);
    // everything else needs a key.
    let access = args.access.access(AnonymousRole::Predictor)?;
    if access.tls.is_none() {
        warn_if_reachable_in_clear(&args.bind);
    }
    let internal_tls = internal_client_tls(&access, args.tls_ca.as_deref())?;
    let registry_config =
        modelplane_registry::RegistryConfig { blob_store, access: access.clone(), ..Default::default() };
    let trainer_config =
        modelplane_trainer::TrainerConfig { id: "trainer-local".into(), access: access.clone(), ..Default::default() };
    let mut worker_config = modelplane_worker::WorkerConfig {
        id: "worker-local".into(),
        access: access.clone(),
        cache_dir: args.data_dir.join("cache"),
        batching: args.batching.policy(),
        memory_capacity: args.memory.memory_capacity,
        ..Default::default()
    };
    registry_config.validate().map_err(anyhow::Error::msg)?;
    check_blob_store(&registry_config).await?;
    trainer_config.validate().map_err(anyhow::Error::msg)?;
    worker_config.validate().map_err(anyhow::Error::msg)?;
    let store_path = args.data_dir.join("store.redb");
    let store: Arc<dyn KvStore> = Arc::new(
        modelplane_store::EmbeddedStore::open(&store_path)
            .with_context(|| format!("cannot open the embedded store {}", store_path.display()))?,
    );
    let admin_key = args.data_dir.join(crate::ADMIN_KEY_FILE);
    bootstrap_admin_key(store.as_ref(), &admin_key).await?;
    let keys = args.data_dir.join("keys");
    let service_key = |file: &str, name: &'static str, role: Role| {
        let (store, path) = (store.clone(), keys.join(file));
        async move { crate::access_args::service_key(store.as_ref(), &path, name, role).await }
    };
    let with_tls = |credentials: modelplane_service::Credentials| modelplane_service::Credentials {
        tls: internal_tls.clone(),
        ..credentials
    };
    let trainer_credentials = with_tls(service_key("trainer.key", "trainer-local", Role::Service).await?);
    worker_config.credentials = with_tls(service_key("worker.key", "worker-local", Role::Worker).await?);
    let router_credentials = with_tls(service_key("router.key", "router", Role::Service).await?);

    let registry_listener = bind("registry", &format!("{}:{}", args.bind, args.registry_port)).await?;
    let trainer_listener = bind("trainer", &format!("{}:{}", args.bind, args.trainer_port)).await?;
    let worker_listener = bind("worker", &format!("{}:{}", args.bind, args.worker_port)).await?;
    let router_listener = bind("router", &format!("{}:{}", args.bind, args.grpc_port)).await?;
    let http_listener = bind("router-http", &format!("{}:{}", args.bind, args.http_port)).await?;
    let registry_addr = advertised(&registry_listener, None)?;
    let trainer_config = modelplane_trainer::TrainerConfig {
        registry_addr: registry_addr.clone(),
        credentials: trainer_credentials,
        ..trainer_config
    };
    worker_config.registry_addr = registry_addr.clone();
    worker_config.advertise_addr = Some(advertised(&worker_listener, None)?);
    let router_addr = advertised(&router_listener, None)?;
    let advertised_http = advertised(&http_listener, None)?;
    let trainer_addr = advertised(&trainer_listener, None)?;
    // The router reaches this worker by a function call rather than loopback TCP.
    let in_process = if args.router_via_network { None } else { Some(worker_config.in_process.clone()) };

    let shutdown = shutdown_on_signal();
    let roles = [
        supervise(
            "registry",
            modelplane_registry::serve(registry_config, store.clone(), registry_listener, shutdown.clone()),
            &shutdown,
        ),
        supervise(
            "trainer",
            modelplane_trainer::serve(trainer_config, store.clone(), trainer_listener, shutdown.clone()),
            &shutdown,
        ),
        supervise(
            "worker",
            modelplane_worker::serve(worker_config, store.clone(), worker_listener, shutdown.clone()),
            &shutdown,
        ),
        supervise(
            "router",
            modelplane_router::serve(
                args.limits.apply(modelplane_router::RouterConfig {
                    registry_addr: Some(registry_addr.clone()),
                    in_process: in_process.unwrap_or_default(),
                    access,
                    credentials: router_credentials,
                    ..Default::default()
                }),
                store.clone(),
                router_listener,
                Some(http_listener),
                shutdown.clone(),
            ),
            &shutdown,
        ),
    ];
    println!("modelplane is up (data in {})", args.data_dir.display());
    println!("  inference (KServe v2 gRPC): {router_addr}");
    println!("  inference (KServe v2 REST): {}", advertised_http);
    println!("  metrics (Prometheus):       http://{advertised_http}/metrics");
    println!("  registry:                   {registry_addr}");
    println!("  trainer:                    {trainer_addr}");
    println!("  admin API key:              {} (the CLI finds it there)", admin_key.display());
    println!("Try: modelplane datasets upload data.csv --name mydata");

    let mut failures = Vec::new();
    for role in roles {
        match role.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => failures.push(err),
            Err(err) => failures.push(format!("a role panicked: {err}")),
        }
    }
    if failures.is_empty() { Ok(()) } else { bail!("{}", failures.join("; ")) }
}

/// Stores the key in `path` as the first admin key, making one when the file does not
/// exist, and says where it is.
async fn bootstrap_admin_key(store: &dyn KvStore, path: &std::path::Path) -> Result<()> {
    let spec = modelplane_store::api_key::KeySpec {
        name: "bootstrap-admin",
        role: Role::Admin,
        model_prefix: "",
        expires_unix_ms: None,
        created_by: "modelplane",
    };
    let key =
        modelplane_store::api_key::ensure_key_file_patiently(store, path, &spec, crate::access_args::STORE_PATIENCE)
            .await
            .context("the bootstrap admin key")?;
    tracing::info!(key_id = key.id(), path = %path.display(), "bootstrap admin key");
    Ok(())
}

/// How `up`'s roles call each other when its listeners speak TLS: trusting `ca` (else
/// the client CA, else the served certificate, when it is self-signed) and, under mTLS,
/// presenting the served certificate as their own.
fn internal_client_tls(
    access: &modelplane_service::access::ServerAccess,
    ca: Option<&std::path::Path>,
) -> Result<Option<modelplane_service::tls::ClientTls>> {
    let Some(tls) = &access.tls else { return Ok(None) };
    let identity = tls.client_ca.as_ref().map(|_| (tls.cert.as_path(), tls.key.as_path()));
    let trust = ca.or(tls.client_ca.as_deref()).unwrap_or(&tls.cert);
    let client = modelplane_service::tls::ClientTls::load(trust, identity).map_err(anyhow::Error::msg)?;
    Ok(Some(client))
}

/// Keys travel in the `authorization` header; without TLS anyone on the network path
/// can read them.
fn warn_if_reachable_in_clear(bind: &str) {
    let loopback = bind == "localhost" || bind.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        eprintln!(
            "modelplane: warning: listening on {bind} without TLS; API keys and data would travel in clear \
             to anyone on the network path"
        );
    }
}

/// Runs a role; when it fails, the others are told to stop too.
fn supervise<E: std::fmt::Display>(
    name: &'static str,
    role: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
    shutdown: &Shutdown,
) -> tokio::task::JoinHandle<Result<(), String>> {
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let outcome = role.await.map_err(|err| format!("{name}: {err}"));
        if let Err(err) = &outcome {
            tracing::error!(error = %err, "role failed; stopping the others");
            shutdown.cancel();
        }
        outcome
    })
}
