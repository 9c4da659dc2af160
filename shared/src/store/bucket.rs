//! S3: the multipart upload, the buffered chunks, and the final object.
//!
//! Bodies are sent with unsigned payloads: signing would hash every byte with SHA-256 on top of the MD5 the
//! protocol needs, while TLS and the CRC64NVME each part and chunk carries (which S3 verifies) already protect them.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::upload_part::builders::UploadPartFluentBuilder;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier,
    StorageClass,
};
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use http_body::{Body, Frame, SizeHint};

use super::ledger::{BufferChain, BufferedChunk, Listed};
use super::{describe, unavailable};
use crate::checksum::Crc64;
use crate::error::ApiError;
use crate::protocol::ObjectKey;

#[derive(Clone)]
pub struct Bucket {
    client: Client,
    name: String,
    /// What the client signs with, for presigned URLs (`signer`).
    credentials: Option<SharedCredentialsProvider>,
}

/// Why a completion did not go through.
pub enum CompleteFailure {
    /// A recorded ETag no longer matches the part in S3: never complete with bytes nobody accepted.
    InvalidPart,
    /// The multipart upload is gone: completed already, or aborted.
    NoSuchUpload,
    /// The parts' bytes do not make the full-object CRC64NVME the completion declared.
    BadDigest,
    /// The completion was sent and S3 had not answered when its time was up: S3 may still be assembling the object,
    /// or may have finished. (A connection that failed is `Other`: sending it again is how SDKs recover.)
    Unanswered,
    Other(ApiError),
}

/// A part as CompleteMultipartUpload names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub number: u32,
    pub etag: String,
}

/// A part as S3 holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldPart {
    pub number: u32,
    pub etag: String,
    pub size: u64,
    /// The CRC64NVME S3 checked the part against; every part of an upload created since the checksum is.
    pub crc64: Option<Crc64>,
}

/// A completed object: its ETag and the full-object CRC64NVME S3 computed (S3's base64 form).
pub struct Finished {
    pub etag: String,
    pub crc64: String,
}

/// The credentials presigned URLs are signed with, and how long they still live, if that is known.
pub struct Signer {
    credentials: Credentials,
    pub left: Option<Duration>,
}

/// A presigned request: what a client sends to S3 itself.
pub struct Presigned {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

fn code<E: ProvideErrorMetadata>(err: &SdkError<E>) -> Option<&str> {
    err.as_service_error().and_then(ProvideErrorMetadata::code)
}

impl Bucket {
    pub fn new(client: Client, name: String, credentials: Option<SharedCredentialsProvider>) -> Self {
        Bucket { client, name, credentials }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    /// Starts the multipart upload of a final object; the only way to name one, so only by an [`ObjectKey`]. Each
    /// part carries its CRC64NVME, and S3 combines them into the object's (`FULL_OBJECT`), which a completion may
    /// declare for S3 to check.
    pub async fn create_multipart(
        &self,
        key: &ObjectKey,
        content_type: &str,
        content_disposition: &str,
        storage_class: &str,
    ) -> Result<String, ApiError> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.name)
            .key(key.as_str())
            .content_type(content_type)
            .content_disposition(content_disposition)
            .storage_class(StorageClass::from(storage_class))
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .checksum_type(ChecksumType::FullObject)
            .send()
            .await
            .map_err(|e| unavailable("CreateMultipartUpload", &e))?;
        out.upload_id.ok_or_else(|| ApiError::Unavailable("CreateMultipartUpload returned no id".into()))
    }

    /// Buffers a chunk under `{prefix}{chunk name}`, `chain` being the buffer chain with it; S3 checks its bytes
    /// against the CRC64NVME the name carries. Returns the key.
    pub async fn put_buffered(
        &self,
        prefix: &str,
        chunk: BufferedChunk,
        chain: BufferChain,
        data: Bytes,
    ) -> Result<String, ApiError> {
        let key = format!("{prefix}{}", chunk.name(chain));
        self.put_checked(&key, Crc64(chunk.crc64), data).await?;
        Ok(key)
    }

