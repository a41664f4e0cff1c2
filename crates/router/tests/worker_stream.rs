//! The router's worker link over ModelStreamInfer, against a gRPC server answering
//! streams as a worker does (`stream_infer_calls`): what a unary call carries in headers
//! arrives in parameters, statuses come back with their codes, a stream the server
//! closed is replaced without failing the request, and a cancelled call's stream is
//! reset and never reused.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use modelplane_proto::inference as pb;
use modelplane_proto::inference::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use modelplane_router::WorkerLink;
use modelplane_service::{InProcessServers, Shutdown};
use tonic::{Code, Request, Response, Status};

/// Answers each request by its model name: `echo` names the request back, `unavailable`
/// and `invalid` fail with those codes, `slow` waits until cancelled.
#[derive(Clone, Default)]
struct StreamServer {
    received: Arc<Mutex<Vec<pb::ModelInferRequest>>>,
    streams_opened: Arc<AtomicUsize>,
    slow_dropped: Arc<AtomicUsize>,
    /// Cancelling it ends every stream open now; later streams get a new one.
    generation: Arc<Mutex<Shutdown>>,
}

impl StreamServer {
    fn end_open_streams(&self) {
        let mut generation = self.generation.lock().expect("lock");
        generation.cancel();
        *generation = Shutdown::new();
    }
}

/// Counts a `slow` request's end: it never finishes, so its end is its cancellation.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// The service with every unary RPC answering UNIMPLEMENTED and `$stream` as its
/// ModelStreamInfer (one macro for all, so `async_trait` sees the expanded methods).
macro_rules! stream_only_service {
    ($service:ty { $($stream:tt)* } $($name:ident: $request:ty => $response:ty;)*) => {
        #[tonic::async_trait]
        impl GrpcInferenceService for $service {
            $(
                async fn $name(&self, _: Request<$request>) -> Result<Response<$response>, Status> {
                    Err(Status::unimplemented("only ModelStreamInfer is served here"))
                }
            )*
            $($stream)*
        }
    };
}

stream_only_service! {
    StreamServer {
    type ModelStreamInferStream = modelplane_kserve::grpc::ResponseStream;

    async fn model_stream_infer(
        &self,
        request: Request<tonic::Streaming<pb::ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        self.streams_opened.fetch_add(1, Ordering::SeqCst);
        let ends = self.generation.lock().expect("lock").clone().cancelled_owned();
        let server = self.clone();
        let answers = modelplane_kserve::grpc::stream_infer_calls("worker", request.into_inner(), ends, move |request| {
            server.received.lock().expect("lock").push(request.clone());
            let slow_dropped = server.slow_dropped.clone();
            async move {
                match request.model_name.as_str() {
                    "echo" => Ok(pb::ModelInferResponse { model_name: request.model_name, id: request.id, ..Default::default() }),
                    "unavailable" => Err(Status::unavailable("loading; try another replica")),
                    "invalid" => Err(Status::invalid_argument("input x: expected FP32 [-1, 3]")),
                    _ => {
                        let _counted = DropCount(slow_dropped);
                        std::future::pending().await
                    }
                }
            }
        });
        Ok(Response::new(answers))
    }
    }
    server_live: pb::ServerLiveRequest => pb::ServerLiveResponse;
    server_ready: pb::ServerReadyRequest => pb::ServerReadyResponse;
    model_ready: pb::ModelReadyRequest => pb::ModelReadyResponse;
    server_metadata: pb::ServerMetadataRequest => pb::ServerMetadataResponse;
    model_metadata: pb::ModelMetadataRequest => pb::ModelMetadataResponse;
    model_infer: pb::ModelInferRequest => pb::ModelInferResponse;
    model_config: pb::ModelConfigRequest => pb::ModelConfigResponse;
    model_statistics: pb::ModelStatisticsRequest => pb::ModelStatisticsResponse;
    repository_index: pb::RepositoryIndexRequest => pb::RepositoryIndexResponse;
    repository_model_load: pb::RepositoryModelLoadRequest => pb::RepositoryModelLoadResponse;
    repository_model_unload: pb::RepositoryModelUnloadRequest => pb::RepositoryModelUnloadResponse;
}

async fn start() -> (StreamServer, WorkerLink) {
    let server = StreamServer::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let service = GrpcInferenceServiceServer::new(server.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(modelplane_service::incoming(listener)),
    );
    let link =
        WorkerLink::new(&addr.to_string(), InProcessServers::default(), &Default::default(), None).expect("link");
    (server, link)
}

