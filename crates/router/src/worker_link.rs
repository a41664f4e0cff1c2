//! The router's connection to one worker: unary gRPC calls, and inference on open
//! ModelStreamInfer streams ([`stream`]), over one HTTP/2 connection, written with the
//! `h2` crate directly.
//!
//! Why not tonic's `Channel`: a call through it passes tower's buffer task, hyper's
//! dispatch task and a per-request body-pipe task before h2's connection task writes it
//! to the socket, and the answer comes back through another spawned task. Each hop is a
//! wake-up, and on a small VM those wake-ups were most of the router's ~250 µs overhead
//! (profile in docs/benchmarks.md). Here the calling task queues the frames in h2 itself;
//! only the connection task stands between it and the socket.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use h2::SendStream;
use h2::client::{ResponseFuture, SendRequest};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use modelplane_service::{InProcessServers, InProcessService};
use tokio_rustls::rustls::pki_types::ServerName;
use tonic::{Code, Status};
use tower::ServiceExt;

mod stream;

/// How long connecting to a worker may take before the call fails as UNAVAILABLE.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A ping this often finds a worker that hangs, or vanished without closing the
/// connection: its requests in flight then go to another replica within seconds rather
/// than waiting on it. (A ping is answered by the worker's connection task, whatever its
/// models are computing, so only a stopped process or a broken network misses it.)
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
/// A connection whose ping is not answered in this time is dropped.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(4);
/// Flow-control windows, as hyper's defaults: large enough that a 64 MiB tensor is not
/// throttled by round trips on a fast network.
const STREAM_WINDOW: u32 = 2 << 20;
const CONNECTION_WINDOW: u32 = 5 << 20;

pub use modelplane_kserve::grpc::method;

/// A lazily connected, self-healing HTTP/2 connection to one worker.
pub struct WorkerLink {
    addr: String,
    authority: Authority,
    current: Mutex<Option<Connection>>,
    /// Open ModelStreamInfer calls waiting for the next request (see [`stream`]).
    idle_streams: stream::IdleStreams,
    /// Held while connecting, so concurrent callers share one new connection.
    connecting: tokio::sync::Mutex<()>,
    /// Consulted on every call: while the worker is registered here (it runs in this
    /// process) it is called directly; once it withdraws, over the network.
    in_process: InProcessServers,
    /// The router's own `authorization` header (sensitive), sent on every call: workers
    /// admit only callers with a key (the router holds a `service` key).
    authorization: Option<HeaderValue>,
    /// TLS to the worker, when the router has client TLS settings, and the name its
    /// certificate must carry.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

/// What a connection to a worker runs over: TCP, or TLS on TCP.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

impl std::fmt::Debug for WorkerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerLink").field("addr", &self.addr).finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Connection {
    sender: SendRequest<Bytes>,
    /// Cleared when the connection task ends; the next call reconnects.
    alive: Arc<AtomicBool>,
}

impl WorkerLink {
    /// A link to `addr` (`host:port` or `http://host:port`); nothing connects until the
    /// first call, and nothing ever does while `in_process` has a server as `addr`.
    /// A link to the worker at `addr`; over TLS its certificate is checked against
    /// `tls_server_name`, or else the host in `addr`.
    pub fn new(
        addr: &str,
        in_process: InProcessServers,
        credentials: &modelplane_service::Credentials,
        tls_server_name: Option<&str>,
    ) -> Result<Self, String> {
        let host_port = addr.strip_prefix("http://").or_else(|| addr.strip_prefix("https://")).unwrap_or(addr);
        let host_port = host_port.trim_end_matches('/');
        if host_port.contains("://") {
            return Err(format!("worker address {addr:?}: expected host:port, http:// or https://"));
        }
        let authority =
            Authority::try_from(host_port).map_err(|err| format!("worker address {addr:?} is not host:port: {err}"))?;
        if authority.port_u16().is_none() {
            return Err(format!("worker address {addr:?} has no port"));
        }
        Ok(Self {
            addr: host_port.to_owned(),
            authority,
            current: Mutex::new(None),
            idle_streams: Default::default(),
            connecting: tokio::sync::Mutex::new(()),
            in_process,
            authorization: credentials.authorization(),
            tls: match &credentials.tls {
                None => None,
                Some(tls) => {
                    let connector =
                        tokio_rustls::TlsConnector::from(tls.rustls_config(modelplane_service::tls::ALPN_H2)?);
                    let name = modelplane_service::tls::server_name(tls_server_name.unwrap_or(host_port))
                        .map_err(|err| format!("worker {addr}: {err}"))?;
                    Some((connector, name))
                }
            },
        })
    }

