//! Where and how the `cairn` command logs: `tracing` events to stderr, as text
//! or as JSON objects one per line (`cairn server --log-format json`), filtered
//! by `RUST_LOG` (default `info,openraft=warn,sled=warn`).

use crate::config::LogFormat;

/// What is logged when `RUST_LOG` is unset or unreadable.
const LOG_FILTER_DEFAULT: &str = "info,openraft=warn,sled=warn";

/// Installs the process's log subscriber; call once, before anything logs
/// (events before it are dropped).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(LOG_FILTER_DEFAULT));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        // Event fields at the top level beside `timestamp`, `level`, `target`
        // and `message`, as log collectors expect; the span stack as `spans`.
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
