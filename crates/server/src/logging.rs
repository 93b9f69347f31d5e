use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// Libraries that log whole frames, headers or bodies at debug and trace level: they would write
/// tokens, attestation values and signed payloads to the log. They are held at `info` whatever
/// the filter asks for.
const PAYLOAD_LOGGING_CRATES: &[&str] = &[
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "axum",
];

/// The OpenTelemetry SDK's own diagnostics: an unreachable collector is reported once, by us.
const EXPORTER_CRATES: &[&str] = &[
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
    "opentelemetry_http",
];

/// What is exported: tether's own spans.
const EXPORTED: &str = "tether_server=info,tether_device_key=info,tether_upstream=info";

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// For people.
    Human,
    /// One JSON object per line, for collectors.
    Json,
}

/// The span exporter, if any; flush it with [`Telemetry::shutdown`] before exiting.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is still buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            let _ = provider.shutdown();
        }
    }
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Logs to stderr (stdout belongs to the stdio transport), filtered by `filter` in `RUST_LOG`
/// syntax (default `info`); with `otlp_endpoint`, also exports spans over OTLP/HTTP to it.
pub fn init_logging(
    filter: Option<&str>,
    format: LogFormat,
    otlp_endpoint: Option<&str>,
) -> Telemetry {
    let directives = filter.filter(|f| !f.trim().is_empty()).unwrap_or("info");
    let filter = EnvFilter::try_new(directives).unwrap_or_else(|err| {
        eprintln!("tether: ignoring RUST_LOG ({err})");
        EnvFilter::new("info")
    });
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    // Whatever the filter enables (a target, a span, a level), the clamp still applies.
    let clamp = tracing_subscriber::filter::filter_fn(|metadata| {
        let from = |crates: &[&str]| {
            crates
                .iter()
                .any(|name| metadata.target().starts_with(name))
        };
        let exporter = from(EXPORTER_CRATES);
        let payload_detail =
            from(PAYLOAD_LOGGING_CRATES) && *metadata.level() > tracing::Level::INFO;
        !(exporter || payload_detail)
    });
    let log: BoxedLayer = match format {
        LogFormat::Human => stderr
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(filter)
            .with_filter(clamp)
            .boxed(),
        LogFormat::Json => stderr
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_filter(filter)
            .with_filter(clamp)
            .boxed(),
    };
    let mut layers = vec![log];
    let provider = otlp_endpoint.and_then(|endpoint| match exporter(endpoint) {
        Ok(provider) => {
            let tracer = provider.tracer("tether");
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(EnvFilter::new(EXPORTED));
            layers.push(layer.boxed());
            Some(provider)
        }
        Err(err) => {
            eprintln!("tether: OpenTelemetry export to {endpoint} is off: {err}");
            None
        }
    });
    tracing_subscriber::registry().with(layers).init();
    Telemetry { provider }
}

fn exporter(endpoint: &str) -> Result<SdkTracerProvider, String> {
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let otlp = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .build()
        .map_err(|err| err.to_string())?;
    let exporter = ReportOnce {
        inner: otlp,
        endpoint: endpoint.to_owned(),
        reported: AtomicBool::new(false),
    };
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("tether")
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Exports through `inner`; the first failure is said once on stderr, the server keeps working.
#[derive(Debug)]
struct ReportOnce<E> {
    inner: E,
    endpoint: String,
    reported: AtomicBool,
}

impl<E: SpanExporter> SpanExporter for ReportOnce<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        if let Err(err) = &result
            && !self.reported.swap(true, Ordering::Relaxed)
        {
            eprintln!(
                "tether: cannot export spans to {} ({err}); the server keeps working and will not say this again",
                self.endpoint
            );
        }
        result
    }

    fn shutdown_with_timeout(&mut self, timeout: std::time::Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}
