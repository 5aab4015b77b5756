//! `cairn admin`: operator tasks on the local machine (no cluster call).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use crate::peer_tls;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Write a new random cluster secret (mode 0600) for `--cluster-secret-file`.
    /// Every node of one cluster needs a copy of the same file.
    InitSecret {
        /// Where to write it; refused if it exists.
        file: PathBuf,
    },
}

pub fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::InitSecret { file } => {
            peer_tls::create_secret(&file)
                .with_context(|| format!("creating {}", file.display()))?;
            println!(
                "wrote a new cluster secret to {} (mode 0600); copy it to every node and start each with --cluster-secret-file",
                file.display()
            );
            Ok(())
        }
    }
}