    /// Calls `path` with `message`, forwarding the caller's `grpc-timeout` if any.
    ///
    /// A worker's own error comes back as its status. When no answer arrives (refused,
    /// reset or broken connection) the status is UNAVAILABLE and has the transport error
    /// as its source, which tells the router to try another replica and suspect this one.
    pub async fn unary<Req, Resp>(
        &self,
        path: &'static str,
        message: &Req,
        timeout: Option<&HeaderValue>,
    ) -> Result<Resp, Status>
    where
        Req: prost::Message,
        Resp: prost::Message + Default,
    {
        let answer = self.unary_encoded(path, message, timeout).await?;
        decode_message(answer, &self.addr)
    }

    /// [`WorkerLink::unary`] returning the answer's protobuf bytes undecoded.
    async fn unary_encoded(
        &self,
        path: &'static str,
        message: &impl prost::Message,
        timeout: Option<&HeaderValue>,
    ) -> Result<Bytes, Status> {
        let frame = encode(message)?;
        let mut headers = self.call_headers(5);
        if let Some(timeout) = timeout {
            headers.insert("grpc-timeout", timeout.clone());
        }
        modelplane_service::inject_context(&mut headers);
        let chunks = match self.in_process.get(&self.addr) {
            Some(service) => self.call_in_process(service, path, headers, frame).await?,
            None => self.call_over_h2(path, headers, frame).await?,
        };
        message_bytes(chunks, &self.addr)
    }

