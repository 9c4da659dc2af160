//! The record writes of Uppy S3 uploads (`upload::companion`) that the other modes do not make: the plugin announces
//! no size, so the completion that learns it from S3 records it with the result.

use super::bucket::Finished;
use super::record::{Status, attr};
use super::table::{Table, Written, conditional, n, names, s};
use crate::error::ApiError;
use crate::grid::Mode;
use crate::protocol::UploadId;

/// Which write may complete an Uppy S3 upload.
pub enum Finishing {
    /// A multipart upload's completion, while the completion lease taken at `since_ms` holds.
    Leased { since_ms: u64 },
    /// A small file's single POST to S3, which S3 reported: any time the upload still takes bytes.
    Posted,
}

impl Table {
    /// Records an Uppy S3 upload's result and its size, once: `Lost` if `finishing`'s condition does not hold (the
    /// lease was taken over, or the upload is complete or gone). The completed record stays until
    /// `keep_until_secs`.
    pub async fn mark_complete_sized(
        &self,
        upload_id: &UploadId,
        finishing: Finishing,
        finished: &Finished,
        size: u64,
        keep_until_secs: u64,
    ) -> Result<Written, ApiError> {
        let request = self
            .update(upload_id)
            .update_expression(
                "SET #status = :complete, #md5 = :md5, #etag = :etag, #crc64nvme = :crc, #total = :size, \
                 #offset = :size, #expires_at = :keep",
            )
            .expression_attribute_values(":complete", s(Status::Complete.as_str()))
            .expression_attribute_values(":md5", s(""))
            .expression_attribute_values(":etag", s(&finished.etag))
            .expression_attribute_values(":crc", s(&finished.crc64))
            .expression_attribute_values(":size", n(size))
            .expression_attribute_values(":keep", n(keep_until_secs));
        let mut attributes =
            vec![attr::STATUS, attr::MD5, attr::ETAG, attr::CRC64, attr::TOTAL, attr::OFFSET, attr::EXPIRES_AT];
        let request = match finishing {
            Finishing::Leased { since_ms } => {
                attributes.push(attr::COMPLETING_SINCE_MS);
                request
                    .condition_expression("#status = :completing AND #completing_since_ms = :since")
                    .expression_attribute_values(":completing", s(Status::Completing.as_str()))
                    .expression_attribute_values(":since", n(since_ms))
            }
            Finishing::Posted => {
                attributes.extend([attr::MODE, attr::MULTIPART_ID]);
                request
                    .condition_expression(
                        "#status = :uploading AND #mode = :uppy_s3 AND attribute_not_exists(#multipart_id)",
                    )
                    .expression_attribute_values(":uploading", s(Status::Uploading.as_str()))
                    .expression_attribute_values(":uppy_s3", s(Mode::UppyS3.as_str()))
            }
        };
        conditional(request.set_expression_attribute_names(Some(names(&attributes)))).await
    }
}
