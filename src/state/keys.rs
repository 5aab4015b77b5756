//! Byte layout of the state machine's single sled tree.
//!
//! One tree keeps every service's data so that one `sled::Batch` commits an apply
//! batch atomically, `last_applied` included. The first byte says what a key holds;
//! numbers are big-endian so byte order is numeric order.

/// `M<name>`: state machine metadata (last applied log id, membership, counters).
pub const META: u8 = b'M';
/// `N<namespace name>` → `NamespaceRecord`.
pub const NAMESPACE: u8 = b'N';
/// `K<ns id><key>` → `ValueRecord`.
pub const KV: u8 = b'K';
/// `T<expires_at_ms><ns id><key>` → empty: TTL index for the sweeper.
pub const TTL: u8 = b'T';
/// `D<ns id>` → empty: a deleted namespace whose keys the sweeper still purges.
pub const DROPPED: u8 = b'D';
/// `C<client id>` → `ClientRecord`.
pub const CLIENT: u8 = b'C';
/// `S<client id><seq>` → stored outcome of that write.
pub const SESSION_RESULT: u8 = b'S';
/// `L<last_seen_ms><client id>` → empty: idle order of clients for expiry.
pub const CLIENT_IDLE: u8 = b'L';
/// `Q<queue name>` → `QueueRecord`.
pub const QUEUE: u8 = b'Q';
/// `G<queue id><seq>` → a queue message.
pub const QUEUE_MESSAGE: u8 = b'G';
/// `E<queue id>` → empty: a purged or deleted queue id whose messages the sweeper purges.
pub const QUEUE_DROPPED: u8 = b'E';

