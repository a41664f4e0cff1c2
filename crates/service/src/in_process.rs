//! Servers in this process that a client in this process may call without a network hop.
//!
//! `modelplane up` runs the router and a worker in one process. Sending the router's
//! call to that worker over loopback TCP costs a whole HTTP/2 round trip — client and
//! server h2 state machines, four syscalls and the wake-ups between them, ~150 µs of CPU
//! per request on a small VM (docs/benchmarks.md). A worker registers its gRPC service
//! here under the address it advertises; a router holding the same [`InProcessServers`]
//! calls that service as a function instead, with the same headers (`grpc-timeout`,
//! `traceparent`), the same protobuf framing and the same per-RPC trace span, so the
//! worker cannot tell the difference. Dropping the caller's future cancels the call,
//! exactly as a reset stream does.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, RwLock};

use tower::Layer;
use tower::util::BoxCloneSyncService;

use crate::{AuthLayer, RpcMetricsLayer, RpcTraceLayer};

/// A gRPC server as a tower service: HTTP requests with gRPC-framed bodies in, the same
/// out.
pub type InProcessService =
    BoxCloneSyncService<http::Request<tonic::body::Body>, http::Response<tonic::body::Body>, Infallible>;

/// Shared by the servers and clients of one process; empty (every call goes over the
/// network) unless a server registered itself.
#[derive(Clone, Default)]
pub struct InProcessServers {
    by_addr: Arc<RwLock<HashMap<String, InProcessService>>>,
}

impl std::fmt::Debug for InProcessServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let by_addr = self.by_addr.read().unwrap_or_else(|p| p.into_inner());
        f.debug_set().entries(by_addr.keys()).finish()
    }
}

impl InProcessServers {
    /// Makes `service` callable in process as `addr` (the address it advertises), wrapped
    /// in the per-RPC trace span, metrics (labelled `role`) and `auth` its network server
    /// has.
    /// Returns a guard that withdraws it when dropped, after which callers fall back to
    /// the network.
    pub fn register<S>(&self, addr: &str, role: &'static str, auth: AuthLayer, service: S) -> Registration
    where
        S: tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let service =
            BoxCloneSyncService::new(RpcTraceLayer.layer(RpcMetricsLayer::new(role).layer(auth.layer(service))));
        self.by_addr.write().unwrap_or_else(|p| p.into_inner()).insert(addr.to_owned(), service);
        Registration { servers: self.clone(), addr: addr.to_owned() }
    }

    /// The service registered as `addr`, if any.
    pub fn get(&self, addr: &str) -> Option<InProcessService> {
        self.by_addr.read().unwrap_or_else(|p| p.into_inner()).get(addr).cloned()
    }
}

/// Keeps a server registered; see [`InProcessServers::register`].
#[must_use = "the server is withdrawn when the registration drops"]
pub struct Registration {
    servers: InProcessServers,
    addr: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.servers.by_addr.write().unwrap_or_else(|p| p.into_inner()).remove(&self.addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer_ok() -> impl tower::Service<
        http::Request<tonic::body::Body>,
        Response = http::Response<tonic::body::Body>,
        Error = Infallible,
        Future = std::future::Ready<Result<http::Response<tonic::body::Body>, Infallible>>,
    > + Clone
    + Send
    + Sync
    + 'static {
        tower::service_fn(|_request| std::future::ready(Ok(http::Response::new(tonic::body::Body::empty()))))
    }

    #[test]
    fn a_server_is_found_by_its_address_until_its_registration_drops() {
        let servers = InProcessServers::default();
        assert!(servers.get("127.0.0.1:7003").is_none());
        let open = AuthLayer::without_keys(Some(crate::access::Role::Admin));
        let registration = servers.register("127.0.0.1:7003", "worker", open, answer_ok());
        assert!(servers.get("127.0.0.1:7003").is_some());
        assert!(servers.get("127.0.0.1:7004").is_none(), "another address is not this server");
        assert_eq!(format!("{servers:?}"), r#"{"127.0.0.1:7003"}"#);
        drop(registration);
        assert!(servers.get("127.0.0.1:7003").is_none(), "withdrawn when the registration drops");
    }
}