    /// A gRPC call's headers: content type, trailers and the router's credentials.
    fn call_headers(&self, capacity: usize) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(capacity);
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
        if let Some(authorization) = &self.authorization {
            headers.insert(http::header::AUTHORIZATION, authorization.clone());
        }
        headers
    }

    /// Sends the request on this worker's HTTP/2 connection; returns the answer's frames.
    async fn call_over_h2(&self, path: &'static str, headers: HeaderMap, frame: Bytes) -> Result<Vec<Bytes>, Status> {
        let (response, mut body) = self.start_call(path, headers).await?.0;
        body.send_data(frame, true).map_err(|err| self.transport_error(err))?;
        let response = response.await.map_err(|err| self.transport_error(err))?;
        let (parts, mut body) = response.into_parts();
        check_head(&parts)?;
        let mut answer = Answer::new(&self.addr);
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|err| self.transport_error(err))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            answer.push(chunk)?;
        }
        let trailers = body.trailers().await.map_err(|err| self.transport_error(err))?;
        answer.finish(trailers.as_ref())
    }

    /// Opens a call of `path` on this worker's connection (connecting first if needed);
    /// the caller sends the request body. Also returns whether the connection is alive.
    async fn start_call(
        &self,
        path: &'static str,
        headers: HeaderMap,
    ) -> Result<((ResponseFuture, SendStream<Bytes>), Arc<AtomicBool>), Status> {
        let (sender, alive) = self.sender().await?;
        let mut sender = sender.ready().await.map_err(|err| self.transport_error(err))?;
        let uri = http::Uri::builder()
            .scheme(if self.tls.is_some() { Scheme::HTTPS } else { Scheme::HTTP })
            .authority(self.authority.clone())
            .path_and_query(PathAndQuery::from_static(path))
            .build()
            .map_err(|err| Status::internal(format!("worker uri: {err}")))?;
        let mut request =
            http::Request::post(uri).body(()).map_err(|err| Status::internal(format!("worker request: {err}")))?;
        *request.headers_mut() = headers;
        let call = sender.send_request(request, false).map_err(|err| self.transport_error(err))?;
        Ok((call, alive))
    }

    /// Calls the worker's service in this process (see [`InProcessServers`]); the same
    /// request and answer as on the wire, without the connection.
    async fn call_in_process(
        &self,
        service: InProcessService,
        path: &'static str,
        headers: HeaderMap,
        frame: Bytes,
    ) -> Result<Vec<Bytes>, Status> {
        let mut request = http::Request::post(http::Uri::from_static(path))
            .body(tonic::body::Body::new(http_body_util::Full::new(frame)))
            .map_err(|err| Status::internal(format!("worker request: {err}")))?;
        *request.headers_mut() = headers;
        let Ok(response) = service.oneshot(request).await;
        let (parts, mut body) = response.into_parts();
        check_head(&parts)?;
        let mut answer = Answer::new(&self.addr);
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            match frame?.into_data() {
                Ok(chunk) => answer.push(chunk)?,
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        answer.finish(trailers.as_ref())
    }

    /// The current connection, or a new one when there is none or it ended.
    async fn sender(&self) -> Result<(SendRequest<Bytes>, Arc<AtomicBool>), Status> {
        if let Some(sender) = self.live_sender() {
            return Ok(sender);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(sender) = self.live_sender() {
            return Ok(sender);
        }
        let connection = self.connect().await?;
        let sender = (connection.sender.clone(), connection.alive.clone());
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(connection);
        Ok(sender)
    }

    fn live_sender(&self) -> Option<(SendRequest<Bytes>, Arc<AtomicBool>)> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        current.as_ref().filter(|c| c.alive.load(Ordering::Acquire)).map(|c| (c.sender.clone(), c.alive.clone()))
    }

    async fn connect(&self) -> Result<Connection, Status> {
        let unreachable = |detail: String, source: Arc<dyn std::error::Error + Send + Sync>| {
            let mut status = Status::unavailable(format!("worker {} unreachable: {detail}", self.addr));
            status.set_source(source);
            status
        };
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&self.addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return Err(unreachable(err.to_string(), Arc::new(err))),
            Err(elapsed) => {
                return Err(unreachable(format!("no connection in {CONNECT_TIMEOUT:?}"), Arc::new(elapsed)));
            }
        };
        // Small answers must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let stream: Box<dyn Io> = match &self.tls {
            None => Box::new(stream),
            Some((connector, name)) => {
                match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name.clone(), stream)).await {
                    Ok(Ok(tls)) => Box::new(tls),
                    Ok(Err(err)) => return Err(unreachable(format!("TLS: {err}"), Arc::new(err))),
                    Err(elapsed) => return Err(unreachable("TLS handshake timed out".into(), Arc::new(elapsed))),
                }
            }
        };
        let (sender, mut connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake::<_, Bytes>(stream)
            .await
            .map_err(|err| unreachable(err.to_string(), Arc::new(err)))?;
        let alive = Arc::new(AtomicBool::new(true));
        let ping = connection.ping_pong();
        let (addr, flag) = (self.addr.clone(), alive.clone());
        tokio::spawn(async move {
            tokio::select! {
                ended = connection => match ended {
                    Ok(()) => tracing::debug!(%addr, "worker connection closed"),
                    Err(err) => tracing::debug!(%addr, error = %err, "worker connection ended"),
                },
                reason = keepalive(ping) => tracing::warn!(%addr, %reason, "dropping worker connection"),
            }
            flag.store(false, Ordering::Release);
        });
        Ok(Connection { sender, alive })
    }

    fn transport_error(&self, err: h2::Error) -> Status {
        let mut status = Status::unavailable(format!("worker {}: {err}", self.addr));
        // A reset of this one stream says nothing about the worker; a broken connection
        // or GOAWAY does, and the source makes the router suspect the worker.
        if err.is_io() || err.is_go_away() || !err.is_reset() {
            status.set_source(Arc::new(err));
        }
        status
    }
}

