//! An owner's uploads, newest first, a page at a time: a Query of the table's `by_owner` index (HASH `owner`, RANGE
//! `created_at_ms`), never a scan. The index holds keys only, so the chunks' commits, which change no key, write
//! nothing to it; a page's records are then read by their keys. Counters and tombstones (`store::quota`) and part
//! items (`store::parts`) have no `owner` and no `created_at_ms`, so the index never holds them.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::record::{UploadRecord, attr};
use super::table::{BATCH, Table};
use super::unavailable;
use crate::error::ApiError;
use crate::protocol::UploadId;

/// The table's index of uploads by owner.
pub const OWNER_INDEX: &str = "by_owner";

/// Where a page of one owner's listing ends: the index key of its last upload, without the owner, which is always
/// the caller's. A cursor however made can thus only lead into the caller's own uploads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    created_at_ms: u64,
    upload_id: UploadId,
}

impl Cursor {
    /// The text the client is given: base64url of `{created_at_ms}.{upload_id}`, opaque to it.
    pub fn encode(&self) -> String {
        base64_simd::URL_SAFE_NO_PAD.encode_to_string(format!("{}.{}", self.created_at_ms, self.upload_id))
    }

    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let malformed =
            || ApiError::BadRequest("cursor is not one this service gave (pass next_cursor as given)".into());
        let bytes = base64_simd::URL_SAFE_NO_PAD.decode_to_vec(text).map_err(|_| malformed())?;
        let text = String::from_utf8(bytes).map_err(|_| malformed())?;
        let (created, upload_id) = text.split_once('.').ok_or_else(malformed)?;
        if created.is_empty() || !created.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        let created_at_ms = created.parse().map_err(|_| malformed())?;
        let upload_id = UploadId::parse(upload_id).map_err(|_| malformed())?;
        Ok(Cursor { created_at_ms, upload_id })
    }

    fn start_key(&self, owner: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (attr::OWNER.to_string(), AttributeValue::S(owner.to_string())),
            (attr::CREATED_AT_MS.to_string(), AttributeValue::N(self.created_at_ms.to_string())),
            (attr::UPLOAD_ID.to_string(), AttributeValue::S(self.upload_id.to_string())),
        ])
    }

    fn from_key(key: &HashMap<String, AttributeValue>) -> Option<Self> {
        let created_at_ms = key.get(attr::CREATED_AT_MS)?.as_n().ok()?.parse().ok()?;
        let upload_id = UploadId::parse(key.get(attr::UPLOAD_ID)?.as_s().ok()?).ok()?;
        Some(Cursor { created_at_ms, upload_id })
    }
}

/// The most uploads a page may hold: one BatchGetItem reads them.
pub const MAX_PAGE: usize = BATCH;

/// One page of an owner's uploads, newest first.
pub struct Page {
    pub records: Vec<UploadRecord>,
    /// Where the next page starts; `None`: this is the last.
    pub next: Option<Cursor>,
}

impl Table {
    /// Up to `limit` (at most [`MAX_PAGE`]) of `owner`'s uploads, newest first, after `cursor`.
    pub async fn list_by_owner(&self, owner: &str, limit: usize, cursor: Option<&Cursor>) -> Result<Page, ApiError> {
        let limit = limit.clamp(1, MAX_PAGE);
        // One more than the page: whether another page follows is known now, so the last page says so and no
        // empty page follows it.
        let out = self
            .client()
            .query()
            .table_name(self.name())
            .index_name(OWNER_INDEX)
            .key_condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", attr::OWNER)
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_string()))
            .scan_index_forward(false)
            .limit(limit as i32 + 1)
            .set_exclusive_start_key(cursor.map(|c| c.start_key(owner)))
            .send()
            .await
            .map_err(|e| unavailable("Query", &e))?;
        let mut keys: Vec<Cursor> = out.items.unwrap_or_default().iter().filter_map(Cursor::from_key).collect();
        let next = if keys.len() > limit {
            keys.truncate(limit);
            keys.last().cloned()
        } else {
            // Cut short by the 1 MB a Query reads at most (keys are far smaller, but be sure): go on from there.
            out.last_evaluated_key.as_ref().and_then(Cursor::from_key)
        };
        // Index keys that are not upload ids were never ours: `Cursor::from_key` left them out.
        let ids: Vec<UploadId> = keys.into_iter().map(|k| k.upload_id).collect();
        let mut by_id: HashMap<UploadId, UploadRecord> = HashMap::new();
        for item in self.items(ids.iter().map(UploadId::to_string).collect()).await? {
            let record = UploadRecord::from_item(&item)?;
            // Only the owner's, whatever the index said.
            if record.owner == owner {
                by_id.insert(record.upload_id.clone(), record);
            }
        }
        // Removed since the index was read (TTL, an abort): left out.
        let records = ids.iter().filter_map(|id| by_id.remove(id)).collect();
        Ok(Page { records, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_parse_back_and_nothing_else_does() {
        let cursor = Cursor {
            created_at_ms: 1_795_888_582_186,
            upload_id: UploadId::parse("0123456789abcdef0123456789abcdef").unwrap(),
        };
        let text = cursor.encode();
        assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{text}");
        assert_eq!(Cursor::parse(&text).unwrap(), cursor);
        let encode = |s: &str| base64_simd::URL_SAFE_NO_PAD.encode_to_string(s);
        for bad in [
            String::new(),
            "not base64!".into(),
            format!("{text}="),
            encode("1795888582186"),
            encode("1795888582186.0123"),
            encode(".0123456789abcdef0123456789abcdef"),
            encode("-1.0123456789abcdef0123456789abcdef"),
            encode("+1.0123456789abcdef0123456789abcdef"),
            encode("99999999999999999999.0123456789abcdef0123456789abcdef"),
            encode("1.0123456789ABCDEF0123456789ABCDEF"),
            encode("1.owner/alice"),
            encode("1.released/0123456789abcdef0123456789abcdef"),
        ] {
            assert!(matches!(Cursor::parse(&bad), Err(ApiError::BadRequest(_))), "{bad:?}");
        }
    }

    #[test]
    fn a_cursor_starts_in_the_callers_own_partition() {
        let cursor =
            Cursor { created_at_ms: 5, upload_id: UploadId::parse("0123456789abcdef0123456789abcdef").unwrap() };
        let key = cursor.start_key("alice");
        assert_eq!(key[attr::OWNER], AttributeValue::S("alice".into()));
        assert_eq!(Cursor::from_key(&key), Some(cursor));
    }
}
