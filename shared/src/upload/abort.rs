//! Abort: stop accepting chunks first, then remove the bytes, then the record.

use serde_json::{Value, json};

use crate::app::App;
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::protocol::UploadId;
use crate::secret::Caller;
use crate::store::{Status, Written};

impl App {
    /// Aborts an unfinished upload: no chunk is accepted from then on, its bytes are removed, then its record.
    pub async fn abort(&self, caller: &Caller, upload_id: &UploadId) -> Result<Value, ApiError> {
        let record = match self.table.mark_aborted(upload_id, caller).await? {
            Written::Won(record) => record,
            Written::Lost(Some(r))
                if caller.may_use(&r.owner, r.secret_hash.as_ref()) && r.status == Status::Complete =>
            {
                return Err(ApiError::AlreadyComplete { result: self.result_json(&r) });
            }
            Written::Lost(Some(r))
                if caller.may_use(&r.owner, r.secret_hash.as_ref()) && r.status == Status::Completing =>
            {
                return Err(ApiError::Conflict("The upload is being completed".into()));
            }
            Written::Lost(_) => return Err(ApiError::NotFound),
        };
        self.discard(&record).await?;
        self.table.release(&record, now_ms() / 1000).await?;
        self.table.delete(upload_id).await?;
        Ok(json!({"upload_id": upload_id, "status": Status::Aborted.as_str()}))
    }
}
