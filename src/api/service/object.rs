//! The object service, transport-neutral: buckets, puts and ranged gets on the
//! chunk pipeline every service shares (`chunk_upload`, `chunk_read`), deletes,
//! listings, and the URLs of objects (presigned and public). The gRPC service,
//! the `/o/` routes and the REST front call it.
//!
//! A put's body is staged chunk by chunk; only when every chunk is committed is the
//! manifest proposed, and only then does the object exist. A get reads the manifest
//! once, so a reader sees one whole version even while the key is overwritten.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{Stream, StreamExt};
use tokio::sync::Semaphore;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::api::auth;
use crate::api::chunk_read;
pub use crate::api::chunk_read::ByteRange;
pub use crate::api::chunk_upload::upload_budget;
use crate::api::chunk_upload::{self, Keep, Piece};
use crate::api::error::ApiError;
use crate::limits::{OBJECT_BYTES_MAX, OBJECT_LIST_PAGE_MAX, PRESIGN_EXPIRES_S_DEFAULT};
use crate::raft::{Consistency, Node, Route};
use crate::state::object::{
    self, BucketRecord, Listing, ObjectCommand, ObjectRecord, ObjectResponse, PutObject,
};
use crate::state::{self, ClientCommand, Command, Response, SessionTag, Txn};

/// Characters of an object key left as they are in a URL path (RFC 3986
/// unreserved, plus '/' so keys keep their shape).
const KEY_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// The URL path of an object on the HTTP port: `/o/<bucket>/<key>`.
pub fn object_path(bucket: &str, key: &str) -> String {
    format!("/o/{bucket}/{}", utf8_percent_encode(key, KEY_ESCAPES))
}

/// What a put declares before its bytes.
#[derive(Debug, Clone)]
pub struct PutHeader {
    pub session: Option<SessionTag>,
    pub bucket: String,
    pub key: String,
    pub content_type: String,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub version: u64,
    pub etag: String,
    pub size: u64,
    pub log_index: u64,
    pub chunks_sent: u64,
    pub chunks_total: u64,
}

/// Checks a put's header against the limits and the bucket, before any data moves.
fn check_put_header(node: &Node, header: &PutHeader) -> Result<(), ApiError> {
    object::validate_key(&header.key)?;
    object::validate_attributes(&header.content_type, &header.metadata)?;
    object::existing_bucket(&Txn::new(node.store.tree()), &header.bucket)??;
    Ok(())
}

/// What a bucket or delete write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ObjectWritten {
    pub existed: bool,
    pub log_index: u64,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequest {
    pub bucket: String,
    pub prefix: String,
    pub delimiter: String,
    /// List keys strictly after this one ("" = from the start).
    pub after: String,
    /// 0 = `OBJECT_LIST_PAGE_MAX`.
    pub limit: u32,
}

#[derive(Clone)]
pub struct ObjectService {
    pub node: Arc<Node>,
    route: Route,
    /// Chunk bytes in flight for all uploads on this node (shared with files).
    uploads: Arc<Semaphore>,
    /// Base of object URLs, without a trailing slash.
    public_url: String,
    presign_expires_s_max: u64,
}

impl ObjectService {
    pub fn new(
        node: Arc<Node>,
        uploads: Arc<Semaphore>,
        public_url: &str,
        presign_expires_s_max: u64,
    ) -> Self {
        ObjectService {
            node,
            route: Route::Leader,
            uploads,
            public_url: public_url.trim_end_matches('/').to_string(),
            presign_expires_s_max,
        }
    }

    /// The same service with writes on `route`.
    pub fn with_route(&self, route: Route) -> Self {
        ObjectService {
            route,
            ..self.clone()
        }
    }

    async fn write(
        &self,
        session: Option<SessionTag>,
        command: ObjectCommand,
    ) -> Result<(Response, u64), ApiError> {
        let command = ClientCommand {
            session,
            command: Command::Object(command),
        };
        let (outcome, log_index) = self.node.submit(command, self.route, false).await?;
        Ok((outcome?, log_index))
    }

