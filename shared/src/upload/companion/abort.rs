//! `DELETE /s3/multipart/{uploadId}`: the caller's Uppy S3 upload is aborted as any other (`upload::abort`).

use serde_json::Value;

use crate::app::App;
use crate::error::ApiError;
use crate::protocol::UploadId;
use crate::secret::Caller;

impl App {
    pub async fn uppy_abort(&self, caller: &Caller, upload_id: &UploadId, key: &str) -> Result<Value, ApiError> {
        self.uppy_upload(caller, upload_id, key).await?;
        self.abort(caller, upload_id).await
    }
}
