//! `GET /s3/params`: a small file (the plugin sends one this way when it is not in multipart mode, and files of up
//! to 5 MiB in it) goes to S3 in one presigned POST, straight from the browser. The form's policy fixes the key, the
//! stored type and disposition, the upload's id (as the object's metadata, [`UPLOAD_ID_METADATA`]) and the largest
//! size: S3 refuses any other form. The plugin tells the API nothing afterwards: S3 reports the object (`posted`),
//! which completes the upload.

use serde_json::{Map, Value, json};

use super::UppyFile;
use super::create::with_secret;
use crate::app::App;
use crate::clock::{iso8601, now_ms};
use crate::error::ApiError;
use crate::protocol::attachment_disposition;
use crate::secret::Caller;
use crate::store::PostForm;

/// The user metadata (`x-amz-meta-upload-id`) by which a posted object names its upload.
pub const UPLOAD_ID_METADATA: &str = "upload-id";

impl App {
    pub async fn uppy_params(&self, caller: &Caller, file: UppyFile) -> Result<Value, ApiError> {
        let (record, key) = self.uppy_record(caller, &file);
        self.table.create_within(&record, self.config.limits).await?;
        let disposition = attachment_disposition(&record.filename);
        let form = PostForm {
            key: &key,
            content_type: &record.content_type,
            content_disposition: &disposition,
            storage_class: &self.config.storage_class,
            metadata: &[(UPLOAD_ID_METADATA, record.upload_id.as_str())],
            max_bytes: self.config.size_limit(),
        };
        let signed = async {
            let signer = self.bucket.signer().await?;
            let lifetime = self.url_lifetime(&record, now_ms(), &signer)?;
            self.bucket.presign_post(&signer, form, lifetime).await
        };
        let post = match signed.await {
            Ok(post) => post,
            Err(e) => {
                // Nothing can reach S3 without the form: the record is forgotten again.
                self.forget_quietly(&record).await;
                return Err(e);
            }
        };
        let fields: Map<String, Value> = post.fields.into_iter().map(|(name, value)| (name, json!(value))).collect();
        Ok(with_secret(
            json!({
                "method": "POST",
                "url": post.url,
                "fields": fields,
                "expires": post.expires_in.as_secs(),
                "upload_id": record.upload_id,
                "key": record.key,
                "upload_expires": iso8601(record.expires_at_ms),
            }),
            caller,
        ))
    }
}
