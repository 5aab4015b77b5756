//! `cairn token …`: the cluster's API tokens. A token's secret is printed once, by
//! `create`; the cluster keeps only what it needs to check it, so `list` shows ids
//! and names only.

use clap::Subcommand;

use crate::client::Client;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; prints its id and the token itself (shown only this once).
    Create {
        /// A label to recognise the token by in `list`.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List tokens: id, creation time (UTC), name.
    List,
    /// Revoke a token by id (succeeds if there is none, and says so).
    Revoke { id: u64 },
}

pub async fn run(client: Client, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { name } => {
            let (id, token) = client.create_token(&name).await?;
            println!("id    {id}");
            println!("token {token}");
            eprintln!(
                "store the token now: it is not shown again; pass it with --token or CAIRN_TOKEN"
            );
        }
        TokenCommand::List => {
            for token in client.list_tokens().await? {
                println!(
                    "{}\t{}\t{}",
                    token.id,
                    super::object::rfc3339_utc(token.created_ms),
                    token.name
                );
            }
        }
        TokenCommand::Revoke { id } => {
            if client.revoke_token(id).await? {
                println!("revoked token {id}");
            } else {
                println!("no token has id {id}");
            }
        }
    }
    Ok(())
}
