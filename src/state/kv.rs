//! The key-value service: namespaces of keys with versions, CAS and TTL.
//!
//! Owns KV commands (validated on the leader against `Limits`, applied on every
//! replica) and KV reads. A value's version is the `ApplyContext::version` of the
//! write that produced it. A key whose `expires_at_ms` has passed is invisible at
//! once (reads compare with the reader's clock, writes with the leader-stamped
//! `now_ms`) and is purged later by the sweeper. Deleting a namespace hides its keys
//! at once (they hang off its numeric id) and leaves the purge to the sweeper.

use serde::{Deserialize, Serialize};

use super::{decode, encode, keys, meta_u64, ApplyContext, Error, ReadError, Txn};
use crate::limits::{Limits, KV_TTL_MS_MAX, LIST_PAGE_KEYS_DEFAULT, LIST_PAGE_KEYS_MAX};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum KvCommand {
    CreateNamespace {
        name: String,
        /// Stamped by the leader from its config, so every replica enforces the same limit.
        namespaces_max: u64,
    },
    DeleteNamespace {
        name: String,
    },
    Put {
        namespace: String,
        key: Vec<u8>,
        value: Vec<u8>,
        condition: PutCondition,
        /// 0 means no expiry.
        ttl_ms: u64,
    },
    Delete {
        namespace: String,
        key: Vec<u8>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PutCondition {
    Always,
    IfVersion(u64),
    IfAbsent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvResponse {
    Created,
    Put { version: u64 },
    Deleted { existed: bool },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceRecord {
    pub id: u64,
    pub created_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueRecord {
    pub value: Vec<u8>,
    pub version: u64,
    /// 0 means never.
    pub expires_at_ms: u64,
}

impl ValueRecord {
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.expires_at_ms == 0 || self.expires_at_ms > now_ms
    }
}

const META_NEXT_NAMESPACE_ID: &str = "next_namespace_id";
const META_NAMESPACE_COUNT: &str = "namespace_count";

/// Checks a name against `[A-Za-z0-9._-]{1,name_chars_max}`.
pub fn validate_name(field: &str, name: &str, limits: &Limits) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    let chars = name.chars().count() as u64;
    if chars > limits.name_chars_max {
        return Err(Error::limit(
            field,
            limits.name_chars_max,
            chars,
            "characters",
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !name.chars().all(allowed) {
        return Err(Error::invalid(
            field,
            "only A-Z, a-z, 0-9, '.', '_' and '-' are allowed",
        ));
    }
    Ok(())
}

pub fn validate_key(key: &[u8], limits: &Limits) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::invalid("key", "must not be empty"));
    }
    if key.len() as u64 > limits.kv_key_bytes_max {
        return Err(Error::limit(
            "key",
            limits.kv_key_bytes_max,
            key.len() as u64,
            "bytes",
        ));
    }
    Ok(())
}

impl KvCommand {
    /// Leader-side checks of client input; a rejected command is never proposed.
    pub fn validate(&self, limits: &Limits) -> Result<(), Error> {
        match self {
            KvCommand::CreateNamespace { name, .. } | KvCommand::DeleteNamespace { name } => {
                validate_name("namespace", name, limits)
            }
            KvCommand::Put {
                namespace,
                key,
                value,
                ttl_ms,
                ..
            } => {
                validate_name("namespace", namespace, limits)?;
                validate_key(key, limits)?;
                if value.len() as u64 > limits.kv_value_bytes_max {
                    return Err(Error::limit(
                        "value",
                        limits.kv_value_bytes_max,
                        value.len() as u64,
                        "bytes",
                    ));
                }
                if *ttl_ms > KV_TTL_MS_MAX {
                    return Err(Error::limit("ttl_ms", KV_TTL_MS_MAX, *ttl_ms, "ms"));
                }
                Ok(())
            }
            KvCommand::Delete { namespace, key } => {
                validate_name("namespace", namespace, limits)?;
                validate_key(key, limits)
            }
        }
    }
}

pub fn apply(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    cmd: &KvCommand,
) -> sled::Result<Result<KvResponse, Error>> {
    match cmd {
        KvCommand::CreateNamespace {
            name,
            namespaces_max,
        } => create_namespace(txn, ctx, name, *namespaces_max),
        KvCommand::DeleteNamespace { name } => delete_namespace(txn, name),
        KvCommand::Put {
            namespace,
            key,
            value,
            condition,
            ttl_ms,
        } => {
            let Some(ns) = namespace_in(txn, namespace)? else {
                return Ok(Err(namespace_not_found(namespace)));
            };
            put(txn, ctx, ns.id, key, value, *condition, *ttl_ms)
        }
        KvCommand::Delete { namespace, key } => {
            let Some(ns) = namespace_in(txn, namespace)? else {
                return Ok(Err(namespace_not_found(namespace)));
            };
            delete(txn, ctx, ns.id, key)
        }
    }
}

fn namespace_not_found(name: &str) -> Error {
    Error::NotFound {
        what: format!("namespace {name:?}"),
    }
}

fn namespace_in(txn: &Txn<'_>, name: &str) -> sled::Result<Option<NamespaceRecord>> {
    txn.get(&keys::namespace(name))?
        .map(|b| decode(&b))
        .transpose()
}

fn create_namespace(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    name: &str,
    namespaces_max: u64,
) -> sled::Result<Result<KvResponse, Error>> {
    if namespace_in(txn, name)?.is_some() {
        return Ok(Err(Error::AlreadyExists {
            what: format!("namespace {name:?}"),
        }));
    }
    let count = meta_u64(txn, META_NAMESPACE_COUNT)?;
    if count >= namespaces_max {
        return Ok(Err(Error::limit(
            "namespaces",
            namespaces_max,
            count + 1,
            "namespaces",
        )));
    }
    // Ids start at 1 and are never reused, so a re-created namespace never sees
    // the not-yet-purged keys of its predecessor.
    let id = meta_u64(txn, META_NEXT_NAMESPACE_ID)?.max(1);
    txn.put(keys::meta(META_NEXT_NAMESPACE_ID), encode(&(id + 1)));
    txn.put(keys::meta(META_NAMESPACE_COUNT), encode(&(count + 1)));
    let record = NamespaceRecord {
        id,
        created_ms: ctx.now_ms,
    };
    txn.put(keys::namespace(name), encode(&record));
    Ok(Ok(KvResponse::Created))
}

fn delete_namespace(txn: &mut Txn<'_>, name: &str) -> sled::Result<Result<KvResponse, Error>> {
    let Some(ns) = namespace_in(txn, name)? else {
        return Ok(Err(namespace_not_found(name)));
    };
    let count = meta_u64(txn, META_NAMESPACE_COUNT)?;
    txn.put(
        keys::meta(META_NAMESPACE_COUNT),
        encode(&super::decrement(count, 1, "namespaces")),
    );
    txn.remove(keys::namespace(name));
    txn.put(keys::dropped(ns.id), Vec::new());
    Ok(Ok(KvResponse::Deleted { existed: true }))
}

fn live_value(
    txn: &Txn<'_>,
    now_ms: u64,
    ns_id: u64,
    key: &[u8],
) -> sled::Result<Option<ValueRecord>> {
    let current = txn
        .get(&keys::kv(ns_id, key))?
        .map(|b| decode::<ValueRecord>(&b))
        .transpose()?;
    Ok(current.filter(|r| r.is_live(now_ms)))
}

fn put(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    ns_id: u64,
    key: &[u8],
    value: &[u8],
    condition: PutCondition,
    ttl_ms: u64,
) -> sled::Result<Result<KvResponse, Error>> {
    let current = live_value(txn, ctx.now_ms, ns_id, key)?;
    let current_version = current.as_ref().map(|r| r.version);
    let allowed = match condition {
        PutCondition::Always => true,
        PutCondition::IfAbsent => current.is_none(),
        PutCondition::IfVersion(v) => current_version == Some(v),
    };
    if !allowed {
        let expected = match condition {
            PutCondition::IfVersion(v) => Some(v),
            _ => None,
        };
        return Ok(Err(Error::VersionMismatch {
            expected,
            current: current_version,
        }));
    }
    remove_ttl_entry(txn, ns_id, key)?;
    let expires_at_ms = if ttl_ms == 0 {
        0
    } else {
        ctx.now_ms.saturating_add(ttl_ms)
    };
    if expires_at_ms != 0 {
        txn.put(keys::ttl(expires_at_ms, ns_id, key), Vec::new());
    }
    let record = ValueRecord {
        value: value.to_vec(),
        version: ctx.version(),
        expires_at_ms,
    };
    txn.put(keys::kv(ns_id, key), encode(&record));
    Ok(Ok(KvResponse::Put {
        version: record.version,
    }))
}

/// Drops the TTL index entry of the stored (possibly expired) value, if any.
fn remove_ttl_entry(txn: &mut Txn<'_>, ns_id: u64, key: &[u8]) -> sled::Result<()> {
    if let Some(bytes) = txn.get(&keys::kv(ns_id, key))? {
        let old: ValueRecord = decode(&bytes)?;
        if old.expires_at_ms != 0 {
            txn.remove(keys::ttl(old.expires_at_ms, ns_id, key));
        }
    }
    Ok(())
}

fn delete(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    ns_id: u64,
    key: &[u8],
) -> sled::Result<Result<KvResponse, Error>> {
    let existed = live_value(txn, ctx.now_ms, ns_id, key)?.is_some();
    remove_ttl_entry(txn, ns_id, key)?;
    txn.remove(keys::kv(ns_id, key));
    Ok(Ok(KvResponse::Deleted { existed }))
}

// ---- reads (served from local state; the caller decides the consistency) ----

pub struct NamespaceInfo {
    pub name: String,
    pub created_ms: u64,
}

fn namespace_record(tree: &sled::Tree, name: &str) -> Result<NamespaceRecord, ReadError> {
    match tree.get(keys::namespace(name))? {
        Some(bytes) => Ok(decode(&bytes)?),
        None => Err(namespace_not_found(name).into()),
    }
}

pub fn get_namespace(tree: &sled::Tree, name: &str) -> Result<NamespaceInfo, ReadError> {
    let record = namespace_record(tree, name)?;
    Ok(NamespaceInfo {
        name: name.to_string(),
        created_ms: record.created_ms,
    })
}

pub fn list_namespaces(tree: &sled::Tree) -> Result<Vec<NamespaceInfo>, ReadError> {
    let mut out = Vec::new();
    for item in tree.scan_prefix([keys::NAMESPACE]) {
        let (key, value) = item?;
        let record: NamespaceRecord = decode(&value)?;
        let name = String::from_utf8_lossy(&key[1..]).into_owned();
        out.push(NamespaceInfo {
            name,
            created_ms: record.created_ms,
        });
    }
    Ok(out)
}

pub fn get(
    tree: &sled::Tree,
    now_ms: u64,
    namespace: &str,
    key: &[u8],
) -> Result<Option<ValueRecord>, ReadError> {
    let ns = namespace_record(tree, namespace)?;
    let record = tree
        .get(keys::kv(ns.id, key))?
        .map(|b| decode::<ValueRecord>(&b))
        .transpose()?;
    Ok(record.filter(|r| r.is_live(now_ms)))
}

pub struct KeyPage {
    pub keys: Vec<Vec<u8>>,
    /// Empty when nothing is left.
    pub next_cursor: String,
}

/// Every namespace with the number of keys it stores (expired keys the
/// sweeper has not removed yet included). Reads every key: callers cache it
/// (`/metrics` does).
pub fn key_counts(tree: &sled::Tree) -> Result<Vec<(String, u64)>, ReadError> {
    let mut out = Vec::new();
    for item in tree.scan_prefix([keys::NAMESPACE]) {
        let (key, value) = item?;
        let record: NamespaceRecord = decode(&value)?;
        let name = String::from_utf8_lossy(&key[1..]).into_owned();
        let mut count = 0u64;
        for key in tree.scan_prefix(keys::kv_prefix(record.id)).keys() {
            key?;
            count += 1;
        }
        out.push((name, count));
    }
    Ok(out)
}

/// Lists live keys starting with `prefix`, after `cursor` (hex of the last key of
/// the previous page), at most `limit` (clamped to `LIST_PAGE_KEYS_MAX`).
pub fn list_keys(
    tree: &sled::Tree,
    now_ms: u64,
    namespace: &str,
    prefix: &[u8],
    cursor: &str,
    limit: u32,
) -> Result<KeyPage, ReadError> {
    let ns = namespace_record(tree, namespace)?;
    let limit = match limit {
        0 => LIST_PAGE_KEYS_DEFAULT,
        n => n.min(LIST_PAGE_KEYS_MAX),
    } as usize;
    let scan_prefix = keys::kv(ns.id, prefix);
    let start = if cursor.is_empty() {
        scan_prefix.clone()
    } else {
        let after = hex::decode(cursor)
            .map_err(|_| Error::invalid("cursor", "not a cursor this server issued"))?;
        let mut start = keys::kv(ns.id, &after);
        start.push(0); // the smallest key strictly after `after`
        start
    };
    let mut page = Vec::with_capacity(limit.min(1024));
    let mut more = false;
    for item in tree.range(start..) {
        let (key, value) = item?;
        if !key.starts_with(&scan_prefix) {
            break;
        }
        if !decode::<ValueRecord>(&value)?.is_live(now_ms) {
            continue;
        }
        if page.len() == limit {
            more = true;
            break;
        }
        page.push(keys::kv_user_key(&key).to_vec());
    }
    let next_cursor = match (more, page.last()) {
        (true, Some(last)) => hex::encode(last),
        _ => String::new(),
    };
    Ok(KeyPage {
        keys: page,
        next_cursor,
    })
}
