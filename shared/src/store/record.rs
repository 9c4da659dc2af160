//! An upload's record: the one source of truth about it (see `docs/design.md`), and its DynamoDB item. Its size does
//! not grow with the upload: parts and buffered chunks are summarized by [`PartLedger`] and [`BufferChain`].

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use super::ledger::{BufferChain, FlushLease, PartLedger};
use super::quota::counter_key;
use super::tus::TusRecord;
use crate::error::ApiError;
use crate::grid::{Grid, Mode};
use crate::hook::{HookAnswer, HookFailure, HookOutcome};
use crate::protocol::UploadId;
use crate::secret::SecretHash;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Uploading,
    /// One request holds the right to complete it (until `completing_since_ms` plus the lease).
    Completing,
    Complete,
    /// Being removed by an abort: no chunk is accepted any more.
    Aborted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Uploading => "uploading",
            Status::Completing => "completing",
            Status::Complete => "complete",
            Status::Aborted => "aborted",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Status::Uploading, Status::Completing, Status::Complete, Status::Aborted].into_iter().find(|v| v.as_str() == s)
    }
}

/// What completion produced, kept so a repeated complete can answer the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// Empty for the parallel and direct modes, which have no order to hash in.
    pub md5: String,
    pub etag: String,
    /// The object's full-object CRC64NVME as S3 computed it, in S3's base64 form.
    pub crc64: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UploadRecord {
    pub upload_id: UploadId,
    pub owner: String,
    pub filename: String,
    pub content_type: String,
    pub total: u64,
    pub offset: u64,
    pub status: Status,
    pub created_at_ms: u64,
    /// Creation plus the expiration delta; past it the upload is gone whether or not TTL has removed the item.
    pub expires_at_ms: u64,
    pub key: String,
    /// S3's multipart upload; `None` between the record's creation and its first chunk's commit. The record is
    /// written before the multipart upload is created, so no multipart upload exists that no record leads to.
    pub multipart_id: Option<String>,
    pub part_size: u64,
    /// Where the part being gathered starts: the bytes before it are in accepted parts, the rest up to `offset` in
    /// buffered chunks.
    pub part_start: u64,
    /// The offset at which the buffered chunks must become a part: a plain number so DynamoDB can compare it.
    pub flush_at: u64,
    pub parts: PartLedger,
    /// Who may upload the next part now, and until when (`store::ledger::FlushLease`).
    pub flush_lease: Option<FlushLease>,
    pub buffers: BufferChain,
    pub md5_state: Vec<u8>,
    /// When the current completion attempt began.
    pub completing_since_ms: Option<u64>,
    pub completed: Option<Completed>,
    /// An anonymous upload's secret, hashed (see `secret`); none for an authenticated owner's.
    pub secret_hash: Option<SecretHash>,
    /// The counter item the upload counts against (see `store::quota`): its owner's, or an anonymous caller's
    /// network's; `None` if no limit was set when it started.
    pub counted: Option<String>,
    pub mode: Mode,
    /// The parallel mode's chunk size (its grid: `grid::Grid`); the direct mode's is its part size; 0 in sequential
    /// mode, whose chunks may have any size.
    pub chunk_size: u64,
    /// What the completion hook said, once it was called: its answer, or why it gave none (called again then).
    pub hook: Option<HookOutcome>,
    /// What a tus upload keeps beyond this (`store::tus`); none for an upload made through `/upload`.
    pub tus: Option<TusRecord>,
}

