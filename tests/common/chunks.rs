//! Counting a node's chunk files on disk (what dedupe and GC tests assert on).

use std::path::Path;

use super::eventually;

const WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// (files, bytes) in a node's chunk store under `data_dir`.
pub fn chunk_usage(data_dir: &Path) -> (u64, u64) {
    let mut usage = (0, 0);
    let Ok(shards) = std::fs::read_dir(data_dir.join("chunks")) else {
        return usage;
    };
    for shard in shards.flatten() {
        for file in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if file.file_name().len() == 64 {
                usage.0 += 1;
                usage.1 += file.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    usage
}

/// Waits until the chunk store under `data_dir` holds exactly `files` chunk files.
pub async fn wait_for_chunks(data_dir: &Path, files: u64) -> (u64, u64) {
    eventually(WAIT, || {
        let usage = chunk_usage(data_dir);
        async move {
            if usage.0 == files {
                Ok(usage)
            } else {
                Err(usage)
            }
        }
    })
    .await
}
