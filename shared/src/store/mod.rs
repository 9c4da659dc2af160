//! Storage: the upload record in DynamoDB and the bytes in S3, each in its own file.

pub mod bucket;
pub mod ledger;
pub mod listing;
pub mod marker;
pub mod parts;
pub mod quota;
pub mod record;
pub mod sizing;
pub mod table;
pub mod tus;

pub use bucket::{Bucket, CompleteFailure, Finished, HeldPart, Part, Presigned};
pub use ledger::{BufferChain, BufferedChunk, FlushLease, Listed, PartLedger};
pub use listing::{Cursor, Page};
pub use parts::{PartItem, Slot, SlotWritten};
pub use quota::Limits;
pub use record::{Completed, Status, UploadRecord};
pub use table::{ChunkCommit, Table, Written};
pub use tus::{Concat, TusRecord};

use std::fmt::Debug;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::error::ApiError;

/// A failed S3 or DynamoDB call, logged and answered 503: nothing was accepted, so a retry is safe.
fn unavailable<E: ProvideErrorMetadata + Debug, R: Debug>(op: &str, err: &SdkError<E, R>) -> ApiError {
    let detail = describe(op, err);
    tracing::warn!(error = %detail, "storage call failed");
    ApiError::Unavailable(detail)
}

/// A failed write, answered 503. Only a write that was never sent, or that DynamoDB refused (a 4xx: throttled,
/// invalid), is known not to have landed. Any other failure (a timeout, a connection cut before the answer, a 5xx)
/// leaves it unknown: the answer says so, and the client asks for the status before sending again.
fn ambiguous<E: ProvideErrorMetadata + Debug>(op: &str, err: &SdkError<E, HttpResponse>) -> ApiError {
    let refused = match err {
        SdkError::ConstructionFailure(_) => true,
        SdkError::ServiceError(e) => e.raw().status().is_client_error(),
        _ => false,
    };
    if refused {
        return unavailable(op, err);
    }
    let detail = describe(op, err);
    tracing::warn!(error = %detail, "storage write failed; it may have landed");
    ApiError::Ambiguous(detail)
}

fn describe<E: ProvideErrorMetadata + Debug, R: Debug>(op: &str, err: &SdkError<E, R>) -> String {
    match err.as_service_error() {
        Some(e) => format!("{op}: {}: {}", e.code().unwrap_or("error"), e.message().unwrap_or_default()),
        None => format!("{op}: {err:?}"),
    }
}
