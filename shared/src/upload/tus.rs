//! A tus upload's operations, over the sequential mode's machinery (the protocol's side is `crate::tus`): its
//! creation (record and multipart upload, before any byte), a PATCH (a sequential chunk at the offset, after
//! declaring a deferred length), where it stands (HEAD), and its termination. An upload completes when its last byte
//! is accepted, through the completion every upload goes through (its MD5 computed as its bytes came, its CRC64NVME
//! checked by S3); a HEAD completes one whose completion failed. A partial upload never completes on its own: a final
//! upload takes it (`concat`).

use bytes::Bytes;
use tokio::time::Instant;

use super::{Chunk, Declared};
use crate::app::App;
use crate::checksum::Crc64;
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::protocol::{ContentRange, ObjectKey, UploadId, plan_part_size};
use crate::secret::{Caller, UploadSecret};
use crate::store::{Concat, Status, TusRecord, UploadRecord};
use crate::tus::metadata::Metadata;

/// What a tus creation asks for.
pub struct TusCreation<'a> {
    /// `Upload-Length`; `None` for `Upload-Defer-Length: 1`.
    pub length: Option<u64>,
    pub metadata: &'a Metadata,
    /// `Upload-Concat: partial`.
    pub partial: bool,
}

/// A PATCH: bytes at an offset, and the length if the client declares it.
pub struct TusPatch {
    pub offset: u64,
    pub length: Option<u64>,
    pub data: Bytes,
}

/// Where a tus upload stands, as its answers say it.
#[derive(Debug, Clone)]
pub struct TusState {
    pub upload_id: UploadId,
    /// `None` for a final upload not assembled yet: its offset means nothing until then.
    pub offset: Option<u64>,
    /// `None` while the length is deferred.
    pub length: Option<u64>,
    /// `None` once complete: a complete upload no longer expires.
    pub expires_at_ms: Option<u64>,
    pub tus: TusRecord,
    /// An anonymous upload's secret, in the answer that created it.
    pub secret: Option<UploadSecret>,
}

impl TusState {
    pub(super) fn of(record: &UploadRecord) -> Self {
        let tus = record.tus.clone().unwrap_or_default();
        let complete = record.status == Status::Complete;
        TusState {
            upload_id: record.upload_id.clone(),
            offset: match tus.concat {
                Concat::Final(_) if !complete => None,
                _ => Some(record.offset),
            },
            length: (!tus.deferred).then_some(record.total),
            expires_at_ms: (!complete).then_some(record.expires_at_ms),
            tus,
            secret: None,
        }
    }
}

impl App {
    pub async fn tus_create(
        &self,
        caller: &Caller,
        creation: TusCreation<'_>,
        deadline: Instant,
    ) -> Result<TusState, ApiError> {
        let limit = self.config.size_limit();
        let (total, deferred) = match creation.length {
            Some(length) if length > limit => return Err(too_large(limit)),
            Some(length) => (length, false),
            // Until its length is declared, the record says the most it may become: what its owner's limits count
            // and what its part size is planned for.
            None => (self.config.limits.bytes.map_or(limit, |bytes| bytes.min(limit)), true),
        };
        let part_size = plan_part_size(total, self.config.min_part_bytes, self.config.max_part_bytes)?;
        let metadata = creation.metadata;
        let (base, key) = self.new_record(caller, metadata.filename(), metadata.filetype(), total, part_size);
        let (key, concat) = match creation.partial {
            true => (ObjectKey::staging(&self.config.buffer_prefix, &base.upload_id), Concat::Partial),
            false => (key, Concat::Whole),
        };
        let mut record = UploadRecord {
            key: key.as_str().to_string(),
            tus: Some(TusRecord { metadata: metadata.raw().to_string(), concat, deferred }),
            ..base
        };
        self.start(&record, &key).await?;
        if total == 0 && !creation.partial {
            // Complete at once: tus clients send no PATCH for an empty file.
            self.finish_tus(caller, &record.upload_id, deadline).await?;
            record.status = Status::Complete;
        }
        Ok(TusState { secret: caller.secret().cloned(), ..TusState::of(&record) })
    }

