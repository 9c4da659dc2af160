//! The parallel and direct modes' part items: one small item per part, keyed `{upload_id}/part/{number}`, beside the
//! upload's record. Parts never contend on one item, and the record does not grow with them.
//!
//! - Parallel: each chunk is a slot (`s{slot}`: its CRC64NVME and the nonce of its buffered object), written once;
//!   the write that fills the last slot elects the request that uploads the part, which then records the part's
//!   CRC64NVME and ETag, once.
//! - Direct: the CRC64NVME a part's URL was presigned for, declared once: a URL for other bytes is never issued.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use futures_util::{StreamExt, TryStreamExt, stream};

use super::Table;
use super::record::{attr, blob};
use super::unavailable;
use crate::checksum::Crc64;
use crate::error::ApiError;
use crate::protocol::UploadId;

const CRC: &str = "crc";
const ETAG: &str = "etag";
use super::table::BATCH;
const BATCHES_IN_FLIGHT: usize = 4;

/// A parallel chunk, recorded: its CRC64NVME and the nonce that names its buffered object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub crc64: Crc64,
    pub nonce: u64,
}

impl Slot {
    fn encode(self) -> Vec<u8> {
        [self.crc64.0.to_be_bytes(), self.nonce.to_be_bytes()].concat()
    }

    fn decode(bytes: &[u8]) -> Option<Slot> {
        let crc = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let nonce = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
        (bytes.len() == 16).then_some(Slot { crc64: Crc64(crc), nonce })
    }
}

/// What the table holds about one part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartItem {
    pub slots: BTreeMap<u32, Slot>,
    /// The part's CRC64NVME: declared for a direct part's URL, recorded with the ETag once a parallel part is in S3.
    pub crc64: Option<Crc64>,
    /// Set once a parallel part is in S3.
    pub etag: Option<String>,
}

impl PartItem {
    fn from_item(item: &HashMap<String, AttributeValue>) -> Result<Self, ApiError> {
        let damaged = || ApiError::Unrecoverable("A part's record is damaged; start the upload again".into());
        let mut part = PartItem::default();
        for (name, value) in item {
            if let Some(slot) = name.strip_prefix('s').and_then(|n| n.parse::<u32>().ok()) {
                let bytes = value.as_b().map_err(|_| damaged())?;
                part.slots.insert(slot, Slot::decode(bytes.as_ref()).ok_or_else(damaged)?);
            }
        }
        if let Some(value) = item.get(CRC) {
            let bytes: [u8; 8] = value.as_b().ok().and_then(|b| b.as_ref().try_into().ok()).ok_or_else(damaged)?;
            part.crc64 = Some(Crc64(u64::from_be_bytes(bytes)));
        }
        part.etag = item.get(ETAG).map(|v| v.as_s().cloned().map_err(|_| damaged())).transpose()?;
        Ok(part)
    }

    /// Whether all `slots` chunks of the part are held.
    pub fn is_full(&self, slots: u32) -> bool {
        (0..slots).all(|s| self.slots.contains_key(&s))
    }
}

/// The outcome of recording a slot.
pub enum SlotWritten {
    /// Recorded; the part as it is now.
    Won(PartItem),
    /// The slot was already held; the part as it is.
    Held(PartItem),
}

