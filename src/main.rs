//! The `cairn` binary: parse arguments, set up logging, run the command.
//! Errors print one line on stderr and exit with status 1.

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = cairn::cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn,sled=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    cairn::crash_point::setup_from_env();
    if let Err(e) = cairn::cli::run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
