//! Inputs of the fuzz targets in `fuzz/` run through the same code as the targets
//! (the harnesses in `fuzz/harness/` are shared): every file under
//! `tests/fuzz-inputs/<target>/` must be handled without a panic, and those listed
//! in `EXPECTED` must give that outcome. The fuzzers themselves do not run here (see
//! docs/testing.md, "Fuzzing"); the hand-made inputs are written by
//! `cargo test --test fuzz_regressions -- --ignored write_hand_made_inputs`.

use std::path::{Path, PathBuf};

#[path = "../fuzz/harness/backup.rs"]
mod backup;
#[path = "../fuzz/harness/names.rs"]
mod names;
#[path = "../fuzz/harness/peer_payload.rs"]
mod peer_payload;
#[path = "../fuzz/harness/presign.rs"]
mod presign;
#[path = "../fuzz/harness/snapshot.rs"]
mod snapshot;
#[path = "../fuzz/harness/wal.rs"]
mod wal;

const TARGETS: [&str; 6] = [
    "peer_payload",
    "wal",
    "snapshot",
    "presign",
    "names",
    "backup",
];

/// Runs one input through its target's harness: `Ok(what was accepted)` or
/// `Err(the refusal)`. A panic is a bug.
fn run(target: &str, data: &[u8]) -> Result<String, String> {
    match target {
        "peer_payload" => peer_payload::run(data).map(str::to_string),
        "wal" => wal::run(data).map(|o| format!("{o:?}")),
        "snapshot" => snapshot::run(data).map(|(header, n)| format!("{} {n}", header.len())),
        "presign" => presign::run(data).map(|o| format!("{o:?}")),
        "names" => names::run(data).map(|()| "accepted".to_string()),
        "backup" => backup::run(data),
        _ => panic!("no fuzz target {target}"),
    }
}

