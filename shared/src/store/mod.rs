//! Storage: the upload record in DynamoDB and the bytes in S3, each in its own file.

pub mod bucket;
pub mod ledger;
pub mod quota;
pub mod record;
pub mod table;

pub use bucket::{Bucket, CompleteFailure};
pub use ledger::{BufferChain, BufferedChunk, Listed, Part, PartLedger};
pub use quota::Limits;
pub use record::{Completed, Status, UploadRecord};
pub use table::{ChunkCommit, Table, Written};

use std::fmt::Debug;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::error::ApiError;

/// A failed S3 or DynamoDB call, logged and answered 503: nothing was accepted, so a retry is safe.
fn unavailable<E: ProvideErrorMetadata + Debug, R: Debug>(op: &str, err: &SdkError<E, R>) -> ApiError {
    ApiError::Unavailable(logged(op, err))
}

/// A failed call that may have landed all the same (a timeout or a cut connection on the accepting write): answered
/// 503, telling the client to ask for the upload's status before resending.
fn ambiguous<E: ProvideErrorMetadata + Debug, R: Debug>(op: &str, err: &SdkError<E, R>) -> ApiError {
    ApiError::Ambiguous(logged(op, err))
}

fn logged<E: ProvideErrorMetadata + Debug, R: Debug>(op: &str, err: &SdkError<E, R>) -> String {
    let detail = match err.as_service_error() {
        Some(e) => format!("{op}: {}: {}", e.code().unwrap_or("error"), e.message().unwrap_or_default()),
        None => format!("{op}: {err:?}"),
    };
    tracing::warn!(error = %detail, "storage call failed");
    detail
}