/// Attribute names, in one place for the item mapping and the condition expressions.
pub mod attr {
    pub const UPLOAD_ID: &str = "upload_id";
    pub const OWNER: &str = "owner";
    pub const FILENAME: &str = "filename";
    pub const CONTENT_TYPE: &str = "content_type";
    pub const TOTAL: &str = "total";
    pub const OFFSET: &str = "offset";
    pub const STATUS: &str = "status";
    pub const CREATED_AT_MS: &str = "created_at_ms";
    pub const EXPIRES_AT_MS: &str = "expires_at_ms";
    /// Epoch seconds: the table's TTL attribute.
    pub const EXPIRES_AT: &str = "expires_at";
    pub const KEY: &str = "s3_key";
    pub const MULTIPART_ID: &str = "multipart_id";
    pub const PART_SIZE: &str = "part_size";
    pub const FLUSH_AT: &str = "flush_at";
    /// The flush lease's holder (`FlushLease::holder`) and its end.
    pub const FLUSH_HOLDER: &str = "flush_holder";
    pub const FLUSH_UNTIL_MS: &str = "flush_until_ms";
    pub const PART_START: &str = "part_start";
    pub const PARTS: &str = "part_ledger";
    pub const BUFFERS: &str = "buffer_chain";
    pub const MD5_STATE: &str = "md5_state";
    pub const COMPLETING_SINCE_MS: &str = "completing_since_ms";
    pub const MD5: &str = "md5";
    pub const ETAG: &str = "etag";
    pub const SECRET_HASH: &str = "secret_hash";
    pub const COUNTED: &str = "counted";
    pub const MODE: &str = "mode";
    pub const CHUNK_SIZE: &str = "chunk_size";
    pub const CRC64: &str = "crc64nvme";
    /// The completion hook's answer, as JSON text (`hook::HookAnswer`).
    pub const HOOK_DATA: &str = "hook_data";
    /// Why the completion hook gave no answer; removed when it answers.
    pub const HOOK_ERROR: &str = "hook_error";
    /// A tus upload's metadata, concatenation and deferred length (`store::tus`).
    pub const TUS: &str = "tus";
}

