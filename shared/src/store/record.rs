//! An upload's record: the one source of truth about it (see `design-notes.md`), and its DynamoDB item.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::error::ApiError;
use crate::md5state::hex;
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

/// A part committed to the multipart upload, with the ETag S3 returned for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub number: u32,
    pub etag: String,
}

/// A chunk waiting in S3 for its part; its key is derived from these and its length from the next start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffered {
    pub start: u64,
    pub token: u64,
}

/// What completion produced, kept so a repeated complete can answer the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    pub md5: String,
    pub etag: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UploadRecord {
    pub upload_id: String,
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
    pub multipart_id: String,
    pub part_size: u64,
    /// The offset at which the buffered chunks must become a part: a plain number so DynamoDB can compare it.
    pub flush_at: u64,
    /// The last part number handed out; each flush attempt takes a fresh one so a loser never overwrites a winner.
    pub last_part_number: u32,
    pub parts: Vec<Part>,
    pub buffers: Vec<Buffered>,
    pub md5_state: Vec<u8>,
    /// When the current completion attempt began.
    pub completing_since_ms: Option<u64>,
    pub completed: Option<Completed>,
    /// An anonymous upload's secret, hashed (see `secret`); none for an authenticated owner's.
    pub secret_hash: Option<SecretHash>,
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
    pub const LAST_PART_NUMBER: &str = "last_part_number";
    pub const PARTS: &str = "parts";
    pub const BUFFERS: &str = "buffers";
    pub const MD5_STATE: &str = "md5_state";
    pub const COMPLETING_SINCE_MS: &str = "completing_since_ms";
    pub const MD5: &str = "md5";
    pub const ETAG: &str = "etag";
    pub const SECRET_HASH: &str = "secret_hash";
}

impl UploadRecord {
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at_ms
    }

    /// Bytes already gathered into parts; the rest up to `offset` is buffered.
    pub fn buffered_len(&self) -> u64 {
        self.buffers.first().map_or(0, |b| self.offset - b.start)
    }

    /// Buffered chunks with their lengths, in order.
    pub fn buffer_spans(&self) -> Vec<(Buffered, u64)> {
        let ends = self.buffers.iter().skip(1).map(|b| b.start).chain(std::iter::once(self.offset));
        self.buffers.iter().zip(ends).map(|(b, end)| (*b, end - b.start)).collect()
    }

    pub fn to_item(&self) -> HashMap<String, AttributeValue> {
        let n = |v: u64| AttributeValue::N(v.to_string());
        let s = |v: &str| AttributeValue::S(v.to_string());
        let mut item = HashMap::from([
            (attr::UPLOAD_ID.into(), s(&self.upload_id)),
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
            (attr::MULTIPART_ID.into(), s(&self.multipart_id)),
            (attr::PART_SIZE.into(), n(self.part_size)),
            (attr::FLUSH_AT.into(), n(self.flush_at)),
            (attr::LAST_PART_NUMBER.into(), n(self.last_part_number.into())),
            (attr::PARTS.into(), blob(encode_parts(&self.parts))),
            (attr::BUFFERS.into(), blob(encode_buffers(&self.buffers))),
            (attr::MD5_STATE.into(), blob(self.md5_state.clone())),
        ]);
        if let Some(since) = self.completing_since_ms {
            item.insert(attr::COMPLETING_SINCE_MS.into(), n(since));
        }
        if let Some(done) = &self.completed {
            item.insert(attr::MD5.into(), s(&done.md5));
            item.insert(attr::ETAG.into(), s(&done.etag));
        }
        if let Some(hash) = &self.secret_hash {
            item.insert(attr::SECRET_HASH.into(), blob(hash.as_bytes().to_vec()));
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
            (Some(_), Some(_)) => Some(Completed { md5: s(attr::MD5)?, etag: s(attr::ETAG)? }),
            _ => None,
        };
        Ok(UploadRecord {
            upload_id: s(attr::UPLOAD_ID)?,
            owner: s(attr::OWNER)?,
            filename: s(attr::FILENAME)?,
            content_type: s(attr::CONTENT_TYPE)?,
            total: n(attr::TOTAL)?,
            offset: n(attr::OFFSET)?,
            status: Status::parse(&s(attr::STATUS)?).ok_or_else(|| damaged(attr::STATUS))?,
            created_at_ms: n(attr::CREATED_AT_MS)?,
            expires_at_ms: n(attr::EXPIRES_AT_MS)?,
            key: s(attr::KEY)?,
            multipart_id: s(attr::MULTIPART_ID)?,
            part_size: n(attr::PART_SIZE)?,
            flush_at: n(attr::FLUSH_AT)?,
            last_part_number: u32::try_from(n(attr::LAST_PART_NUMBER)?).map_err(|_| damaged(attr::LAST_PART_NUMBER))?,
            parts: decode_parts(b(attr::PARTS)?).ok_or_else(|| damaged(attr::PARTS))?,
            buffers: decode_buffers(b(attr::BUFFERS)?).ok_or_else(|| damaged(attr::BUFFERS))?,
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
        })
    }
}

pub fn blob(bytes: Vec<u8>) -> AttributeValue {
    AttributeValue::B(Blob::new(bytes))
}

/// Key of a buffered chunk. The start sorts keys in upload order; the token makes each request's key its own.
pub fn buffer_key(prefix: &str, upload_id: &str, b: Buffered) -> String {
    format!("{prefix}{upload_id}/{:016x}-{:016x}", b.start, b.token)
}

