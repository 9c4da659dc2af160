//! The events function: the table's stream (`NEW_AND_OLD_IMAGES`) shows each change of an upload's record, and the
//! changes that end an upload are published to EventBridge (source [`SOURCE`]):
//!
//! - `Upload Completed`: a record's status became `complete` (a MODIFY whose old image was not complete);
//! - `Upload Aborted`: it became `aborted`;
//! - `Upload Expired`: TTL removed a record still `uploading` or `completing`.
//!
//! Driven by the record, not by the request: a record becomes complete once, whether its completion was retried or
//! the function that completed it in S3 died first (the retried complete records it). A repeated delivery of the
//! same stream record is recognised by a marker item (`event/<event_id>`, see `store::marker`), written once
//! PutEvents has succeeded and checked before publishing. The one window: a consumer that dies between PutEvents
//! and the marker publishes again on the retry, with the same `event_id`, so consumers can drop the repeat.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use aws_sdk_eventbridge::primitives::DateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde_json::{Value, json};

use crate::app::App;
use crate::clock::{iso8601, now_ms};
use crate::error::ApiError;
use crate::lambda;
use crate::metrics::Metric;
use crate::store::{Status, UploadRecord};

/// The `source` of every event.
pub const SOURCE: &str = "chunked-upload";

/// How long a marker is kept after its event: longer than a DynamoDB stream keeps a record (24 hours), so no
/// redelivery of that record can find it gone.
const MARKER_LIFETIME_SECS: u64 = 2 * 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Completed,
    Aborted,
    Expired,
}

impl Kind {
    pub fn detail_type(self) -> &'static str {
        match self {
            Kind::Completed => "Upload Completed",
            Kind::Aborted => "Upload Aborted",
            Kind::Expired => "Upload Expired",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Completed => "completed",
            Kind::Aborted => "aborted",
            Kind::Expired => "expired",
        }
    }
}

/// An upload's change that is published, read from one stream record.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadEvent {
    pub kind: Kind,
    /// The record as the change left it (completed, aborted), or as it was when TTL removed it (expired).
    pub upload: UploadRecord,
    /// When it happened: the change's time in the stream (completed, aborted), or the upload's expiry (expired).
    /// Completed and aborted are to the second, as the stream tells them.
    pub at_ms: u64,
}

impl UploadEvent {
    /// The event a stream record stands for, if any.
    pub fn of(record: &EventRecord) -> Option<Self> {
        let (kind, upload) = match record.event_name.as_str() {
            "MODIFY" => {
                let new = lambda::upload_in(&record.change.new_image, "NewImage")?;
                let old = lambda::upload_in(&record.change.old_image, "OldImage")?;
                match (old.status, new.status) {
                    (Status::Complete, _) | (Status::Aborted, Status::Aborted) => return None,
                    (_, Status::Complete) => (Kind::Completed, new),
                    (_, Status::Aborted) => (Kind::Aborted, new),
                    _ => return None,
                }
            }
            // Only TTL's removals: the service deletes a record itself after an abort (published when it was
            // marked aborted) and for an upload nothing was ever accepted for.
            "REMOVE" if lambda::is_ttl_removal(record) => {
                let old = lambda::upload_in(&record.change.old_image, "OldImage")?;
                match old.status {
                    Status::Uploading | Status::Completing => (Kind::Expired, old),
                    Status::Complete | Status::Aborted => return None,
                }
            }
            _ => return None,
        };
        // The stream's time of the change, which DynamoDB rounds down to the second: never before what the record
        // itself says came first (the completion's claim, the upload's start). A record without it (a hand-made
        // event) gets the time it is handled.
        let changed_ms = || {
            u64::try_from(record.change.approximate_creation_date_time.timestamp_millis())
                .ok()
                .filter(|&ms| ms > 0)
                .unwrap_or_else(now_ms)
        };
        let at_ms = match kind {
            Kind::Expired => upload.expires_at_ms,
            Kind::Completed => changed_ms().max(upload.completing_since_ms.unwrap_or(upload.created_at_ms)),
            Kind::Aborted => changed_ms().max(upload.created_at_ms),
        };
        Some(UploadEvent { kind, upload, at_ms })
    }