/// What a listed input must give: refused with a message containing the text, or
/// accepted with a description containing it.
enum Expect {
    Refused(&'static str),
    Accepted(&'static str),
}
use Expect::{Accepted, Refused};

#[rustfmt::skip] // one line per input
const EXPECTED: &[(&str, &str, Expect)] = &[
    ("peer_payload", "empty", Refused("empty input")),
    ("peer_payload", "hello-string-claims-4gib", Refused("io error")),
    ("peer_payload", "install-snapshot-data-claims-4gib", Refused("io error")),
    ("peer_payload", "append-entries-truncated", Refused("")),
    ("peer_payload", "append-entries-random", Refused("")),
    ("peer_payload", "vote-reply-bad-variant", Refused("")),
    ("peer_payload", "hello-valid", Accepted("Hello")),
    ("wal", "empty", Refused("empty input")),
    ("wal", "segment-empty", Accepted("first: None")),
    ("wal", "segment-torn-last-batch", Accepted("first: Some(1), last: Some(2)")),
    ("wal", "segment-random", Accepted("first: None")),
    ("wal", "segment-batch-claims-4gib", Accepted("first: None")),
    ("wal", "damage-then-valid-batch", Refused("valid batch after it")),
    ("wal", "truncated-segment-not-last", Refused("not the last one")),
    ("wal", "batch-claims-4gib-not-last", Refused("impossible batch lengths")),
    ("wal", "entry-claims-4gib", Accepted("entries: 0")),
    ("wal", "meta-truncated", Refused("meta:")),
    ("wal", "meta-bad-option-tag", Refused("meta:")),
    ("wal", "purged-through-hole", Refused("hole in the log")),
    ("wal", "segments-with-hole", Refused("hole in the log")),
    ("wal", "valid-then-append", Accepted("first: Some(1), last: Some(2)")),
    ("wal", "valid-then-truncate-inside-batch", Accepted("first: Some(1), last: Some(3)")),
    ("wal", "valid-then-purge", Accepted("first: Some(1), last: Some(3)")),
    ("wal", "checksums-fixed-by-harness", Accepted("first: Some(1), last: Some(2)")),
    // Found by the fuzzer (2026-12-04): a record at index u64::MAX overflows the
    // next index in `Wal::open` (src/raft/wal.rs, `load_segment`: `next += 1`).
    ("wal", "segment-at-largest-index", Refused("")),
    ("wal", "segment-at-largest-index-fuzzed", Refused("")),
    ("snapshot", "empty", Refused("empty input")),
    ("snapshot", "file-empty", Refused("ends inside the magic")),
    ("snapshot", "header-claims-4gib", Refused("exceeds")),
    ("snapshot", "key-claims-4gib", Refused("exceeds")),
    ("snapshot", "cut-at-record-boundary", Refused("no trailer")),
    ("snapshot", "flipped-digest", Refused("checksum mismatch")),
    ("snapshot", "wrong-count", Refused("trailer counts")),
    ("snapshot", "bytes-after-trailer", Refused("after the snapshot trailer")),
    ("snapshot", "random", Refused("bad magic")),
    ("snapshot", "meta-id-claims-4gib", Refused("io error")),
    ("snapshot", "valid", Accepted("3")),
    ("snapshot", "dumped-then-damaged", Accepted("6 2")),
    ("snapshot", "trailer-fixed-by-harness", Accepted("0 1")),
    ("presign", "empty", Refused("empty input")),
    ("presign", "not-a-uri", Refused("not a URI")),
    ("presign", "query-expires-negative", Accepted("QueryRejected")),
    ("presign", "query-duplicate-field", Accepted("QueryRejected")),
    ("presign", "bad-signature", Accepted("BadSignature")),
    ("presign", "signature-not-hex", Accepted("BadSignature")),
    ("presign", "path-not-utf8", Accepted("PathRejected")),
    ("presign", "expired", Accepted("Expired")),
    ("presign", "valid", Accepted("result: Ok(())")),
    ("presign", "tampered-expiry", Accepted("BadSignature")),
    ("names", "empty", Refused("empty input")),
    ("names", "path-nul", Refused("NUL")),
    ("names", "path-dotdot-stays-inside", Accepted("")),
    ("names", "path-too-long", Refused("limit")),
    ("names", "name-dotdot", Refused("cannot be created")),
    ("names", "name-too-long", Refused("limit")),
    ("names", "bucket-uppercase", Refused("only a-z")),
    ("names", "object-key-control", Refused("control")),
    ("names", "namespace-space", Refused("only A-Z")),
    ("names", "fs-name-dotdot", Refused("file system name")),
    ("names", "kv-command-claims-4gib", Refused("io error")),
    ("names", "random-kv-command", Refused("")),
    ("backup", "empty", Refused("empty input")),
    ("backup", "file-empty", Refused("truncated")),
    ("backup", "snapshot-not-backup", Refused("bad magic")),
    ("backup", "manifest-claims-4gib", Refused("manifest claims")),
    ("backup", "valid", Accepted("3 1")),
    ("backup", "valid-chunk-flipped", Refused("does not match its hash")),
    ("backup", "valid-cut-before-trailer", Refused("without its trailer")),
    ("backup", "written-then-cut", Accepted("3 1")),
    ("backup", "written-then-flipped", Accepted("3 1")),
];

fn inputs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-inputs")
}

#[test]
fn every_saved_fuzz_input_is_handled_without_a_panic() {
    let (mut ran, mut wrong) = (0, Vec::new());
    for target in TARGETS {
        let dir = inputs_dir().join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let data = std::fs::read(&file).unwrap();
            let outcome = match std::panic::catch_unwind(|| run(target, &data)) {
                Ok(outcome) => outcome,
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| panic.downcast_ref::<&str>().copied())
                        .unwrap_or("(no message)");
                    wrong.push(format!("{target}/{name}: panicked: {message}"));
                    continue;
                }
            };
            let expected = EXPECTED.iter().find(|(t, n, _)| *t == target && *n == name);
            match (expected.map(|(_, _, e)| e), &outcome) {
                (None, _) => {}
                (Some(Refused(text)), Err(message)) if message.contains(text) => {}
                (Some(Accepted(text)), Ok(what)) if what.contains(text) => {}
                (Some(Refused(text)), _) => wrong.push(format!(
                    "{target}/{name}: expected a refusal with {text:?}, got {outcome:?}"
                )),
                (Some(Accepted(text)), _) => wrong.push(format!(
                    "{target}/{name}: expected acceptance with {text:?}, got {outcome:?}"
                )),
            }
            ran += 1;
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    for (target, name, _) in EXPECTED {
        let path = inputs_dir().join(target).join(name);
        assert!(path.exists(), "{} is listed but missing", path.display());
    }
    assert!(ran >= EXPECTED.len());
}

