//! `GET /s3/multipart/{uploadId}`: the parts S3 holds, every page of ListParts, so a resuming plugin sends only the
//! others.

use super::not_multipart;
use crate::app::App;
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::protocol::UploadId;
use crate::secret::Caller;
use crate::store::{CompleteFailure, HeldPart};

impl App {
    pub async fn uppy_parts(
        &self,
        caller: &Caller,
        upload_id: &UploadId,
        key: &str,
    ) -> Result<Vec<HeldPart>, ApiError> {
        let record = self.uppy_upload(caller, upload_id, key).await?;
        self.check_taking(&record, now_ms())?;
        let multipart_id = record.multipart_id.as_deref().ok_or_else(not_multipart)?;
        self.held_parts(&record.key, multipart_id).await
    }

    /// What S3 holds of a multipart upload that the record says is in progress.
    pub(super) async fn held_parts(&self, key: &str, multipart_id: &str) -> Result<Vec<HeldPart>, ApiError> {
        match self.bucket.list_parts(key, multipart_id).await {
            Ok(held) => Ok(held),
            // Its parts are gone: aborted by the bucket's lifecycle rule, or by a cleanup.
            Err(CompleteFailure::NoSuchUpload) => Err(ApiError::Expired),
            Err(CompleteFailure::Other(e)) => Err(e),
            Err(CompleteFailure::InvalidPart | CompleteFailure::BadDigest | CompleteFailure::Unanswered) => {
                Err(ApiError::Unavailable("ListParts failed".into()))
            }
        }
    }
}
