//! Uppy's S3 plugin (`@uppy/aws-s3`), through the endpoints Companion serves for it (`crate::companion` decodes
//! them): [`create`] (`POST /s3/multipart`), [`sign`] (part URLs), [`parts`] (the parts S3 holds), [`complete`],
//! [`abort`], [`params`] (a small file's single POST to S3) and [`posted`] (S3 reporting that POST).
//!
//! The state is the direct mode's: one record per upload, bound to its owner (or an anonymous upload's secret), with
//! its expiry, TTL cleanup, limits, listing, events and completion hook; S3 itself is the record of the parts. The
//! plugin picks its own part sizes and numbers and announces no size, so the record learns the size when S3 holds
//! the whole file.
//!
//! The client sees our upload id as `uploadId` and the object's key as `key`, and sends both back with every call;
//! together they must name the caller's own Uppy S3 upload, or the answer is a 404, as for an unknown id. S3's
//! multipart upload id never leaves the service.

mod abort;
mod complete;
mod create;
mod params;
mod parts;
mod posted;
mod sign;

pub use complete::NamedPart;
pub use create::UppyFile;
pub use posted::Posted;

use crate::app::App;
use crate::error::ApiError;
use crate::grid::Mode;
use crate::protocol::UploadId;
use crate::secret::Caller;
use crate::store::UploadRecord;

/// Why another protocol's route refuses an Uppy S3 upload.
pub(super) fn served_elsewhere() -> ApiError {
    ApiError::BadRequest("This is an Uppy S3 upload: only Companion's S3 routes (/s3/...) serve it".into())
}

fn not_multipart() -> ApiError {
    ApiError::BadRequest("This upload is a single POST to S3 (GET /s3/params), not a multipart upload".into())
}

impl App {
    /// The caller's Uppy S3 upload that `upload_id` and `key` name together.
    async fn uppy_upload(&self, caller: &Caller, upload_id: &UploadId, key: &str) -> Result<UploadRecord, ApiError> {
        let record = self.owned(upload_id, caller).await?;
        if record.mode != Mode::UppyS3 || record.key != key {
            return Err(ApiError::NotFound);
        }
        Ok(record)
    }
}