/// A fixed pseudo-random byte string (xorshift), so the "random" inputs can be
/// written again byte for byte.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn with_mode(mode: u8, rest: &[u8]) -> Vec<u8> {
    let mut out = vec![mode];
    out.extend_from_slice(rest);
    out
}

const FOUR_GIB: u64 = 4 << 30;

fn peer_payload_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let samples = peer_payload::samples();
    let mut hello = vec![7u8, 1];
    hello.extend_from_slice(&FOUR_GIB.to_le_bytes());
    hello.extend_from_slice(b"aaaaaaaa");
    // InstallSnapshotRequest ends with `data` (a length and bytes) and `done`: the
    // sample has 3 data bytes; claim 4 GiB instead.
    let mut install = samples[2].clone();
    let at = install.len() - 1 - 3 - 8;
    install[at..at + 8].copy_from_slice(&FOUR_GIB.to_le_bytes());
    install.truncate(at + 8);
    install.extend_from_slice(&[1, 2, 3, 1]);
    let append = &samples[0];
    vec![
        ("empty", Vec::new()),
        ("hello-string-claims-4gib", hello),
        ("install-snapshot-data-claims-4gib", install),
        (
            "append-entries-truncated",
            append[..append.len() / 2].to_vec(),
        ),
        ("append-entries-random", with_mode(0, &random_bytes(1, 200))),
        ("vote-reply-bad-variant", vec![4, 0, 9, 0, 0, 0]),
        ("hello-valid", samples[7].clone()),
    ]
}

