//! The `fs` workload: cairn's replicated file system (`default`), in two parts that
//! run side by side in one history.
//!
//! - Files as registers: whole-file `put` (upload) and `get` (read) of a few files
//!   (`FILES_PER_GROUP` at a time, a fresh group after `OPS_PER_GROUP_MAX`
//!   operations so every key stays small enough to check). Each put writes a unique
//!   value (`<process>-<n>`, repeated as the content); a get returns the file's
//!   content version and the value its content decodes to (`torn:…` if it is not one
//!   value), or `null` if the file does not exist. Recorded exactly as the `register`
//!   workload records get / put, so the versioned-KV linearizability checker checks
//!   them (the file's content version plays the KV version: a log position, strictly
//!   growing).
//! - Names as a set: `create`, `rename` and `unlink` of unique names inside
//!   `NAMES_DIR`. A create makes a fresh name; a rename moves a name known to exist
//!   to a fresh name; an unlink removes a name known to exist; every name is created
//!   once and removed at most once. After healing, one fresh client lists the
//!   directory (linearizable) and [`crate::checker::fs_names`] compares the listing
//!   with the outcomes.
//!
//! As in the register workload, one process per node only reads files (through its
//! own node); the others mix reads, file writes and name operations.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn::client::{Client, Errno, Error, FsClient, UploadOptions};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

use super::client::{
    invoke, read_error_outcome, write_error_outcome, Op, Outcome, Session, READ_TIMEOUT_MS,
};
use super::cluster::Cluster;
use super::recorder::Recorder;
use super::register::KeyCursor;
use super::workload::{final_read_retried, Workload, FINAL_PROCESS_BASE};

/// The file system every operation works on.
pub const FS_NAME: &str = "default";
/// Where the workload's files live.
pub const ROOT_DIR: &str = "/jepsen";
/// The directory of the names part.
pub const NAMES_DIR: &str = "/jepsen/names";
/// Files written and read at the same time.
pub const FILES_PER_GROUP: u64 = 3;
/// File operations per group before the generator moves to a fresh group.
pub const OPS_PER_GROUP_MAX: u64 = 300;
/// Share of file reads among a writer process's operations, in percent.
const WRITER_READ_PERCENT: u32 = 25;
/// Share of name operations among a writer process's other operations, in percent.
const NAME_OP_PERCENT: u32 = 50;
/// Share of creates among name operations while names to move or remove exist.
const CREATE_PERCENT: u32 = 50;
/// Repetitions of a value in a file's content (so a torn file shows).
const CONTENT_REPEATS: usize = 64;
/// Deadline of one attempt of the final listing.
const FINAL_LIST_TIMEOUT_MS: u64 = 10_000;
/// Names per page of the final listing.
const LIST_PAGE_NAMES: u32 = 1_000;
/// Pages of the final listing, at most (bounds a runaway cursor).
const LIST_PAGES_MAX: u32 = 10_000;
/// Pause between attempts of the setup.
const RETRY_MS: u64 = 1_000;

#[derive(Default)]
struct State {
    cursor: KeyCursor,
    /// Names known to exist that no operation is about to move or remove.
    live: Vec<String>,
    next_name: u64,
}

#[derive(Default)]
pub struct FsWorkload {
    state: Mutex<State>,
}

/// The key (file name) of file `index` in group `group`.
pub fn file_key(group: u64, index: u64) -> String {
    format!("g{group}f{index}")
}

fn file_path(key: &str) -> String {
    format!("{ROOT_DIR}/{key}")
}

fn name_path(name: &str) -> String {
    format!("{NAMES_DIR}/{name}")
}

/// A file's content for `value`: `value;` repeated.
pub fn content(value: &str) -> Vec<u8> {
    format!("{value};").repeat(CONTENT_REPEATS).into_bytes()
}

/// The value a file's content repeats, or `torn:<first>` if it is not one value.
pub fn decode(bytes: &[u8]) -> String {
    let first = bytes
        .split(|b| *b == b';')
        .next()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    if content(&first) == bytes {
        first
    } else {
        format!("torn:{first}")
    }
}

fn fs_of(client: &Client) -> FsClient {
    client.fs(FS_NAME)
}

/// A file system write's error: an errno is a definite refusal, the rest as for KV.
fn fs_write_outcome(error: &Error) -> Outcome {
    match error.errno() {
        Some(errno) => Outcome::Fail {
            error: errno.name().to_string(),
        },
        None => write_error_outcome(error),
    }
}

