//! The backup format on good and damaged input: what is written reads back, and
//! every cut, flipped byte or odd frame is refused with a message (never a panic).

use super::*;
use crate::state::encode;

fn manifest(records: u64, chunks: u64, chunk_bytes: u64) -> Manifest {
    Manifest {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        cairn_version: "test".into(),
        created_ms: 1,
        workspace_id: "cairn".into(),
        node_id: 2,
        members: vec![Member {
            id: 2,
            voter: true,
            grpc_addr: "127.0.0.1:7400".into(),
        }],
        applied: LogPosition {
            term: 3,
            leader_node_id: 1,
            index: 77,
        },
        state_records: records,
        chunks,
        chunk_bytes,
        counts: BTreeMap::new(),
    }
}

fn chunk_key(hash: &Hash) -> Vec<u8> {
    keys::chunk(hash)
}

fn chunk_value(len: usize) -> Vec<u8> {
    encode(&ChunkRecord {
        len: len as u32,
        refs: 1,
        unreferenced_since_ms: 0,
    })
}

/// A small backup: a few records (two of them chunk records) and their chunks.
fn sample() -> (Vec<u8>, Vec<Item>) {
    let chunks: Vec<Vec<u8>> = vec![vec![1u8; 300], (0..=255u8).cycle().take(5000).collect()];
    let mut named: Vec<(Hash, Vec<u8>)> = chunks
        .iter()
        .map(|c| (*blake3::hash(c).as_bytes(), c.clone()))
        .collect();
    named.sort();
    let mut records: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"K\0\0\0\0\0\0\0\x01alpha".to_vec(), b"one".to_vec()),
        (b"Mclock_ms".to_vec(), 5u64.to_be_bytes().to_vec()),
        (b"Nsettings".to_vec(), Vec::new()),
    ];
    for (hash, data) in &named {
        records.push((chunk_key(hash), chunk_value(data.len())));
    }
    records.sort();
    let bytes: u64 = named.iter().map(|(_, d)| d.len() as u64).sum();
    let mut file = Vec::new();
    let mut writer = Writer::new(
        &mut file,
        &manifest(records.len() as u64, named.len() as u64, bytes),
    )
    .unwrap();
    let mut items = Vec::new();
    for (key, value) in &records {
        writer.record(key, value).unwrap();
        items.push(Item::Record {
            key: key.clone(),
            value: value.clone(),
        });
    }
    writer.end_state().unwrap();
    for (hash, data) in &named {
        writer.chunk(hash, data).unwrap();
        items.push(Item::Chunk {
            hash: *hash,
            data: data.clone(),
        });
    }
    let (_, written) = writer.finish().unwrap();
    assert_eq!(written, file.len() as u64);
    (file, items)
}

fn read_all(file: &[u8]) -> io::Result<Vec<Item>> {
    let mut reader = Reader::open(file)?;
    let mut items = Vec::new();
    while let Some(item) = reader.next_item()? {
        items.push(item);
    }
    Ok(items)
}

fn refusal(file: &[u8]) -> String {
    let error = verify(file).expect_err("a damaged file verified");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
    error.to_string()
}

#[test]
fn what_is_written_reads_back_item_by_item() {
    let (file, items) = sample();
    assert_eq!(read_all(&file).unwrap(), items);
    let summary = verify(&file[..]).unwrap();
    assert_eq!(summary.file_bytes, file.len() as u64);
    assert_eq!(summary.manifest.applied.index, 77);
    assert_eq!(summary.manifest.chunks, 2);
}

#[test]
fn a_file_cut_anywhere_is_refused() {
    let (file, _) = sample();
    for cut in 0..file.len() {
        let message = refusal(&file[..cut]);
        assert!(
            message.contains("truncated") || message.contains("magic"),
            "cut at {cut}: {message}"
        );
    }
}

#[test]
fn a_byte_flipped_anywhere_is_refused() {
    let (file, _) = sample();
    for at in 0..file.len() {
        for flip in [0x01u8, 0x80] {
            let mut bad = file.clone();
            bad[at] ^= flip;
            refusal(&bad);
        }
    }
}

#[test]
fn a_flipped_byte_in_a_chunk_is_named() {
    let (file, _) = sample();
    let mut bad = file.clone();
    // The last chunk's bytes end just before the chunk section's end frame
    // (5 + 48) and the trailer (5 + 32).
    let at = file.len() - 5 - 48 - 5 - 32 - 10;
    bad[at] ^= 0x20;
    let message = refusal(&bad);
    assert!(message.contains("does not match its hash"), "{message}");
}

#[test]
fn trailing_bytes_and_other_versions_are_refused() {
    let (file, _) = sample();
    let mut longer = file.clone();
    longer.push(0);
    assert!(refusal(&longer).contains("follow the trailer"));

    let mut newer = manifest(0, 0, 0);
    newer.format_version = FORMAT_VERSION + 1;
    let json = serde_json::to_vec(&newer).unwrap();
    let mut other = MAGIC.to_vec();
    other.extend_from_slice(&(json.len() as u32).to_be_bytes());
    other.extend_from_slice(&json);
    assert!(refusal(&other).contains("this cairn reads version"));
    assert!(refusal(b"CAIRNSN2 not a backup").contains("bad magic"));
}

#[test]
fn impossible_lengths_are_refused_without_reading_them() {
    let (file, _) = sample();
    let manifest_len = u32::from_be_bytes(file[8..12].try_into().unwrap()) as usize;
    let first_frame = 12 + manifest_len;
    let mut bad = file.clone();
    bad[first_frame + 1..first_frame + 5].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(refusal(&bad).contains("cannot hold"));
    let mut bad = file.clone();
    bad[first_frame] = 0x77;
    assert!(refusal(&bad).contains("unknown frame kind"));
    let mut bad = file.clone();
    bad[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(refusal(&bad).contains("manifest claims"));
}

#[test]
fn a_chunk_the_state_does_not_name_is_refused_by_writer_and_reader() {
    let mut file = Vec::new();
    let mut writer = Writer::new(&mut file, &manifest(0, 0, 0)).unwrap();
    writer.end_state().unwrap();
    writer.chunk(blake3::hash(b"x").as_bytes(), b"x").unwrap();
    assert!(writer.finish().is_err());
    // What the writer had written by then, as a reader sees it.
    let error = read_all(&file).unwrap_err();
    assert!(error.to_string().contains("the state names"), "{error}");
}

#[test]
fn random_bytes_never_panic() {
    let (file, _) = sample();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..2_000 {
        let mut bad = file.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % bad.len() as u64) as usize;
            bad[at] = next() as u8;
        }
        if round % 3 == 0 {
            bad.truncate((next() % bad.len() as u64) as usize);
        }
        let _ = verify(&bad[..]);
        let mut garbage = MAGIC.to_vec();
        garbage.extend((0..next() % 200).map(|_| next() as u8));
        let _ = verify(&garbage[..]);
    }
}
