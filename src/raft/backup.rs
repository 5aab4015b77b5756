//! Backups made by a running node: a point-in-time copy of the state and the
//! chunk files it references, written in the `state::backup` format.
//!
//! Steps, in order:
//! 1. one backup per node at a time (`BACKUPS_IN_FLIGHT_MAX`);
//! 2. the requested read barrier, so a linearizable backup reflects every write
//!    acknowledged before it began (on a follower too: it asks the leader);
//! 3. under the apply gate, the state tree is copied to an anonymous spool file
//!    (`StateMachine::spool_state`); applies wait only for this local copy;
//! 4. from the spool, without the gate: a pass that counts (for the manifest),
//!    a pass that writes the state section, and a pass over the chunk records
//!    that writes each chunk, read from this node's store and checked against
//!    its hash (a chunk missing or damaged here is fetched from a peer through
//!    `Node::read_chunk`, or the backup fails naming it).
//!
//! Left out: the Raft layer's own records (log position, membership: the
//! manifest carries them) and chunks nothing references (`state::backup::keeps`).
//! A chunk the copy references stays on every node for at least the GC grace
//! period after it stops being referenced, so a backup that finishes within
//! `chunk_gc_grace_ms` of its copy always finds its chunks.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use super::error::NodeError;
use super::node::{Consistency, Node};
use super::sm_adapter::{is_raft_key, SpooledState};
use crate::state::backup::{self, LogPosition, Manifest, Member, Writer};
use crate::state::{keys, snapshot};

/// Who asks for a backup, for its manifest.
#[derive(Debug, Clone)]
pub struct BackupSource {
    pub workspace_id: String,
    pub created_ms: u64,
}

/// A point-in-time copy of the state, spooled on this node, ready to stream.
pub struct PreparedBackup {
    node: Arc<Node>,
    spool: SpooledState,
    _one_at_a_time: OwnedSemaphorePermit,
}

impl Node {
    /// Steps 1–3 (see the module doc): fails fast, before any byte is streamed,
    /// if another backup runs here or the barrier cannot be met.
    pub async fn begin_backup(
        self: &Arc<Self>,
        consistency: Consistency,
    ) -> Result<PreparedBackup, NodeError> {
        let permit = self.backups.clone().try_acquire_owned().map_err(|_| {
            NodeError::Unavailable(
                "another backup is running on this node; try again when it ends".into(),
            )
        })?;
        self.read_barrier(consistency).await?;
        let spool =
            self.state_machine.spool_state().await.map_err(|e| {
                NodeError::Unavailable(format!("copying the state for a backup: {e}"))
            })?;
        if spool.applied.is_none() {
            return Err(NodeError::Unavailable(
                "this node has applied nothing yet: nothing to back up".into(),
            ));
        }
        Ok(PreparedBackup {
            node: self.clone(),
            spool,
            _one_at_a_time: permit,
        })
    }
}

/// Whether a spooled record goes into the backup.
fn kept(key: &[u8], value: &[u8]) -> io::Result<bool> {
    Ok(!is_raft_key(key) && backup::keeps(key, value)?)
}

/// Counts of what the backup will hold, from one pass over the spool.
#[derive(Default)]
struct Survey {
    records: u64,
    chunks: u64,
    chunk_bytes: u64,
    counts: BTreeMap<String, u64>,
}

fn survey(spool: &mut File) -> io::Result<Survey> {
    spool.seek(SeekFrom::Start(0))?;
    let (_, mut records) = snapshot::records(&mut *spool)?;
    let mut survey = Survey::default();
    while let Some((key, value)) = records.next_record()? {
        if !kept(&key, &value)? {
            continue;
        }
        survey.records += 1;
        *survey
            .counts
            .entry(backup::record_kind(&key).to_string())
            .or_default() += 1;
        if let Some(named) = backup::named_chunk(&key, &value) {
            survey.chunks += 1;
            survey.chunk_bytes += u64::from(named?.1);
        }
    }
    Ok(survey)
}