    /// Stores bytes that S3 checks against their CRC64NVME.
    pub async fn put_checked(&self, key: &str, crc: Crc64, data: Bytes) -> Result<(), ApiError> {
        self.client
            .put_object()
            .bucket(&self.name)
            .key(key)
            .checksum_crc64_nvme(crc.to_base64())
            .body(ByteStream::from(data))
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| unavailable("PutObject", &e))?;
        Ok(())
    }

    /// The buffered chunks under `prefix` that start at or after `from` and before `below`, in upload order: those of
    /// the part being gathered, and leftovers of requests that lost a race for one of its offsets.
    pub async fn list_buffered(&self, prefix: &str, from: u64, below: u64) -> Result<Vec<Listed>, ApiError> {
        let mut listed = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.name)
                .prefix(prefix)
                // The name of a chunk at `from` sorts right after this.
                .start_after(format!("{prefix}{from:016x}"))
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| unavailable("ListObjectsV2", &e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                let Some((chunk, chain)) = key.strip_prefix(prefix).and_then(BufferedChunk::parse_name) else {
                    continue;
                };
                if chunk.start >= below {
                    return Ok(listed);
                }
                let size = object.size().and_then(|s| u64::try_from(s).ok()).unwrap_or_default();
                listed.push(Listed { chunk, chain, size, key: key.to_string() });
            }
            token = page.next_continuation_token;
            if token.is_none() {
                return Ok(listed);
            }
        }
    }

    /// Starts reading a buffered chunk: its body comes as it is read. A missing one was joined into a part by a
    /// request that won the race for this offset. S3 says NoSuchKey for a missing key only to a role that may list the
    /// bucket, and AccessDenied to one that may not (S3 API Reference, GetObject, Permissions): the chunk function may
    /// list only under the buffer prefix, a condition a GetObject request cannot meet, and may read every buffered
    /// chunk, so both mean the chunk is gone.
    pub async fn get(&self, key: &str) -> Result<ByteStream, ApiError> {
        let out = self.client.get_object().bucket(&self.name).key(key).send().await.map_err(|e| {
            if matches!(code(&e), Some("NoSuchKey" | "AccessDenied")) {
                ApiError::Conflict("A buffered chunk is gone: another request moved this upload on".into())
            } else {
                unavailable("GetObject", &e)
            }
        })?;
        Ok(out.body)
    }

    /// The `UploadPart` of part `number`, whose bytes S3 checks against `crc`. Given, the SDK sends the checksum as a
    /// header; left to the SDK, a streamed body would go out aws-chunked and signed chunk by chunk (SHA-256 of every
    /// byte).
    fn part_request(&self, key: &str, multipart_id: &str, number: u32, crc: Crc64) -> UploadPartFluentBuilder {
        self.client
            .upload_part()
            .bucket(&self.name)
            .key(key)
            .upload_id(multipart_id)
            .part_number(number as i32)
            .checksum_crc64_nvme(crc.to_base64())
    }

    /// Uploads a part (S3 refuses bytes other than its CRC64NVME); returns its ETag. A buffered piece that cannot
    /// be read fails it with that read's refusal (a chunk gone is a 409), anything else with a 503.
    pub async fn upload_part(
        &self,
        key: &str,
        multipart_id: &str,
        number: u32,
        part: PartSource,
    ) -> Result<String, ApiError> {
        let read_failure = Arc::new(Mutex::new(None));
        let out = self
            .part_request(key, multipart_id, number, part.crc)
            .content_length(part.length as i64)
            .body(part_body(self.clone(), part, read_failure.clone()))
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| match read_failure.lock().unwrap_or_else(PoisonError::into_inner).take() {
                Some(read) => read,
                None if code(&e) == Some("NoSuchUpload") => ApiError::Expired,
                None => unavailable("UploadPart", &e),
            })?;
        out.e_tag.ok_or_else(|| ApiError::Unavailable("UploadPart returned no ETag".into()))
    }

    /// Every part S3 holds for a multipart upload, by number.
    pub async fn list_parts(&self, key: &str, multipart_id: &str) -> Result<Vec<HeldPart>, CompleteFailure> {
        let mut held = Vec::new();
        let mut marker = None;
        loop {
            let page = self
                .client
                .list_parts()
                .bucket(&self.name)
                .key(key)
                .upload_id(multipart_id)
                .set_part_number_marker(marker)
                .send()
                .await
                .map_err(|e| match code(&e) {
                    Some("NoSuchUpload") => CompleteFailure::NoSuchUpload,
                    _ => CompleteFailure::Other(unavailable("ListParts", &e)),
                })?;
            for part in page.parts() {
                if let (Some(number), Some(etag)) = (part.part_number(), part.e_tag()) {
                    held.push(HeldPart {
                        number: number as u32,
                        etag: etag.to_string(),
                        size: part.size().and_then(|s| u64::try_from(s).ok()).unwrap_or_default(),
                        crc64: part.checksum_crc64_nvme().and_then(Crc64::from_base64),
                    });
                }
            }
            marker = page.next_part_number_marker;
            if !page.is_truncated.unwrap_or(false) || marker.is_none() {
                break;
            }
        }
        held.sort_by_key(|p| p.number);
        Ok(held)
    }

    /// The credentials presigned URLs are signed with now, and how long they still live (`None`: no expiry is known,
    /// as of the environment's credentials in Lambda). A URL signed with temporary credentials stops working when
    /// they expire, whatever its X-Amz-Expires (S3 User Guide, "Download and upload objects with presigned URLs",
    /// Expiration): the URLs are signed with exactly these, so that their lifetime can be bounded by them. Asked of
    /// the provider once per request for URLs.
    pub async fn signer(&self) -> Result<Signer, ApiError> {
        let provider =
            self.credentials.as_ref().ok_or_else(|| ApiError::Unavailable("presigning: no credentials".into()))?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| ApiError::Unavailable(format!("presigning: no credentials: {e}")))?;
        let left = credentials.expiry().map(|at| at.duration_since(SystemTime::now()).unwrap_or_default());
        Ok(Signer { credentials, left })
    }

    /// Presigns the `UploadPart` of part `number` with `signer`'s credentials: only bytes of length `len` whose
    /// CRC64NVME is `crc` are taken, until `expires_in` has passed.
    #[allow(clippy::too_many_arguments)]
    pub async fn presign_part(
        &self,
        signer: &Signer,
        key: &str,
        multipart_id: &str,
        number: u32,
        crc: Crc64,
        len: u64,
        expires_in: Duration,
    ) -> Result<Presigned, ApiError> {
        let config =
            PresigningConfig::expires_in(expires_in).map_err(|e| ApiError::Unavailable(format!("presigning: {e}")))?;
        let request = self
            .part_request(key, multipart_id, number, crc)
            .content_length(len as i64)
            .customize()
            .config_override(aws_sdk_s3::config::Builder::default().credentials_provider(signer.credentials.clone()))
            .presigned(config)
            .await
            .map_err(|e| ApiError::Unavailable(format!("presigning UploadPart: {e}")))?;
        let headers = request.headers().map(|(name, value)| (name.to_string(), value.to_string())).collect();
        Ok(Presigned { url: request.uri().to_string(), headers })
    }

    /// Completes with exactly these parts and ETags; S3 checks the parts make `crc`, the whole file's CRC64NVME.
    pub async fn complete(
        &self,
        key: &str,
        multipart_id: &str,
        parts: &[Part],
        crc: Crc64,
    ) -> Result<Finished, CompleteFailure> {
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|p| CompletedPart::builder().part_number(p.number as i32).e_tag(&p.etag).build())
                    .collect(),
            ))
            .build();
        let result = self
            .client
            .complete_multipart_upload()
            .bucket(&self.name)
            .key(key)
            .upload_id(multipart_id)
            .multipart_upload(completed)
            .checksum_type(ChecksumType::FullObject)
            .checksum_crc64_nvme(crc.to_base64())
            .send()
            .await;
        match result {
            Ok(out) => match out.e_tag {
                Some(etag) => Ok(Finished { etag, crc64: out.checksum_crc64_nvme.unwrap_or_else(|| crc.to_base64()) }),
                None => Err(CompleteFailure::Other(ApiError::Unavailable("no ETag from completion".into()))),
            },
            Err(SdkError::TimeoutError(_)) => Err(CompleteFailure::Unanswered),
            Err(e) => Err(match code(&e) {
                Some("InvalidPart") => CompleteFailure::InvalidPart,
                Some("BadDigest") => CompleteFailure::BadDigest,
                Some("NoSuchUpload") => CompleteFailure::NoSuchUpload,
                // Parts are numbered 1..N in every mode; should S3 disagree, no retry would change its mind.
                Some("InvalidPartOrder") => CompleteFailure::Other(ApiError::Unrecoverable(format!(
                    "S3 refused the parts' numbers ({}); start the upload again",
                    describe("CompleteMultipartUpload", &e)
                ))),
                _ => CompleteFailure::Other(unavailable("CompleteMultipartUpload", &e)),
            }),
        }
    }

    /// ETag and full-object CRC64NVME of an object, or `None` if there is none.
    pub async fn head(&self, key: &str) -> Result<Option<Finished>, ApiError> {
        let head = self.client.head_object().bucket(&self.name).key(key).checksum_mode(ChecksumMode::Enabled);
        match head.send().await {
            Ok(out) => Ok(Some(Finished {
                etag: out.e_tag.unwrap_or_default(),
                crc64: out.checksum_crc64_nvme.unwrap_or_default(),
            })),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
            Err(e) => Err(unavailable("HeadObject", &e)),
        }
    }

    /// Aborts every multipart upload of `key`: how an upload whose record never learned its multipart upload's id
    /// (a crash right after creating it) is cleaned up.
    pub async fn abort_all(&self, key: &str) -> Result<(), ApiError> {
        let page = self
            .client
            .list_multipart_uploads()
            .bucket(&self.name)
            .prefix(key)
            .send()
            .await
            .map_err(|e| unavailable("ListMultipartUploads", &e))?;
        for upload in page.uploads() {
            if let (Some(k), Some(id)) = (upload.key(), upload.upload_id())
                && k == key
            {
                self.abort(key, id).await?;
            }
        }
        Ok(())
    }

    /// Aborts a multipart upload; one already gone is success.
    pub async fn abort(&self, key: &str, multipart_id: &str) -> Result<(), ApiError> {
        match self.client.abort_multipart_upload().bucket(&self.name).key(key).upload_id(multipart_id).send().await {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("NoSuchUpload") => Ok(()),
            Err(e) => Err(unavailable("AbortMultipartUpload", &e)),
        }
    }

    /// Deletes every object under `prefix` (buffered chunks, including those of requests that never committed).
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), ApiError> {
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.name)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| unavailable("ListObjectsV2", &e))?;
            let keys: Vec<String> = page.contents().iter().filter_map(|o| o.key.clone()).collect();
            self.delete(&keys).await?;
            token = page.next_continuation_token;
            if token.is_none() {
                return Ok(());
            }
        }
    }

    /// Deletes these keys; missing ones are fine. DeleteObjects answers 200 with an error for each key it did not
    /// delete (S3 API Reference, DeleteObjects: SlowDown, InternalError, ...): those are deleted again, after a short
    /// random wait, a few times; keys still there fail the call, which names how many.
    pub async fn delete(&self, keys: &[String]) -> Result<(), ApiError> {
        for batch in keys.chunks(1000) {
            let mut left = batch.to_vec();
            let mut backoff = DELETE_BACKOFF;
            for attempt in 1.. {
                left = self.delete_batch(&left).await?;
                if left.is_empty() {
                    break;
                }
                if attempt == DELETE_ATTEMPTS {
                    let detail = format!("DeleteObjects: {} keys not deleted, first {}", left.len(), left[0]);
                    tracing::warn!(error = %detail, "storage call failed");
                    return Err(ApiError::Unavailable(detail));
                }
                tokio::time::sleep(backoff.mul_f64(rand::random::<f64>())).await;
                backoff *= 2;
            }
        }
        Ok(())
    }

    /// One DeleteObjects (quiet: only errors are listed); the keys S3 says it did not delete.
    async fn delete_batch(&self, keys: &[String]) -> Result<Vec<String>, ApiError> {
        let objects = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::Unavailable(format!("DeleteObjects: {e}")))?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| ApiError::Unavailable(format!("DeleteObjects: {e}")))?;
        let out = self
            .client
            .delete_objects()
            .bucket(&self.name)
            .delete(delete)
            .send()
            .await
            .map_err(|e| unavailable("DeleteObjects", &e))?;
        let failed: Vec<String> = out.errors().iter().filter_map(|e| e.key().map(str::to_string)).collect();
        if let Some(error) = out.errors().first() {
            tracing::info!(count = failed.len(), code = error.code(), "DeleteObjects left keys in place");
        }
        Ok(failed)
    }
}

