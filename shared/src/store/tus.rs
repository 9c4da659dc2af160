//! What a tus upload keeps beyond a sequential upload's record, and the storage calls only tus needs: declaring a
//! deferred length, reading the pieces of a concatenation together, and assembling an object in S3 from others
//! (`UploadPartCopy`, and ranged reads for pieces too small to be parts of their own).
//!
//! The record keeps it in one map attribute, `tus`: `m` the `Upload-Metadata` header as the client sent it (HEAD
//! repeats it), `c` `partial` or `final`, `p` a final upload's pieces (upload ids, in order), `d` while the length is
//! deferred. A sequential upload made through `/upload` has none.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use serde_json::{Value, json};

use super::bucket::Bucket;
use super::quota::BYTES;
use super::record::{Status, UploadRecord, attr};
use super::table::{BATCH, Table};
use super::{ambiguous, unavailable};
use crate::checksum::Crc64;
use crate::error::ApiError;
use crate::md5state;
use crate::protocol::UploadId;

/// The longest `Upload-Metadata` kept. It is stored in the record, which every chunk writes twice and DynamoDB bills
/// by size: a typical record with this much metadata stays under 2 KB, so a chunk costs at most 4 write units.
pub const MAX_METADATA_BYTES: usize = 1024;
/// The most pieces a final upload may concatenate: its record lists them.
pub const MAX_PIECES: usize = 100;

/// The tus side of an upload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TusRecord {
    /// `Upload-Metadata` as the client sent it (checked, at most [`MAX_METADATA_BYTES`]).
    pub metadata: String,
    pub concat: Concat,
    /// Created with `Upload-Defer-Length: 1` and no length declared yet: the record's total is the most the upload
    /// may become, what it counts against its owner's limits until the length is known.
    pub deferred: bool,
}

/// What an upload is to the concatenation extension.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Concat {
    /// An upload of its own.
    #[default]
    Whole,
    /// `Upload-Concat: partial`: a piece of a later final upload. Its object waits under the buffer prefix, where the
    /// lifecycle rule removes what no concatenation took.
    Partial,
    /// `Upload-Concat: final;...`: made in S3 from these pieces, in order.
    Final(Vec<UploadId>),
}

const METADATA: &str = "m";
const CONCAT: &str = "c";
const PIECES: &str = "p";
const DEFERRED: &str = "d";

impl TusRecord {
    pub fn to_attribute(&self) -> AttributeValue {
        let mut map = HashMap::new();
        if !self.metadata.is_empty() {
            map.insert(METADATA.to_string(), AttributeValue::S(self.metadata.clone()));
        }
        match &self.concat {
            Concat::Whole => {}
            Concat::Partial => {
                map.insert(CONCAT.to_string(), AttributeValue::S("partial".into()));
            }
            Concat::Final(pieces) => {
                map.insert(CONCAT.to_string(), AttributeValue::S("final".into()));
                let ids: Vec<&str> = pieces.iter().map(UploadId::as_str).collect();
                map.insert(PIECES.to_string(), AttributeValue::S(ids.join(" ")));
            }
        }
        if self.deferred {
            map.insert(DEFERRED.to_string(), AttributeValue::Bool(true));
        }
        AttributeValue::M(map)
    }

    /// `None` when the attribute is not a tus record's.
    pub fn from_attribute(value: &AttributeValue) -> Option<Self> {
        let map = value.as_m().ok()?;
        let text = |name: &str| map.get(name).map(|v| v.as_s().cloned().ok()).unwrap_or(Some(String::new()));
        let concat = match text(CONCAT)?.as_str() {
            "" => Concat::Whole,
            "partial" => Concat::Partial,
            "final" => Concat::Final(
                text(PIECES)?
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(UploadId::parse)
                    .collect::<Result<_, _>>()
                    .ok()?,
            ),
            _ => return None,
        };
        Some(TusRecord { metadata: text(METADATA)?, concat, deferred: map.contains_key(DEFERRED) })
    }

    pub fn is_partial(&self) -> bool {
        self.concat == Concat::Partial
    }

    /// What the result, the listing and the events say of it.
    pub fn to_json(&self) -> Value {
        let mut json = json!({ "metadata": crate::tus::metadata::decoded(&self.metadata) });
        match &self.concat {
            Concat::Whole => {}
            Concat::Partial => json["concat"] = json!("partial"),
            Concat::Final(pieces) => {
                json["concat"] = json!("final");
                json["pieces"] = json!(pieces);
            }
        }
        if self.deferred {
            json["length_deferred"] = json!(true);
        }
        json
    }
}

