//! Every bound cairn enforces, in one place.
//!
//! Client-facing limits are `pub const` defaults gathered in [`Limits`], which the
//! operator may override in the config file; internal bounds (queues, batches,
//! retries) are plain constants. Each says what it bounds, why this number, and
//! which error enforces it. Relations between them are checked at compile time.

/// Largest KV key. Rejected with `LimitExceeded { field: "key" }`.
pub const KV_KEY_BYTES_MAX: u64 = 32 * 1024;
/// Largest KV value. Rejected with `LimitExceeded { field: "value" }`.
pub const KV_VALUE_BYTES_MAX: u64 = 256 * 1024;
/// Longest namespace name (characters from `[A-Za-z0-9._-]`).
pub const NAME_CHARS_MAX: u64 = 128;
/// Soft limit on the number of KV namespaces; creating one more is rejected.
pub const NAMESPACES_MAX: u64 = 10_000;
/// Largest page a key listing returns; larger `limit`s are clamped to it.
pub const LIST_PAGE_KEYS_MAX: u32 = 10_000;
/// Page size when the client gives no `limit`.
pub const LIST_PAGE_KEYS_DEFAULT: u32 = 1_000;
/// Largest TTL a key may carry (10 years): keeps `now + ttl` far from overflow.
pub const KV_TTL_MS_MAX: u64 = 10 * 365 * 24 * 3600 * 1000;

/// Largest queue message. Rejected with `LimitExceeded { field: "message" }`.
pub const QUEUE_MESSAGE_BYTES_MAX: u64 = 256 * 1024;
/// Messages one send may carry (they are appended atomically, in order).
pub const QUEUE_BATCH_MESSAGES_MAX: u64 = 100;
/// Bytes one send may carry in all: one Raft entry stays far below sled's inline limit.
pub const QUEUE_SEND_BYTES_MAX: u64 = 1024 * 1024;
/// Soft limit on the number of queues.
pub const QUEUES_MAX: u64 = 10_000;
/// Longest lease (visibility timeout) a receive may take: 12 hours, as SQS.
pub const QUEUE_LEASE_MS_MAX: u64 = 12 * 3600 * 1000;
/// Leased messages a receive skips looking for a visible one; beyond that the
/// queue looks empty until leases expire. Bounds the work of one receive.
pub const QUEUE_SCAN_MESSAGES_MAX: usize = 10_000;
/// Messages one peek may show (each up to the message limit).
pub const QUEUE_PEEK_MESSAGES_MAX: usize = 100;
/// Longest long-poll wait of a receive.
pub const QUEUE_WAIT_MS_MAX: u64 = 20_000;
/// Messages one receive may take (`max_messages`), popped or leased in one Raft
/// command. More is rejected with `LimitExceeded { field: "max_messages" }`.
pub const QUEUE_RECEIVE_MESSAGES_MAX: u32 = 256;
/// Reply bytes one batch receive fills: it stops before the message that would pass
/// this, so it may return fewer than asked (the first visible message is always
/// taken, whatever its size). As large as one send: a receive's outcome, which the
/// session table keeps for retries, stays the size of one send's Raft entry.
pub const QUEUE_RECEIVE_BYTES_MAX: u64 = QUEUE_SEND_BYTES_MAX;
/// What a received message adds to a reply besides its body (seq, counts, a
/// receipt of at most 52 characters, protobuf framing), counted against
/// `QUEUE_RECEIVE_BYTES_MAX`; an upper bound.
pub const QUEUE_RECEIVE_MESSAGE_OVERHEAD_BYTES: u64 = 128;
// A batch reply also repeats its first message in the single-message fields, and
// that message may be as large as the configurable ceiling.
const _: () = assert!(
    (QUEUE_RECEIVE_BYTES_MAX + 2 * (KV_ENTRY_BYTES_CEILING + QUEUE_RECEIVE_MESSAGE_OVERHEAD_BYTES))
        < GRPC_MESSAGE_BYTES_MAX as u64
);

