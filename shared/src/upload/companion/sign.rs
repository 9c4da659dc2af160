//! Part URLs (`GET /s3/multipart/{uploadId}/{partNumber}` and the batch form): presigned `UploadPart`s of any part
//! number S3 allows, for any bytes S3 takes for a part. The plugin sends no checksum and its part sizes are its own,
//! so the URLs pin neither (nor need a header); the completion checks what S3 then holds. A URL lives as a direct
//! upload's does: never past the upload's expiry nor `CHUNKED_UPLOAD_PRESIGN_EXPIRY_SECS`.

use std::time::Duration;

use super::not_multipart;
use crate::app::App;
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::metrics::Metric;
use crate::protocol::UploadId;
use crate::secret::Caller;

impl App {
    /// URLs for these part numbers (checked: 1 to 10,000) of the caller's upload, in their order, and how long they
    /// live.
    pub async fn uppy_part_urls(
        &self,
        caller: &Caller,
        upload_id: &UploadId,
        key: &str,
        numbers: &[u32],
    ) -> Result<(Vec<String>, Duration), ApiError> {
        let record = self.uppy_upload(caller, upload_id, key).await?;
        let now = now_ms();
        self.check_taking(&record, now)?;
        let multipart_id = record.multipart_id.as_deref().ok_or_else(not_multipart)?;
        let signer = self.bucket.signer().await?;
        let lifetime = self.url_lifetime(&record, now, &signer)?;
        let mut urls = Vec::with_capacity(numbers.len());
        // Signing is local: no call to S3.
        for &number in numbers {
            urls.push(self.bucket.presign_part(&signer, &record.key, multipart_id, number, None, lifetime).await?.url);
        }
        self.metrics.emit(Metric::PartUrlsIssued { count: urls.len() as u64 });
        Ok((urls, lifetime))
    }
}
