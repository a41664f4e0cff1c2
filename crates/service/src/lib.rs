//! What every modelplane service shares: telemetry, W3C trace-context propagation over
//! gRPC metadata, the one server assembly (tower stack, health, reflection, limits),
//! client channels, in-process calls between services of one process, Prometheus
//! metrics and shutdown signals.
#![forbid(unsafe_code)]

pub mod access;
mod auth_layer;
mod certificate_roles;
mod client;
pub mod credentials;
mod deadline;
mod failure_limit;
mod hashing;
mod in_process;
mod metric_handles;
pub mod metrics;
mod metrics_layer;
mod oversize_layer;
mod propagation;
mod reloading;
mod server;
mod shutdown;
mod telemetry;
pub mod tls;
mod tls_verifiers;
mod trace_layer;

pub use auth_layer::{ANONYMOUS, AuthLayer, Authenticate, Authenticator, Caller, reach_model};
pub use certificate_roles::CertificateRoles;
pub use client::{Credentials, OutgoingInterceptor, TracedChannel, connect_lazy};
pub use deadline::{
    TIMEOUT_PARAMETER, call_deadline, describe_parameter, grpc_timeout_value, request_deadline, set_timeout_parameter,
    timeout_parameter,
};
pub use failure_limit::DEFAULT_FAILURES_PER_MINUTE;
pub use hashing::{HasherGone, StreamHasher};
pub use in_process::{InProcessServers, InProcessService, Registration};
pub use metric_handles::HandleCache;
pub use metrics_layer::{REQUEST_DURATION_SECONDS, REQUESTS_TOTAL, RpcMetrics, RpcMetricsLayer, record_call};
pub use oversize_layer::{OversizeStatus, OversizeStatusLayer};
pub use propagation::{
    TraceContextInterceptor, extract_context, inject_context, inject_context_parameters, take_context_parameters,
};
pub use server::{
    ACCEPTED_COMPRESSIONS, CONNECTION_WINDOW_BYTES, MAX_MESSAGE_BYTES, STREAM_WINDOW_BYTES, ServeError, grpc_server,
    health_service, incoming, reflection_service, reflection_service_v1alpha, serve_grpc,
};
pub use shutdown::{Shutdown, termination_signal};
pub use telemetry::{TelemetryGuard, init};
pub use trace_layer::{RpcTrace, RpcTraceLayer, rpc_span};