/// Largest chunk of an object: the unit of dedupe and of one Raft entry's data.
pub const CHUNK_BYTES_MAX: usize = 1024 * 1024;
/// Longest object key (UTF-8 bytes). Rejected with `LimitExceeded { field: "key" }`.
pub const OBJECT_KEY_BYTES_MAX: u64 = 1024;
/// Largest object. Its manifest (36 bytes per chunk, 590 KB at this size) must
/// stay one modest Raft entry. Rejected with `LimitExceeded { field: "object" }`.
pub const OBJECT_BYTES_MAX: u64 = 16 * 1024 * 1024 * 1024;
/// Longest content type of an object.
pub const OBJECT_CONTENT_TYPE_BYTES_MAX: u64 = 256;
/// User metadata of one object: names plus values, as S3.
pub const OBJECT_METADATA_BYTES_MAX: u64 = 2 * 1024;
/// Soft limit on the number of buckets (the two built-in ones included).
pub const BUCKETS_MAX: u64 = 1_000;
/// Largest page an object listing returns (keys plus common prefixes).
pub const OBJECT_LIST_PAGE_MAX: u32 = 1_000;
/// Objects (or manifests) a listing examines for one page when a delimiter folds
/// many keys into few prefixes; bounds the work of one call.
pub const OBJECT_LIST_SCAN_MAX: usize = 100_000;
/// Chunks one upload keeps proposed but not yet committed: pipelines replication
/// while bounding the upload's memory to this many chunks.
pub const UPLOAD_CHUNKS_IN_FLIGHT_MAX: usize = 16;
/// Chunk bytes all uploads on one node keep in flight; further uploads wait.
pub const NODE_UPLOAD_BYTES_IN_FLIGHT_MAX: usize = 64 * 1024 * 1024;
/// How long an unreferenced chunk is kept before GC may delete it. An upload must
/// finish (and a reader of an overwritten object must finish reading) within it.
pub const CHUNK_GC_GRACE_MS_DEFAULT: u64 = 15 * 60 * 1000;
/// Free space a node keeps on its data disk: below it the cluster takes no new
/// data (`raft::disk_guard`). Room for the writes in flight and a snapshot.
pub const DISK_RESERVE_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;
/// Default lifetime of a presigned URL.
pub const PRESIGN_EXPIRES_S_DEFAULT: u64 = 900;
/// Default ceiling on a presigned URL's lifetime (configurable: `presign_expires_s_max`).
pub const PRESIGN_EXPIRES_S_MAX_DEFAULT: u64 = 7 * 24 * 3600;
/// API tokens the cluster stores (`cairn token create`).
pub const TOKENS_MAX: u64 = 1_000;

/// Longest name of one directory entry (UTF-8 bytes), as Linux's NAME_MAX.
/// Rejected with `ENAMETOOLONG`.
pub const FS_NAME_BYTES_MAX: usize = 255;
/// Longest path a request may name (UTF-8 bytes), as Linux's PATH_MAX.
pub const FS_PATH_BYTES_MAX: usize = 4096;
/// Longest symlink target.
pub const FS_SYMLINK_BYTES_MAX: usize = 4096;
/// Longest extended attribute name, as Linux's XATTR_NAME_MAX.
pub const FS_XATTR_NAME_BYTES_MAX: usize = 255;
/// Largest extended attribute value, as Linux's XATTR_SIZE_MAX. `E2BIG` beyond.
pub const FS_XATTR_VALUE_BYTES_MAX: usize = 64 * 1024;
/// Names plus values of all extended attributes of one inode: keeps an inode's
/// attributes one modest Raft entry. `ENOSPC` beyond.
pub const FS_XATTR_BYTES_PER_INODE_MAX: u64 = 256 * 1024;
/// Largest file: as large as an object, so any file can become one.
pub const FS_FILE_BYTES_MAX: u64 = OBJECT_BYTES_MAX;
/// A file's content is a map from block index to a chunk of at most this size.
pub const FS_BLOCK_BYTES: u64 = CHUNK_BYTES_MAX as u64;
/// Hard links to one inode.
pub const FS_LINKS_MAX: u32 = 65_000;
/// Largest page of one directory listing; larger `limit`s are clamped.
pub const FS_READDIR_PAGE_MAX: u32 = 1_000;