    fn written(response: Response, log_index: u64) -> ObjectWritten {
        let existed = matches!(
            response,
            Response::Object(ObjectResponse::Deleted { existed: true })
        );
        ObjectWritten { existed, log_index }
    }

    pub async fn create_bucket(
        &self,
        session: Option<SessionTag>,
        name: String,
        public: bool,
    ) -> Result<ObjectWritten, ApiError> {
        object::validate_bucket_name(&name)?;
        let (response, log_index) = self
            .write(session, ObjectCommand::CreateBucket { name, public })
            .await?;
        Ok(Self::written(response, log_index))
    }

    pub async fn delete_bucket(
        &self,
        session: Option<SessionTag>,
        name: String,
    ) -> Result<ObjectWritten, ApiError> {
        let (response, log_index) = self
            .write(session, ObjectCommand::DeleteBucket { name })
            .await?;
        Ok(Self::written(response, log_index))
    }

    pub async fn list_buckets(
        &self,
        consistency: Consistency,
    ) -> Result<(Vec<(String, BucketRecord)>, u64), ApiError> {
        let applied_index = self.node.read_barrier(consistency).await?;
        Ok((object::list_buckets(self.node.store.tree())?, applied_index))
    }

    /// The bucket `name` as this node's state knows it.
    pub fn bucket(&self, name: &str) -> Result<BucketRecord, ApiError> {
        Ok(object::existing_bucket(
            &Txn::new(self.node.store.tree()),
            name,
        )??)
    }

    /// Streams `body` into the cluster as `header.bucket/header.key`. Returns once
    /// the manifest is committed; on any error nothing becomes visible.
    pub async fn put<S>(&self, header: PutHeader, body: S) -> Result<Stored, ApiError>
    where
        S: Stream<Item = Result<Bytes, ApiError>> + Unpin,
    {
        let node = &self.node;
        node.check_route(self.route)?;
        check_put_header(node, &header)?;
        let body = body.map(|piece| piece.map(Piece::Data));
        let staged = chunk_upload::stage(
            (node, self.route),
            &self.uploads,
            body,
            ("object", OBJECT_BYTES_MAX),
            Keep::Nothing,
        )
        .await?;
        let chunks_total = staged.chunks.len() as u64;
        let size = staged.size;
        let put = PutObject {
            bucket: header.bucket,
            key: header.key,
            chunks: staged.chunks,
            size,
            etag: staged
                .content_hash
                .ok_or_else(|| ApiError::Internal("object bodies are all data".into()))?,
            content_type: header.content_type,
            metadata: header.metadata,
        };
        let (response, log_index) = self
            .write(header.session, ObjectCommand::Put(Box::new(put)))
            .await?;
        match response {
            Response::Object(ObjectResponse::Stored { version, etag }) => Ok(Stored {
                version,
                etag,
                size,
                log_index,
                chunks_sent: staged.chunks_sent,
                chunks_total,
            }),
            other => Err(ApiError::Internal(format!(
                "unexpected put reply {other:?}"
            ))),
        }
    }

    /// The manifest of `bucket/key` after the `consistency` barrier, and the
    /// applied index it reflects.
    pub async fn head(
        &self,
        bucket: &str,
        key: &str,
        consistency: Consistency,
    ) -> Result<(ObjectRecord, u64), ApiError> {
        let node = &self.node;
        let applied_index = node.read_barrier(consistency).await?;
        let txn = Txn::new(node.store.tree());
        object::existing_bucket(&txn, bucket)??;
        match object::object(&txn, bucket, key)? {
            Some(record) => Ok((record, applied_index)),
            None => Err(state::Error::NotFound {
                what: format!("object {bucket}/{key}"),
            }
            .into()),
        }
    }