/// How often keys DeleteObjects left in place are deleted again, and the longest wait before the first retry
/// (doubling after).
const DELETE_ATTEMPTS: u32 = 4;
const DELETE_BACKOFF: Duration = Duration::from_millis(50);

/// A part's bytes, in order, with their length and CRC64NVME.
pub struct PartSource {
    pub pieces: Vec<Piece>,
    pub length: u64,
    pub crc: Crc64,
}

pub enum Piece {
    /// A buffered chunk, read from S3 as the part goes out.
    Buffered(String),
    /// A chunk this request holds.
    InHand(Bytes),
}

/// Buffered chunks a part reads from S3 at once: enough to hide S3's latency, few enough that a part of a thousand
/// small chunks does not open a thousand connections.
const READS_IN_FLIGHT: usize = 8;

/// A part's body: each buffered chunk streamed from its GetObject into the part as it arrives (the reads overlap
/// the upload, and no chunk is collected into a buffer first), the chunks in hand in their places.
///
/// Not replayable: a stream from S3 cannot be sent twice, so the SDK does not retry the UploadPart, and a failure
/// fails the request. The client sends the chunk again (sequential: its new claim takes a new part number; parallel:
/// the slot is kept and the flush runs again). Re-reading the chunks for each attempt would replay it, but would hold
/// up a read per chunk in turn, or all of them at once.
fn part_body(bucket: Bucket, part: PartSource, read_failure: Arc<Mutex<Option<ApiError>>>) -> ByteStream {
    let reads = stream::iter(part.pieces)
        .map(move |piece| {
            let bucket = bucket.clone();
            async move {
                match piece {
                    Piece::Buffered(key) => bucket.get(&key).await.map(ByteStream::into_inner),
                    Piece::InHand(bytes) => Ok(SdkBody::from(bytes)),
                }
            }
        })
        .buffered(READS_IN_FLIGHT)
        .boxed();
    let body = PartStream { reads: Mutex::new(reads), reading: None, remaining: part.length, read_failure };
    ByteStream::new(SdkBody::from_body_1_x(body))
}