/// The names a directory page asked for with `limit` holds at most: 0 asks for the
/// largest page (the API's documented default).
pub fn fs_readdir_page(limit: u32) -> usize {
    let names = match limit {
        0 => FS_READDIR_PAGE_MAX,
        n => n.min(FS_READDIR_PAGE_MAX),
    };
    names as usize
}
/// Paths one `stat_many` call may name.
pub const FS_STAT_MANY_MAX: usize = 1_000;
/// Hashes one "which chunks are missing" call may ask about.
pub const FS_CHUNK_QUERY_MAX: usize = 10_000;
/// Entries one step of a recursive delete removes; the service repeats steps.
pub const FS_REMOVE_TREE_STEP_MAX: u64 = 1_000;
/// Bytes one write call may carry; larger writes are split by the SDK.
pub const FS_WRITE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Blocks one write command may replace (a 64 MiB write at most).
pub const FS_WRITE_BLOCKS_MAX: usize = 64;
/// Times the service redoes a partial-block write that raced another writer.
pub const FS_WRITE_RETRIES_MAX: u32 = 16;
/// Blocks one `BlockMap` call describes.
pub const FS_BLOCK_MAP_BLOCKS_MAX: u64 = 256;
/// Times a read re-resolves a path whose inode changed while it was read.
pub const FS_READ_RETRIES_MAX: u32 = 16;
/// Longest lease an open-handle session may take; it must renew before expiry.
pub const FS_LEASE_MS_MAX: u64 = 10 * 60 * 1000;
/// Lease length when the client gives none.
pub const FS_LEASE_MS_DEFAULT: u64 = 60 * 1000;
/// Soft limit on the number of named file systems.
pub const FILESYSTEMS_MAX: u64 = 1_000;
/// Longest file system name (characters from `[A-Za-z0-9._-]`).
pub const FS_NAME_CHARS_MAX: usize = 64;

/// Largest gRPC message either side accepts. Must hold the largest value plus its key
/// and framing, and a bounded AppendEntries batch.
pub const GRPC_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;
const _: () =
    assert!((KV_KEY_BYTES_MAX + KV_VALUE_BYTES_MAX) as usize * 2 < GRPC_MESSAGE_BYTES_MAX);

/// Largest record cairn decodes from its own disk (a log entry, a state record, a
/// snapshot header): a log entry holds at most one AppendEntries-sized batch.
pub const DISK_RECORD_BYTES_MAX: u64 = GRPC_MESSAGE_BYTES_MAX as u64;

/// Fewest bytes a cluster secret file may hold (after trimming whitespace).
pub const CLUSTER_SECRET_BYTES_MIN: usize = 32;
/// How long a TLS handshake may take on any listener, and when dialing a peer.
pub const TLS_HANDSHAKE_TIMEOUT_MS: u64 = 5_000;

/// The chunk scrubber's default read rate (a small share of one disk).
pub const SCRUB_BYTES_PER_S_DEFAULT: u64 = 32 * 1024 * 1024;
/// Default pause before each scrub pass over the chunk store.
pub const SCRUB_PASS_INTERVAL_MS_DEFAULT: u64 = 6 * 3600 * 1000;

