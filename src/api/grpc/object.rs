//! The `cairn.v1.Object` gRPC service: buckets, streamed puts and gets, listings
//! and presigned URLs. The byte pipelines live in `api::objects`.

use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::convert;
use crate::api::error::ApiError;
use crate::api::gateway::Gateway;
use crate::api::objects::{self, ByteRange, PutHeader};
use crate::proto::v1::{self, object_server::Object};
use crate::state::object::{self, ObjectCommand, ObjectRecord, ObjectResponse};
use crate::state::{ClientCommand, Command, Response as StateResponse, SessionTag, Txn};

pub struct ObjectService {
    gateway: Gateway,
}

impl ObjectService {
    pub fn new(gateway: Gateway) -> Self {
        ObjectService { gateway }
    }

    async fn write(
        &self,
        session: Option<SessionTag>,
        command: ObjectCommand,
    ) -> Result<(StateResponse, u64), ApiError> {
        let command = ClientCommand {
            session,
            command: Command::Object(command),
        };
        let (outcome, log_index) = self.gateway.node.write(command).await?;
        Ok((outcome?, log_index))
    }
}

pub fn object_info(key: &str, record: &ObjectRecord, applied_index: u64) -> v1::ObjectInfo {
    v1::ObjectInfo {
        key: key.to_string(),
        size: record.size,
        etag: record.etag.clone(),
        content_type: record.content_type.clone(),
        last_modified_ms: record.last_modified_ms,
        metadata: record.metadata.clone().into_iter().collect(),
        version: record.version,
        applied_index,
    }
}

fn stored_reply(response: StateResponse, log_index: u64) -> Result<v1::PutObjectReply, ApiError> {
    match response {
        StateResponse::Object(ObjectResponse::Stored { version, etag }) => Ok(v1::PutObjectReply {
            version,
            etag,
            log_index,
            ..Default::default()
        }),
        other => Err(ApiError::Internal(format!("unexpected reply {other:?}"))),
    }
}

fn done_reply(response: StateResponse, log_index: u64) -> v1::WriteReply {
    let existed = matches!(
        response,
        StateResponse::Object(ObjectResponse::Deleted { existed: true })
    );
    v1::WriteReply {
        version: 0,
        existed,
        log_index,
    }
}

type Reply<T> = Result<Response<T>, Status>;
type GetStream = Pin<Box<dyn Stream<Item = Result<v1::GetObjectReply, Status>> + Send>>;

#[tonic::async_trait]
impl Object for ObjectService {
    async fn create_bucket(
        &self,
        request: Request<v1::CreateBucketRequest>,
    ) -> Reply<v1::WriteReply> {
        let r = request.into_inner();
        object::validate_bucket_name(&r.name).map_err(ApiError::from)?;
        let command = ObjectCommand::CreateBucket {
            name: r.name,
            public: r.public,
        };
        let (response, log_index) = self.write(convert::session(r.session), command).await?;
        Ok(Response::new(done_reply(response, log_index)))
    }

    async fn delete_bucket(&self, request: Request<v1::BucketRequest>) -> Reply<v1::WriteReply> {
        let r = request.into_inner();
        let command = ObjectCommand::DeleteBucket { name: r.name };
        let (response, log_index) = self.write(convert::session(r.session), command).await?;
        Ok(Response::new(done_reply(response, log_index)))
    }

    async fn list_buckets(
        &self,
        request: Request<v1::ListBucketsRequest>,
    ) -> Reply<v1::ListBucketsReply> {
        let consistency = convert::consistency(request.into_inner().consistency)?;
        let node = &self.gateway.node;
        let applied_index = node
            .read_barrier(consistency)
            .await
            .map_err(ApiError::from)?;
        let buckets = object::list_buckets(node.store.tree())
            .map_err(ApiError::from)?
            .into_iter()
            .map(|(name, b)| v1::BucketInfo {
                name,
                public: b.public,
                created_ms: b.created_ms,
            })
            .collect();
        Ok(Response::new(v1::ListBucketsReply {
            buckets,
            applied_index,
        }))
    }

    async fn put(
        &self,
        request: Request<Streaming<v1::PutObjectRequest>>,
    ) -> Reply<v1::PutObjectReply> {
        let mut stream = request.into_inner();
        let header = match stream.next().await {
            Some(Ok(v1::PutObjectRequest {
                part: Some(v1::put_object_request::Part::Header(h)),
            })) => h,
            Some(Err(status)) => return Err(status),
            _ => {
                return Err(ApiError::from(crate::state::Error::invalid(
                    "header",
                    "the first message of a put must carry the header",
                ))
                .into())
            }
        };
        let header = PutHeader {
            session: convert::session(header.session),
            bucket: header.bucket,
            key: header.key,
            content_type: header.content_type,
            metadata: header.metadata.into_iter().collect(),
        };
        let body = stream.map(|message| match message {
            Ok(v1::PutObjectRequest {
                part: Some(v1::put_object_request::Part::Data(data)),
            }) => Ok::<Bytes, ApiError>(data),
            Ok(_) => Err(crate::state::Error::invalid(
                "data",
                "only the first message may carry a header",
            )
            .into()),
            Err(status) => Err(ApiError::Node(crate::raft::NodeError::Unavailable(
                format!("upload stream broke: {}", status.message()),
            ))),
        });
        let gateway = &self.gateway;
        let stored = objects::put(&gateway.node, &gateway.uploads, header, body).await?;
        Ok(Response::new(v1::PutObjectReply {
            version: stored.version,
            etag: stored.etag,
            size: stored.size,
            log_index: stored.log_index,
            chunks_sent: stored.chunks_sent,
            chunks_total: stored.chunks_total,
        }))
    }

