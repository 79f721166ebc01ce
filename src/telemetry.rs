//! One tracing setup for the binary (tests install none, or their own).

use std::io::IsTerminal;

use tracing_subscriber::{fmt, EnvFilter};

use crate::cli::LogFormat;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`). Colours only
/// on a terminal: in a file or a log collector the escape codes are noise,
/// and formatting them is work on every span of every request.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
