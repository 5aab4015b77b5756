//! The `cairn-jepsen` command. Parsing and dispatch live in [`cli`]; this file only
//! turns the outcome into the process exit code (0 valid, 1 invalid, 2 unknown).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let arguments = cli::Cli::parse();
    ExitCode::from(cli::run(arguments).exit_code())
}
