//! S3 reports an object created by a POST (deployed: the bucket's `Object Created` events through EventBridge to
//! the complete function; on the local server, its emulation). An object that names an Uppy S3 upload in its
//! metadata, at that upload's key, completes it: its result is the object as S3 holds it (size, ETag, the
//! full-object CRC64NVME S3 computed), recorded once, and the completion hook is called as for any completion.
//! Idempotent: S3 may report an object more than once.

use tokio::time::Instant;

use super::params::UPLOAD_ID_METADATA;
use crate::app::App;
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::grid::Mode;
use crate::metrics::Metric;
use crate::protocol::UploadId;
use crate::secret::{Caller, UploadSecret};
use crate::store::companion::Finishing;
use crate::store::{Status, Written};

/// What became of an object S3 reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Posted {
    /// It completed its upload.
    Completed,
    /// Its upload was complete already: a repeated report.
    AlreadyComplete,
    /// No upload of ours waits for it (another object, one deleted since, an upload aborted or gone).
    Ignored,
}

impl App {
    pub async fn object_posted(&self, key: &str) -> Result<Posted, ApiError> {
        let started = Instant::now();
        let Some(object) = self.bucket.stored(key).await? else { return Ok(Posted::Ignored) };
        let named = object.metadata.get(UPLOAD_ID_METADATA).and_then(|id| UploadId::parse(id).ok());
        let Some(upload_id) = named else { return Ok(Posted::Ignored) };
        let Some(record) = self.table.get(&upload_id).await? else { return Ok(Posted::Ignored) };
        if record.mode != Mode::UppyS3 || record.key != key || record.multipart_id.is_some() {
            return Ok(Posted::Ignored);
        }
        match record.status {
            Status::Complete => return Ok(Posted::AlreadyComplete),
            Status::Aborted | Status::Completing => return Ok(Posted::Ignored),
            // S3 took the POST before its policy ended, which is never past the upload's expiry.
            Status::Uploading => {}
        }
        let retained_until = now_ms() / 1000 + self.config.expiration_delta_secs;
        // As a multipart completion does: the upload's share of its owner's limits is given back before its size
        // is recorded.
        self.table.release(&record, retained_until).await?;
        let (finished, size) = (&object.finished, object.size);
        let record = match self
            .table
            .mark_complete_sized(&upload_id, Finishing::Posted, finished, size, retained_until)
            .await?
        {
            Written::Won(record) => record,
            Written::Lost(Some(r)) if r.status == Status::Complete => return Ok(Posted::AlreadyComplete),
            Written::Lost(_) => return Ok(Posted::Ignored),
        };
        let millis = started.elapsed().as_millis() as u64;
        self.metrics.emit(Metric::Completed { mode: record.mode, bytes: size, millis });
        // Nobody waits for this answer; the hook's answer is kept with the record, for the status to show.
        let caller = match record.secret_hash {
            None => Caller::Principal(record.owner.clone()),
            // The hook is told only that the caller was anonymous, never a secret: any stands in for theirs.
            Some(_) => Caller::Anonymous(UploadSecret::generate(), None),
        };
        let deadline = Instant::now() + self.config.request_timeout;
        let answered = self.answer(record, &caller, deadline).await;
        let hook_failed = answered.get("hook").is_some();
        tracing::info!(upload_id = %upload_id, key, hook_failed, "a posted object completed its upload");
        Ok(Posted::Completed)
    }
}
