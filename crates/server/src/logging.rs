use tracing_subscriber::EnvFilter;

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

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// For people.
    Human,
    /// One JSON object per line, for collectors.
    Json,
}

/// Logs to stderr (stdout belongs to the stdio transport), filtered by `filter` in `RUST_LOG`
/// syntax (default `info`).
pub fn init_logging(filter: Option<&str>, format: LogFormat) {
    let mut directives = filter
        .filter(|f| !f.trim().is_empty())
        .unwrap_or("info")
        .to_owned();
    for krate in PAYLOAD_LOGGING_CRATES {
        directives.push_str(&format!(",{krate}=info"));
    }
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|err| {
        eprintln!("tether: ignoring RUST_LOG ({err})");
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Human => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}