pub fn part_key(upload_id: &UploadId, number: u32) -> String {
    format!("{upload_id}/part/{number}")
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl Table {
    fn update_part(&self, upload_id: &UploadId, number: u32, expires_at_secs: u64) -> UpdateItemFluentBuilder {
        self.client()
            .update_item()
            .table_name(self.name())
            .key(attr::UPLOAD_ID, AttributeValue::S(part_key(upload_id, number)))
            .expression_attribute_names("#expires_at", attr::EXPIRES_AT)
            .expression_attribute_values(":expires_at", n(expires_at_secs))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
    }

    /// Records a parallel chunk in its part's slot, unless the slot is held. The item expires with the upload
    /// (`expires_at_secs`, the table's TTL).
    pub async fn record_slot(
        &self,
        upload_id: &UploadId,
        number: u32,
        slot: u32,
        value: Slot,
        expires_at_secs: u64,
    ) -> Result<SlotWritten, ApiError> {
        let request = self
            .update_part(upload_id, number, expires_at_secs)
            .update_expression("SET #slot = :slot, #expires_at = :expires_at")
            .condition_expression("attribute_not_exists(#slot)")
            .expression_attribute_names("#slot", format!("s{slot}"))
            .expression_attribute_values(":slot", blob(value.encode()));
        // A retry after an unknown outcome finds its slot held with the same CRC: the same answer, so a plain 503.
        match send(request).await? {
            Ok(part) => Ok(SlotWritten::Won(part)),
            Err(held) => Ok(SlotWritten::Held(held.unwrap_or_default())),
        }
    }

    /// Records that a parallel part is in S3 with this CRC and ETag; false if another request recorded it first
    /// (with the same slots, so the same bytes).
    pub async fn record_flushed(
        &self,
        upload_id: &UploadId,
        number: u32,
        crc64: Crc64,
        etag: &str,
        expires_at_secs: u64,
    ) -> Result<bool, ApiError> {
        let request = self
            .update_part(upload_id, number, expires_at_secs)
            .update_expression("SET #crc = :crc, #etag = :etag, #expires_at = :expires_at")
            .condition_expression("attribute_not_exists(#etag)")
            .expression_attribute_names("#crc", CRC)
            .expression_attribute_names("#etag", ETAG)
            .expression_attribute_values(":crc", blob(crc64.0.to_be_bytes().to_vec()))
            .expression_attribute_values(":etag", AttributeValue::S(etag.to_string()));
        Ok(send(request).await?.is_ok())
    }

    /// Declares the CRC64NVME a direct part's URL is presigned for: true if the part had none or this one. A part's
    /// bytes are then fixed: no URL for other bytes is ever issued.
    pub async fn declare_part(
        &self,
        upload_id: &UploadId,
        number: u32,
        crc64: Crc64,
        expires_at_secs: u64,
    ) -> Result<bool, ApiError> {
        let request = self
            .update_part(upload_id, number, expires_at_secs)
            .update_expression("SET #crc = :crc, #expires_at = :expires_at")
            .condition_expression("attribute_not_exists(#crc) OR #crc = :crc")
            .expression_attribute_names("#crc", CRC)
            .expression_attribute_values(":crc", blob(crc64.0.to_be_bytes().to_vec()));
        Ok(send(request).await?.is_ok())
    }

    /// The items of these parts that exist, read consistently.
    pub async fn part_items(&self, upload_id: &UploadId, numbers: &[u32]) -> Result<HashMap<u32, PartItem>, ApiError> {
        let batches: Vec<_> = numbers.chunks(BATCH).map(|batch| self.part_batch(upload_id, batch)).collect();
        let found: Vec<Vec<(u32, PartItem)>> =
            stream::iter(batches).buffer_unordered(BATCHES_IN_FLIGHT).try_collect().await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn part_batch(&self, upload_id: &UploadId, numbers: &[u32]) -> Result<Vec<(u32, PartItem)>, ApiError> {
        let by_key: HashMap<String, u32> = numbers.iter().map(|&n| (part_key(upload_id, n), n)).collect();
        let mut found = Vec::new();
        for item in self.items(by_key.keys().cloned().collect()).await? {
            let number = item.get(attr::UPLOAD_ID).and_then(|v| v.as_s().ok()).and_then(|k| by_key.get(k));
            if let Some(&number) = number {
                found.push((number, PartItem::from_item(&item)?));
            }
        }
        Ok(found)
    }
}

/// Sends a conditional part update: `Ok(part as now)`, or `Err(part as it was)` when the condition failed.
async fn send(request: UpdateItemFluentBuilder) -> Result<Result<PartItem, Option<PartItem>>, ApiError> {
    match request.send().await {
        Ok(out) => Ok(Ok(PartItem::from_item(&out.attributes.unwrap_or_default())?)),
        Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
            let old = match e.into_err() {
                UpdateItemError::ConditionalCheckFailedException(c) => c.item,
                _ => None,
            };
            Ok(Err(old.as_ref().map(PartItem::from_item).transpose()?))
        }
        Err(err) => Err(unavailable("UpdateItem", &err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_trip_and_a_part_is_full_when_every_slot_is_held() {
        let slot = Slot { crc64: Crc64(0x0102_0304_0506_0708), nonce: 9 };
        assert_eq!(Slot::decode(&slot.encode()), Some(slot));
        assert_eq!(Slot::decode(&[0; 15]), None);
        let item = HashMap::from([
            ("s0".to_string(), blob(slot.encode())),
            ("s1".to_string(), blob(slot.encode())),
            (ETAG.to_string(), AttributeValue::S("\"e\"".into())),
            (CRC.to_string(), blob(7u64.to_be_bytes().to_vec())),
            (attr::UPLOAD_ID.to_string(), AttributeValue::S(part_key(&UploadId::new(), 1))),
        ]);
        let part = PartItem::from_item(&item).unwrap();
        assert!(part.is_full(2) && !part.is_full(3));
        assert_eq!((part.crc64, part.etag.as_deref()), (Some(Crc64(7)), Some("\"e\"")));
        assert!(UploadId::parse(&part_key(&UploadId::new(), 1)).is_err());
    }
}