/// Pings forever; returns why the connection should be dropped.
async fn keepalive(ping: Option<h2::PingPong>) -> String {
    let Some(mut ping) = ping else { return std::future::pending().await };
    loop {
        tokio::time::sleep(KEEPALIVE_INTERVAL).await;
        match tokio::time::timeout(KEEPALIVE_TIMEOUT, ping.ping(h2::Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            Ok(Err(err)) => return format!("keepalive ping failed: {err}"),
            Err(_) => return format!("no answer to a keepalive ping in {KEEPALIVE_TIMEOUT:?}"),
        }
    }
}

/// A gRPC message frame: uncompressed flag, big-endian length, the protobuf bytes.
fn encode(message: &impl prost::Message) -> Result<Bytes, Status> {
    let len = message.encoded_len();
    let prefix_len = u32::try_from(len)
        .map_err(|_| Status::resource_exhausted(format!("a {len}-byte message does not fit a gRPC frame")))?;
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(prefix_len);
    message.encode(&mut buf).map_err(|err| Status::internal(format!("encoding the worker request: {err}")))?;
    Ok(buf.freeze())
}

fn decode<M: prost::Message + Default>(chunks: Vec<Bytes>, addr: &str) -> Result<M, Status> {
    decode_message(message_bytes(chunks, addr)?, addr)
}

/// A message's protobuf bytes, from the worker at `addr`, decoded.
fn decode_message<M: prost::Message + Default>(bytes: Bytes, addr: &str) -> Result<M, Status> {
    M::decode(bytes).map_err(|err| malformed(addr, &err.to_string()))
}

/// The protobuf bytes of a gRPC message frame arrived in `chunks`, still encoded.
fn message_bytes(chunks: Vec<Bytes>, addr: &str) -> Result<Bytes, Status> {
    let mut frame: Bytes = match chunks.len() {
        1 => chunks.into_iter().next().unwrap_or_default(),
        _ => chunks.concat().into(),
    };
    if frame.len() < 5 {
        return Err(malformed(addr, "shorter than its 5-byte prefix"));
    }
    let compressed = frame.get_u8();
    let len = frame.get_u32() as usize;
    if compressed != 0 {
        return Err(malformed(addr, "compressed, but the router asked for none"));
    }
    if len != frame.len() {
        return Err(malformed(addr, &format!("prefix says {len} bytes, {} arrived", frame.len())));
    }
    Ok(frame)
}

fn malformed(addr: &str, what: &str) -> Status {
    Status::internal(format!("worker {addr} sent a malformed gRPC message: {what}"))
}

/// The gRPC code for an HTTP status without a grpc-status, as the gRPC spec maps them.
fn status_from_http(status: StatusCode) -> Status {
    let code = match status {
        StatusCode::BAD_REQUEST => Code::Internal,
        StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        StatusCode::FORBIDDEN => Code::PermissionDenied,
        StatusCode::NOT_FOUND => Code::Unimplemented,
        StatusCode::TOO_MANY_REQUESTS
        | StatusCode::BAD_GATEWAY
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::GATEWAY_TIMEOUT => Code::Unavailable,
        _ => Code::Unknown,
    };
    Status::new(code, format!("worker answered HTTP {status}"))
}

/// Fails on an HTTP error or a trailers-only answer, which carries the status in its
/// headers.
fn check_head(parts: &http::response::Parts) -> Result<(), Status> {
    if parts.status != StatusCode::OK {
        return Err(status_from_http(parts.status));
    }
    match Status::from_header_map(&parts.headers) {
        Some(status) if status.code() != Code::Ok => Err(status),
        _ => Ok(()),
    }
}

/// The frames of one answer as they arrive, bounded by the largest message.
struct Answer<'a> {
    addr: &'a str,
    chunks: Vec<Bytes>,
    received: usize,
}