impl PreparedBackup {
    fn manifest(&self, source: &BackupSource, survey: Survey) -> Manifest {
        let applied = self
            .spool
            .applied
            .expect("begin_backup refuses an empty state");
        let membership = self.spool.membership.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, addr)| Member {
                id: *id,
                voter: voters.contains(id),
                grpc_addr: addr.grpc_addr.clone(),
            })
            .collect();
        Manifest {
            format: backup::FORMAT_NAME.into(),
            format_version: backup::FORMAT_VERSION,
            cairn_version: env!("CARGO_PKG_VERSION").into(),
            created_ms: source.created_ms,
            workspace_id: source.workspace_id.clone(),
            node_id: self.node.id,
            members,
            applied: LogPosition {
                term: applied.leader_id.term,
                leader_node_id: applied.leader_id.node_id,
                index: applied.index,
            },
            state_records: survey.records,
            chunks: survey.chunks,
            chunk_bytes: survey.chunk_bytes,
            counts: survey.counts,
        }
    }

    /// Step 4: writes the whole backup file to `out`; returns its manifest and
    /// size. Runs on a blocking thread; `out` may block (a bounded queue).
    pub async fn write<W: Write + Send + 'static>(
        self,
        source: BackupSource,
        out: W,
    ) -> io::Result<(Manifest, u64)> {
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || self.write_blocking(&runtime, &source, out))
            .await
            .map_err(io::Error::other)?
    }

    fn write_blocking<W: Write>(
        mut self,
        runtime: &tokio::runtime::Handle,
        source: &BackupSource,
        out: W,
    ) -> io::Result<(Manifest, u64)> {
        let started = std::time::Instant::now();
        let survey = survey(&mut self.spool.file)?;
        let manifest = self.manifest(source, survey);
        let mut writer = Writer::new(out, &manifest)?;
        self.write_state(&mut writer)?;
        writer.end_state()?;
        self.write_chunks(runtime, &mut writer)?;
        let (_, bytes) = writer.finish()?;
        tracing::info!(
            applied = manifest.applied.index,
            records = manifest.state_records,
            chunks = manifest.chunks,
            bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "backup streamed"
        );
        Ok((manifest, bytes))
    }

    fn write_state<W: Write>(&mut self, writer: &mut Writer<W>) -> io::Result<()> {
        self.spool.file.seek(SeekFrom::Start(0))?;
        let (_, mut records) = snapshot::records(&mut self.spool.file)?;
        while let Some((key, value)) = records.next_record()? {
            if kept(&key, &value)? {
                writer.record(&key, &value)?;
            }
        }
        Ok(())
    }

    /// Every chunk the kept chunk records name, in their (hash) order.
    fn write_chunks<W: Write>(
        &mut self,
        runtime: &tokio::runtime::Handle,
        writer: &mut Writer<W>,
    ) -> io::Result<()> {
        self.spool.file.seek(SeekFrom::Start(0))?;
        let (_, mut records) = snapshot::records(&mut self.spool.file)?;
        while let Some((key, value)) = records.next_record()? {
            match key.first() {
                Some(&keys::CHUNK) => {}
                // Keys are in order: the chunk records are behind us.
                Some(&first) if first > keys::CHUNK => break,
                _ => continue,
            }
            if !kept(&key, &value)? {
                continue;
            }
            let Some(named) = backup::named_chunk(&key, &value) else {
                continue;
            };
            let (hash, len) = named?;
            let data = runtime.block_on(self.node.read_chunk(hash)).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("reading chunk {} for the backup: {e}", hex::encode(hash)),
                )
            })?;
            if data.len() != len as usize {
                return Err(io::Error::other(format!(
                    "chunk {} holds {} bytes; its record says {len}",
                    hex::encode(hash),
                    data.len()
                )));
            }
            writer.chunk(&hash, &data)?;
        }
        Ok(())
    }
}
