//! Object storage: buckets, object manifests and listings.
//!
//! An object is a manifest (`ObjectRecord`) naming its chunks in order; the data
//! lives in the chunk store (see `chunks`). A manifest commits only if every chunk
//! it names is already in the state, so a partial upload is never visible, and an
//! overwrite swaps the whole manifest in one apply. The buckets `public` (readable
//! by anyone) and `private` always exist; others are created with a visibility.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::chunks::{self, ChunkRef, Hash};
use super::{decode, encode, keys, meta_u64, ApplyContext, Error, Txn};
use crate::limits::{
    BUCKETS_MAX, CHUNK_BYTES_MAX, OBJECT_BYTES_MAX, OBJECT_CONTENT_TYPE_BYTES_MAX,
    OBJECT_KEY_BYTES_MAX, OBJECT_LIST_PAGE_MAX, OBJECT_LIST_SCAN_MAX, OBJECT_METADATA_BYTES_MAX,
};

pub const PUBLIC_BUCKET: &str = "public";
pub const PRIVATE_BUCKET: &str = "private";
const FIRST_CREATED_BUCKET_ID: u64 = 16;
const META_NEXT_BUCKET_ID: &str = "bucket_next_id";
const META_BUCKET_COUNT: &str = "bucket_count";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutObject {
    pub bucket: String,
    pub key: String,
    pub chunks: Vec<ChunkRef>,
    pub size: u64,
    /// BLAKE3 of the whole content, hex.
    pub etag: String,
    pub content_type: String,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ObjectCommand {
    CreateBucket {
        name: String,
        public: bool,
    },
    /// Only an empty bucket can be deleted.
    DeleteBucket {
        name: String,
    },
    /// One chunk's data, replicated before any manifest names it.
    PutChunk {
        hash: Hash,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Restarts the GC grace period of these chunks if they are unreferenced: a
    /// long upload touches what it staged so far, so GC never races it.
    TouchChunks {
        hashes: Vec<Hash>,
    },
    Put(Box<PutObject>),
    /// Succeeds whether or not the object exists.
    Delete {
        bucket: String,
        key: String,
    },
    /// Server-side copy: the new object shares the source's chunks.
    Copy {
        from_bucket: String,
        from_key: String,
        to_bucket: String,
        to_key: String,
    },
    /// One chunk a quorum of members already stores durably, pushed outside the
    /// log (`raft::chunk_push`): recorded like `PutChunk`, but apply writes no
    /// file; a member that lacks it fetches it from a peer. Last in the enum, so
    /// logs and snapshots written before it keep their encoding.
    StageChunk {
        hash: Hash,
        len: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectResponse {
    Done,
    Stored { version: u64, etag: String },
    Deleted { existed: bool },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    pub id: u64,
    pub public: bool,
    pub created_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub size: u64,
    pub etag: String,
    pub content_type: String,
    pub metadata: BTreeMap<String, String>,
    pub last_modified_ms: u64,
    pub version: u64,
    pub chunks: Vec<ChunkRef>,
}

/// The built-in buckets, which exist without a record.
fn builtin(name: &str) -> Option<BucketRecord> {
    let (id, public) = match name {
        PUBLIC_BUCKET => (1, true),
        PRIVATE_BUCKET => (2, false),
        _ => return None,
    };
    Some(BucketRecord {
        id,
        public,
        created_ms: 0,
    })
}

/// Bucket names as S3: 3–63 of `a-z 0-9 -`, starting and ending alphanumeric.
pub fn validate_bucket_name(name: &str) -> Result<(), Error> {
    let len = name.len() as u64;
    if !(3..=63).contains(&len) {
        return Err(Error::invalid("bucket", "must be 3 to 63 characters"));
    }
    let allowed = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-';
    let bytes = name.as_bytes();
    if !bytes.iter().all(|&c| allowed(c)) || bytes[0] == b'-' || bytes[bytes.len() - 1] == b'-' {
        return Err(Error::invalid(
            "bucket",
            "only a-z, 0-9 and '-' (not first or last) are allowed",
        ));
    }
    Ok(())
}

pub fn validate_key(key: &str) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::invalid("key", "must not be empty"));
    }
    let len = key.len() as u64;
    if len > OBJECT_KEY_BYTES_MAX {
        return Err(Error::limit("key", OBJECT_KEY_BYTES_MAX, len, "bytes"));
    }
    if key.chars().any(|c| c.is_control()) {
        return Err(Error::invalid("key", "control characters are not allowed"));
    }
    Ok(())
}

/// Checks what a put declares before any data moves.
pub fn validate_attributes(
    content_type: &str,
    metadata: &BTreeMap<String, String>,
) -> Result<(), Error> {
    let len = content_type.len() as u64;
    if len > OBJECT_CONTENT_TYPE_BYTES_MAX {
        return Err(Error::limit(
            "content_type",
            OBJECT_CONTENT_TYPE_BYTES_MAX,
            len,
            "bytes",
        ));
    }
    let total: u64 = metadata
        .iter()
        .map(|(k, v)| (k.len() + v.len()) as u64)
        .sum();
    if total > OBJECT_METADATA_BYTES_MAX {
        return Err(Error::limit(
            "metadata",
            OBJECT_METADATA_BYTES_MAX,
            total,
            "bytes",
        ));
    }
    let name_ok = |k: &String| {
        !k.is_empty()
            && k.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    };
    if let Some(bad) = metadata.keys().find(|k| !name_ok(k)) {
        return Err(Error::invalid(
            "metadata",
            format!("name {bad:?} must be non-empty A-Z, a-z, 0-9, '-', '_'"),
        ));
    }
    if metadata.values().any(|v| v.chars().any(|c| c.is_control())) {
        return Err(Error::invalid(
            "metadata",
            "values must not contain control characters",
        ));
    }
    Ok(())
}

/// A bucket by name (built-ins included); `None` if it does not exist.
pub fn bucket(txn: &Txn<'_>, name: &str) -> sled::Result<Option<BucketRecord>> {
    match txn.get(&keys::bucket(name))? {
        Some(bytes) => Ok(Some(decode(&bytes)?)),
        None => Ok(builtin(name)),
    }
}

/// A bucket by name, or the `NotFound` error naming it.
pub fn existing_bucket(txn: &Txn<'_>, name: &str) -> sled::Result<Result<BucketRecord, Error>> {
    Ok(bucket(txn, name)?.ok_or_else(|| Error::NotFound {
        what: format!("bucket {name:?}"),
    }))
}

/// An object's manifest, if the bucket and object exist.
pub fn object(txn: &Txn<'_>, bucket_name: &str, key: &str) -> sled::Result<Option<ObjectRecord>> {
    let Some(bucket) = bucket(txn, bucket_name)? else {
        return Ok(None);
    };
    txn.get(&keys::object(bucket.id, key))?
        .map(|b| decode(&b))
        .transpose()
}

pub fn apply(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    command: &ObjectCommand,
) -> sled::Result<Result<ObjectResponse, Error>> {
    match command {
        ObjectCommand::CreateBucket { name, public } => create_bucket(txn, ctx, name, *public),
        ObjectCommand::DeleteBucket { name } => delete_bucket(txn, name),
        ObjectCommand::PutChunk { hash, data } => {
            if data.len() > CHUNK_BYTES_MAX {
                let actual = data.len() as u64;
                return Ok(Err(Error::limit(
                    "chunk",
                    CHUNK_BYTES_MAX as u64,
                    actual,
                    "bytes",
                )));
            }
            chunks::stage(txn, ctx.now_ms, hash, data)?;
            Ok(Ok(ObjectResponse::Done))
        }
        ObjectCommand::StageChunk { hash, len } => {
            if *len == 0 || *len as usize > CHUNK_BYTES_MAX {
                return Ok(Err(Error::limit(
                    "chunk",
                    CHUNK_BYTES_MAX as u64,
                    u64::from(*len),
                    "bytes",
                )));
            }
            chunks::stage_pushed(txn, ctx.now_ms, hash, *len)?;
            Ok(Ok(ObjectResponse::Done))
        }
        ObjectCommand::TouchChunks { hashes } => {
            chunks::touch(txn, ctx.now_ms, hashes)?;
            Ok(Ok(ObjectResponse::Done))
        }
        ObjectCommand::Put(put) => put_object(txn, ctx, put),
        ObjectCommand::Delete { bucket, key } => delete_object(txn, ctx, bucket, key),
        ObjectCommand::Copy {
            from_bucket,
            from_key,
            to_bucket,
            to_key,
        } => copy_object(txn, ctx, (from_bucket, from_key), (to_bucket, to_key)),
    }
}

fn create_bucket(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    name: &str,
    public: bool,
) -> sled::Result<Result<ObjectResponse, Error>> {
    if let Err(e) = validate_bucket_name(name) {
        return Ok(Err(e));
    }
    if bucket(txn, name)?.is_some() {
        return Ok(Err(Error::AlreadyExists {
            what: format!("bucket {name:?}"),
        }));
    }
    let count = meta_u64(txn, META_BUCKET_COUNT)?;
    if count + 2 >= BUCKETS_MAX {
        return Ok(Err(Error::limit(
            "buckets",
            BUCKETS_MAX,
            count + 3,
            "buckets",
        )));
    }
    let id = meta_u64(txn, META_NEXT_BUCKET_ID)?.max(FIRST_CREATED_BUCKET_ID);
    txn.put(keys::meta(META_NEXT_BUCKET_ID), encode(&(id + 1)));
    txn.put(keys::meta(META_BUCKET_COUNT), encode(&(count + 1)));
    let record = BucketRecord {
        id,
        public,
        created_ms: ctx.now_ms,
    };
    txn.put(keys::bucket(name), encode(&record));
    Ok(Ok(ObjectResponse::Done))
}

fn delete_bucket(txn: &mut Txn<'_>, name: &str) -> sled::Result<Result<ObjectResponse, Error>> {
    if builtin(name).is_some() {
        return Ok(Err(Error::invalid(
            "bucket",
            format!("{name:?} is built in and cannot be deleted"),
        )));
    }
    let bucket = match existing_bucket(txn, name)? {
        Ok(b) => b,
        Err(e) => return Ok(Err(e)),
    };
    if !txn
        .scan_prefix(&keys::object_prefix(bucket.id), 1)?
        .is_empty()
    {
        return Ok(Err(Error::invalid(
            "bucket",
            format!("{name:?} is not empty; delete its objects first"),
        )));
    }
    txn.remove(keys::bucket(name));
    let count = meta_u64(txn, META_BUCKET_COUNT)?;
    txn.put(
        keys::meta(META_BUCKET_COUNT),
        encode(&super::decrement(count, 1, "buckets")),
    );
    Ok(Ok(ObjectResponse::Done))
}

fn check_put(put: &PutObject) -> Result<(), Error> {
    validate_key(&put.key)?;
    validate_attributes(&put.content_type, &put.metadata)?;
    if put.size > OBJECT_BYTES_MAX {
        return Err(Error::limit("object", OBJECT_BYTES_MAX, put.size, "bytes"));
    }
    let sum: u64 = put.chunks.iter().map(|c| u64::from(c.len)).sum();
    if sum != put.size {
        return Err(Error::invalid(
            "size",
            format!("chunks add up to {sum} bytes, not {}", put.size),
        ));
    }
    Ok(())
}

/// Writes `record` under `(bucket, key)`, taking references on its chunks before
/// releasing the replaced object's, so shared chunks never look unreferenced.
fn store_record(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    bucket_id: u64,
    key: &str,
    record: &ObjectRecord,
) -> sled::Result<()> {
    let object_key = keys::object(bucket_id, key);
    let replaced: Option<ObjectRecord> = txn.get(&object_key)?.map(|b| decode(&b)).transpose()?;
    chunks::add_refs(txn, &record.chunks)?;
    if let Some(old) = replaced {
        chunks::drop_refs(txn, ctx.now_ms, &old.chunks)?;
    }
    txn.put(object_key, encode(record));
    Ok(())
}

fn put_object(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    put: &PutObject,
) -> sled::Result<Result<ObjectResponse, Error>> {
    if let Err(e) = check_put(put) {
        return Ok(Err(e));
    }
    let bucket = match existing_bucket(txn, &put.bucket)? {
        Ok(b) => b,
        Err(e) => return Ok(Err(e)),
    };
    if let Some(hash) = chunks::first_missing(txn, &put.chunks)? {
        // Collected by GC after its grace period (an upload slower than that), or
        // never staged: the client uploads again.
        return Ok(Err(Error::ChunkMissing {
            hash: hex::encode(hash),
        }));
    }
    let record = ObjectRecord {
        size: put.size,
        etag: put.etag.clone(),
        content_type: put.content_type.clone(),
        metadata: put.metadata.clone(),
        last_modified_ms: ctx.now_ms,
        version: ctx.version(),
        chunks: put.chunks.clone(),
    };
    store_record(txn, ctx, bucket.id, &put.key, &record)?;
    Ok(Ok(ObjectResponse::Stored {
        version: record.version,
        etag: record.etag,
    }))
}

fn delete_object(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    bucket_name: &str,
    key: &str,
) -> sled::Result<Result<ObjectResponse, Error>> {
    let bucket = match existing_bucket(txn, bucket_name)? {
        Ok(b) => b,
        Err(e) => return Ok(Err(e)),
    };
    let object_key = keys::object(bucket.id, key);
    let Some(bytes) = txn.get(&object_key)? else {
        return Ok(Ok(ObjectResponse::Deleted { existed: false }));
    };
    let old: ObjectRecord = decode(&bytes)?;
    txn.remove(object_key);
    chunks::drop_refs(txn, ctx.now_ms, &old.chunks)?;
    Ok(Ok(ObjectResponse::Deleted { existed: true }))
}

fn copy_object(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    (from_bucket, from_key): (&str, &str),
    (to_bucket, to_key): (&str, &str),
) -> sled::Result<Result<ObjectResponse, Error>> {
    if let Err(e) = validate_key(to_key) {
        return Ok(Err(e));
    }
    let target = match existing_bucket(txn, to_bucket)? {
        Ok(b) => b,
        Err(e) => return Ok(Err(e)),
    };
    let Some(source) = object(txn, from_bucket, from_key)? else {
        return Ok(Err(Error::NotFound {
            what: format!("object {from_bucket}/{from_key}"),
        }));
    };
    let record = ObjectRecord {
        last_modified_ms: ctx.now_ms,
        version: ctx.version(),
        ..source
    };
    store_record(txn, ctx, target.id, to_key, &record)?;
    Ok(Ok(ObjectResponse::Stored {
        version: record.version,
        etag: record.etag,
    }))
}

/// Every bucket: the built-ins, then the created ones by name.
pub fn list_buckets(tree: &sled::Tree) -> sled::Result<Vec<(String, BucketRecord)>> {
    let mut out = Vec::new();
    for name in [PRIVATE_BUCKET, PUBLIC_BUCKET] {
        if tree.get(keys::bucket(name))?.is_none() {
            out.extend(builtin(name).map(|b| (name.to_string(), b)));
        }
    }
    for item in tree.scan_prefix([keys::BUCKET]) {
        let (key, value) = item?;
        let name = String::from_utf8_lossy(&key[1..]).into_owned();
        out.push((name, decode(&value)?));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// One page of a listing.
#[derive(Debug, Default, PartialEq)]
pub struct Listing {
    pub objects: Vec<(String, ObjectRecord)>,
    pub common_prefixes: Vec<String>,
    /// Where the next page starts (exclusive); `None` when this is the last page.
    pub next_after: Option<String>,
}

pub struct ListQuery<'a> {
    pub prefix: &'a str,
    /// Keys are folded at the first occurrence of this after the prefix ("" = none).
    pub delimiter: &'a str,
    /// List keys strictly after this one ("" = from the start).
    pub after: &'a str,
    pub limit: u32,
}

/// Lists `bucket_id` like S3's ListObjectsV2: keys under `prefix` after `after`, in
/// order, with keys that contain `delimiter` past the prefix folded into common
/// prefixes. A page holds at most `limit` entries and examines at most
/// `OBJECT_LIST_SCAN_MAX` keys.
pub fn list(tree: &sled::Tree, bucket_id: u64, query: &ListQuery<'_>) -> sled::Result<Listing> {
    let limit = query.limit.clamp(1, OBJECT_LIST_PAGE_MAX) as usize;
    let base = keys::object_prefix(bucket_id);
    let full_prefix = [base.as_slice(), query.prefix.as_bytes()].concat();
    let mut start = if query.after.is_empty() {
        full_prefix.clone()
    } else {
        let mut k = keys::object(bucket_id, query.after);
        // With a delimiter, a key ending in it is a common prefix (no object is
        // listed under such a key): skip everything under it. Otherwise skip the key.
        let folded = !query.delimiter.is_empty() && query.after.ends_with(query.delimiter);
        k.push(if folded { 0xff } else { 0 });
        k.max(full_prefix.clone())
    };
    let mut listing = Listing::default();
    let mut last_key: Option<String> = None;
    let mut examined = 0usize;
    'pages: loop {
        for item in tree.range(start.clone()..) {
            let (raw, value) = item?;
            if !raw.starts_with(&full_prefix) {
                break 'pages;
            }
            examined += 1;
            if listing.objects.len() + listing.common_prefixes.len() == limit
                || examined > OBJECT_LIST_SCAN_MAX
            {
                listing.next_after = last_key;
                return Ok(listing);
            }
            let key = String::from_utf8_lossy(&raw[base.len()..]).into_owned();
            let rest = &key[query.prefix.len()..];
            if let Some(pos) = (!query.delimiter.is_empty())
                .then(|| rest.find(query.delimiter))
                .flatten()
            {
                let common = key[..query.prefix.len() + pos + query.delimiter.len()].to_string();
                // Skip every key under this common prefix in one seek.
                start = [base.as_slice(), common.as_bytes(), &[0xff]].concat();
                last_key = Some(common.clone());
                listing.common_prefixes.push(common);
                continue 'pages;
            }
            listing.objects.push((key.clone(), decode(&value)?));
            last_key = Some(key);
        }
        break;
    }
    Ok(listing)
}
