//! `POST /s3/multipart`: a new Uppy S3 upload and its multipart upload, created without part checksums (the plugin
//! sends none); the object then gets the full-object CRC64NVME S3 computes itself.

use serde_json::{Value, json};

use crate::app::App;
use crate::clock::iso8601;
use crate::error::ApiError;
use crate::grid::Mode;
use crate::protocol::ObjectKey;
use crate::secret::{self, Caller};
use crate::store::{PartChecksums, UploadRecord};

/// What the plugin says of a file when it starts one: its name and type, never its size.
pub struct UppyFile {
    pub filename: String,
    pub content_type: Option<String>,
}

impl App {
    pub async fn uppy_create(&self, caller: &Caller, file: UppyFile) -> Result<Value, ApiError> {
        let (record, key) = self.uppy_record(caller, &file);
        self.start(&record, &key, PartChecksums::None).await?;
        Ok(with_secret(
            json!({
                "key": record.key,
                "uploadId": record.upload_id,
                // The same id by the service's name for it: the status, the listing and the logs use it.
                "upload_id": record.upload_id,
                "bucket": self.bucket.name(),
                "expires": iso8601(record.expires_at_ms),
            }),
            caller,
        ))
    }

    /// A new Uppy S3 upload's record. Its size is 0 until the completion learns it from S3: that is what its owner's
    /// byte limit counts for it (the completion gives the upload back before it records the size).
    pub(super) fn uppy_record(&self, caller: &Caller, file: &UppyFile) -> (UploadRecord, ObjectKey) {
        let (base, key) = self.new_record(caller, Some(&file.filename), file.content_type.as_deref(), 0, 0);
        (UploadRecord { mode: Mode::UppyS3, ..base }, key)
    }
}

/// An answer that creates an anonymous upload hands out its secret, once.
pub(super) fn with_secret(mut answer: Value, caller: &Caller) -> Value {
    if let Some(secret) = caller.secret() {
        answer[secret::FIELD] = json!(secret.reveal());
    }
    answer
}
