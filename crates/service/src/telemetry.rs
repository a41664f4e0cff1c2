//! Logging and tracing set-up: one `init()` per process, returning a guard that flushes
//! spans on drop. OTLP export is on when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

use std::io::IsTerminal;

use opentelemetry::global;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Flushes and shuts the span exporter down when dropped.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("telemetry: flushing spans failed: {err}");
        }
    }
}

/// Installs the tracing subscriber: `RUST_LOG` filter (default `info`), text or JSON
/// logs on stderr (`MODELPLANE_LOG_FORMAT=json`; text is coloured only on a terminal), and OTLP/gRPC span export to
/// `OTEL_EXPORTER_OTLP_ENDPOINT` when set. Safe to call twice; the second call is a no-op.
pub fn init(service_name: &str) -> TelemetryGuard {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("MODELPLANE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let fmt = if json {
        tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).boxed()
    } else {
        // Colours only for a person at a terminal: in a log file or a collector the
        // escape codes are noise. There fields are written plainly, too: the default
        // writer styles every field name, and every request's span pays for it.
        if std::io::stderr().is_terminal() {
            tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed()
        } else {
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .fmt_fields(plain_fields())
                .with_writer(std::io::stderr)
                .boxed()
        }
    };

    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().filter(|e| !e.is_empty());
    let provider = endpoint.and_then(|endpoint| {
        let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint.clone()).build();
        match exporter {
            Ok(exporter) => Some(
                SdkTracerProvider::builder()
                    .with_resource(Resource::builder().with_service_name(service_name.to_owned()).build())
                    .with_batch_exporter(exporter)
                    .build(),
            ),
            Err(err) => {
                eprintln!("telemetry: OTLP exporter to {endpoint} failed: {err}; spans are not exported");
                None
            }
        }
    });
    let otel = provider.as_ref().map(|provider| {
        global::set_tracer_provider(provider.clone());
        tracing_opentelemetry::layer().with_tracer(provider.tracer("modelplane"))
    });
    // A second init (tests, `up`) keeps the first subscriber.
    let _ = tracing_subscriber::registry().with(filter).with(fmt).with(otel).try_init();
    TelemetryGuard { provider }
}

/// `name=value` pairs separated by spaces, the message bare: the default text format
/// without styling.
fn plain_fields() -> impl for<'writer> tracing_subscriber::fmt::FormatFields<'writer> + Send + Sync + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| match field.name() {
        "message" => write!(writer, "{value:?}"),
        // Metadata of `log` records, which the formatter already shows.
        name if name.starts_with("log.") => Ok(()),
        name => write!(writer, "{name}={value:?}"),
    })
    .delimited(" ")
}