    pub async fn tus_patch(
        &self,
        caller: &Caller,
        upload_id: &UploadId,
        patch: TusPatch,
        deadline: Instant,
    ) -> Result<TusState, ApiError> {
        let mut record = self.tus_owned(upload_id, caller).await?;
        let mut tus = record.tus.clone().unwrap_or_default();
        if let Concat::Final(_) = tus.concat {
            return Err(ApiError::Forbidden(
                "A final upload is made from its partial uploads: it takes no bytes".into(),
            ));
        }
        match record.status {
            Status::Complete if patch.offset == record.total && patch.data.is_empty() => {
                return Ok(TusState::of(&record));
            }
            Status::Complete => return Err(ApiError::OffsetMismatch { offset: record.total }),
            Status::Aborted => return Err(ApiError::NotFound),
            Status::Completing => return Err(being_completed()),
            Status::Uploading if record.is_expired(now_ms()) => return Err(ApiError::Expired),
            Status::Uploading => {}
        }
        if patch.offset != record.offset {
            return Err(ApiError::OffsetMismatch { offset: record.offset });
        }
        let end = patch.offset + patch.data.len() as u64;
        match patch.length {
            Some(length) if tus.deferred => {
                if length < end {
                    return Err(ApiError::BadRequest(format!(
                        "Upload-Length {length} is less than the bytes sent ({end})"
                    )));
                }
                if length > record.total {
                    return Err(too_large(record.total));
                }
                if !self.table.declare_length(&record, length).await? {
                    return Err(ApiError::Conflict("The upload changed meanwhile; ask HEAD where it stands".into()));
                }
                record.flush_at = record.flush_at.min(length);
                record.total = length;
                tus.deferred = false;
            }
            Some(length) if length != record.total => {
                return Err(ApiError::BadRequest(format!(
                    "Upload-Length {length} differs from the upload's length {}",
                    record.total
                )));
            }
            _ => {}
        }
        if end > record.total {
            return Err(ApiError::PayloadTooLarge(match tus.deferred {
                true => {
                    format!("The upload may be at most {} bytes (Tus-Max-Size, or the owner's limit)", record.total)
                }
                false => format!("The body goes past the upload's length ({} bytes)", record.total),
            }));
        }
        if !patch.data.is_empty() {
            let range = ContentRange { start: patch.offset, end: end - 1, total: record.total };
            let chunk = Chunk {
                upload_id: Some(upload_id.clone()),
                range,
                data: patch.data,
                filename: None,
                content_type: None,
                crc64: None,
            };
            self.accept_chunk(caller, chunk).await?;
            record.offset = end;
        } else if let Some(range) = ContentRange::empty_end(record.total)
            .filter(|_| record.offset == record.total && record.part_start < record.total)
        {
            // The length was declared after the last bytes: what they left buffered becomes the last part.
            self.append(caller, upload_id, range, Bytes::new(), Crc64::of(&[])).await?;
        }
        record.tus = Some(tus);
        if record.offset == record.total && !record.tus.as_ref().is_some_and(TusRecord::is_partial) {
            self.finish_tus(caller, upload_id, deadline).await?;
            record.status = Status::Complete;
        }
        Ok(TusState::of(&record))
    }

    /// Where an upload stands. One whose bytes are all in but whose completion failed is completed now: tus clients
    /// that were told of a failure ask HEAD, and take an offset at the length as the end of the upload.
    pub async fn tus_state(
        &self,
        caller: &Caller,
        upload_id: &UploadId,
        deadline: Instant,
    ) -> Result<TusState, ApiError> {
        let mut record = self.tus_owned(upload_id, caller).await?;
        let tus = record.tus.clone().unwrap_or_default();
        match record.status {
            Status::Aborted => return Err(ApiError::NotFound),
            Status::Uploading if record.is_expired(now_ms()) => return Err(ApiError::Expired),
            // A completion under way (perhaps S3 still assembling), or one that never finished: asked again, it
            // answers that it goes on, or takes over a lease run out and finishes.
            Status::Completing => {
                self.finish_tus(caller, upload_id, deadline).await?;
                record.status = Status::Complete;
            }
            Status::Uploading if record.offset == record.total && !tus.deferred && tus.concat == Concat::Whole => {
                self.finish_tus(caller, upload_id, deadline).await?;
                record.status = Status::Complete;
            }
            Status::Uploading | Status::Complete => {}
        }
        Ok(TusState::of(&record))
    }

    /// Termination: an unfinished upload is aborted (its bytes removed), a complete one's object and record are
    /// deleted. Either way the URL is then unknown (404).
    pub async fn tus_terminate(&self, caller: &Caller, upload_id: &UploadId) -> Result<(), ApiError> {
        let record = self.tus_owned(upload_id, caller).await?;
        if record.status != Status::Complete {
            return self.abort(caller, upload_id).await.map(|_| ());
        }
        self.bucket.delete(std::slice::from_ref(&record.key)).await?;
        self.table.delete(upload_id).await
    }

    /// A tus upload of the caller's (an upload made through `/upload` is not one).
    pub(super) async fn tus_owned(&self, upload_id: &UploadId, caller: &Caller) -> Result<UploadRecord, ApiError> {
        let record = self.owned(upload_id, caller).await?;
        if record.tus.is_none() {
            return Err(ApiError::NotFound);
        }
        Ok(record)
    }

    /// Completes a tus upload whose bytes are all in; a repeat finds it complete.
    pub(super) async fn finish_tus(
        &self,
        caller: &Caller,
        upload_id: &UploadId,
        deadline: Instant,
    ) -> Result<(), ApiError> {
        // Boxed, as every call of a large operation from another: see `tus::Context::by`.
        match Box::pin(self.complete(caller, upload_id, Declared { md5: None, crc64: None }, deadline)).await {
            Ok(_) | Err(ApiError::AlreadyComplete { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::PayloadTooLarge(format!("The upload may be at most {limit} bytes (Tus-Max-Size, or the owner's limit)"))
}

fn being_completed() -> ApiError {
    ApiError::Conflict("The upload is being completed; ask again shortly".into())
}