fn wal_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let first = wal::batch(1, &[b"one", b"two"]);
    let second = wal::batch(3, &[b"three"]);
    let mut torn = first.clone();
    torn.extend_from_slice(&second[..second.len() - 2]);
    let mut damaged = first.clone();
    damaged[30] ^= 1;
    damaged.extend_from_slice(&second);
    let three = wal::batch(1, &[b"one", b"two", b"three"]);
    let mut zeroed = first.clone();
    zeroed[20..24].fill(0);
    zeroed[28..32].fill(0);
    let mut claims = first.clone();
    claims[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    // Mode 3: [meta_len u16][meta][first u64][len u32][bytes]...
    let segments = |meta: &[u8], parts: &[(u64, &[u8])]| {
        let mut out = vec![3u8];
        out.extend_from_slice(&(meta.len() as u16).to_le_bytes());
        out.extend_from_slice(meta);
        for (first, bytes) in parts {
            out.extend_from_slice(&first.to_le_bytes());
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        out
    };
    let truncated_first = &first[..first.len() - 1];
    // LogMeta { vote: None, last_purged: Some(LogId { leader_id: (3, 1), index: 1 }) }
    let mut purged_meta = vec![0u8, 1];
    purged_meta.extend_from_slice(&3u64.to_le_bytes());
    purged_meta.extend_from_slice(&1u64.to_le_bytes());
    purged_meta.extend_from_slice(&1u64.to_le_bytes());
    // An entry `{ log_id, payload: Normal(Request { now_ms, commands }) }` whose
    // command list claims 4 Gi elements.
    let mut entry = Vec::new();
    entry.extend_from_slice(&3u64.to_le_bytes());
    entry.extend_from_slice(&1u64.to_le_bytes());
    entry.extend_from_slice(&1u64.to_le_bytes());
    entry.extend_from_slice(&1u32.to_le_bytes());
    entry.extend_from_slice(&0u64.to_le_bytes());
    entry.extend_from_slice(&FOUR_GIB.to_le_bytes());
    vec![
        ("empty", Vec::new()),
        ("segment-empty", vec![0]),
        ("segment-torn-last-batch", with_mode(0, &torn)),
        ("segment-random", with_mode(0, &random_bytes(2, 300))),
        ("segment-batch-claims-4gib", with_mode(0, &claims)),
        ("damage-then-valid-batch", with_mode(0, &damaged)),
        (
            "truncated-segment-not-last",
            segments(&[], &[(1, truncated_first), (3, &second)]),
        ),
        (
            "batch-claims-4gib-not-last",
            segments(&[], &[(1, &claims), (3, &second)]),
        ),
        ("entry-claims-4gib", with_mode(0, &wal::batch(1, &[&entry]))),
        ("meta-truncated", with_mode(2, &purged_meta[..9])),
        ("meta-bad-option-tag", with_mode(2, &[7, 0])),
        (
            "purged-through-hole",
            segments(&purged_meta, &[(5, &wal::batch(5, &[b"five"]))]),
        ),
        (
            "segments-with-hole",
            segments(&[], &[(1, &first), (4, &wal::batch(4, &[b"four"]))]),
        ),
        ("valid-then-append", with_mode(0x04, &first)),
        ("valid-then-truncate-inside-batch", with_mode(0x18, &three)),
        ("valid-then-purge", with_mode(0x1c, &three)),
        ("checksums-fixed-by-harness", with_mode(0x80, &zeroed)),
        ("segment-at-largest-index", {
            // Mode 1: [first u64][purged? u8][purged u64][segment].
            let mut input = vec![1u8];
            input.extend_from_slice(&u64::MAX.to_le_bytes());
            input.extend_from_slice(&[0; 9]);
            input.extend_from_slice(&wal::batch(u64::MAX, &[b"x"]));
            input
        }),
    ]
}

fn snapshot_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0u8..3).map(|i| (vec![i], vec![i; 5])).collect();
    let valid = snapshot::file_of(b"header", &records);
    let trailer = valid.len() - 44;
    let mut header_claims = b"CAIRNSN2".to_vec();
    header_claims.extend_from_slice(&u32::MAX.to_be_bytes());
    let mut key_claims = valid[..18].to_vec(); // magic, header length, "header"
    key_claims.extend_from_slice(&(u32::MAX - 1).to_be_bytes());
    let mut flipped = valid.clone();
    *flipped.last_mut().unwrap() ^= 0x10;
    let mut wrong_count = valid.clone();
    wrong_count[trailer + 11] ^= 1;
    let mut after = valid.clone();
    after.push(0);
    // SnapshotMeta { last_log_id: None, last_membership: { None, { configs: [],
    // nodes: {} } }, snapshot_id: a string claiming 4 GiB }.
    let mut meta = vec![1u8, 0, 0];
    meta.extend_from_slice(&0u64.to_le_bytes());
    meta.extend_from_slice(&0u64.to_le_bytes());
    meta.extend_from_slice(&FOUR_GIB.to_le_bytes());
    meta.extend_from_slice(b"id");
    let mut fixed = vec![3u8];
    fixed.extend_from_slice(&[0; 12]);
    fixed.extend_from_slice(&[0, 0, 0, 1, b'k', 0, 0, 0, 0]);
    vec![
        ("empty", Vec::new()),
        ("file-empty", vec![0]),
        ("header-claims-4gib", with_mode(0, &header_claims)),
        ("key-claims-4gib", with_mode(0, &key_claims)),
        ("cut-at-record-boundary", with_mode(0, &valid[..trailer])),
        ("flipped-digest", with_mode(0, &flipped)),
        ("wrong-count", with_mode(0, &wrong_count)),
        ("bytes-after-trailer", with_mode(0, &after)),
        ("random", with_mode(0, &random_bytes(3, 300))),
        ("meta-id-claims-4gib", meta),
        ("valid", with_mode(0, &valid)),
        // Mode 2: [at u16][flip u8][records]: two records, byte 20 flipped.
        (
            "dumped-then-damaged",
            vec![2, 20, 0, 0x40, 1, b'k', 1, b'v', 1, b'l', 0],
        ),
        // Mode 3: magic, an empty header and one record; the harness adds the trailer.
        ("trailer-fixed-by-harness", fixed),
    ]
}

