//! The cleanup function: when DynamoDB's TTL removes an upload's record, its stream delivers the item as it was, and
//! the bytes of an upload that never completed are removed from S3. A completed upload's object is the user's and is
//! never touched.

use std::collections::HashMap;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::app::App;
use crate::error::ApiError;
use crate::lambda;
use crate::metrics::Metric;
use crate::store::quota::is_upload_key;
use crate::store::record::attr;
use crate::store::{Status, UploadRecord};
use crate::upload::now_ms;

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
    let item: HashMap<String, AttributeValue> = record.change.old_image.clone().into();
    if item.is_empty() {
        tracing::warn!("REMOVE record without an old image: the stream must be OLD_IMAGE or NEW_AND_OLD_IMAGES");
        return Ok(Outcome::Ignored);
    }
    if !item.get(attr::UPLOAD_ID).and_then(|k| k.as_s().ok()).is_some_and(|k| is_upload_key(k)) {
        // An owner's counters or a tombstone (see `store::quota`): nothing in S3 to clean up.
        return Ok(Outcome::Ignored);
    }
    let upload = match UploadRecord::from_item(&item) {
        Ok(upload) => upload,
        Err(e) => {
            // Retrying cannot repair it; the lifecycle rules remove what it pointed at.
            tracing::error!(error = %e, "a removed item is not an upload record");
            return Ok(Outcome::Ignored);
        }
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