    /// Stable across repeated deliveries and retries: an upload ends once, in one way.
    pub fn event_id(&self) -> String {
        format!("{}/{}", self.kind.as_str(), self.upload.upload_id)
    }

    /// The event's `detail` (docs/events.md).
    pub fn detail(&self, bucket: &str) -> Value {
        let u = &self.upload;
        let mut detail = json!({
            "event_id": self.event_id(),
            "upload_id": u.upload_id,
            "owner": u.owner,
            "bucket": bucket,
            "key": u.key,
            "filename": u.filename,
            "content_type": u.content_type,
            "size": u.total,
            "mode": u.mode.as_str(),
            "created_at": iso8601(u.created_at_ms),
        });
        if let Some(tus) = &u.tus {
            detail["tus"] = tus.to_json();
        }
        let at = iso8601(self.at_ms);
        match self.kind {
            Kind::Completed => {
                detail["completed_at"] = json!(at);
                if let Some(done) = &u.completed {
                    // Only the sequential mode hashes the file in order.
                    if !done.md5.is_empty() {
                        detail["md5"] = json!(done.md5);
                    }
                    detail["crc64nvme"] = json!(done.crc64);
                    detail["etag"] = json!(done.etag);
                }
            }
            Kind::Aborted => detail["aborted_at"] = json!(at),
            Kind::Expired => detail["expired_at"] = json!(at),
        }
        detail
    }

    fn marker_key(&self) -> String {
        format!("event/{}", self.event_id())
    }
}

/// What became of one stream record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Published(Kind),
    /// Published before: this is a repeated delivery of the same change.
    AlreadyPublished(Kind),
    /// No change that ends an upload.
    Ignored,
}

/// Handles a batch; a record that fails is reported so Lambda retries from it (`ReportBatchItemFailures`), and
/// after the retries the batch's description goes to the failure queue.
pub async fn handle_stream(app: &App, event: Event) -> DynamoDbEventResponse {
    lambda::each_record(&event, |record| publish(app, record)).await
}

/// Publishes the event of one stream record, unless it was published before.
pub async fn publish(app: &App, record: &EventRecord) -> Result<Outcome, ApiError> {
    let Some(event) = UploadEvent::of(record) else {
        return Ok(Outcome::Ignored);
    };
    let marker = event.marker_key();
    if app.table.marked(&marker).await? {
        return Ok(Outcome::AlreadyPublished(event.kind));
    }
    put_event(app, &event).await?;
    app.table.mark(&marker, now_ms() / 1000 + MARKER_LIFETIME_SECS).await?;
    tracing::info!(event_id = event.event_id(), detail_type = event.kind.detail_type(), "published");
    Ok(Outcome::Published(event.kind))
}

async fn put_event(app: &App, event: &UploadEvent) -> Result<(), ApiError> {
    let entry = PutEventsRequestEntry::builder()
        .event_bus_name(&app.config.event_bus)
        .source(SOURCE)
        .detail_type(event.kind.detail_type())
        .detail(event.detail(app.bucket.name()).to_string())
        .time(DateTime::from_millis(event.at_ms as i64))
        .build();
    let failed = |detail: String| {
        // Retried by Lambda, then kept on the failure queue.
        tracing::warn!(event_id = event.event_id(), error = %detail, "could not publish an event");
        app.metrics.emit(Metric::EventPublishFailed { detail_type: event.kind.detail_type() });
        ApiError::Unavailable(detail)
    };
    let out = app.eventbridge.put_events().entries(entry).send().await.map_err(|e| {
        let e = aws_sdk_eventbridge::error::DisplayErrorContext(e);
        failed(format!("PutEvents: {e}"))
    })?;
    if out.failed_entry_count() > 0 {
        let entry = out.entries().first();
        let code = entry.and_then(|e| e.error_code()).unwrap_or("error");
        let message = entry.and_then(|e| e.error_message()).unwrap_or_default();
        return Err(failed(format!("PutEvents: {code}: {message}")));
    }
    app.metrics.emit(Metric::EventPublished { detail_type: event.kind.detail_type() });
    Ok(())
}
