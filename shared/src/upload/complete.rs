//! Completion: check the MD5, take the completion lease, prove S3's parts are the accepted ones, complete, record.

use serde_json::Value;

use super::now_ms;
use crate::app::App;
use crate::error::ApiError;
use crate::md5state;
use crate::protocol;
use crate::secret::Caller;
use crate::store::{CompleteFailure, Part, Status, UploadRecord, Written};

impl App {
    pub async fn complete(&self, caller: &Caller, upload_id: &str, md5: &str) -> Result<Value, ApiError> {
        protocol::validate_upload_id(upload_id)?;
        let md5 = protocol::parse_md5_hex(md5)?;
        let record = self.owned(upload_id, caller).await?;
        let now = now_ms();
        match record.status {
            Status::Complete => {
                return Err(ApiError::AlreadyComplete { result: self.result_json(&record) });
            }
            Status::Aborted => return Err(ApiError::NotFound),
            // A completion under way was started in time; only an upload still taking chunks expires.
            Status::Uploading if record.is_expired(now) => return Err(ApiError::Expired),
            Status::Uploading | Status::Completing => {}
        }
        if record.offset != record.total {
            return Err(ApiError::BadRequest(format!(
                "The upload is incomplete: {} of {} bytes received",
                record.offset, record.total
            )));
        }
        if md5state::finish_hex(&record.md5_state)? != md5 {
            return Err(ApiError::BadRequest("md5 checksum does not match".into()));
        }
        // A lease outlives the longest a request can run (its deadline), plus a margin for S3 to finish a completion
        // it already received: past that, its holder is gone.
        let lease = self.config.lease_ms();
        let stale_before = now.saturating_sub(lease);
        let keep_until = (now + lease) / 1000 + self.config.expiration_delta_secs;
        let record = match self.table.claim_completion(upload_id, caller, now, stale_before, keep_until).await? {
            Written::Won(record) => record,
            Written::Lost(Some(r)) if r.status == Status::Complete => {
                return Err(ApiError::AlreadyComplete { result: self.result_json(&r) });
            }
            Written::Lost(Some(r)) if r.status == Status::Completing => {
                return Err(ApiError::Conflict("Another request is completing this upload; retry shortly".into()));
            }
            Written::Lost(_) => return Err(ApiError::NotFound),
        };
        let etag = match self.complete_in_s3(&record).await {
            Ok(etag) => etag,
            Err(e) => {
                if let Err(release) = self.table.release_completion(upload_id, now).await {
                    tracing::warn!(upload_id, error = %release, "could not release a completion claim");
                }
                return Err(e);
            }
        };
        let retained_until = now_ms() / 1000 + self.config.expiration_delta_secs;
        match self.table.mark_complete(upload_id, now, &md5, &etag, retained_until).await? {
            Written::Won(record) => {
                if let Err(e) = self.table.release(&record, retained_until).await {
                    // The cleanup function releases it when TTL removes the record.
                    tracing::warn!(upload_id, error = %e, "could not release a completed upload's share of the limits");
                }
                // Chunks of requests that failed after their S3 write were never referenced; the object is whole
                // now, so nothing under the buffer prefix is needed any more.
                if let Err(e) = self.bucket.delete_prefix(&self.buffer_prefix(upload_id)).await {
                    tracing::warn!(upload_id, error = %e, "could not delete leftover buffered chunks");
                }
                Ok(self.result_json(&record))
            }
            // Our claim ran out and another request finished the same bytes: the same result.
            Written::Lost(Some(current)) if current.status == Status::Complete => Ok(self.result_json(&current)),
            Written::Lost(_) => Err(ApiError::Conflict("The completion was interrupted; retry".into())),
        }
    }

    /// Completes the multipart upload with exactly the accepted parts: S3 lists what it holds, and the record's
    /// ledger proves those are the parts and ETags that were accepted. Never completes with bytes nobody accepted.
    async fn complete_in_s3(&self, record: &UploadRecord) -> Result<String, ApiError> {
        let changed = || {
            tracing::error!(upload_id = %record.upload_id, "a part in S3 does not match what was accepted");
            ApiError::Unrecoverable(
                "A part in S3 no longer matches what was accepted; the upload cannot be completed: start it again"
                    .into(),
            )
        };
        let multipart_id = record.multipart_id.as_deref().ok_or_else(changed)?;
        let numbers = record.parts.numbers();
        let parts: Vec<Part> = match self.bucket.list_parts(&record.key, multipart_id, &numbers).await {
            Ok(held) => held.into_iter().collect::<Option<_>>().ok_or_else(changed)?,
            Err(CompleteFailure::NoSuchUpload) => return self.completed_elsewhere(record).await,
            Err(CompleteFailure::InvalidPart) => return Err(changed()),
            Err(CompleteFailure::Other(e)) => return Err(e),
        };
        if !record.parts.vouches_for(&parts) {
            return Err(changed());
        }
        match self.bucket.complete(&record.key, multipart_id, &parts).await {
            Ok(etag) => Ok(etag),
            Err(CompleteFailure::NoSuchUpload) => self.completed_elsewhere(record).await,
            // A part was rewritten between the listing and the completion.
            Err(CompleteFailure::InvalidPart) => Err(changed()),
            Err(CompleteFailure::Other(e)) => Err(e),
        }
    }

    /// S3 says the multipart upload is gone. If the object is there with exactly our parts, an earlier completion
    /// finished in S3 but not in the record: that is success. Anything else means the bytes are gone.
    async fn completed_elsewhere(&self, record: &UploadRecord) -> Result<String, ApiError> {
        // The multipart ETag is the MD5 of the parts' MD5s: it names exactly these parts' bytes.
        match self.bucket.head_etag(&record.key).await? {
            Some(etag) if Some(&etag) == record.parts.multipart_etag().as_ref() => Ok(etag),
            _ => Err(ApiError::Expired),
        }
    }
}
