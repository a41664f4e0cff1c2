//! `modelplane bench`: a closed-loop load generator that speaks plain KServe v2 gRPC, so
//! it can be pointed at any V2 server (a modelplane worker or router, Triton, KServe);
//! and `modelplane bench-echo`: a bare tonic unary server that answers ModelInfer with
//! its input, the floor any V2 server is measured against.

use modelplane_kserve::Datatype;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use modelplane_proto::inference as pb;
use modelplane_router::WorkerLink;
use pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use pb::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// KServe v2 gRPC endpoint (host:port).
    #[arg(long)]
    pub target: String,
    /// Model to call.
    #[arg(long)]
    pub model: String,
    /// Version (default: the server's choice).
    #[arg(long, default_value = "")]
    pub version: String,
    /// Requests in flight, one run per value.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 16, 64])]
    pub concurrency: Vec<usize>,
    /// Seconds measured per run.
    #[arg(long, default_value_t = 10.0)]
    pub duration_secs: f64,
    /// Seconds of load before each run that are not measured.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_secs: f64,
    /// Rows per request.
    #[arg(long, default_value_t = 1)]
    pub rows: usize,
    /// Send each loop's requests on one ModelStreamInfer stream (Triton's streaming
    /// extension), one in flight at a time, instead of as unary ModelInfer calls.
    #[arg(long)]
    pub stream: bool,
    /// Label for the result rows (default: the target).
    #[arg(long)]
    pub label: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: BenchFormat,
    /// Seconds to wait for the model to report ready (ModelReady) before measuring, as
    /// right after a deploy or a restart.
    #[arg(long, default_value_t = 120.0)]
    pub ready_timeout_secs: f64,
    /// File with an API key sent as `authorization: Bearer …` on every request (default:
    /// none, the server's anonymous role).
    #[arg(long, env = "MODELPLANE_API_KEY_FILE")]
    pub api_key_file: Option<std::path::PathBuf>,
    /// PEM CA of the target's certificate: the calls go over TLS.
    #[arg(long, env = "MODELPLANE_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,
}

/// The channel every request goes on: with the key's `authorization`, if one was given.
type BenchChannel = tonic::service::interceptor::InterceptedService<Channel, Authorize>;

/// Adds the bench's `authorization` (sensitive) to each request.
#[derive(Clone)]
struct Authorize(Option<tonic::metadata::AsciiMetadataValue>);

