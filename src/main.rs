//! The `cairn` binary: parse arguments, set up logging, run the command.
//! Errors print one line on stderr and exit with status 1.

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = cairn::cli::Cli::parse();
    // `cairn server` sets up its own logging (and then the crash points, which
    // log) once its config says in what form.
    if !matches!(cli.command, cairn::cli::Command::Server(_)) {
        cairn::cli::logging::init(cairn::config::LogFormat::Text);
        cairn::crash_point::setup_from_env();
    }
    if let Err(e) = cairn::cli::run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