impl<'a> Answer<'a> {
    fn new(addr: &'a str) -> Self {
        Self { addr, chunks: Vec::with_capacity(1), received: 0 }
    }

    fn push(&mut self, chunk: Bytes) -> Result<(), Status> {
        self.received += chunk.len();
        if self.received > modelplane_service::MAX_MESSAGE_BYTES + 5 {
            return Err(Status::resource_exhausted(format!(
                "worker {} answered with more than {} bytes",
                self.addr,
                modelplane_service::MAX_MESSAGE_BYTES
            )));
        }
        self.chunks.push(chunk);
        Ok(())
    }

    /// The frames, once the trailers said OK.
    fn finish(self, trailers: Option<&HeaderMap>) -> Result<Vec<Bytes>, Status> {
        match trailers.and_then(Status::from_header_map) {
            Some(status) if status.code() != Code::Ok => Err(status),
            Some(_) => Ok(self.chunks),
            None => Err(Status::internal(format!("worker {} ended its answer without a grpc-status", self.addr))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use modelplane_proto::inference as pb;

    #[test]
    fn frames_round_trip_and_bad_frames_are_internal_errors() {
        let message = pb::ModelInferRequest { model_name: "m".into(), model_version: "3".into(), ..Default::default() };
        let frame = encode(&message).expect("encodes");
        let half = frame.len() / 2;
        let split = vec![frame.slice(..half), frame.slice(half..)];
        assert_eq!(decode::<pb::ModelInferRequest>(split, "w").expect("decodes"), message);

        let short = decode::<pb::ModelInferRequest>(vec![frame.slice(..3)], "w").expect_err("short");
        assert_eq!(short.code(), Code::Internal);
        let truncated = decode::<pb::ModelInferRequest>(vec![frame.slice(..frame.len() - 1)], "w").expect_err("cut");
        assert!(truncated.message().contains("arrived"), "{}", truncated.message());
        let mut compressed = frame.to_vec();
        compressed[0] = 1;
        let compressed = decode::<pb::ModelInferRequest>(vec![compressed.into()], "w").expect_err("compressed");
        assert!(compressed.message().contains("compressed"), "{}", compressed.message());
    }

    #[test]
    fn addresses_need_a_port_and_plain_http() {
        let link = |addr: &str| WorkerLink::new(addr, InProcessServers::default(), &Default::default(), None);
        assert!(link("127.0.0.1:7000").is_ok());
        assert!(link("http://worker-0:7000/").is_ok());
        assert!(link("https://worker-0:7000").is_ok());
        assert!(link("grpc://worker-0:7000").expect_err("scheme").contains("expected host:port"));
        assert!(link("worker-0").expect_err("port").contains("no port"));
    }

    #[tokio::test]
    async fn an_unreachable_worker_is_unavailable_with_a_source() {
        // Bind then drop a listener: nothing listens on that port now.
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let link =
            WorkerLink::new(&format!("127.0.0.1:{port}"), InProcessServers::default(), &Default::default(), None)
                .expect("link");
        let status = link
            .unary::<_, pb::ModelInferResponse>(method::MODEL_INFER, &pb::ModelInferRequest::default(), None)
            .await
            .expect_err("nothing listens");
        assert_eq!(status.code(), Code::Unavailable);
        assert!(std::error::Error::source(&status).is_some(), "a transport failure carries its source");
    }

    /// An unused port: a call that went over the network would fail as UNAVAILABLE.
    fn closed_port_addr() -> String {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        format!("127.0.0.1:{port}")
    }

    type Reply = http::Response<tonic::body::Body>;

    /// A gRPC answer: `message` in one frame, then trailers with grpc-status 0.
    fn ok_answer(message: &impl prost::Message) -> Reply {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let body = http_body_util::Full::new(encode(message).expect("encodes"))
            .with_trailers(async { Some(Ok::<_, std::convert::Infallible>(trailers)) });
        http::Response::new(tonic::body::Body::new(body))
    }

    /// Takes every well-formed key as the router's.
    struct AnyKey;

    impl modelplane_service::Authenticator for AnyKey {
        fn authenticate(
            &self,
            _: &modelplane_service::credentials::Presented<'_>,
        ) -> Result<modelplane_service::Caller, modelplane_service::credentials::Refusal> {
            Ok(modelplane_service::Caller {
                name: "router".into(),
                role: modelplane_service::access::Role::Service,
                model_prefix: String::new(),
            })
        }
    }

    #[tokio::test]
    async fn a_worker_in_this_process_is_called_directly_with_the_callers_headers() {
        let addr = closed_port_addr();
        let servers = InProcessServers::default();
        let seen = Arc::new(Mutex::new(None));
        let seen_by_server = seen.clone();
        let registration = servers.register(
            &addr,
            "worker",
            modelplane_service::AuthLayer::new(std::sync::Arc::new(AnyKey), None, 0),
            tower::service_fn(move |request: http::Request<tonic::body::Body>| {
                let seen = seen_by_server.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    let frame = body.collect().await.expect("request body").to_bytes();
                    let asked: pb::ModelInferRequest = decode(vec![frame], "router").expect("a gRPC frame");
                    *seen.lock().expect("lock") = Some((parts.uri.path().to_owned(), parts.headers, asked.model_name));
                    let answer = pb::ModelInferResponse { model_name: "answered".into(), ..Default::default() };
                    Ok::<_, std::convert::Infallible>(ok_answer(&answer))
                }
            }),
        );
        let key = format!("mpk_{}_{}", "1".repeat(16), "2".repeat(64));
        let credentials = modelplane_service::Credentials::with_key(
            modelplane_service::credentials::ApiKey::parse(&key).expect("key"),
        );
        let link = WorkerLink::new(&addr, servers.clone(), &credentials, None).expect("link");
        let request = pb::ModelInferRequest { model_name: "asked".into(), ..Default::default() };
        let timeout = HeaderValue::from_static("250m");
        let answer: pb::ModelInferResponse =
            link.unary(method::MODEL_INFER, &request, Some(&timeout)).await.expect("answered in process");
        assert_eq!(answer.model_name, "answered");
        let (path, headers, asked) = seen.lock().expect("lock").take().expect("the server was called");
        assert_eq!((path.as_str(), asked.as_str()), (method::MODEL_INFER, "asked"));
        assert_eq!(headers.get("grpc-timeout"), Some(&timeout), "the deadline travels as on the wire");
        assert_eq!(headers.get("content-type").map(|v| v.as_bytes()), Some(&b"application/grpc"[..]));
        let authorization = headers.get("authorization").expect("the router's key travels with the call");
        assert_eq!(authorization.as_bytes(), format!("Bearer {key}").as_bytes());

        drop(registration);
        let status = link
            .unary::<_, pb::ModelInferResponse>(method::MODEL_INFER, &request, None)
            .await
            .expect_err("withdrawn: the call goes to the (closed) port");
        assert_eq!(status.code(), Code::Unavailable);
    }

    #[tokio::test]
    async fn an_in_process_workers_error_status_is_the_callers_answer() {
        let addr = closed_port_addr();
        let servers = InProcessServers::default();
        let _registration = servers.register(
            &addr,
            "worker",
            modelplane_service::AuthLayer::without_keys(Some(modelplane_service::access::Role::Service)),
            tower::service_fn(|_request: http::Request<tonic::body::Body>| async {
                let status = Status::resource_exhausted("queue of m/1 is full (1024 waiting)");
                Ok::<_, std::convert::Infallible>(status.into_http::<tonic::body::Body>())
            }),
        );
        let link = WorkerLink::new(&addr, servers, &Default::default(), None).expect("link");
        let status = link
            .unary::<_, pb::ModelInferResponse>(method::MODEL_INFER, &pb::ModelInferRequest::default(), None)
            .await
            .expect_err("the worker refused");
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), "queue of m/1 is full (1024 waiting)");
    }
}