/// Prefix under which all of an upload's buffered chunks live.
pub fn buffer_prefix_of(prefix: &str, upload_id: &str) -> String {
    format!("{prefix}{upload_id}/")
}

// Parts are stored as a blob so 10,000 of them stay far below DynamoDB's 400 KB item limit: per part a u16 number,
// then a tag byte: 0 for an ETag that is a quoted MD5 (16 raw bytes follow, the usual case), else the length of the
// ETag text that follows.
const ETAG_IS_MD5: u8 = 0;

pub fn encode_parts(parts: &[Part]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.len() * 19);
    for part in parts {
        // Part numbers never exceed 10,000.
        out.extend_from_slice(&(part.number as u16).to_be_bytes());
        match md5_etag_bytes(&part.etag) {
            Some(raw) => {
                out.push(ETAG_IS_MD5);
                out.extend_from_slice(&raw);
            }
            None => {
                let text = &part.etag.as_bytes()[..part.etag.len().min(255)];
                out.push(text.len() as u8);
                out.extend_from_slice(text);
            }
        }
    }
    out
}

pub fn decode_parts(mut bytes: &[u8]) -> Option<Vec<Part>> {
    let mut parts = Vec::with_capacity(bytes.len() / 19);
    while !bytes.is_empty() {
        let (head, rest) = bytes.split_at_checked(3)?;
        let number = u32::from(u16::from_be_bytes([head[0], head[1]]));
        let (etag, rest) = match head[2] {
            ETAG_IS_MD5 => {
                let (raw, rest) = rest.split_at_checked(16)?;
                (format!("\"{}\"", hex(raw)), rest)
            }
            len => {
                let (text, rest) = rest.split_at_checked(usize::from(len))?;
                (String::from_utf8(text.to_vec()).ok()?, rest)
            }
        };
        parts.push(Part { number, etag });
        bytes = rest;
    }
    Some(parts)
}

/// The 16 bytes of an ETag of the form `"<32 lowercase hex>"`, the form that round-trips exactly.
fn md5_etag_bytes(etag: &str) -> Option<[u8; 16]> {
    let inner = etag.strip_prefix('"')?.strip_suffix('"')?;
    if inner.len() != 32 || !inner.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut raw = [0u8; 16];
    for (i, byte) in raw.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&inner[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(raw)
}

pub fn encode_buffers(buffers: &[Buffered]) -> Vec<u8> {
    buffers.iter().flat_map(|b| b.start.to_be_bytes().into_iter().chain(b.token.to_be_bytes())).collect()
}

pub fn decode_buffers(bytes: &[u8]) -> Option<Vec<Buffered>> {
    if !bytes.len().is_multiple_of(16) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(16)
            .map(|c| Buffered {
                start: u64::from_be_bytes(c[..8].try_into().unwrap_or_default()),
                token: u64::from_be_bytes(c[8..].try_into().unwrap_or_default()),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> UploadRecord {
        UploadRecord {
            upload_id: "a".repeat(32),
            owner: "alice".into(),
            filename: "f.bin".into(),
            content_type: "application/octet-stream".into(),
            total: 100,
            offset: 30,
            status: Status::Uploading,
            created_at_ms: 1_000,
            expires_at_ms: 86_401_000,
            key: "uploads/x/f.bin".into(),
            multipart_id: "mp".into(),
            part_size: 5 << 20,
            flush_at: 100,
            last_part_number: 2,
            parts: vec![Part { number: 2, etag: "\"0123456789abcdef0123456789abcdef\"".into() }],
            buffers: vec![Buffered { start: 10, token: 7 }, Buffered { start: 25, token: 8 }],
            md5_state: crate::md5state::empty(),
            completing_since_ms: None,
            completed: None,
            secret_hash: None,
        }
    }

    #[test]
    fn item_round_trips() {
        let r = record();
        assert_eq!(UploadRecord::from_item(&r.to_item()).unwrap(), r);
        let done = UploadRecord {
            status: Status::Complete,
            completing_since_ms: Some(5),
            completed: Some(Completed { md5: "m".into(), etag: "e".into() }),
            secret_hash: Some(crate::secret::UploadSecret::generate().hash()),
            ..record()
        };
        assert_eq!(UploadRecord::from_item(&done.to_item()).unwrap(), done);
    }

    #[test]
    fn buffer_lengths_come_from_starts() {
        let r = record();
        assert_eq!(r.buffered_len(), 20);
        assert_eq!(r.buffer_spans().iter().map(|s| s.1).collect::<Vec<_>>(), vec![15, 5]);
    }

    #[test]
    fn parts_are_compact_and_round_trip() {
        let parts: Vec<Part> = (1..=10_000)
            .map(|i| Part { number: i, etag: format!("\"{:032x}\"", u128::from(i) * 0x9e3779b97f4a7c15) })
            .collect();
        let encoded = encode_parts(&parts);
        assert_eq!(encoded.len(), 190_000);
        assert_eq!(decode_parts(&encoded).unwrap(), parts);
        let odd = vec![Part { number: 3, etag: "\"abc-2\"".into() }, Part { number: 9, etag: "W/x".into() }];
        assert_eq!(decode_parts(&encode_parts(&odd)).unwrap(), odd);
        assert!(decode_parts(&[0, 1]).is_none());
        assert!(decode_parts(&[0, 1, 0, 5]).is_none());
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
