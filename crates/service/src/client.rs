//! Client channels to other modelplane services, carrying the trace context and the
//! caller's credentials.

use std::time::Duration;

use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::credentials::ApiKey;

/// What a client presents to the services it calls. Set in one place per process (the
/// CLI's flags, a service's `--api-key-file`) and passed to [`connect_lazy`].
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// Sent as `authorization: Bearer <key>` on every call; `None`: calls are anonymous.
    pub api_key: Option<ApiKey>,
    /// TLS to the servers (the CA they are checked against, a client certificate for
    /// mTLS); `None`: plaintext.
    pub tls: Option<crate::tls::ClientTls>,
}

impl Credentials {
    pub fn with_key(api_key: ApiKey) -> Self {
        Self { api_key: Some(api_key), tls: None }
    }

    /// The `authorization` header these credentials send (marked sensitive), if any.
    pub fn authorization(&self) -> Option<http::HeaderValue> {
        self.api_key.as_ref().map(ApiKey::header_value)
    }
}

/// Adds the caller's `traceparent` and `authorization` to every request.
#[derive(Clone)]
pub struct OutgoingInterceptor {
    authorization: Option<AsciiMetadataValue>,
}

impl OutgoingInterceptor {
    pub fn new(credentials: &Credentials) -> Self {
        let authorization = credentials.api_key.as_ref().and_then(|key| {
            let mut value = MetadataValue::try_from(key.header_value().as_bytes()).ok()?;
            value.set_sensitive(true);
            Some(value)
        });
        Self { authorization }
    }
}

impl Interceptor for OutgoingInterceptor {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let mut request = crate::TraceContextInterceptor.call(request)?;
        if let Some(value) = &self.authorization {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel whose requests carry the caller's `traceparent` and credentials.
pub type TracedChannel = InterceptedService<Channel, OutgoingInterceptor>;

/// A lazily connecting channel to `addr` (`host:port`, `http://` or `https://host:port`;
/// TLS when the credentials have TLS settings); the first call connects, and a lost
/// connection is re-established on the next call.
pub fn connect_lazy(addr: &str, credentials: &Credentials) -> Result<TracedChannel, tonic::transport::Error> {
    // With TLS the connector makes the TLS connection (so a client certificate renewed
    // on disk is presented on the next connection), and tonic sees plain `http://`.
    let uri = match addr.split_once("://") {
        Some((_, rest)) => format!("http://{rest}"),
        None => format!("http://{addr}"),
    };
    let endpoint = Endpoint::from_shared(uri)?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .initial_stream_window_size(crate::STREAM_WINDOW_BYTES)
        .initial_connection_window_size(crate::CONNECTION_WINDOW_BYTES)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    let channel = match &credentials.tls {
        None => endpoint.connect_lazy(),
        Some(tls) => match tls.connector() {
            Ok(connector) => endpoint.connect_with_connector_lazy(connector),
            // The settings loaded once already; a config that cannot be built again
            // fails every call with the reason rather than falling back to plaintext.
            Err(reason) => endpoint.connect_with_connector_lazy(tower::service_fn(move |_: http::Uri| {
                let reason = reason.clone();
                async move { Err::<hyper_util::rt::TokioIo<tokio::net::TcpStream>, _>(std::io::Error::other(reason)) }
            })),
        },
    };
    Ok(InterceptedService::new(channel, OutgoingInterceptor::new(credentials)))
}