fn presign_inputs() -> Vec<(&'static str, Vec<u8>)> {
    // Mode 2: [expires u64][now u64][put? u8][bucket_len u8][bucket][key]
    let signed = |expires: u64, now: u64| {
        let mut out = vec![2u8];
        out.extend_from_slice(&expires.to_le_bytes());
        out.extend_from_slice(&now.to_le_bytes());
        out.extend_from_slice(&[0, 7]);
        out.extend_from_slice("private".as_bytes());
        out.extend_from_slice("dir/ä b?.txt".as_bytes());
        out
    };
    vec![
        ("empty", Vec::new()),
        ("not-a-uri", with_mode(0, b"/o/a b")),
        (
            "query-expires-negative",
            with_mode(1, b"expires=-1&signature=00"),
        ),
        (
            "query-duplicate-field",
            with_mode(1, b"expires=1&expires=2&signature=00"),
        ),
        (
            "bad-signature",
            with_mode(
                1,
                format!("expires=99999999999&signature={}", "0".repeat(64)).as_bytes(),
            ),
        ),
        (
            "signature-not-hex",
            with_mode(1, b"expires=99999999999&signature=zz"),
        ),
        (
            "path-not-utf8",
            with_mode(0, b"/o/private/%ff?expires=1&signature=00"),
        ),
        ("expired", signed(1_000, 1_000)),
        ("tampered-expiry", {
            let mut t = signed(2_000_000_000, 1_000);
            t[0] = 3;
            t.insert(1, 1); // tamper 1: the expiry plus one
            t
        }),
        ("valid", signed(2_000_000_000, 1_000)),
    ]
}

fn names_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let mut kv = vec![9u8];
    kv.extend_from_slice(&2u32.to_le_bytes()); // KvCommand::Put
    kv.extend_from_slice(&FOUR_GIB.to_le_bytes());
    kv.extend_from_slice(b"ns");
    let mut long_path = vec![5u8];
    long_path.extend_from_slice(&vec![b'd'; 5000]);
    let mut long_name = vec![4u8];
    long_name.extend_from_slice(&[b'x'; 256]);
    vec![
        ("empty", Vec::new()),
        ("path-nul", with_mode(5, b"a\0b")),
        (
            "path-dotdot-stays-inside",
            with_mode(5, b"../../etc/./passwd/.."),
        ),
        ("path-too-long", long_path),
        ("name-dotdot", with_mode(4, b"..")),
        ("name-too-long", long_name),
        ("bucket-uppercase", with_mode(2, b"Bucket")),
        ("object-key-control", with_mode(3, b"a\nb")),
        ("namespace-space", with_mode(0, b"a b")),
        ("fs-name-dotdot", with_mode(8, b"..")),
        ("kv-command-claims-4gib", kv),
        ("random-kv-command", with_mode(9, &random_bytes(4, 64))),
    ]
}

fn backup_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let records: std::collections::BTreeMap<Vec<u8>, Vec<u8>> =
        (0u8..2).map(|i| (vec![b'K', i], vec![i; 5])).collect();
    let valid = backup::file_of(&records, b"chunk bytes");
    let mut chunk_flipped = valid.clone();
    // The chunk's last byte: before the chunk section's end frame and the trailer.
    let at = valid.len() - (5 + 48) - (5 + 32) - 1;
    chunk_flipped[at] ^= 0x01;
    let before_trailer = &valid[..valid.len() - 37];
    let mut manifest_claims = b"CAIRNBK1".to_vec();
    manifest_claims.extend_from_slice(&u32::MAX.to_be_bytes());
    let records_input = [2, b'K', 0, 5, 0, 0, 0, 0, 0, 2, b'K', 1, 1, 1];
    let cut = [&[1u8, 100, 0, 0][..], &records_input].concat();
    let flipped = [&[1u8, 60, 0, 0x40][..], &records_input].concat();
    vec![
        ("empty", Vec::new()),
        ("file-empty", vec![0]),
        ("snapshot-not-backup", with_mode(0, b"CAIRNSN2\0\0\0\0")),
        ("manifest-claims-4gib", with_mode(0, &manifest_claims)),
        ("valid", with_mode(0, &valid)),
        ("valid-chunk-flipped", with_mode(0, &chunk_flipped)),
        ("valid-cut-before-trailer", with_mode(0, before_trailer)),
        ("written-then-cut", cut),
        ("written-then-flipped", flipped),
    ]
}

/// Writes the hand-made inputs (run with `--ignored` after changing them).
#[test]
#[ignore]
fn write_hand_made_inputs() {
    let all = [
        ("peer_payload", peer_payload_inputs()),
        ("wal", wal_inputs()),
        ("snapshot", snapshot_inputs()),
        ("presign", presign_inputs()),
        ("names", names_inputs()),
        ("backup", backup_inputs()),
    ];
    for (target, inputs) in all {
        let dir = inputs_dir().join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in inputs {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}