impl UploadRecord {
    /// A tus upload whose object is made in S3 from others rather than from bytes it received: a final upload (from
    /// its pieces), or an empty one (from none).
    pub fn assembled_from(&self) -> Option<&[UploadId]> {
        match &self.tus {
            Some(TusRecord { concat: Concat::Final(pieces), .. }) => Some(pieces),
            Some(_) if self.total == 0 => Some(&[]),
            _ => None,
        }
    }

    /// The MD5 a tus upload completes with: computed as its bytes came, since the protocol has the client declare
    /// none. `None` for other uploads, and for an assembled one, whose bytes never passed through the service.
    pub fn computed_md5(&self) -> Result<Option<String>, ApiError> {
        match &self.tus {
            Some(_) if self.assembled_from().is_none() => md5state::finish_hex(&self.md5_state).map(Some),
            _ => Ok(None),
        }
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl Table {
    /// Declares the length of a deferred upload, as read in `record`, to be `length`: the total, the point of its
    /// last flush, and (when it was counted) its owner's bytes in progress, in one transaction. Only if nothing
    /// moved since the read; false if something did (the caller reads again).
    pub async fn declare_length(&self, record: &UploadRecord, length: u64) -> Result<bool, ApiError> {
        let update = Update::builder()
            .table_name(self.name())
            .key(attr::UPLOAD_ID, s(record.upload_id.as_str()))
            .update_expression("SET #total = :length, #flush_at = :flush_at REMOVE #tus.#deferred")
            .condition_expression(
                "attribute_exists(#tus.#deferred) AND #status = :uploading AND #offset = :offset \
                 AND #flush_at = :was_flush_at",
            )
            .expression_attribute_names("#total", attr::TOTAL)
            .expression_attribute_names("#flush_at", attr::FLUSH_AT)
            .expression_attribute_names("#tus", attr::TUS)
            .expression_attribute_names("#deferred", DEFERRED)
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_names("#offset", attr::OFFSET)
            .expression_attribute_values(":length", n(length))
            .expression_attribute_values(":flush_at", n(record.flush_at.min(length)))
            .expression_attribute_values(":was_flush_at", n(record.flush_at))
            .expression_attribute_values(":uploading", s(Status::Uploading.as_str()))
            .expression_attribute_values(":offset", n(record.offset))
            .build()
            .map_err(|e| ApiError::Unavailable(format!("UpdateItem: {e}")))?;
        let mut request =
            self.client().transact_write_items().transact_items(TransactWriteItem::builder().update(update).build());
        if let Some(counter) = &record.counted {
            // What was counted for it is the most it could have become; the difference goes back now.
            let uncount = Update::builder()
                .table_name(self.name())
                .key(attr::UPLOAD_ID, s(counter))
                .update_expression("ADD #bytes :less")
                .condition_expression("attribute_exists(#bytes)")
                .expression_attribute_names("#bytes", BYTES)
                .expression_attribute_values(":less", AttributeValue::N(format!("-{}", record.total - length)))
                .build()
                .map_err(|e| ApiError::Unavailable(format!("UpdateItem: {e}")))?;
            request = request.transact_items(TransactWriteItem::builder().update(uncount).build());
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_transaction_canceled_exception() => Ok(false),
            Err(err) => Err(ambiguous("TransactWriteItems", &err)),
        }
    }

    /// The records of these uploads that exist (at most [`MAX_PIECES`]), read consistently, by id.
    pub async fn records(&self, ids: &[UploadId]) -> Result<HashMap<UploadId, UploadRecord>, ApiError> {
        let mut keys: Vec<String> = ids.iter().map(|id| id.as_str().to_string()).collect();
        keys.sort();
        keys.dedup();
        let mut found = HashMap::new();
        for batch in keys.chunks(BATCH) {
            for item in self.items(batch.to_vec()).await? {
                let record = UploadRecord::from_item(&item)?;
                found.insert(record.upload_id.clone(), record);
            }
        }
        Ok(found)
    }
}

/// A part copied by S3 from another object.
pub struct CopiedPart {
    pub etag: String,
    pub crc64: Option<Crc64>,
}

impl Bucket {
    /// `UploadPartCopy`: part `number` of the multipart upload at `key` becomes bytes `[start, end)` of the object
    /// at `source`, copied inside S3.
    pub async fn copy_part(
        &self,
        key: &str,
        multipart_id: &str,
        number: u32,
        source: &str,
        range: (u64, u64),
    ) -> Result<CopiedPart, ApiError> {
        let out = self
            .client()
            .upload_part_copy()
            .bucket(self.name())
            .key(key)
            .upload_id(multipart_id)
            .part_number(number as i32)
            .copy_source(format!("{}/{}", self.name(), encode_key(source)))
            .copy_source_range(format!("bytes={}-{}", range.0, range.1 - 1))
            .send()
            .await
            .map_err(|e| match e.as_service_error().and_then(|e| aws_sdk_s3::error::ProvideErrorMetadata::code(e)) {
                Some("NoSuchUpload") | Some("NoSuchKey") => ApiError::Expired,
                _ => unavailable("UploadPartCopy", &e),
            })?;
        let result = out.copy_part_result.ok_or_else(|| ApiError::Unavailable("UploadPartCopy: no result".into()))?;
        Ok(CopiedPart {
            etag: result.e_tag.ok_or_else(|| ApiError::Unavailable("UploadPartCopy: no ETag".into()))?,
            crc64: result.checksum_crc64_nvme.as_deref().and_then(Crc64::from_base64),
        })
    }

    /// Bytes `[start, end)` of an object.
    pub async fn get_range(&self, key: &str, range: (u64, u64)) -> Result<Bytes, ApiError> {
        let out = self
            .client()
            .get_object()
            .bucket(self.name())
            .key(key)
            .range(format!("bytes={}-{}", range.0, range.1 - 1))
            .send()
            .await
            .map_err(|e| match e.as_service_error().and_then(|e| aws_sdk_s3::error::ProvideErrorMetadata::code(e)) {
                Some("NoSuchKey") => ApiError::Expired,
                _ => unavailable("GetObject", &e),
            })?;
        collect(out.body).await
    }
}

async fn collect(body: ByteStream) -> Result<Bytes, ApiError> {
    body.collect()
        .await
        .map(|data| data.into_bytes())
        .map_err(|e| ApiError::Unavailable(format!("GetObject: reading the body: {e}")))
}

/// A key as `x-amz-copy-source` takes it: percent-encoded but for unreserved characters and `/`.
fn encode_key(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tus_records_round_trip() {
        let id = UploadId::new();
        for record in [
            TusRecord::default(),
            TusRecord { metadata: "filename YS5iaW4=".into(), concat: Concat::Partial, deferred: true },
            TusRecord { metadata: String::new(), concat: Concat::Final(vec![id.clone(), id.clone()]), deferred: false },
        ] {
            assert_eq!(TusRecord::from_attribute(&record.to_attribute()), Some(record));
        }
        assert_eq!(TusRecord::from_attribute(&AttributeValue::S("x".into())), None);
        let bad = AttributeValue::M(HashMap::from([(CONCAT.to_string(), s("whole"))]));
        assert_eq!(TusRecord::from_attribute(&bad), None);
    }

    /// A tus chunk's write units: the record carries the metadata, so a chunk's two writes are billed on it too.
    #[test]
    fn a_tus_chunk_costs_what_any_chunk_costs() {
        use crate::store::record::item_size;
        use crate::store::sizing::{chunk_units, record_at};
        let b64 = |s: &str| base64_simd::STANDARD.encode_to_string(s);
        // What Uppy's Tus plugin sends for a typical file: its meta fields, and filename and filetype.
        let uppy = ["name", "filename"]
            .map(|k| format!("{k} {}", b64("holiday-2026.mov")))
            .into_iter()
            .chain(["type", "filetype"].map(|k| format!("{k} {}", b64("video/quicktime"))))
            .collect::<Vec<_>>()
            .join(",");
        let typical = UploadRecord {
            tus: Some(TusRecord { metadata: uppy, concat: Concat::Whole, deferred: false }),
            ..record_at(1, false, false)
        };
        let worst = UploadRecord {
            tus: Some(TusRecord { metadata: "k".repeat(MAX_METADATA_BYTES), concat: Concat::Partial, deferred: true }),
            ..record_at(1, true, true)
        };
        let (typical, worst) = (item_size(&typical.to_item()), item_size(&worst.to_item()));
        println!(
            "tus record: typical {typical} bytes ({} WCU a chunk), worst {worst} bytes ({} WCU a chunk)",
            chunk_units(typical),
            chunk_units(worst)
        );
        // As every chunk (`record` tests): 2 write units typically, at most 4 with the longest of everything.
        assert_eq!(chunk_units(typical), 2, "{typical} bytes");
        assert!(chunk_units(worst) <= 4, "{worst} bytes");
    }

    #[test]
    fn copy_sources_are_url_encoded() {
        assert_eq!(encode_key("uploads/ab/a b+é.bin"), "uploads/ab/a%20b%2B%C3%A9.bin");
    }
}
