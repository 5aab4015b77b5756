//! The `cairn.v1.Object` gRPC service: converts messages to and from the object
//! service (`api::service::object`), which does the work.

use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::convert;
use crate::api::error::ApiError;
use crate::api::service::object::{
    ByteRange, ListRequest, ObjectService, ObjectWritten, PutHeader,
};
use crate::proto::v1::{self, object_server::Object};
use crate::state::object::ObjectRecord;

pub struct ObjectGrpc {
    objects: ObjectService,
}

impl ObjectGrpc {
    pub fn new(objects: ObjectService) -> Self {
        ObjectGrpc { objects }
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

fn written(w: ObjectWritten) -> Response<v1::WriteReply> {
    Response::new(v1::WriteReply {
        version: 0,
        existed: w.existed,
        log_index: w.log_index,
    })
}

type Reply<T> = Result<Response<T>, Status>;
type GetStream = Pin<Box<dyn Stream<Item = Result<v1::GetObjectReply, Status>> + Send>>;

#[tonic::async_trait]
impl Object for ObjectGrpc {
    async fn create_bucket(
        &self,
        request: Request<v1::CreateBucketRequest>,
    ) -> Reply<v1::WriteReply> {
        let r = request.into_inner();
        let done = self
            .objects
            .create_bucket(convert::session(r.session), r.name, r.public)
            .await?;
        Ok(written(done))
    }

    async fn delete_bucket(&self, request: Request<v1::BucketRequest>) -> Reply<v1::WriteReply> {
        let r = request.into_inner();
        let done = self
            .objects
            .delete_bucket(convert::session(r.session), r.name)
            .await?;
        Ok(written(done))
    }

    async fn list_buckets(
        &self,
        request: Request<v1::ListBucketsRequest>,
    ) -> Reply<v1::ListBucketsReply> {
        let consistency = convert::consistency(request.into_inner().consistency)?;
        let (buckets, applied_index) = self.objects.list_buckets(consistency).await?;
        let buckets = buckets
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
        let stored = self.objects.put(header, body).await?;
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
        let (record, applied_index) = self.objects.head(&r.bucket, &r.key, consistency).await?;
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
        self.objects.check_chunks_here(&record)?;
        let data = self.objects.read(&record, range).map(|piece| match piece {
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
        let (record, applied_index) = self.objects.head(&r.bucket, &r.key, consistency).await?;
        Ok(Response::new(object_info(&r.key, &record, applied_index)))
    }

    async fn delete(&self, request: Request<v1::DeleteObjectRequest>) -> Reply<v1::WriteReply> {
        let r = request.into_inner();
        let done = self
            .objects
            .delete(convert::session(r.session), r.bucket, r.key)
            .await?;
        Ok(written(done))
    }

    async fn copy(&self, request: Request<v1::CopyObjectRequest>) -> Reply<v1::PutObjectReply> {
        let r = request.into_inner();
        let (etag, version, log_index) = self
            .objects
            .copy(
                convert::session(r.session),
                (r.from_bucket, r.from_key),
                (r.to_bucket, r.to_key),
            )
            .await?;
        Ok(Response::new(v1::PutObjectReply {
            version,
            etag,
            log_index,
            ..Default::default()
        }))
    }

    async fn list(&self, request: Request<v1::ListObjectsRequest>) -> Reply<v1::ListObjectsReply> {
        let r = request.into_inner();
        let consistency = convert::consistency(r.consistency)?;
        let query = ListRequest {
            bucket: r.bucket,
            prefix: r.prefix,
            delimiter: r.delimiter,
            after: r.continuation_token,
            limit: r.limit,
        };
        let (listing, applied_index) = self.objects.list(&query, consistency).await?;
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
            .objects
            .presign(method, &r.bucket, &r.key, r.expires_s)
            .await?;
        Ok(Response::new(v1::PresignReply { url, expires_at_s }))
    }
}