fn request(model: &str, id: &str) -> pb::ModelInferRequest {
    pb::ModelInferRequest { model_name: model.into(), id: id.into(), ..Default::default() }
}

async fn eventually(what: &str, condition: impl Fn() -> bool) {
    // Bounds a hang only.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn requests_share_open_streams_and_carry_their_deadline() {
    let (server, link) = start().await;
    for id in 0..20 {
        let answer = link.infer(request("echo", &id.to_string()), None).await.expect("answered");
        assert_eq!(answer.id, id.to_string(), "each answer is its own request's");
    }
    assert_eq!(server.streams_opened.load(Ordering::SeqCst), 1, "one request at a time needs one stream");

    let answers = futures::future::join_all((0..8).map(|id| link.infer(request("echo", &id.to_string()), None))).await;
    for (id, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.expect("answered").id, id.to_string());
    }
    let opened = server.streams_opened.load(Ordering::SeqCst);
    assert!((2..=8).contains(&opened), "concurrent requests open streams as needed: {opened}");

    // A long deadline, so that no stall of this machine can eat half of it.
    link.infer(request("echo", "timed"), Some(Instant::now() + Duration::from_secs(600))).await.expect("answered");
    let received = server.received.lock().expect("lock").last().cloned().expect("received");
    let timeout = modelplane_service::timeout_parameter(&received.parameters).expect("valid").expect("a timeout");
    assert!(
        timeout <= Duration::from_secs(600) && timeout > Duration::from_secs(300),
        "the remaining time travels as the timeout parameter: {timeout:?}"
    );
    let untimed = server.received.lock().expect("lock").first().cloned().expect("received");
    assert_eq!(modelplane_service::timeout_parameter(&untimed.parameters), Ok(None), "no deadline, no timeout");

    let late = link.infer(request("echo", "late"), Some(Instant::now())).await.expect_err("deadline passed");
    assert_eq!(late.code(), Code::DeadlineExceeded);
    let sent = server.received.lock().expect("lock").iter().filter(|r| r.id == "late").count();
    assert_eq!(sent, 0, "a request past its deadline is not sent");
}

#[tokio::test]
async fn a_workers_errors_keep_their_codes_and_are_not_taken_for_a_dead_worker() {
    let (server, link) = start().await;
    let unavailable = link.infer(request("unavailable", "1"), None).await.expect_err("refused");
    assert_eq!(unavailable.code(), Code::Unavailable);
    assert_eq!(unavailable.message(), "loading; try another replica");
    assert!(std::error::Error::source(&unavailable).is_none(), "an answer from the worker has no transport source");
    let invalid = link.infer(request("invalid", "2"), None).await.expect_err("refused");
    assert_eq!((invalid.code(), invalid.message()), (Code::InvalidArgument, "input x: expected FP32 [-1, 3]"));
    link.infer(request("echo", "3"), None).await.expect("the stream goes on after errors");
    assert_eq!(server.streams_opened.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_stream_the_worker_closed_is_replaced_without_failing_the_request() {
    let (server, link) = start().await;
    link.infer(request("echo", "1"), None).await.expect("answered");
    server.end_open_streams();
    link.infer(request("echo", "2"), None).await.expect("answered on a new stream");
    assert_eq!(server.streams_opened.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_cancelled_call_resets_its_stream_and_the_worker_stops_working_on_it() {
    let (server, link) = start().await;
    link.infer(request("echo", "1"), None).await.expect("answered");
    let cancelled = tokio::time::timeout(Duration::from_millis(200), link.infer(request("slow", "2"), None)).await;
    assert!(cancelled.is_err(), "the slow request never answers");
    eventually("the worker dropped the cancelled request", || server.slow_dropped.load(Ordering::SeqCst) == 1).await;
    link.infer(request("echo", "3"), None).await.expect("answered");
    assert_eq!(server.streams_opened.load(Ordering::SeqCst), 2, "the cancelled call's stream was not reused");
}

#[tokio::test]
async fn a_vanished_worker_is_unavailable_with_a_source() {
    let (_server, link) = start().await;
    link.infer(request("echo", "1"), None).await.expect("answered");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let gone = WorkerLink::new(&format!("127.0.0.1:{port}"), InProcessServers::default(), &Default::default(), None)
        .expect("link");
    let status = gone.infer(request("echo", "2"), None).await.expect_err("nothing listens");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(std::error::Error::source(&status).is_some(), "a transport failure carries its source");
}
