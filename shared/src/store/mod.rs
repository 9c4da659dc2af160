//! Storage: the upload record in DynamoDB and the bytes in S3, each in its own file.

pub mod bucket;
pub mod record;
pub mod table;

pub use bucket::{Bucket, CompleteFailure};
pub use record::{Buffered, Completed, Part, Status, UploadRecord};
pub use table::{ChunkCommit, Table, Written};

use std::fmt::Debug;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::error::ApiError;

/// A failed S3 or DynamoDB call, logged and answered 503: nothing was accepted, so a retry is safe.
fn unavailable<E: ProvideErrorMetadata + Debug, R: Debug>(op: &str, err: &SdkError<E, R>) -> ApiError {
    let detail = match err.as_service_error() {
        Some(e) => format!("{op}: {}: {}", e.code().unwrap_or("error"), e.message().unwrap_or_default()),
        None => format!("{op}: {err:?}"),
    };
    tracing::warn!(error = %detail, "storage call failed");
    ApiError::Unavailable(detail)
}