    /// Refuses (UNAVAILABLE) to serve an object whose chunk files this node does
    /// not hold yet.
    pub fn check_chunks_here(&self, record: &ObjectRecord) -> Result<(), ApiError> {
        chunk_read::check_chunks_here(&self.node, &record.chunks)
    }

    /// The bytes `range` of the object `record`, chunk by chunk from this node's
    /// files.
    pub fn read(
        &self,
        record: &ObjectRecord,
        range: ByteRange,
    ) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        chunk_read::read(
            self.node.clone(),
            &chunk_read::contiguous(&record.chunks),
            record.size,
            range,
        )
    }

    /// Deletes `bucket/key`; deleting a missing key is not an error (`existed`
    /// says which it was).
    pub async fn delete(
        &self,
        session: Option<SessionTag>,
        bucket: String,
        key: String,
    ) -> Result<ObjectWritten, ApiError> {
        let (response, log_index) = self
            .write(session, ObjectCommand::Delete { bucket, key })
            .await?;
        Ok(Self::written(response, log_index))
    }

    /// Copies an object's manifest (no bytes move).
    pub async fn copy(
        &self,
        session: Option<SessionTag>,
        (from_bucket, from_key): (String, String),
        (to_bucket, to_key): (String, String),
    ) -> Result<(String, u64, u64), ApiError> {
        let command = ObjectCommand::Copy {
            from_bucket,
            from_key,
            to_bucket,
            to_key,
        };
        match self.write(session, command).await? {
            (Response::Object(ObjectResponse::Stored { version, etag }), log_index) => {
                Ok((etag, version, log_index))
            }
            (other, _) => Err(ApiError::Internal(format!("unexpected reply {other:?}"))),
        }
    }

    /// One page of the objects of a bucket.
    pub async fn list(
        &self,
        request: &ListRequest,
        consistency: Consistency,
    ) -> Result<(Listing, u64), ApiError> {
        let node = &self.node;
        let applied_index = node.read_barrier(consistency).await?;
        let bucket = self.bucket(&request.bucket)?;
        let query = object::ListQuery {
            prefix: &request.prefix,
            delimiter: &request.delimiter,
            after: &request.after,
            limit: if request.limit == 0 {
                OBJECT_LIST_PAGE_MAX
            } else {
                request.limit
            },
        };
        Ok((
            object::list(node.store.tree(), bucket.id, &query)?,
            applied_index,
        ))
    }

    /// A URL that allows `method` on `bucket/key` for `expires_s` seconds (0 =
    /// the default 900 s). Returns the URL and its expiry in Unix seconds.
    pub async fn presign(
        &self,
        method: &str,
        bucket: &str,
        key: &str,
        expires_s: u64,
    ) -> Result<(String, u64), ApiError> {
        if method != "GET" && method != "PUT" {
            return Err(state::Error::invalid("method", "must be GET or PUT").into());
        }
        object::validate_key(key)?;
        let expires_s = if expires_s == 0 {
            PRESIGN_EXPIRES_S_DEFAULT
        } else {
            expires_s
        };
        if expires_s > self.presign_expires_s_max {
            let max = self.presign_expires_s_max;
            return Err(state::Error::limit("expires_s", max, expires_s, "seconds").into());
        }
        let secret = auth::presign_secret(&self.node, self.route).await?;
        let expires_at_s = crate::clock::now_ms() / 1000 + expires_s;
        let signature = auth::sign(&secret, method, bucket, key, expires_at_s);
        let url = format!(
            "{}{}?expires={expires_at_s}&signature={signature}",
            self.public_url,
            object_path(bucket, key)
        );
        Ok((url, expires_at_s))
    }

    /// The permanent URL of an object in a public bucket.
    pub fn public_object_url(&self, bucket: &str, key: &str) -> String {
        format!("{}{}", self.public_url, object_path(bucket, key))
    }
}