impl FsWorkload {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fs state lock is never poisoned")
    }

    /// File keys of the newest group.
    pub fn newest_keys(&self) -> Vec<String> {
        let group = self.state().cursor.key_index;
        (0..FILES_PER_GROUP)
            .map(|index| file_key(group, index))
            .collect()
    }

    pub fn next_op(&self, rng: &mut StdRng, process: u64, reader: bool) -> Op {
        let mut state = self.state();
        let file_op = reader
            || rng.gen_range(0..100) < WRITER_READ_PERCENT
            || rng.gen_range(0..100) >= NAME_OP_PERCENT;
        if !file_op {
            return name_op(&mut state, rng);
        }
        state.cursor.advance(OPS_PER_GROUP_MAX);
        let key = Some(file_key(
            state.cursor.key_index,
            rng.gen_range(0..FILES_PER_GROUP),
        ));
        if reader || rng.gen_range(0..100) < WRITER_READ_PERCENT {
            return Op {
                f: "get",
                key,
                value: Value::Null,
            };
        }
        Op {
            f: "put",
            key,
            value: json!(format!("{process}-{}", state.cursor.next_value)),
        }
    }

    pub async fn execute(&self, session: &Session, op: &Op) -> Outcome {
        let writer = fs_of(&session.writer);
        let path = |name: &Value| name_path(name.as_str().unwrap_or_default());
        match op.f {
            "get" => {
                let path = file_path(op.key.as_deref().unwrap_or_default());
                read_file(&fs_of(&session.reader), &path).await
            }
            "put" => {
                let path = file_path(op.key.as_deref().unwrap_or_default());
                let value = op.value.as_str().unwrap_or_default();
                let data = Bytes::from(content(value));
                match writer
                    .upload_bytes(&path, data, &UploadOptions::default())
                    .await
                {
                    Ok(report) => Outcome::Ok(json!([report.attr.version, value])),
                    Err(error) => fs_write_outcome(&error),
                }
            }
            "create" => match writer.create(&path(&op.value), 0o644, true).await {
                Ok(_) => Outcome::Ok(op.value.clone()),
                Err(error) => fs_write_outcome(&error),
            },
            "rename" => {
                let (from, to) = (path(&op.value[0]), path(&op.value[1]));
                match writer.rename(&from, &to).await {
                    Ok(()) => Outcome::Ok(op.value.clone()),
                    Err(error) => fs_write_outcome(&error),
                }
            }
            _ => match writer.unlink(&path(&op.value)).await {
                Ok(()) => Outcome::Ok(op.value.clone()),
                Err(error) => fs_write_outcome(&error),
            },
        }
    }

    /// Names that surely exist again become candidates for a rename or an unlink.
    pub fn observe(&self, op: &Op, outcome: &Outcome) {
        let name = |value: &Value| value.as_str().unwrap_or_default().to_string();
        let live = match (op.f, outcome) {
            ("create", Outcome::Ok(_)) => name(&op.value),
            ("rename", Outcome::Ok(_)) => name(&op.value[1]),
            ("rename", Outcome::Fail { .. }) => name(&op.value[0]),
            ("unlink", Outcome::Fail { .. }) => name(&op.value),
            _ => return,
        };
        self.state().live.push(live);
    }

    /// Lists the names directory (linearizable pages); the final listing's value.
    pub async fn list_names(&self, client: &Client) -> Result<Value, Error> {
        let fs = fs_of(client);
        let mut names: Vec<String> = Vec::new();
        let mut after = String::new();
        for _ in 0..LIST_PAGES_MAX {
            let page = fs
                .read_dir(NAMES_DIR, &after, LIST_PAGE_NAMES, false)
                .await?;
            names.extend(page.entries.into_iter().map(|entry| entry.name));
            match page.next_after {
                Some(next) => after = next,
                None => break,
            }
        }
        Ok(json!(names))
    }
}

