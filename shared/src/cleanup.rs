//! The cleanup function: when DynamoDB's TTL removes an upload's record, its stream delivers the item as it was, and
//! the bytes of an upload that never completed are removed from S3. A completed upload's object is the user's and is
//! never touched.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::DynamoDbEventResponse;

use crate::app::App;
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::lambda;
use crate::metrics::Metric;
use crate::store::Status;

/// What became of one stream record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An unfinished upload: its multipart upload and buffered chunks are gone.
    Discarded,
    /// A completed upload: nothing to do.
    KeptComplete,
    /// Not a removal, or no old image to act on.
    Ignored,
}

/// Handles a batch; a record that fails is reported so Lambda retries from it (`ReportBatchItemFailures`).
pub async fn handle_stream(app: &App, event: Event) -> DynamoDbEventResponse {
    lambda::each_record(&event, |record| cleanup(app, record)).await
}

/// Cleans up after one stream record. Idempotent: a duplicate delivery finds nothing left and succeeds.
pub async fn cleanup(app: &App, record: &EventRecord) -> Result<Outcome, ApiError> {
    if record.event_name != "REMOVE" {
        return Ok(Outcome::Ignored);
    }
    // Not an upload (an owner's counters, a tombstone, a marker: nothing in S3 to clean up), or a damaged record
    // (retrying cannot repair it; the lifecycle rules remove what it pointed at).
    let Some(upload) = lambda::upload_in(&record.change.old_image, "OldImage") else {
        return Ok(Outcome::Ignored);
    };
    // Released already at completion or abort, unless that failed; a second release does nothing.
    app.table.release(&upload, now_ms() / 1000).await?;
    if upload.status == Status::Complete {
        return Ok(Outcome::KeptComplete);
    }
    app.discard(&upload).await?;
    app.metrics.emit(Metric::Discarded);
    tracing::info!(upload_id = %upload.upload_id, status = upload.status.as_str(), "discarded an unfinished upload");
    Ok(Outcome::Discarded)
}