impl tonic::service::Interceptor for Authorize {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl Authorize {
    fn from_file(path: Option<&std::path::Path>) -> Result<Self> {
        let Some(path) = path else { return Ok(Self(None)) };
        let key = modelplane_service::credentials::ApiKey::read_file(path).map_err(anyhow::Error::msg)?;
        let mut value: tonic::metadata::AsciiMetadataValue =
            key.header_value().to_str().context("an API key is ASCII")?.parse().context("header value")?;
        value.set_sensitive(true);
        Ok(Self(Some(value)))
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BenchFormat {
    /// A markdown table row per run.
    Text,
    /// One JSON object per run.
    Json,
}

#[derive(Args, Debug)]
pub struct EchoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Features its metadata reports for the input `input` (FP32 [-1, features]).
    #[arg(long, default_value_t = 30)]
    pub features: i64,
    /// Instead of answering, forward each ModelInfer to this V2 server over the router's
    /// worker link: a bare proxy, the floor of one more gRPC hop with no routing.
    #[arg(long, value_name = "ADDR")]
    pub forward_to: Option<String>,
    /// File with the API key the forwarded calls present (as a router presents its own).
    #[arg(long, env = "MODELPLANE_API_KEY_FILE")]
    pub api_key_file: Option<std::path::PathBuf>,
}

/// Polls ModelReady until the model is ready, or fails after `timeout`.
async fn wait_ready(client: &mut GrpcInferenceServiceClient<BenchChannel>, args: &BenchArgs) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs_f64(args.ready_timeout_secs);
    let request = pb::ModelReadyRequest { name: args.model.clone(), version: args.version.clone() };
    loop {
        let last = match client.model_ready(request.clone()).await {
            Ok(answer) if answer.get_ref().ready => return Ok(()),
            Ok(_) => "not ready".to_owned(),
            Err(status) => status.message().to_owned(),
        };
        if Instant::now() >= deadline {
            bail!("{} was not ready within {} s (last answer: {last})", args.model, args.ready_timeout_secs);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The input a model's metadata declares: name and features per row.
async fn input_of(client: &mut GrpcInferenceServiceClient<BenchChannel>, args: &BenchArgs) -> Result<(String, usize)> {
    let request = pb::ModelMetadataRequest { name: args.model.clone(), version: args.version.clone() };
    let metadata =
        client.model_metadata(request).await.map_err(|s| anyhow::anyhow!("model metadata: {}", s.message()))?;
    let metadata = metadata.into_inner();
    let Some(input) = metadata.inputs.first() else { bail!("{} declares no inputs", args.model) };
    if Datatype::parse(&input.datatype) != Some(Datatype::Fp32) {
        bail!("{} takes {} input {:?}; the bench sends FP32 rows", args.model, input.datatype, input.name);
    }
    let features = input.shape.last().copied().filter(|d| *d > 0).context("the input's last dimension is not fixed")?;
    Ok((input.name.clone(), usize::try_from(features)?))
}

fn request(args: &BenchArgs, input: &str, features: usize) -> pb::ModelInferRequest {
    let values: Vec<u8> =
        (0..args.rows * features).flat_map(|i| ((i % 17) as f32 * 0.25 - 2.0).to_le_bytes()).collect();
    pb::ModelInferRequest {
        model_name: args.model.clone(),
        model_version: args.version.clone(),
        inputs: vec![pb::model_infer_request::InferInputTensor {
            name: input.to_owned(),
            datatype: Datatype::Fp32.name().into(),
            shape: vec![args.rows as i64, features as i64],
            ..Default::default()
        }],
        raw_input_contents: vec![Bytes::from(values)],
        ..Default::default()
    }
}

struct RunResult {
    latencies_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
}

/// How one loop sends its requests.
enum Caller {
    Unary(GrpcInferenceServiceClient<BenchChannel>),
    /// The sending half of an open ModelStreamInfer call, and its answers.
    Stream(tokio::sync::mpsc::Sender<pb::ModelInferRequest>, tonic::Streaming<pb::ModelStreamInferResponse>),
}

impl Caller {
    async fn open(mut client: GrpcInferenceServiceClient<BenchChannel>, stream: bool) -> Result<Self, String> {
        if !stream {
            return Ok(Self::Unary(client));
        }
        let (sender, requests) = tokio::sync::mpsc::channel(1);
        let answers = client
            .model_stream_infer(tokio_stream::wrappers::ReceiverStream::new(requests))
            .await
            .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?;
        Ok(Self::Stream(sender, answers.into_inner()))
    }

    async fn call(&mut self, request: pb::ModelInferRequest) -> Result<(), String> {
        match self {
            Self::Unary(client) => {
                client.model_infer(request).await.map(drop).map_err(|s| format!("{:?}: {}", s.code(), s.message()))
            }
            Self::Stream(sender, answers) => {
                sender.send(request).await.map_err(|_| "the stream closed".to_owned())?;
                match answers.message().await {
                    Ok(Some(answer)) if answer.error_message.is_empty() => Ok(()),
                    Ok(Some(answer)) => Err(answer.error_message),
                    Ok(None) => Err("the stream ended".to_owned()),
                    Err(status) => Err(format!("{:?}: {}", status.code(), status.message())),
                }
            }
        }
    }
}

/// `concurrency` loops, each sending the next request when the last answered.
async fn run(
    client: GrpcInferenceServiceClient<BenchChannel>,
    template: pb::ModelInferRequest,
    (concurrency, stream): (usize, bool),
    warmup: Duration,
    measure: Duration,
) -> RunResult {
    let start = Instant::now();
    let (measure_from, stop_at) = (start + warmup, start + warmup + measure);
    let loops = (0..concurrency).map(|_| {
        let (client, template) = (client.clone(), template.clone());
        tokio::spawn(async move {
            let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0u64, None);
            let mut caller = match Caller::open(client, stream).await {
                Ok(caller) => caller,
                Err(error) => return (latencies, 1, Some(error)),
            };
            loop {
                let sent = Instant::now();
                if sent >= stop_at {
                    break;
                }
                let outcome = caller.call(template.clone()).await;
                if sent < measure_from {
                    continue;
                }
                match outcome {
                    Ok(()) => latencies.push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX)),
                    Err(error) => {
                        errors += 1;
                        first_error.get_or_insert(error);
                    }
                }
            }
            (latencies, errors, first_error)
        })
    });
    let mut result = RunResult { latencies_us: Vec::new(), errors: 0, first_error: None, elapsed: measure };
    for outcome in futures::future::join_all(loops).await.into_iter().flatten() {
        result.latencies_us.extend(outcome.0);
        result.errors += outcome.1;
        result.first_error = result.first_error.or(outcome.2);
    }
    result.latencies_us.sort_unstable();
    result
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

pub async fn bench(args: BenchArgs) -> Result<()> {
    if args.concurrency.contains(&0) || args.rows == 0 {
        bail!("concurrency and rows must be at least 1");
    }
    let scheme = if args.tls_ca.is_some() { "https" } else { "http" };
    let uri = match args.target.split_once("://") {
        Some((_, rest)) => format!("{scheme}://{rest}"),
        None => format!("{scheme}://{}", args.target),
    };
    let mut endpoint = Endpoint::from_shared(uri)?.tcp_nodelay(true);
    if let Some(ca) = &args.tls_ca {
        let tls = modelplane_service::tls::ClientTls::load(ca, None).map_err(anyhow::Error::msg)?;
        endpoint = endpoint.tls_config(tls.tonic_config())?;
    }
    let channel = endpoint.connect().await.with_context(|| format!("cannot reach {}", args.target))?;
    let authorize = Authorize::from_file(args.api_key_file.as_deref())?;
    let mut client =
        GrpcInferenceServiceClient::with_interceptor(channel, authorize).max_decoding_message_size(64 << 20);
    wait_ready(&mut client, &args).await?;
    let (input, features) = input_of(&mut client, &args).await?;
    let template = request(&args, &input, features);
    let label = args.label.clone().unwrap_or_else(|| args.target.clone());
    if matches!(args.format, BenchFormat::Text) {
        println!("| target | model | concurrency | requests/s | p50 µs | p99 µs | errors |");
        println!("| --- | --- | --- | --- | --- | --- | --- |");
    }
    for &concurrency in &args.concurrency {
        let warmup = Duration::from_secs_f64(args.warmup_secs);
        let measure = Duration::from_secs_f64(args.duration_secs);
        let result = run(client.clone(), template.clone(), (concurrency, args.stream), warmup, measure).await;
        let throughput = result.latencies_us.len() as f64 / result.elapsed.as_secs_f64();
        let (p50, p99) = (percentile(&result.latencies_us, 0.50), percentile(&result.latencies_us, 0.99));
        match args.format {
            BenchFormat::Text => println!(
                "| {label} | {} | {concurrency} | {throughput:.0} | {p50} | {p99} | {} |",
                args.model, result.errors
            ),
            BenchFormat::Json => println!(
                "{}",
                serde_json::json!({
                    "label": label, "model": args.model, "concurrency": concurrency, "rows": args.rows,
                    "requests_per_sec": throughput, "p50_us": p50, "p99_us": p99, "errors": result.errors,
                })
            ),
        }
        if let Some(error) = result.first_error {
            eprintln!(
                "modelplane bench: {} failed requests at concurrency {concurrency}; first: {error}",
                result.errors
            );
        }
    }
    Ok(())
}

/// The request's inputs as its outputs.
fn echoed(request: pb::ModelInferRequest) -> pb::ModelInferResponse {
    let outputs = request
        .inputs
        .iter()
        .map(|input| pb::model_infer_response::InferOutputTensor {
            name: "output".into(),
            datatype: input.datatype.clone(),
            shape: input.shape.clone(),
            ..Default::default()
        })
        .collect();
    pb::ModelInferResponse {
        model_name: request.model_name,
        model_version: "1".into(),
        id: request.id,
        outputs,
        raw_output_contents: request.raw_input_contents,
        ..Default::default()
    }
}

/// Answers ModelInfer with its input as the output: what serving costs without a model.
struct Echo {
    features: i64,
    forward_to: Option<WorkerLink>,
}

#[tonic::async_trait]
impl GrpcInferenceService for Echo {
    async fn server_live(&self, _: Request<pb::ServerLiveRequest>) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        Ok(Response::new(pb::ServerReadyResponse { ready: true }))
    }