/// A name operation: a create, or (if names are live) a rename or an unlink of one.
fn name_op(state: &mut State, rng: &mut StdRng) -> Op {
    let mut fresh = || {
        state.next_name += 1;
        format!("n{:08}", state.next_name)
    };
    let create = state.live.is_empty() || rng.gen_range(0..100) < CREATE_PERCENT;
    if create {
        return Op {
            f: "create",
            key: None,
            value: json!(fresh()),
        };
    }
    let index = rng.gen_range(0..state.live.len());
    let name = state.live.swap_remove(index);
    if rng.gen_bool(0.5) {
        state.next_name += 1;
        let to = format!("n{:08}", state.next_name);
        Op {
            f: "rename",
            key: None,
            value: json!([name, to]),
        }
    } else {
        Op {
            f: "unlink",
            key: None,
            value: json!(name),
        }
    }
}

/// A whole-file read: `[content version, value]`, `null` if absent; a read that
/// misses its deadline failed (it changed nothing).
async fn read_file(fs: &FsClient, path: &str) -> Outcome {
    let mut data = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_millis(READ_TIMEOUT_MS),
        fs.download_to(path, (0, 0), &mut data),
    )
    .await;
    match read {
        Err(_) => Outcome::Fail {
            error: "timeout".to_string(),
        },
        Ok(Ok(attr)) => Outcome::Ok(json!([attr.version, decode(&data)])),
        Ok(Err(error)) if error.errno() == Some(Errno::ENOENT) => Outcome::Ok(Value::Null),
        Ok(Err(error)) => read_error_outcome(&error),
    }
}

/// Creates the workload's directories, retrying through elections.
pub async fn setup(cluster: &Cluster, deadline: Instant) -> Result<(), String> {
    let client =
        Client::connect(cluster.endpoints_from(cluster.ids()[0])).map_err(|e| e.to_string())?;
    let fs = fs_of(&client);
    loop {
        match fs.mkdir(NAMES_DIR, 0o755, true).await {
            Ok(_) => return Ok(()),
            Err(error) if error.errno() == Some(Errno::EEXIST) => return Ok(()),
            Err(error) if Instant::now() >= deadline => {
                return Err(format!("creating {NAMES_DIR}: {error}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(RETRY_MS)).await,
        }
    }
}

/// After healing: the newest files read on every node, then the names listed through
/// one fresh client, retried (each attempt recorded) until one succeeds.
pub async fn final_reads(
    workload: &Workload,
    fs: &FsWorkload,
    cluster: &Cluster,
    recorder: &Recorder,
) -> Result<(), String> {
    let ids = cluster.ids();
    for (offset, id) in ids.iter().enumerate() {
        let session = Session::new(FINAL_PROCESS_BASE + 1 + offset as u64, *id, cluster)?;
        for key in fs.newest_keys() {
            let op = Op {
                f: "get",
                key: Some(key),
                value: Value::Null,
            };
            invoke(recorder, workload, &session, &op).await;
        }
    }
    let list = |client: Client| async move {
        let listed = tokio::time::timeout(
            Duration::from_millis(FINAL_LIST_TIMEOUT_MS),
            fs.list_names(&client),
        )
        .await;
        match listed {
            Ok(Ok(names)) => Ok(names),
            Ok(Err(error)) => Err(error.code().to_string()),
            Err(_) => Err("timeout".to_string()),
        }
    };
    final_read_retried(cluster, recorder, ("list", "the final listing"), list).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn whole_files_decode_to_their_value_and_torn_ones_do_not() {
        assert_eq!(decode(&content("3-17")), "3-17");
        let mut torn = content("3-17");
        torn.truncate(10);
        assert!(decode(&torn).starts_with("torn:"));
        assert!(decode(b"").starts_with("torn:"));
    }

    #[test]
    fn names_are_created_once_and_removed_at_most_once() {
        let workload = FsWorkload::default();
        let mut rng = StdRng::seed_from_u64(3);
        let mut created = std::collections::BTreeSet::new();
        let mut removed = std::collections::BTreeSet::new();
        for _ in 0..2_000 {
            let op = workload.next_op(&mut rng, 4, false);
            let name = |v: &Value| v.as_str().unwrap_or_default().to_string();
            match op.f {
                "create" => assert!(created.insert(name(&op.value))),
                "rename" => {
                    assert!(removed.insert(name(&op.value[0])));
                    assert!(created.insert(name(&op.value[1])));
                }
                "unlink" => assert!(removed.insert(name(&op.value))),
                _ => continue,
            }
            workload.observe(&op, &Outcome::Ok(op.value.clone()));
        }
        assert!(removed.is_subset(&created));
        assert!(removed.len() > 100, "renames and unlinks ran");
    }
}
