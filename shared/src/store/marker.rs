//! Markers: items that say something was done once for an upload (an event published: `events`), so a repeated
//! stream delivery does not do it again. Their keys contain '/', so they are never taken for upload records
//! (no `UploadId` parses from them); each has a TTL of its own.

use aws_sdk_dynamodb::types::AttributeValue;

use super::record::attr;
use super::table::Table;
use super::unavailable;
use crate::error::ApiError;

impl Table {
    /// Whether the marker `key` is there (a strongly consistent read: a marker written a moment ago counts).
    pub async fn marked(&self, key: &str) -> Result<bool, ApiError> {
        let out = self
            .client()
            .get_item()
            .table_name(self.name())
            .key(attr::UPLOAD_ID, AttributeValue::S(key.to_string()))
            .consistent_read(true)
            .projection_expression("#id")
            .expression_attribute_names("#id", attr::UPLOAD_ID)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", &e))?;
        Ok(out.item.is_some())
    }

    /// Puts the marker `key`, which TTL removes after `until_secs`. Writing it twice does no harm.
    pub async fn mark(&self, key: &str, until_secs: u64) -> Result<(), ApiError> {
        self.client()
            .put_item()
            .table_name(self.name())
            .item(attr::UPLOAD_ID, AttributeValue::S(key.to_string()))
            .item(attr::EXPIRES_AT, AttributeValue::N(until_secs.to_string()))
            .send()
            .await
            .map_err(|e| unavailable("PutItem", &e))?;
        Ok(())
    }
}
