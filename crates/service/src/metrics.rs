//! Prometheus metrics: one recorder per process, rendered in the text exposition format
//! at `GET /metrics` (on the router's HTTP port, or on `--metrics-listen` for any role).
//!
//! Services record through the `metrics` facade; without an installed recorder (unit
//! tests, embedders that do not want metrics) recording is a no-op.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds: 50 µs to 10 s, for calls from an echo to a training upload.
const SECONDS_BUCKETS: [f64; 16] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// Rows per batch: powers of two up to the largest batch a worker accepts by default.
const ROWS_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
/// Histograms buffer samples until upkeep folds them in; this often, even unscraped.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs this process's recorder (the first call does; later ones are no-ops).
/// Returns false when another recorder was installed already, e.g. by an embedder.
pub fn install() -> bool {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .and_then(|builder| builder.set_buckets_for_metric(Matcher::Suffix("_rows".into()), &ROWS_BUCKETS))
                .and_then(PrometheusBuilder::install_recorder);
            match handle {
                Ok(handle) => {
                    metrics::describe_counter!(
                        crate::REQUESTS_TOTAL,
                        "gRPC calls a server answered, by role, method and gRPC code."
                    );
                    metrics::describe_histogram!(
                        crate::REQUEST_DURATION_SECONDS,
                        metrics::Unit::Seconds,
                        "Time from a gRPC call's arrival to the end of its answer, by role and method."
                    );
                    let upkeep = handle.clone();
                    let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
                        loop {
                            std::thread::sleep(UPKEEP_INTERVAL);
                            upkeep.run_upkeep();
                        }
                    });
                    if let Err(err) = spawned {
                        tracing::warn!(error = %err, "no metrics upkeep thread; histograms fold in at each scrape");
                    }
                    Some(handle)
                }
                Err(err) => {
                    tracing::warn!(error = %err, "metrics recorder not installed; /metrics will be empty");
                    None
                }
            }
        })
        .is_some()
}

/// Whether [`install`] installed this process's recorder.
pub fn installed() -> bool {
    HANDLE.get().is_some_and(Option::is_some)
}

/// The current metrics in Prometheus' text format; empty without [`install`].
pub fn render() -> String {
    match HANDLE.get() {
        Some(Some(handle)) => {
            handle.run_upkeep();
            handle.render()
        }
        _ => String::new(),
    }
}

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`, to merge into an HTTP server a role already has.
pub fn routes<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::new()
        .route("/metrics", axum::routing::get(|| async { ([(http::header::CONTENT_TYPE, CONTENT_TYPE)], render()) }))
}

/// Serves `GET /metrics` alone on `listener` until `shutdown` (for roles without an HTTP
/// port of their own).
pub async fn serve(listener: tokio::net::TcpListener, shutdown: crate::Shutdown) -> std::io::Result<()> {
    tracing::info!(addr = ?listener.local_addr().ok(), "serving Prometheus metrics");
    axum::serve(listener, routes::<()>()).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

/// gRPC's canonical code names (`OK`, `INVALID_ARGUMENT`, ...), the label every
/// modelplane metric uses for a status.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
