//! Where an upload stands: django-chunked-upload's offset, or the result of a completed upload.

use serde_json::{Value, json};

use super::{iso8601, now_ms};
use crate::app::App;
use crate::error::ApiError;
use crate::protocol;
use crate::secret::Caller;
use crate::store::Status;

impl App {
    pub async fn status(&self, caller: &Caller, upload_id: &str) -> Result<Value, ApiError> {
        protocol::validate_upload_id(upload_id)?;
        let record = self.owned(upload_id, caller).await?;
        match record.status {
            Status::Complete => Ok(self.result_json(&record)),
            Status::Aborted => Err(ApiError::NotFound),
            Status::Uploading if record.is_expired(now_ms()) => Err(ApiError::Expired),
            Status::Uploading | Status::Completing => Ok(json!({
                "upload_id": record.upload_id,
                "offset": record.offset,
                "expires": iso8601(record.expires_at_ms),
                "status": record.status.as_str(),
                "filename": record.filename,
                "size": record.total,
            })),
        }
    }
}