impl UploadRecord {
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at_ms
    }

    /// The grid of a parallel or direct upload.
    pub fn grid(&self) -> Grid {
        Grid { total: self.total, part_size: self.part_size, chunk_size: self.chunk_size.max(1) }
    }

    pub fn to_item(&self) -> HashMap<String, AttributeValue> {
        let n = |v: u64| AttributeValue::N(v.to_string());
        let s = |v: &str| AttributeValue::S(v.to_string());
        let mut item = HashMap::from([
            (attr::UPLOAD_ID.into(), s(self.upload_id.as_str())),
            (attr::OWNER.into(), s(&self.owner)),
            (attr::FILENAME.into(), s(&self.filename)),
            (attr::CONTENT_TYPE.into(), s(&self.content_type)),
            (attr::TOTAL.into(), n(self.total)),
            (attr::OFFSET.into(), n(self.offset)),
            (attr::STATUS.into(), s(self.status.as_str())),
            (attr::CREATED_AT_MS.into(), n(self.created_at_ms)),
            (attr::EXPIRES_AT_MS.into(), n(self.expires_at_ms)),
            (attr::EXPIRES_AT.into(), n(self.expires_at_ms.div_ceil(1000))),
            (attr::KEY.into(), s(&self.key)),
            (attr::PART_SIZE.into(), n(self.part_size)),
            (attr::PART_START.into(), n(self.part_start)),
            (attr::FLUSH_AT.into(), n(self.flush_at)),
            (attr::PARTS.into(), blob(self.parts.encode())),
            (attr::BUFFERS.into(), blob(self.buffers.0.to_vec())),
            (attr::MD5_STATE.into(), blob(self.md5_state.clone())),
        ]);
        if let Some(id) = &self.multipart_id {
            item.insert(attr::MULTIPART_ID.into(), s(id));
        }
        if let Some(lease) = &self.flush_lease {
            item.insert(attr::FLUSH_HOLDER.into(), blob(lease.holder()));
            item.insert(attr::FLUSH_UNTIL_MS.into(), n(lease.until_ms));
        }
        if let Some(since) = self.completing_since_ms {
            item.insert(attr::COMPLETING_SINCE_MS.into(), n(since));
        }
        if let Some(done) = &self.completed {
            item.insert(attr::MD5.into(), s(&done.md5));
            item.insert(attr::ETAG.into(), s(&done.etag));
            item.insert(attr::CRC64.into(), s(&done.crc64));
        }
        if let Some(hash) = &self.secret_hash {
            item.insert(attr::SECRET_HASH.into(), blob(hash.as_bytes().to_vec()));
        }
        // `true` for the owner's counter, as before anonymous uploads were counted by their network.
        match &self.counted {
            Some(counter) if *counter == counter_key(&self.owner) => {
                item.insert(attr::COUNTED.into(), AttributeValue::Bool(true));
            }
            Some(counter) => {
                item.insert(attr::COUNTED.into(), s(counter));
            }
            None => {}
        }
        // Absent for the sequential mode, so its records stay as small as before the other modes.
        if self.mode != Mode::Sequential {
            item.insert(attr::MODE.into(), s(self.mode.as_str()));
            item.insert(attr::CHUNK_SIZE.into(), n(self.chunk_size));
        }
        match &self.hook {
            Some(HookOutcome::Answered(answer)) => {
                item.insert(attr::HOOK_DATA.into(), s(answer.text()));
            }
            Some(HookOutcome::Failed(failure)) => {
                item.insert(attr::HOOK_ERROR.into(), s(failure.detail()));
            }
            None => {}
        }
        if let Some(tus) = &self.tus {
            item.insert(attr::TUS.into(), tus.to_attribute());
        }
        item
    }

    pub fn from_item(item: &HashMap<String, AttributeValue>) -> Result<Self, ApiError> {
        let damaged = |name: &str| {
            ApiError::Unrecoverable(format!("The upload record is damaged ({name}); start the upload again"))
        };
        let s = |name: &'static str| -> Result<String, ApiError> {
            item.get(name).and_then(|v| v.as_s().ok()).cloned().ok_or_else(|| damaged(name))
        };
        let n = |name: &'static str| -> Result<u64, ApiError> {
            item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).ok_or_else(|| damaged(name))
        };
        let b = |name: &'static str| -> Result<&[u8], ApiError> {
            item.get(name).and_then(|v| v.as_b().ok()).map(Blob::as_ref).ok_or_else(|| damaged(name))
        };
        let completed = match (item.get(attr::MD5), item.get(attr::ETAG)) {
            (Some(_), Some(_)) => Some(Completed {
                md5: s(attr::MD5)?,
                etag: s(attr::ETAG)?,
                crc64: item.get(attr::CRC64).map(|_| s(attr::CRC64)).transpose()?.unwrap_or_default(),
            }),
            _ => None,
        };
        let owner = s(attr::OWNER)?;
        let counted = match item.get(attr::COUNTED) {
            Some(AttributeValue::Bool(true)) => Some(counter_key(&owner)),
            Some(AttributeValue::S(counter)) => Some(counter.clone()),
            _ => None,
        };
        Ok(UploadRecord {
            upload_id: UploadId::parse(&s(attr::UPLOAD_ID)?).map_err(|_| damaged(attr::UPLOAD_ID))?,
            owner,
            filename: s(attr::FILENAME)?,
            content_type: s(attr::CONTENT_TYPE)?,
            total: n(attr::TOTAL)?,
            offset: n(attr::OFFSET)?,
            status: Status::parse(&s(attr::STATUS)?).ok_or_else(|| damaged(attr::STATUS))?,
            created_at_ms: n(attr::CREATED_AT_MS)?,
            expires_at_ms: n(attr::EXPIRES_AT_MS)?,
            key: s(attr::KEY)?,
            multipart_id: item.get(attr::MULTIPART_ID).map(|_| s(attr::MULTIPART_ID)).transpose()?,
            part_size: n(attr::PART_SIZE)?,
            part_start: n(attr::PART_START)?,
            flush_at: n(attr::FLUSH_AT)?,
            parts: PartLedger::decode(b(attr::PARTS)?).ok_or_else(|| damaged(attr::PARTS))?,
            flush_lease: match item.get(attr::FLUSH_HOLDER) {
                None => None,
                Some(_) => Some(
                    FlushLease::decode(b(attr::FLUSH_HOLDER)?, n(attr::FLUSH_UNTIL_MS)?)
                        .ok_or_else(|| damaged(attr::FLUSH_HOLDER))?,
                ),
            },
            buffers: BufferChain::decode(b(attr::BUFFERS)?).ok_or_else(|| damaged(attr::BUFFERS))?,
            md5_state: b(attr::MD5_STATE)?.to_vec(),
            completing_since_ms: item
                .get(attr::COMPLETING_SINCE_MS)
                .map(|_| n(attr::COMPLETING_SINCE_MS))
                .transpose()?,
            completed,
            secret_hash: item
                .get(attr::SECRET_HASH)
                .map(|_| {
                    b(attr::SECRET_HASH)
                        .and_then(|h| SecretHash::from_bytes(h).ok_or_else(|| damaged(attr::SECRET_HASH)))
                })
                .transpose()?,
            counted,
            mode: match item.get(attr::MODE) {
                None => Mode::Sequential,
                Some(_) => Mode::parse(&s(attr::MODE)?).ok_or_else(|| damaged(attr::MODE))?,
            },
            chunk_size: item.get(attr::CHUNK_SIZE).map(|_| n(attr::CHUNK_SIZE)).transpose()?.unwrap_or_default(),
            hook: match (item.get(attr::HOOK_DATA), item.get(attr::HOOK_ERROR)) {
                (Some(_), _) => Some(HookOutcome::Answered(
                    HookAnswer::parse(s(attr::HOOK_DATA)?.as_bytes()).map_err(|_| damaged(attr::HOOK_DATA))?,
                )),
                (None, Some(_)) => Some(HookOutcome::Failed(HookFailure::new(s(attr::HOOK_ERROR)?))),
                (None, None) => None,
            },
            tus: item
                .get(attr::TUS)
                .map(|v| TusRecord::from_attribute(v).ok_or_else(|| damaged(attr::TUS)))
                .transpose()?,
        })
    }
}