pub fn meta(name: &str) -> Vec<u8> {
    let mut k = vec![META];
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn namespace(name: &str) -> Vec<u8> {
    let mut k = vec![NAMESPACE];
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn kv_prefix(ns_id: u64) -> Vec<u8> {
    let mut k = vec![KV];
    k.extend_from_slice(&ns_id.to_be_bytes());
    k
}

pub fn kv(ns_id: u64, key: &[u8]) -> Vec<u8> {
    let mut k = kv_prefix(ns_id);
    k.extend_from_slice(key);
    k
}

/// The user key inside a `kv` key.
pub fn kv_user_key(full: &[u8]) -> &[u8] {
    &full[9..]
}

pub fn ttl(expires_at_ms: u64, ns_id: u64, key: &[u8]) -> Vec<u8> {
    let mut k = vec![TTL];
    k.extend_from_slice(&expires_at_ms.to_be_bytes());
    k.extend_from_slice(&ns_id.to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// Splits a `ttl` key into `(expires_at_ms, ns_id, key)`; `None` if malformed.
pub fn parse_ttl(full: &[u8]) -> Option<(u64, u64, &[u8])> {
    if full.len() < 17 || full[0] != TTL {
        return None;
    }
    let expires_at_ms = u64::from_be_bytes(full[1..9].try_into().ok()?);
    let ns_id = u64::from_be_bytes(full[9..17].try_into().ok()?);
    Some((expires_at_ms, ns_id, &full[17..]))
}

pub fn dropped(ns_id: u64) -> Vec<u8> {
    let mut k = vec![DROPPED];
    k.extend_from_slice(&ns_id.to_be_bytes());
    k
}

pub fn client(client_id: u64) -> Vec<u8> {
    let mut k = vec![CLIENT];
    k.extend_from_slice(&client_id.to_be_bytes());
    k
}

pub fn session_result(client_id: u64, seq: u64) -> Vec<u8> {
    let mut k = session_results_prefix(client_id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub fn session_results_prefix(client_id: u64) -> Vec<u8> {
    let mut k = vec![SESSION_RESULT];
    k.extend_from_slice(&client_id.to_be_bytes());
    k
}

pub fn client_idle(last_seen_ms: u64, client_id: u64) -> Vec<u8> {
    let mut k = vec![CLIENT_IDLE];
    k.extend_from_slice(&last_seen_ms.to_be_bytes());
    k.extend_from_slice(&client_id.to_be_bytes());
    k
}

/// Reads the big-endian u64 at `offset`; `None` if the key is too short.
pub fn u64_at(full: &[u8], offset: usize) -> Option<u64> {
    let bytes = full.get(offset..offset + 8)?;
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// `B<bucket name>` → `BucketRecord` (the built-in `public` and `private` buckets
/// have no record until someone needs one; see `object::bucket`).
pub const BUCKET: u8 = b'B';
/// `O<bucket id><object key>` → `ObjectRecord` (the manifest).
pub const OBJECT: u8 = b'O';
/// `H<blake3 hash>` → `ChunkRecord`: reference count of a stored chunk.
pub const CHUNK: u8 = b'H';
/// `Z<unreferenced_since_ms><hash>` → empty: unreferenced chunks in age order, for GC.
pub const CHUNK_UNREFERENCED: u8 = b'Z';
/// `A<token id>` → `TokenRecord`.
pub const TOKEN: u8 = b'A';

pub fn bucket(name: &str) -> Vec<u8> {
    let mut k = vec![BUCKET];
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn object_prefix(bucket_id: u64) -> Vec<u8> {
    let mut k = vec![OBJECT];
    k.extend_from_slice(&bucket_id.to_be_bytes());
    k
}

pub fn object(bucket_id: u64, key: &str) -> Vec<u8> {
    let mut k = object_prefix(bucket_id);
    k.extend_from_slice(key.as_bytes());
    k
}

pub fn chunk(hash: &[u8; 32]) -> Vec<u8> {
    let mut k = vec![CHUNK];
    k.extend_from_slice(hash);
    k
}

pub fn chunk_unreferenced(since_ms: u64, hash: &[u8; 32]) -> Vec<u8> {
    let mut k = vec![CHUNK_UNREFERENCED];
    k.extend_from_slice(&since_ms.to_be_bytes());
    k.extend_from_slice(hash);
    k
}

/// Splits a `chunk_unreferenced` key into `(since_ms, hash)`; `None` if malformed.
pub fn parse_chunk_unreferenced(full: &[u8]) -> Option<(u64, [u8; 32])> {
    if full.len() != 41 || full[0] != CHUNK_UNREFERENCED {
        return None;
    }
    Some((u64_at(full, 1)?, full[9..41].try_into().ok()?))
}

pub fn token(id: u64) -> Vec<u8> {
    let mut k = vec![TOKEN];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// `F<fs name>` → `fs::FsRecord` (`default` has none until its first change).
pub const FS: u8 = b'F';
/// `I<fs id><ino>` → `fs::Inode`.
pub const FS_INODE: u8 = b'I';
/// `P<fs id><dir ino><name>` → `fs::DirEntry`: directories' entries in name order.
pub const FS_DIRENT: u8 = b'P';
/// `J<fs id><ino><block index>` → `fs::BlockRef`: a file's block map.
pub const FS_BLOCK: u8 = b'J';
/// `X<fs id><ino><name>` → an extended attribute's value.
pub const FS_XATTR: u8 = b'X';
/// `W<fs id><ino>` → empty: an inode with no links that open handles keep.
pub const FS_ORPHAN: u8 = b'W';
/// `R<fs id><ino><lease>` → open count: handles held on an inode.
pub const FS_HANDLE: u8 = b'R';
/// `r<lease><fs id><ino>` → empty: the handles of a lease.
pub const FS_LEASE_HANDLE: u8 = b'r';
/// `V<lease>` → `fs::handles::LeaseRecord`.
pub const FS_LEASE: u8 = b'V';
/// `v<expires_ms><lease>` → empty: leases in expiry order, for the sweeper.
pub const FS_LEASE_EXPIRY: u8 = b'v';
/// `Y<fs id>` → empty: a deleted file system whose records the sweeper purges.
pub const FS_DROPPED: u8 = b'Y';

fn with_u64s(tag: u8, parts: &[u64]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + 8 * parts.len());
    k.push(tag);
    for p in parts {
        k.extend_from_slice(&p.to_be_bytes());
    }
    k
}

pub fn fs(name: &str) -> Vec<u8> {
    let mut k = vec![FS];
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn fs_inode(fs_id: u64, ino: u64) -> Vec<u8> {
    with_u64s(FS_INODE, &[fs_id, ino])
}

pub fn fs_dir_prefix(fs_id: u64, dir: u64) -> Vec<u8> {
    with_u64s(FS_DIRENT, &[fs_id, dir])
}

pub fn fs_dirent(fs_id: u64, dir: u64, name: &str) -> Vec<u8> {
    let mut k = fs_dir_prefix(fs_id, dir);
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn fs_blocks_prefix(fs_id: u64, ino: u64) -> Vec<u8> {
    with_u64s(FS_BLOCK, &[fs_id, ino])
}

pub fn fs_block(fs_id: u64, ino: u64, index: u64) -> Vec<u8> {
    with_u64s(FS_BLOCK, &[fs_id, ino, index])
}

pub fn fs_xattr_prefix(fs_id: u64, ino: u64) -> Vec<u8> {
    with_u64s(FS_XATTR, &[fs_id, ino])
}

pub fn fs_xattr(fs_id: u64, ino: u64, name: &str) -> Vec<u8> {
    let mut k = fs_xattr_prefix(fs_id, ino);
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn fs_orphan(fs_id: u64, ino: u64) -> Vec<u8> {
    with_u64s(FS_ORPHAN, &[fs_id, ino])
}

pub fn fs_handles_prefix(fs_id: u64, ino: u64) -> Vec<u8> {
    with_u64s(FS_HANDLE, &[fs_id, ino])
}

pub fn fs_handle(fs_id: u64, ino: u64, lease: u64) -> Vec<u8> {
    with_u64s(FS_HANDLE, &[fs_id, ino, lease])
}

pub fn fs_lease_handles_prefix(lease: u64) -> Vec<u8> {
    with_u64s(FS_LEASE_HANDLE, &[lease])
}

pub fn fs_lease_handle(lease: u64, fs_id: u64, ino: u64) -> Vec<u8> {
    with_u64s(FS_LEASE_HANDLE, &[lease, fs_id, ino])
}

pub fn fs_lease(lease: u64) -> Vec<u8> {
    with_u64s(FS_LEASE, &[lease])
}

pub fn fs_lease_expiry(expires_ms: u64, lease: u64) -> Vec<u8> {
    with_u64s(FS_LEASE_EXPIRY, &[expires_ms, lease])
}

pub fn fs_dropped(fs_id: u64) -> Vec<u8> {
    with_u64s(FS_DROPPED, &[fs_id])
}

/// The prefixes under which a file system's records live (for its purge).
pub fn fs_record_prefixes(fs_id: u64) -> [Vec<u8>; 6] {
    [
        with_u64s(FS_BLOCK, &[fs_id]),
        with_u64s(FS_HANDLE, &[fs_id]),
        with_u64s(FS_DIRENT, &[fs_id]),
        with_u64s(FS_XATTR, &[fs_id]),
        with_u64s(FS_ORPHAN, &[fs_id]),
        with_u64s(FS_INODE, &[fs_id]),
    ]
}
