//! The one server assembly every service uses: tower stack, message limits, health and
//! reflection.

use tonic::transport::Server;
use tower::layer::util::{Identity, Stack};

use crate::{AuthLayer, OversizeStatusLayer, RpcMetricsLayer, RpcTraceLayer};

/// Largest gRPC message a service accepts or sends (artifacts stream in 1 MiB chunks;
/// inference batches may be larger).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// HTTP/2 flow-control windows, larger than hyper's defaults: an upload
/// streams 1 MiB messages, and a window of a few of them keeps the sender from waiting
/// for a window update after every message. Clients set the same for downloads.
pub const STREAM_WINDOW_BYTES: u32 = 4 << 20;
/// The window shared by every stream of a connection.
pub const CONNECTION_WINDOW_BYTES: u32 = 8 << 20;

/// Request compressions the inference services take, as Triton's gRPC server does
/// (tritonclient's `compression_algorithm`). Answers go uncompressed: clients advertise
/// gzip whether or not they want it, and compressing tensors costs more CPU than it saves.
pub const ACCEPTED_COMPRESSIONS: [tonic::codec::CompressionEncoding; 2] =
    [tonic::codec::CompressionEncoding::Gzip, tonic::codec::CompressionEncoding::Deflate];

/// The shared tower stack (tonic applies the last layer added innermost).
type Layers = Stack<AuthLayer, Stack<OversizeStatusLayer, Stack<RpcMetricsLayer, Stack<RpcTraceLayer, Identity>>>>;

/// A tonic server with the shared tower stack (per-RPC trace span, per-RPC metrics
/// labelled `role`, then RESOURCE_EXHAUSTED for oversized messages, which the metrics
/// count as such, then authentication and authorization, whose refusals are traced and
/// counted too) and HTTP/2 settings.
pub fn grpc_server(role: &'static str, auth: AuthLayer) -> Server<Layers> {
    Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(STREAM_WINDOW_BYTES))
        .initial_connection_window_size(Some(CONNECTION_WINDOW_BYTES))
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .layer(RpcTraceLayer)
        .layer(RpcMetricsLayer::new(role))
        .layer(OversizeStatusLayer)
        .layer(auth)
}

/// Accepted connections of `listener` with Nagle off: the server's `tcp_nodelay` only
/// applies to listeners tonic binds itself, and a response written as headers, data and
/// trailers would otherwise wait for the peer's delayed ACK.
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// `grpc.health.v1` with a reporter the service flips to NOT_SERVING when it drains.
pub fn health_service() -> (
    tonic_health::server::HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    tonic_health::server::health_reporter()
}

/// The reflection services every server advertises beside its own.
const REFLECTION_SERVICES: [&str; 2] =
    ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

/// A reflection builder advertising `services` (full names, e.g.
/// `inference.GRPCInferenceService`) plus health and both reflection versions; every
/// modelplane proto is available for lookup.
fn reflection(services: &[&str]) -> tonic_reflection::server::Builder<'static> {
    let builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(modelplane_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        // Both reflection protos, so either version can describe the other.
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .include_reflection_service(false)
        .with_service_name("grpc.health.v1.Health");
    REFLECTION_SERVICES.iter().chain(services).fold(builder, |builder, name| builder.with_service_name(*name))
}

/// Server reflection (`grpc.reflection.v1`) advertising `services`; see [`reflection`].
pub fn reflection_service(
    services: &[&str],
) -> tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection> {
    // Our descriptor sets are compiled in; failing here is a build defect.
    reflection(services).build_v1().expect("reflection descriptors are valid")
}

/// The same reflection as `grpc.reflection.v1alpha`, which grpcurl before 1.8.8, evans
/// and many GUI clients ask for.
pub fn reflection_service_v1alpha(
    services: &[&str],
) -> tonic_reflection::server::v1alpha::ServerReflectionServer<impl tonic_reflection::server::v1alpha::ServerReflection>
{
    reflection(services).build_v1alpha().expect("reflection descriptors are valid")
}

/// Why a server stopped or did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
    #[error("{0}")]
    Tls(String),
}

/// Serves one gRPC service (plus health and reflection) of `role` on `listener`, every
/// call admitted by `auth`, over TLS when `tls` is set, until `shutdown` is cancelled.
/// The service's own health status follows `readiness` when given (a worker is ready
/// once its versions are loaded), while the whole server's (`""`) says it is alive:
/// Kubernetes probes readiness on the service's name and liveness on `""`. On shutdown
/// both turn NOT_SERVING, then after `linger` the server stops accepting and drains
/// in-flight calls.
#[allow(clippy::too_many_arguments)]
pub async fn serve_grpc<S>(
    role: &'static str,
    service: S,
    listener: tokio::net::TcpListener,
    shutdown: crate::Shutdown,
    linger: std::time::Duration,
    auth: AuthLayer,
    tls: Option<&crate::tls::ServerTls>,
    readiness: Option<tokio::sync::watch::Receiver<bool>>,
) -> Result<(), ServeError>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    use tonic_health::ServingStatus;
    let acceptor = tls.map(|tls| tls.acceptor(crate::tls::ALPN_H2)).transpose().map_err(ServeError::Tls)?;
    let (health, health_service) = health_service();
    health.set_service_status(S::NAME, ServingStatus::Serving).await;
    if let Some(mut ready) = readiness {
        let (health, shutdown) = (health.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                let status =
                    if *ready.borrow_and_update() { ServingStatus::Serving } else { ServingStatus::NotServing };
                if shutdown.is_cancelled() {
                    return;
                }
                health.set_service_status(S::NAME, status).await;
                if shutdown.is_cancelled() {
                    // The drain may have said NOT_SERVING just before; it stands.
                    health.set_service_status(S::NAME, ServingStatus::NotServing).await;
                    return;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    changed = ready.changed() => if changed.is_err() { return },
                }
            }
        });
    }
    let router = grpc_server(role, auth)
        .add_service(health_service)
        .add_service(reflection_service(&[S::NAME]))
        .add_service(reflection_service_v1alpha(&[S::NAME]))
        .add_service(service);
    let drained = async move {
        shutdown.cancelled().await;
        health.set_service_status(S::NAME, ServingStatus::NotServing).await;
        health.set_service_status("", ServingStatus::NotServing).await;
        tokio::time::sleep(linger).await;
    };
    match acceptor {
        None => router.serve_with_incoming_shutdown(incoming(listener), drained).await?,
        Some(acceptor) => {
            router.serve_with_incoming_shutdown(crate::tls::tls_incoming(listener, acceptor), drained).await?
        }
    }
    Ok(())
}