/// Connections one listener keeps open at once (client gRPC and HTTP each);
/// beyond it, connections that have sent nothing yet are closed first.
pub const CLIENT_CONNECTIONS_MAX: usize = 1024;
/// Connections the HTTP listener keeps open at once.
pub const HTTP_CONNECTIONS_MAX: usize = 1024;
/// Connections the peer listener keeps open at once (a few per peer).
pub const PEER_CONNECTIONS_MAX: usize = 256;
/// How long a new connection may stay silent before it is closed.
pub const CONNECTION_FIRST_BYTE_TIMEOUT_MS: u64 = 10_000;
/// How long a client may take to send a whole HTTP request head.
pub const HTTP_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Longest pause between two pieces of an HTTP request body.
pub const HTTP_BODY_IDLE_TIMEOUT_MS: u64 = 30_000;
/// Largest HTTP request head (request line and headers).
pub const HTTP_HEADER_BYTES_MAX: usize = 64 * 1024;
/// Requests one gRPC listener serves at once, over all its connections; more
/// wait for a slot.
pub const GRPC_REQUESTS_IN_FLIGHT_MAX: usize = 4096;
/// Requests the HTTP listener serves at once; more wait for a slot.
pub const HTTP_REQUESTS_IN_FLIGHT_MAX: usize = 1024;
/// Concurrent gRPC streams (requests) on one connection.
pub const GRPC_STREAMS_PER_CONNECTION_MAX: u32 = 1024;
/// HTTP/2 keepalive: a PING after this much silence, and how long its answer may take.
pub const GRPC_KEEPALIVE_INTERVAL_MS: u64 = 30_000;
pub const GRPC_KEEPALIVE_TIMEOUT_MS: u64 = 10_000;

/// HTTP/2 flow-control window of one gRPC stream, both directions. h2's default
/// (64 KiB) makes a 1 MiB chunk wait for a dozen window updates on its way.
pub const GRPC_STREAM_WINDOW_BYTES: u32 = 8 * 1024 * 1024;
/// HTTP/2 flow-control window of one connection (all its streams).
pub const GRPC_CONNECTION_WINDOW_BYTES: u32 = 32 * 1024 * 1024;

/// Client commands the proposer packs into one Raft entry (group commit). Versions
/// are `log_index << VERSION_POSITION_BITS | position`, so this must fit those bits.
pub const BATCH_COMMANDS_MAX: usize = 1024;
/// Payload bytes the proposer packs into one Raft entry; a single larger command
/// (an object chunk) still travels alone. openraft gives one AppendEntries only
/// `heartbeat_interval_ms` to be sent, appended and fsynced by a follower, so
/// entries stay around a chunk's size.
pub const BATCH_BYTES_MAX: usize = 1024 * 1024;
/// Low bits of a version that hold a command's position inside its entry.
pub const VERSION_POSITION_BITS: u32 = 12;
const _: () = assert!(BATCH_COMMANDS_MAX <= 1 << VERSION_POSITION_BITS);
/// Requests waiting for the proposer; senders wait (backpressure) when it is full.
pub const PROPOSAL_QUEUE_MAX: usize = 4096;
/// Linearizable reads waiting for one shared read-index round.
pub const READ_QUEUE_MAX: usize = 4096;

/// Results kept per client above its lowest unanswered seq: a client may have at
/// most this many writes in flight. More is rejected with `SessionWindowExceeded`.
pub const SESSION_WINDOW_SEQS_MAX: u64 = 1024;
/// Clients whose sessions the state machine keeps; the sweeper evicts the idlest.
pub const SESSIONS_MAX: u64 = 100_000;
/// A client idle this long loses its session (its retries can no longer be deduplicated).
pub const SESSION_IDLE_MS_MAX: u64 = 60 * 60 * 1000;
/// Items (expired keys, dropped-namespace keys, idle sessions) one sweep removes.
pub const SWEEP_ITEMS_MAX: u64 = 1_000;
/// How often the leader proposes a sweep.
pub const SWEEP_INTERVAL_MS: u64 = 1_000;

/// Records per sled batch when installing a snapshot: bounds memory on the receiver.
pub const SNAPSHOT_INSTALL_BATCH_RECORDS: usize = 1_000;
/// Bytes of one snapshot piece sent to a follower.
pub const SNAPSHOT_PIECE_BYTES_MAX: u64 = 1024 * 1024;
/// Log bytes appended since the last snapshot that trigger a new one (openraft's own
/// policy counts entries only).
pub const LOG_BYTES_SNAPSHOT_TRIGGER: u64 = 256 * 1024 * 1024;
/// Entries appended since the last snapshot that trigger a new one.
pub const LOG_ENTRIES_SNAPSHOT_TRIGGER: u64 = 10_000;

