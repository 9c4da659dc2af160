//! Where an upload stands: django-chunked-upload's offset; a parallel or direct upload's grid and what the server
//! holds of it, so a client sends exactly what is missing; or the result of a completed upload.

use serde_json::{Value, json};

use crate::app::App;
use crate::clock::{iso8601, now_ms};
use crate::error::ApiError;
use crate::grid::{Mode, ranges};
use crate::protocol::UploadId;
use crate::secret::Caller;
use crate::store::{CompleteFailure, Status, UploadRecord};

/// What is said of an unfinished upload, by its status and in the listing: the sequential mode's offset, the other
/// modes' grid (what they hold of it is the status's to add: it reads the part items or S3).
pub(super) fn progress_json(record: &UploadRecord) -> Value {
    let mut answer = json!({
        "upload_id": record.upload_id,
        "mode": record.mode.as_str(),
        "expires": iso8601(record.expires_at_ms),
        "status": record.status.as_str(),
        "filename": record.filename,
        "size": record.total,
    });
    match record.mode {
        Mode::Sequential => answer["offset"] = json!(record.offset),
        Mode::Parallel => {
            answer["part_size"] = json!(record.part_size);
            answer["chunk_size"] = json!(record.chunk_size);
        }
        Mode::Direct => answer["part_size"] = json!(record.part_size),
    }
    if let Some(tus) = &record.tus {
        answer["tus"] = tus.to_json();
    }
    answer
}

impl App {
    pub async fn status(&self, caller: &Caller, upload_id: &UploadId) -> Result<Value, ApiError> {
        let record = self.owned(upload_id, caller).await?;
        match record.status {
            Status::Complete => Ok(self.result_json(&record)),
            Status::Aborted => Err(ApiError::NotFound),
            Status::Uploading if record.is_expired(now_ms()) => Err(ApiError::Expired),
            Status::Uploading | Status::Completing => {
                let mut answer = progress_json(&record);
                match record.mode {
                    Mode::Sequential => {}
                    Mode::Parallel => {
                        let (parts, chunks) = self.parallel_holdings(&record).await?;
                        answer["parts_held"] = json!(ranges(parts));
                        answer["chunks_held"] = json!(ranges(chunks));
                    }
                    Mode::Direct => answer["parts_held"] = json!(ranges(self.direct_holdings(&record).await?)),
                }
                Ok(answer)
            }
        }
    }

    /// The parts S3 holds for a direct upload: S3 is their record.
    async fn direct_holdings(&self, record: &UploadRecord) -> Result<Vec<u64>, ApiError> {
        let Some(multipart_id) = record.multipart_id.as_deref() else { return Ok(Vec::new()) };
        match self.bucket.list_parts(&record.key, multipart_id).await {
            Ok(held) => Ok(held.iter().map(|p| u64::from(p.number)).collect()),
            // Completed meanwhile (the record says so on the next read), or aborted.
            Err(CompleteFailure::NoSuchUpload) => Ok(Vec::new()),
            Err(CompleteFailure::Other(e)) => Err(e),
            Err(CompleteFailure::InvalidPart | CompleteFailure::BadDigest | CompleteFailure::Unanswered) => {
                Ok(Vec::new())
            }
        }
    }
}
