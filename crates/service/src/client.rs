//! Client channels to other modelplane services, carrying the trace context.

use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::TraceContextInterceptor;

/// A channel whose requests carry the caller's `traceparent`.
pub type TracedChannel = InterceptedService<Channel, TraceContextInterceptor>;

/// A lazily connecting channel to `addr` (`host:port` or `http://host:port`); the first
/// call connects, and a lost connection is re-established on the next call.
pub fn connect_lazy(addr: &str) -> Result<TracedChannel, tonic::transport::Error> {
    let uri = if addr.contains("://") { addr.to_owned() } else { format!("http://{addr}") };
    let channel = Endpoint::from_shared(uri)?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .initial_stream_window_size(crate::STREAM_WINDOW_BYTES)
        .initial_connection_window_size(crate::CONNECTION_WINDOW_BYTES)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .connect_lazy();
    Ok(InterceptedService::new(channel, TraceContextInterceptor))
}