/// Bytes of one message of a backup stream (`Admin.Backup`).
pub const BACKUP_PIECE_BYTES_MAX: usize = 1024 * 1024;
/// Pieces a backup keeps queued between the node's reader and the gRPC stream:
/// with the piece size, bounds what a backup holds in memory whatever its size.
pub const BACKUP_PIECES_QUEUED_MAX: usize = 4;
/// Backups one node streams at once; another is refused (`unavailable`) until it
/// ends. Each copies the state tree to a file in `snapshots/` first.
pub const BACKUPS_IN_FLIGHT_MAX: usize = 1;
const _: () = assert!(BACKUP_PIECE_BYTES_MAX * 2 < GRPC_MESSAGE_BYTES_MAX);
/// Longest a backup waits for its client to take the next piece; a client that
/// stalls longer (alive, but not reading) loses the stream and frees the slot.
pub const BACKUP_CLIENT_STALL_MS_MAX: u64 = 60_000;

/// Attempts the SDK makes for one call (leader changes, transport errors).
pub const CLIENT_RETRIES_MAX: u32 = 30;
/// Backoff between SDK attempts: starts here and doubles up to the cap.
pub const CLIENT_BACKOFF_MS_MIN: u64 = 20;
pub const CLIENT_BACKOFF_MS_MAX: u64 = 500;
/// Default deadline for one SDK call, retries included.
pub const CLIENT_CALL_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Writes one SDK client keeps in flight; stays below the session window.
pub const CLIENT_INFLIGHT_WRITES_MAX: usize = 512;
const _: () = assert!((CLIENT_INFLIGHT_WRITES_MAX as u64) < SESSION_WINDOW_SEQS_MAX);

/// Time a node waits for in-flight requests after SIGTERM before it stops.
pub const SHUTDOWN_GRACE_MS_MAX: u64 = 5_000;

/// Limits the operator may change in the config file (`[limits]`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub kv_key_bytes_max: u64,
    pub kv_value_bytes_max: u64,
    pub name_chars_max: u64,
    pub namespaces_max: u64,
    pub queue_message_bytes_max: u64,
    pub queues_max: u64,
}

/// Ceiling for configured key and value limits: a command must fit one Raft entry
/// batch, which sled keeps inline (see `disk.rs`).
pub const KV_ENTRY_BYTES_CEILING: u64 = 1024 * 1024;
const _: () = assert!(KV_ENTRY_BYTES_CEILING as usize <= BATCH_BYTES_MAX);

impl Limits {
    /// Refuses limits the storage cannot honour, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        for (field, value) in [
            ("kv_key_bytes_max", self.kv_key_bytes_max),
            ("kv_value_bytes_max", self.kv_value_bytes_max),
        ] {
            if value == 0 || value > KV_ENTRY_BYTES_CEILING {
                return Err(format!(
                    "limits.{field} is {value}; it must be 1..={KV_ENTRY_BYTES_CEILING}"
                ));
            }
        }
        if self.kv_key_bytes_max + self.kv_value_bytes_max > KV_ENTRY_BYTES_CEILING {
            return Err(format!(
                "limits.kv_key_bytes_max + limits.kv_value_bytes_max must not exceed {KV_ENTRY_BYTES_CEILING}"
            ));
        }
        let message_max = self.queue_message_bytes_max;
        if message_max == 0 || message_max > KV_ENTRY_BYTES_CEILING {
            return Err(format!("limits.queue_message_bytes_max is {message_max}; it must be 1..={KV_ENTRY_BYTES_CEILING}"));
        }
        if self.name_chars_max == 0 || self.name_chars_max > 1024 {
            return Err(format!(
                "limits.name_chars_max is {}; it must be 1..=1024",
                self.name_chars_max
            ));
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            kv_key_bytes_max: KV_KEY_BYTES_MAX,
            kv_value_bytes_max: KV_VALUE_BYTES_MAX,
            name_chars_max: NAME_CHARS_MAX,
            namespaces_max: NAMESPACES_MAX,
            queue_message_bytes_max: QUEUE_MESSAGE_BYTES_MAX,
            queues_max: QUEUES_MAX,
        }
    }
}
