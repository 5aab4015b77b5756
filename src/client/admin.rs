//! Admin calls of the SDK: backups streamed from one node.

use bytes::Bytes;

use super::{Client, Error, ReadConsistency};
use crate::proto::v1;

/// The pieces of a backup file as one node streams them (see `Client::backup`).
pub struct BackupStream {
    stream: tonic::Streaming<v1::BackupPiece>,
}

impl BackupStream {
    /// The next piece, `None` once the node ended the stream. A stream that ends
    /// is complete only if the bytes verify (`state::backup::verify`).
    pub async fn next_piece(&mut self) -> Result<Option<Bytes>, Error> {
        match self.stream.message().await {
            Ok(piece) => Ok(piece.map(|p| p.data)),
            Err(status) => Err(Error::from_status(&status)),
        }
    }
}

impl Client {
    /// Asks the node at `addr` (no redirect, no retry: a backup is one long
    /// stream) for a backup. `Linearizable` reflects every write acknowledged
    /// before the call; `Stale`, what the node has applied. Needs a token.
    pub async fn backup(
        &self,
        addr: &str,
        consistency: ReadConsistency,
    ) -> Result<BackupStream, Error> {
        let channel = self.inner.router.channel(addr)?;
        let mut client = v1::admin_client::AdminClient::new(channel);
        let request = v1::BackupRequest {
            consistency: consistency.proto(),
        };
        let stream = client
            .backup(request)
            .await
            .map_err(|status| Error::from_status(&status))?
            .into_inner();
        Ok(BackupStream { stream })
    }
}
