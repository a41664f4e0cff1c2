//! Logging and tracing set-up: one `init()` per process, returning a guard that flushes
//! spans on drop. OTLP export is on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and follows the OpenTelemetry SDK's
//! environment variables as operators set them: `OTEL_SERVICE_NAME` and a `service.name`
//! in `OTEL_RESOURCE_ATTRIBUTES` replace the role's default name, the other resource
//! attributes (e.g. `k8s.pod.name`) ride on every span, `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_TRACES_SAMPLER` and `OTEL_BSP_*` are read by the SDK, and `OTEL_SDK_DISABLED=true`
//! or `OTEL_TRACES_EXPORTER=none` turns export off.

use std::io::IsTerminal;

use opentelemetry::global;
use opentelemetry::trace::TracerProvider as _;
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
pub fn init(service_name_default: &str) -> TelemetryGuard {
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

    let variable = |name: &str| std::env::var(name).ok().filter(|value| !value.trim().is_empty());
    let endpoint = variable("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| variable("OTEL_EXPORTER_OTLP_ENDPOINT"));
    let disabled = variable("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || variable("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    let provider = endpoint.filter(|_| !disabled).and_then(|endpoint| {
        // The exporter reads the endpoint (signal-specific first) and headers itself.
        let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().build();
        let name =
            service_name(service_name_default, variable("OTEL_SERVICE_NAME"), variable("OTEL_RESOURCE_ATTRIBUTES"));
        let resource = match name {
            Some(name) => Resource::builder().with_service_name(name),
            None => Resource::builder(),
        };
        match exporter {
            Ok(exporter) => {
                Some(SdkTracerProvider::builder().with_resource(resource.build()).with_batch_exporter(exporter).build())
            }
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

/// The `service.name` to set over what the SDK's resource detectors found: the
/// variable's when set (the specification puts it above the attributes' `service.name`,
/// which the SDK's detectors would otherwise let win); `None` (keep the detectors')
/// when only the attributes name one; else the role's default.
fn service_name(default: &str, variable: Option<String>, attributes: Option<String>) -> Option<String> {
    if let Some(name) = variable {
        return Some(name.trim().to_owned());
    }
    let named = attributes.is_some_and(|attributes| {
        attributes.split(',').any(|pair| pair.split_once('=').is_some_and(|(key, _)| key.trim() == "service.name"))
    });
    (!named).then(|| default.to_owned())
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

#[cfg(test)]
mod tests {
    use super::service_name;

    #[test]
    fn the_operator_names_the_service_and_the_role_is_the_default() {
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(service_name("modelplane-router", None, None), some("modelplane-router"));
        assert_eq!(service_name("modelplane-router", some("router"), None), some("router"));
        let attributes = some("k8s.pod.name=router-0, service.name=edge");
        assert_eq!(service_name("modelplane-router", None, attributes.clone()), None, "the attribute's name stays");
        assert_eq!(
            service_name("modelplane-router", some(" router "), attributes),
            some("router"),
            "the variable wins"
        );
        let others = some("k8s.pod.name=router-0,k8s.namespace.name=ml");
        assert_eq!(service_name("modelplane-router", None, others), some("modelplane-router"));
    }
}