    async fn model_ready(&self, _: Request<pb::ModelReadyRequest>) -> Result<Response<pb::ModelReadyResponse>, Status> {
        Ok(Response::new(pb::ModelReadyResponse { ready: true }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(pb::ServerMetadataResponse { name: "modelplane-echo".into(), ..Default::default() }))
    }

    async fn model_metadata(
        &self,
        request: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let tensor = |name: &str| pb::model_metadata_response::TensorMetadata {
            name: name.into(),
            datatype: Datatype::Fp32.name().into(),
            shape: vec![-1, self.features],
        };
        Ok(Response::new(pb::ModelMetadataResponse {
            name: request.into_inner().name,
            versions: vec!["1".into()],
            platform: "echo".into(),
            inputs: vec![tensor("input")],
            outputs: vec![tensor("output")],
        }))
    }

    async fn model_infer(
        &self,
        request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let deadline = modelplane_service::call_deadline(request.metadata());
        let request = request.into_inner();
        if let Some(link) = &self.forward_to {
            return Ok(Response::new(link.infer(request, deadline).await?));
        }
        Ok(Response::new(echoed(request)))
    }

    type ModelStreamInferStream = modelplane_kserve::grpc::ResponseStream;

    /// Echoes each request of the stream, as the worker answers a stream.
    async fn model_stream_infer(
        &self,
        request: Request<tonic::Streaming<pb::ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        if self.forward_to.is_some() {
            return Err(not_echoed());
        }
        let responses = modelplane_kserve::grpc::stream_responses(
            request.into_inner(),
            std::future::pending(),
            |request| async move { Ok(echoed(request)) },
        );
        Ok(Response::new(responses))
    }

    async fn model_config(
        &self,
        _: Request<pb::ModelConfigRequest>,
    ) -> Result<Response<pb::ModelConfigResponse>, Status> {
        Err(not_echoed())
    }

    async fn model_statistics(
        &self,
        _: Request<pb::ModelStatisticsRequest>,
    ) -> Result<Response<pb::ModelStatisticsResponse>, Status> {
        Err(not_echoed())
    }

    async fn repository_index(
        &self,
        _: Request<pb::RepositoryIndexRequest>,
    ) -> Result<Response<pb::RepositoryIndexResponse>, Status> {
        Err(not_echoed())
    }

    async fn repository_model_load(
        &self,
        _: Request<pb::RepositoryModelLoadRequest>,
    ) -> Result<Response<pb::RepositoryModelLoadResponse>, Status> {
        Err(not_echoed())
    }

    async fn repository_model_unload(
        &self,
        _: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Result<Response<pb::RepositoryModelUnloadResponse>, Status> {
        Err(not_echoed())
    }
}

/// The extensions are not part of the floor being measured.
fn not_echoed() -> Status {
    Status::unimplemented("the echo server answers the six KServe v2 RPCs only")
}

pub async fn echo(args: EchoArgs) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local: SocketAddr = listener.local_addr()?;
    let forward_to = match &args.forward_to {
        Some(addr) => {
            let credentials = match &args.api_key_file {
                Some(path) => modelplane_service::Credentials::with_key(
                    modelplane_service::credentials::ApiKey::read_file(path).map_err(anyhow::Error::msg)?,
                ),
                None => Default::default(),
            };
            Some(WorkerLink::new(addr, Default::default(), &credentials, None).map_err(|err| anyhow::anyhow!(err))?)
        }
        None => None,
    };
    println!("modelplane: echo listening on {local}");
    let incoming = modelplane_service::incoming(listener);
    tonic::transport::Server::builder()
        .add_service(GrpcInferenceServiceServer::new(Echo { features: args.features, forward_to }))
        .serve_with_incoming_shutdown(incoming, modelplane_service::termination_signal())
        .await?;
    Ok(())
}
