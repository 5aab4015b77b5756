//! API tokens and the presigning secret, replicated so every node checks the same.
//!
//! A token is stored only as its BLAKE3 hash (`A<id>` → `TokenRecord`); the plain
//! token is shown once, when created. The presigning secret is created once, by the
//! first node that needs one, and never changes afterwards (so URLs signed on any
//! node verify on every node).

use serde::{Deserialize, Serialize};

use super::{decode, encode, keys, meta_u64, ApplyContext, Error, Txn};
use crate::chunk_ref::Hash;
use crate::limits::TOKENS_MAX;

const META_NEXT_TOKEN_ID: &str = "token_next_id";
const META_PRESIGN_SECRET: &str = "presign_secret";
const TOKEN_NAME_BYTES_MAX: u64 = 128;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AuthCommand {
    CreateToken {
        name: String,
        token_hash: Hash,
    },
    /// Succeeds whether or not the token exists.
    RevokeToken {
        id: u64,
    },
    /// Stores `secret` unless a secret already exists; answers the stored one.
    EnsurePresignSecret {
        secret: [u8; 32],
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthResponse {
    TokenCreated { id: u64 },
    TokenRevoked { existed: bool },
    PresignSecret([u8; 32]),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub name: String,
    pub token_hash: Hash,
    pub created_ms: u64,
}

pub fn apply(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    command: &AuthCommand,
) -> sled::Result<Result<AuthResponse, Error>> {
    match command {
        AuthCommand::CreateToken { name, token_hash } => {
            let len = name.len() as u64;
            if len > TOKEN_NAME_BYTES_MAX {
                return Ok(Err(Error::limit(
                    "name",
                    TOKEN_NAME_BYTES_MAX,
                    len,
                    "bytes",
                )));
            }
            let count = txn.scan_prefix(&[keys::TOKEN], TOKENS_MAX as usize)?.len() as u64;
            if count >= TOKENS_MAX {
                return Ok(Err(Error::limit("tokens", TOKENS_MAX, count + 1, "tokens")));
            }
            let id = meta_u64(txn, META_NEXT_TOKEN_ID)?.max(1);
            txn.put(keys::meta(META_NEXT_TOKEN_ID), encode(&(id + 1)));
            let record = TokenRecord {
                name: name.clone(),
                token_hash: *token_hash,
                created_ms: ctx.now_ms,
            };
            txn.put(keys::token(id), encode(&record));
            Ok(Ok(AuthResponse::TokenCreated { id }))
        }
        AuthCommand::RevokeToken { id } => {
            let existed = txn.get(&keys::token(*id))?.is_some();
            txn.remove(keys::token(*id));
            Ok(Ok(AuthResponse::TokenRevoked { existed }))
        }
        AuthCommand::EnsurePresignSecret { secret } => {
            let key = keys::meta(META_PRESIGN_SECRET);
            let stored = match txn.get(&key)? {
                Some(bytes) => decode(&bytes)?,
                None => {
                    txn.put(key, encode(secret));
                    *secret
                }
            };
            Ok(Ok(AuthResponse::PresignSecret(stored)))
        }
    }
}

/// Every stored token, by id.
pub fn tokens(tree: &sled::Tree) -> sled::Result<Vec<(u64, TokenRecord)>> {
    let mut out = Vec::new();
    for item in tree.scan_prefix([keys::TOKEN]).take(TOKENS_MAX as usize) {
        let (key, value) = item?;
        out.push((keys::u64_at(&key, 1).unwrap_or(0), decode(&value)?));
    }
    Ok(out)
}

/// Whether `token_hash` is a stored token. Tokens are few (`TOKENS_MAX`).
pub fn token_known(tree: &sled::Tree, token_hash: &Hash) -> sled::Result<bool> {
    for item in tree.scan_prefix([keys::TOKEN]).take(TOKENS_MAX as usize) {
        let (_, value) = item?;
        let record: TokenRecord = decode(&value)?;
        if &record.token_hash == token_hash {
            return Ok(true);
        }
    }
    Ok(false)
}

pub fn any_token(tree: &sled::Tree) -> sled::Result<bool> {
    Ok(tree
        .scan_prefix([keys::TOKEN])
        .next()
        .transpose()?
        .is_some())
}

pub fn presign_secret(tree: &sled::Tree) -> sled::Result<Option<[u8; 32]>> {
    tree.get(keys::meta(META_PRESIGN_SECRET))?
        .map(|b| decode(&b))
        .transpose()
}
