//! The `cairn.v1.Admin` gRPC service: backups streamed from this node.
//!
//! The node writes the backup file (`raft::backup`) on a blocking thread into a
//! bounded queue of pieces (`BACKUP_PIECES_QUEUED_MAX` of at most
//! `BACKUP_PIECE_BYTES_MAX`), which the stream drains: a slow client slows the
//! reader down rather than filling memory, and one that takes nothing for
//! `BACKUP_CLIENT_STALL_MS_MAX` loses the stream. A failure part-way ends the
//! stream with an error status after the pieces already sent.

use std::io::{self, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::convert;
use crate::api::error::ApiError;
use crate::clock::now_ms;
use crate::limits::{BACKUP_CLIENT_STALL_MS_MAX, BACKUP_PIECES_QUEUED_MAX, BACKUP_PIECE_BYTES_MAX};
use crate::proto::v1::{self, admin_server::Admin};
use crate::raft::backup::BackupSource;
use crate::raft::{Node, NodeError};

pub struct AdminGrpc {
    node: Arc<Node>,
    workspace_id: String,
}

impl AdminGrpc {
    pub fn new(node: Arc<Node>, workspace_id: &str) -> Self {
        AdminGrpc {
            node,
            workspace_id: workspace_id.to_string(),
        }
    }
}

type Piece = Result<v1::BackupPiece, Status>;

/// Cuts what the backup writer writes into pieces and queues them, blocking
/// while the queue is full (at most `BACKUP_CLIENT_STALL_MS_MAX` per piece).
/// Call only from a blocking thread.
struct PieceWriter {
    queue: mpsc::Sender<Piece>,
    piece: Vec<u8>,
    runtime: tokio::runtime::Handle,
}

impl PieceWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.piece.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.piece, Vec::with_capacity(BACKUP_PIECE_BYTES_MAX));
        let stall = Duration::from_millis(BACKUP_CLIENT_STALL_MS_MAX);
        let sent = self.runtime.block_on(tokio::time::timeout(
            stall,
            self.queue.send(Ok(v1::BackupPiece { data: data.into() })),
        ));
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the client went away",
            )),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client took no data for {BACKUP_CLIENT_STALL_MS_MAX} ms"),
            )),
        }
    }
}

impl Write for PieceWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let room = BACKUP_PIECE_BYTES_MAX - self.piece.len();
        let taken = bytes.len().min(room);
        self.piece.extend_from_slice(&bytes[..taken]);
        if self.piece.len() == BACKUP_PIECE_BYTES_MAX {
            self.send()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

#[tonic::async_trait]
impl Admin for AdminGrpc {
    type BackupStream = Pin<Box<dyn Stream<Item = Piece> + Send>>;

    async fn backup(
        &self,
        request: Request<v1::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        let consistency = convert::consistency(request.into_inner().consistency)?;
        let prepared = self
            .node
            .begin_backup(consistency)
            .await
            .map_err(ApiError::from)?;
        let (queue, pieces) = mpsc::channel::<Piece>(BACKUP_PIECES_QUEUED_MAX);
        let source = BackupSource {
            workspace_id: self.workspace_id.clone(),
            created_ms: now_ms(),
        };
        let writer = PieceWriter {
            queue: queue.clone(),
            piece: Vec::with_capacity(BACKUP_PIECE_BYTES_MAX),
            runtime: tokio::runtime::Handle::current(),
        };
        tokio::spawn(async move {
            if let Err(e) = prepared.write(source, writer).await {
                tracing::warn!(error = %e, "backup failed");
                let failed = NodeError::Unavailable(format!("the backup failed: {e}"));
                // A client that went away sees nothing either way.
                let _ = queue.send(Err(ApiError::from(failed).into())).await;
            }
        });
        let stream = futures::stream::unfold(pieces, |mut pieces| async move {
            pieces.recv().await.map(|piece| (piece, pieces))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