    type GetStream = GetStream;

    async fn get(&self, request: Request<v1::GetObjectRequest>) -> Reply<GetStream> {
        let r = request.into_inner();
        let consistency = convert::consistency(r.consistency)?;
        let node = &self.gateway.node;
        let (record, applied_index) = objects::head(node, &r.bucket, &r.key, consistency).await?;
        if r.offset > record.size {
            let what = "offset";
            return Err(ApiError::from(crate::state::Error::limit(
                what,
                record.size,
                r.offset,
                "bytes",
            ))
            .into());
        }
        let length = if r.length == 0 {
            record.size - r.offset
        } else {
            r.length
        };
        let range = ByteRange {
            offset: r.offset,
            length,
        };
        let info = v1::GetObjectReply {
            part: Some(v1::get_object_reply::Part::Info(object_info(
                &r.key,
                &record,
                applied_index,
            ))),
        };
        objects::check_chunks_here(node, &record)?;
        let data = objects::read(node.clone(), &record, range).map(|piece| match piece {
            Ok(data) => Ok(v1::GetObjectReply {
                part: Some(v1::get_object_reply::Part::Data(data)),
            }),
            Err(e) => Err(Status::unavailable(format!(
                "object data is not readable on this node ({e}); retry"
            ))),
        });
        let stream = futures::stream::once(async move { Ok(info) }).chain(data);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn head(&self, request: Request<v1::HeadObjectRequest>) -> Reply<v1::ObjectInfo> {
        let r = request.into_inner();
        let consistency = convert::consistency(r.consistency)?;
        let (record, applied_index) =
            objects::head(&self.gateway.node, &r.bucket, &r.key, consistency).await?;
        Ok(Response::new(object_info(&r.key, &record, applied_index)))
    }

    async fn delete(&self, request: Request<v1::DeleteObjectRequest>) -> Reply<v1::WriteReply> {
        let r = request.into_inner();
        let command = ObjectCommand::Delete {
            bucket: r.bucket,
            key: r.key,
        };
        let (response, log_index) = self.write(convert::session(r.session), command).await?;
        Ok(Response::new(done_reply(response, log_index)))
    }

    async fn copy(&self, request: Request<v1::CopyObjectRequest>) -> Reply<v1::PutObjectReply> {
        let r = request.into_inner();
        let command = ObjectCommand::Copy {
            from_bucket: r.from_bucket,
            from_key: r.from_key,
            to_bucket: r.to_bucket,
            to_key: r.to_key,
        };
        let (response, log_index) = self.write(convert::session(r.session), command).await?;
        Ok(Response::new(stored_reply(response, log_index)?))
    }

    async fn list(&self, request: Request<v1::ListObjectsRequest>) -> Reply<v1::ListObjectsReply> {
        let r = request.into_inner();
        let consistency = convert::consistency(r.consistency)?;
        let node = &self.gateway.node;
        let applied_index = node
            .read_barrier(consistency)
            .await
            .map_err(ApiError::from)?;
        let bucket = object::existing_bucket(&Txn::new(node.store.tree()), &r.bucket)
            .map_err(ApiError::from)?
            .map_err(ApiError::from)?;
        let query = object::ListQuery {
            prefix: &r.prefix,
            delimiter: &r.delimiter,
            after: &r.continuation_token,
            limit: if r.limit == 0 {
                crate::limits::OBJECT_LIST_PAGE_MAX
            } else {
                r.limit
            },
        };
        let listing = object::list(node.store.tree(), bucket.id, &query).map_err(ApiError::from)?;
        Ok(Response::new(v1::ListObjectsReply {
            objects: listing
                .objects
                .iter()
                .map(|(key, record)| object_info(key, record, applied_index))
                .collect(),
            common_prefixes: listing.common_prefixes,
            next_continuation_token: listing.next_after.unwrap_or_default(),
            applied_index,
        }))
    }

    async fn presign(&self, request: Request<v1::PresignRequest>) -> Reply<v1::PresignReply> {
        let r = request.into_inner();
        let method = if r.method.is_empty() {
            "GET"
        } else {
            r.method.as_str()
        };
        let (url, expires_at_s) = self
            .gateway
            .presign(method, &r.bucket, &r.key, r.expires_s)
            .await?;
        Ok(Response::new(v1::PresignReply { url, expires_at_s }))
    }
}