struct PartStream {
    /// In a mutex only to be `Sync`, as SDK bodies must be; only `get_mut` is used.
    reads: Mutex<BoxStream<'static, Result<SdkBody, ApiError>>>,
    reading: Option<SdkBody>,
    remaining: u64,
    /// Where a read's refusal is left for `upload_part`, which only sees that the body failed.
    read_failure: Arc<Mutex<Option<ApiError>>>,
}

impl Body for PartStream {
    type Data = Bytes;
    type Error = aws_smithy_types::body::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            if let Some(reading) = this.reading.as_mut() {
                match ready!(Pin::new(reading).poll_frame(cx)) {
                    Some(Ok(frame)) => {
                        // Data only: a read's trailers, if any, are not the part's.
                        if let Ok(data) = frame.into_data() {
                            this.remaining = this.remaining.saturating_sub(data.len() as u64);
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                    }
                    Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                    None => this.reading = None,
                }
                continue;
            }
            let reads = this.reads.get_mut().unwrap_or_else(PoisonError::into_inner);
            match ready!(reads.poll_next_unpin(cx)) {
                Some(Ok(read)) => this.reading = Some(read),
                Some(Err(e)) => {
                    let message = e.to_string();
                    *this.read_failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                    return Poll::Ready(Some(Err(message.into())));
                }
                None => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