pub fn blob(bytes: Vec<u8>) -> AttributeValue {
    AttributeValue::B(Blob::new(bytes))
}

/// Prefix under which all of an upload's buffered chunks live.
pub fn buffer_prefix_of(prefix: &str, upload_id: &UploadId) -> String {
    format!("{prefix}{upload_id}/")
}

/// An item's size as DynamoDB bills it: attribute names plus values (strings and binaries by their bytes, numbers
/// by one byte per two significant digits plus one).
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(s) => s.len(),
                    AttributeValue::B(b) => b.as_ref().len(),
                    AttributeValue::N(n) => {
                        let digits = n.trim_start_matches('-').replace('.', "");
                        let significant = digits.trim_start_matches('0').trim_end_matches('0').len().max(1);
                        significant.div_ceil(2) + 1
                    }
                    _ => 1,
                }
        })
        .sum()
}

/// Write units of one write of an item that is `before` bytes and becomes `after` bytes (DynamoDB bills the larger,
/// per started KB; a failed conditional write is billed the same).
pub fn write_units(before: usize, after: usize) -> usize {
    before.max(after).div_ceil(1024).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::Crc64;
    use crate::store::ledger::BufferedChunk;
    use crate::store::sizing;

    fn record() -> UploadRecord {
        UploadRecord {
            upload_id: UploadId::parse(&"a".repeat(32)).unwrap(),
            owner: "alice".into(),
            filename: "f.bin".into(),
            content_type: "application/octet-stream".into(),
            total: 100,
            offset: 30,
            status: Status::Uploading,
            created_at_ms: 1_000,
            expires_at_ms: 86_401_000,
            key: "uploads/x/f.bin".into(),
            multipart_id: Some("mp".into()),
            part_size: 5 << 20,
            part_start: 10,
            flush_at: 100,
            parts: PartLedger::default().with_part(Crc64(3), 10),
            flush_lease: None,
            buffers: BufferChain::default().then(BufferedChunk { start: 10, crc64: 7 }),
            md5_state: crate::md5state::empty(),
            completing_since_ms: None,
            completed: None,
            secret_hash: None,
            counted: None,
            mode: Mode::Sequential,
            chunk_size: 0,
            hook: None,
            tus: None,
        }
    }

    #[test]
    fn item_round_trips() {
        let r = record();
        assert_eq!(UploadRecord::from_item(&r.to_item()).unwrap(), r);
        let done = UploadRecord {
            status: Status::Complete,
            completing_since_ms: Some(5),
            completed: Some(Completed { md5: "m".into(), etag: "e".into(), crc64: "c".into() }),
            secret_hash: Some(crate::secret::UploadSecret::generate().hash()),
            counted: Some(counter_key("alice")),
            ..record()
        };
        assert_eq!(UploadRecord::from_item(&done.to_item()).unwrap(), done);
        let fresh = UploadRecord { multipart_id: None, ..record() };
        assert_eq!(UploadRecord::from_item(&fresh.to_item()).unwrap(), fresh);
        let lease = FlushLease { start: 30, end: 100, crc: Crc64(9), until_ms: 99 };
        let flushing = UploadRecord { flush_lease: Some(lease), ..record() };
        assert_eq!(UploadRecord::from_item(&flushing.to_item()).unwrap(), flushing);
        assert_eq!(UploadRecord::from_item(&fresh.to_item()).unwrap(), fresh);
        let parallel = UploadRecord { mode: Mode::Parallel, chunk_size: 4 << 20, ..record() };
        assert_eq!(UploadRecord::from_item(&parallel.to_item()).unwrap(), parallel);
        let answered = HookOutcome::Answered(HookAnswer::parse(br#"{"attachment_id": 7}"#).unwrap());
        let hooked = UploadRecord { hook: Some(answered), ..done.clone() };
        assert_eq!(UploadRecord::from_item(&hooked.to_item()).unwrap(), hooked);
        let failed = UploadRecord { hook: Some(HookOutcome::Failed(HookFailure::new("timed out"))), ..done };
        assert_eq!(UploadRecord::from_item(&failed.to_item()).unwrap(), failed);
    }

    #[test]
    fn a_chunk_costs_the_same_write_units_at_any_part_count() {
        println!(
            "| parts | item bytes (typical) | WCU per chunk (typical) | item bytes (longest names, a flush lease) | WCU per chunk (worst) | WCU per chunk before |"
        );
        for parts in [1, 100, 1_000, 10_000] {
            let c = sizing::chunk_cost(parts);
            println!(
                "| {parts} | {} | {} | {} | {} | {} |",
                c.typical_bytes, c.typical_units, c.worst_bytes, c.worst_units, c.before_units
            );
            // The item does not grow with the parts: part numbers and their CRC are a count and 8 bytes.
            assert_eq!(
                (c.typical_bytes, c.worst_bytes),
                (sizing::chunk_cost(1).typical_bytes, sizing::chunk_cost(1).worst_bytes)
            );
            assert_eq!(c.typical_units, 2, "{parts} parts: {} bytes", c.typical_bytes);
            assert!(c.worst_units <= 4, "{parts} parts: {} bytes", c.worst_bytes);
        }
        assert_eq!(sizing::chunk_cost(10_000).before_units, 2 * 187);
    }

    #[test]
    fn sizes_are_counted_as_dynamodb_counts_them() {
        let item = HashMap::from([
            ("ab".to_string(), AttributeValue::S("xyz".into())),
            ("n".to_string(), AttributeValue::N("1200".into())),
            ("b".to_string(), blob(vec![0; 10])),
        ]);
        assert_eq!(item_size(&item), 5 + 3 + 11);
        assert_eq!(write_units(1024, 10), 1);
        assert_eq!(write_units(1025, 10), 2);
    }

    #[test]
    fn damaged_items_are_errors() {
        let mut item = record().to_item();
        item.insert(attr::BUFFERS.into(), blob(vec![1, 2, 3]));
        assert!(UploadRecord::from_item(&item).is_err());
        item.remove(attr::OFFSET);
        assert!(UploadRecord::from_item(&item).is_err());
    }
}
