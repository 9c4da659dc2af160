//! The upload operations: accept a chunk, complete, report, abort. They know the protocol's rules and the commit
//! discipline of `design-notes.md`, and reach storage only through `store`.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::try_join_all;
use md5::{Digest, Md5};
use serde_json::{Value, json};

use crate::app::App;
use crate::error::ApiError;
use crate::md5state;
use crate::protocol::{
    self, ContentRange, MAX_BUFFERED_CHUNKS, S3_MAX_PARTS, attachment_disposition, plan_part_size, sanitize_filename,
    stored_content_type,
};
use crate::store::record::{buffer_key, buffer_prefix_of};
use crate::store::{Buffered, ChunkCommit, CompleteFailure, Part, Status, UploadRecord, Written};

/// A chunk as the protocol delivers it, already decoded from the request.
pub struct Chunk {
    pub upload_id: Option<String>,
    pub range: ContentRange,
    pub data: Bytes,
    pub filename: Option<String>,
    pub content_type: Option<String>,
}

/// How long a completion claim holds before another request may take over: S3 can take minutes to complete an
/// upload of thousands of parts, and the complete function's timeout is below this.
const COMPLETION_LEASE_MS: u64 = 5 * 60 * 1000;

/// The upload after an accepted chunk.
pub struct Accepted {
    pub upload_id: String,
    pub offset: u64,
    pub expires_at_ms: u64,
}

impl Accepted {
    pub fn to_json(&self) -> Value {
        json!({"upload_id": self.upload_id, "offset": self.offset, "expires": iso8601(self.expires_at_ms)})
    }
}

/// The record's changes a chunk has staged in S3 and waits to commit.
struct Staged {
    md5_state: Vec<u8>,
    parts: Vec<Part>,
    buffers: Vec<Buffered>,
    flush_at: u64,
    /// Buffered chunks joined into the new part: deleted once the commit holds.
    joined: Vec<String>,
    /// This request's own buffered chunk: deleted if the commit loses.
    own_buffer: Option<String>,
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub fn iso8601(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"))
        .unwrap_or_default()
}

impl App {
    pub async fn accept_chunk(&self, owner: &str, chunk: Chunk) -> Result<Accepted, ApiError> {
        let range = chunk.range;
        if chunk.data.is_empty() {
            return Err(ApiError::BadRequest("No chunk file was submitted".into()));
        }
        if chunk.data.len() as u64 != range.chunk_len() {
            return Err(ApiError::BadRequest(format!(
                "The chunk has {} bytes but Content-Range says {}",
                chunk.data.len(),
                range.chunk_len()
            )));
        }
        if range.total > self.config.size_limit() {
            return Err(ApiError::BadRequest(format!(
                "Size of file exceeds the limit ({} bytes)",
                self.config.size_limit()
            )));
        }
        match &chunk.upload_id {
            None => self.create(owner, chunk).await,
            Some(id) => {
                protocol::validate_upload_id(id)?;
                self.append(owner, id, chunk.range, chunk.data).await
            }
        }
    }

    async fn create(&self, owner: &str, chunk: Chunk) -> Result<Accepted, ApiError> {
        let range = chunk.range;
        if range.start != 0 {
            return Err(ApiError::OffsetMismatch { offset: 0 });
        }
        let part_size = plan_part_size(range.total, self.config.min_part_bytes, self.config.max_part_bytes)?;
        check_chunk_size(&range, part_size)?;
        let upload_id = protocol::new_upload_id();
        let filename = sanitize_filename(chunk.filename.as_deref().unwrap_or_default());
        let trusted = &self.config.trusted_content_types;
        let content_type = stored_content_type(chunk.content_type.as_deref(), &filename, trusted);
        let key = self.config.key_template.render(&upload_id, &filename, owner);
        let disposition = attachment_disposition(&filename);
        let storage_class = &self.config.storage_class;
        let multipart_id = self.bucket.create_multipart(&key, &content_type, &disposition, storage_class).await?;
        let key = String::from(key);
        let created_at_ms = now_ms();
        let flush_at = part_size.min(range.total);
        let mut record = UploadRecord {
            upload_id,
            owner: owner.to_string(),
            filename,
            content_type,
            total: range.total,
            offset: 0,
            status: Status::Uploading,
            created_at_ms,
            expires_at_ms: created_at_ms + self.config.expiration_delta_secs * 1000,
            key,
            multipart_id,
            part_size,
            flush_at,
            last_part_number: 0,
            parts: Vec::new(),
            buffers: Vec::new(),
            md5_state: md5state::empty(),
            completing_since_ms: None,
            completed: None,
        };
        let flushes = range.end_exclusive() >= flush_at;
        if flushes {
            record.last_part_number = 1;
        }
        let staged = match self.stage(&record, &range, chunk.data, flushes.then_some(1)).await {
            Ok(staged) => staged,
            Err(e) => {
                self.discard_quietly(&record).await;
                return Err(e);
            }
        };
        record.offset = range.end_exclusive();
        record.md5_state = staged.md5_state;
        record.parts = staged.parts;
        record.buffers = staged.buffers;
        record.flush_at = staged.flush_at;
        if let Err(e) = self.table.create(&record).await {
            self.discard_quietly(&record).await;
            return Err(e);
        }
        Ok(Accepted { upload_id: record.upload_id, offset: record.offset, expires_at_ms: record.expires_at_ms })
    }

    async fn append(
        &self,
        owner: &str,
        upload_id: &str,
        range: ContentRange,
        data: Bytes,
    ) -> Result<Accepted, ApiError> {
        let now = now_ms();
        let (record, part_number) = match self.table.claim(upload_id, owner, &range).await? {
            Written::Won(record) => {
                self.check_chunk(&record, owner, &range, now)?;
                let number = record.last_part_number;
                (record, Some(number))
            }
            Written::Lost(None) => return Err(ApiError::NotFound),
            Written::Lost(Some(record)) => {
                // Refused, or at the offset but not completing a part (no part number needed): the checks tell.
                self.check_chunk(&record, owner, &range, now)?;
                (record, None)
            }
        };
        check_chunk_size(&range, record.part_size)?;
        if part_number.is_some_and(|n| n > S3_MAX_PARTS) {
            return Err(ApiError::Unrecoverable(
                "This upload has used up S3's part numbers on failed attempts; start it again".into(),
            ));
        }
        let staged = match self.stage(&record, &range, data, part_number).await {
            Ok(staged) => staged,
            // A buffered chunk may have vanished because a request for the same offset won, or an abort removed
            // it: if the upload moved on, that is the answer.
            Err(e) => return Err(self.refusal(upload_id, owner, &range, now, e).await),
        };
        let written = self
            .table
            .commit_chunk(ChunkCommit {
                upload_id,
                start: range.start,
                new_offset: range.end_exclusive(),
                md5_state: staged.md5_state,
                parts: &staged.parts,
                buffers: &staged.buffers,
                flush_at: staged.flush_at,
            })
            .await;
        match written {
            Ok(Written::Won(record)) => {
                self.delete_quietly(&staged.joined).await;
                Ok(Accepted { upload_id: record.upload_id, offset: record.offset, expires_at_ms: record.expires_at_ms })
            }
            Ok(Written::Lost(_)) => {
                self.delete_quietly(staged.own_buffer.as_slice()).await;
                let lost = ApiError::Conflict("Another request changed this upload; ask for its status".into());
                Err(self.refusal(upload_id, owner, &range, now, lost).await)
            }
            Err(e) => {
                // The commit may or may not have landed; the buffered chunk is left for cleanup rather than risk
                // deleting bytes the record now points at.
                Err(e)
            }
        }
    }

    /// Why a chunk that failed or lost a race cannot be taken: what became of the upload meanwhile (the offset moved
    /// on: 400 with the offset; aborted: 404), or else `failure` itself.
    async fn refusal(
        &self,
        upload_id: &str,
        owner: &str,
        range: &ContentRange,
        now: u64,
        failure: ApiError,
    ) -> ApiError {
        match self.table.get(upload_id).await {
            Ok(Some(current)) => self.check_chunk(&current, owner, range, now).err().unwrap_or(failure),
            Ok(None) => ApiError::NotFound,
            Err(_) => failure,
        }
    }

    /// Puts the chunk's bytes into S3 and computes what the record becomes. With a part number the buffered chunks
    /// and this one become that part; without, this chunk is buffered under a key of its own.
    async fn stage(
        &self,
        record: &UploadRecord,
        range: &ContentRange,
        data: Bytes,
        part_number: Option<u32>,
    ) -> Result<Staged, ApiError> {
        // Hashing runs on a blocking thread while the S3 calls are in flight.
        let md5_state = record.md5_state.clone();
        let hashed = data.clone();
        let hashing = tokio::task::spawn_blocking(move || md5state::extend(&md5_state, &hashed));
        let bucket_prefix = &self.config.buffer_prefix;
        let mut parts = record.parts.clone();
        let mut buffers = record.buffers.clone();
        let mut flush_at = record.flush_at;
        let mut joined = Vec::new();
        let mut own_buffer = None;
        match part_number {
            Some(number) => {
                joined = record.buffers.iter().map(|b| buffer_key(bucket_prefix, &record.upload_id, *b)).collect();
                let mut pieces = try_join_all(joined.iter().map(|k| self.bucket.get(k))).await?;
                pieces.push(data);
                let etag = self.bucket.upload_part(&record.key, &record.multipart_id, number, pieces).await?;
                parts.push(Part { number, etag });
                buffers.clear();
                flush_at = (range.end_exclusive() + record.part_size).min(record.total);
            }
            None => {
                let buffered = Buffered { start: range.start, token: rand::random() };
                let key = buffer_key(bucket_prefix, &record.upload_id, buffered);
                self.bucket.put(&key, data).await?;
                buffers.push(buffered);
                own_buffer = Some(key);
            }
        }
        let md5_state = hashing.await.map_err(|e| ApiError::Unavailable(format!("hashing: {e}")))??;
        Ok(Staged { md5_state, parts, buffers, flush_at, joined, own_buffer })
    }

    pub async fn complete(&self, owner: &str, upload_id: &str, md5: &str) -> Result<Value, ApiError> {
        protocol::validate_upload_id(upload_id)?;
        let md5 = protocol::parse_md5_hex(md5)?;
        let record = self.owned(upload_id, owner).await?;
        let now = now_ms();
        match record.status {
            Status::Complete => {
                return Err(ApiError::AlreadyComplete { result: self.result_json(&record) });
            }
            Status::Aborted => return Err(ApiError::NotFound),
            _ if record.is_expired(now) => return Err(ApiError::Expired),
            Status::Uploading | Status::Completing => {}
        }
        if record.offset != record.total {
            return Err(ApiError::BadRequest(format!(
                "The upload is incomplete: {} of {} bytes received",
                record.offset, record.total
            )));
        }
        if md5state::finish_hex(&record.md5_state)? != md5 {
            return Err(ApiError::BadRequest("md5 checksum does not match".into()));
        }
        let record =
            match self.table.claim_completion(upload_id, owner, now, now.saturating_sub(COMPLETION_LEASE_MS)).await? {
                Written::Won(record) => record,
                Written::Lost(Some(r)) if r.status == Status::Complete => {
                    return Err(ApiError::AlreadyComplete { result: self.result_json(&r) });
                }
                Written::Lost(Some(r)) if r.status == Status::Completing => {
                    return Err(ApiError::Conflict("Another request is completing this upload; retry shortly".into()));
                }
                Written::Lost(_) => return Err(ApiError::NotFound),
            };
        let etag = match self.complete_in_s3(&record).await {
            Ok(etag) => etag,
            Err(e) => {
                if let Err(release) = self.table.release_completion(upload_id, now).await {
                    tracing::warn!(upload_id, error = %release, "could not release a completion claim");
                }
                return Err(e);
            }
        };
        match self.table.mark_complete(upload_id, now, &md5, &etag).await? {
            Written::Won(record) => {
                // Chunks of requests that failed after their S3 write were never referenced; the object is whole
                // now, so nothing under the buffer prefix is needed any more.
                let prefix = buffer_prefix_of(&self.config.buffer_prefix, upload_id);
                if let Err(e) = self.bucket.delete_prefix(&prefix).await {
                    tracing::warn!(upload_id, error = %e, "could not delete leftover buffered chunks");
                }
                Ok(self.result_json(&record))
            }
            // Our claim ran out and another request finished the same bytes: the same result.
            Written::Lost(Some(current)) if current.status == Status::Complete => Ok(self.result_json(&current)),
            Written::Lost(_) => Err(ApiError::Conflict("The completion was interrupted; retry".into())),
        }
    }

    async fn complete_in_s3(&self, record: &UploadRecord) -> Result<String, ApiError> {
        match self.bucket.complete(&record.key, &record.multipart_id, &record.parts).await {
            Ok(etag) => Ok(etag),
            Err(CompleteFailure::NoSuchUpload) => self.completed_elsewhere(record).await,
            Err(CompleteFailure::InvalidPart) => {
                tracing::error!(upload_id = %record.upload_id, "a recorded part ETag does not match S3");
                Err(ApiError::Unrecoverable(
                    "A part in S3 no longer matches what was accepted; the upload cannot be completed: start it again"
                        .into(),
                ))
            }
            Err(CompleteFailure::Other(e)) => Err(e),
        }
    }

    /// S3 says the multipart upload is gone. If the object is there with exactly our parts, an earlier completion
    /// finished in S3 but not in the record: that is success. Anything else means the bytes are gone.
    async fn completed_elsewhere(&self, record: &UploadRecord) -> Result<String, ApiError> {
        // The multipart ETag is the MD5 of the parts' MD5s: it names exactly these parts' bytes.
        let expected = multipart_etag(&record.parts);
        match self.bucket.head_etag(&record.key).await? {
            Some(etag) if Some(&etag) == expected.as_ref() => Ok(etag),
            _ => Err(ApiError::Expired),
        }
    }

    pub async fn status(&self, owner: &str, upload_id: &str) -> Result<Value, ApiError> {
        protocol::validate_upload_id(upload_id)?;
        let record = self.owned(upload_id, owner).await?;
        match record.status {
            Status::Complete => Ok(self.result_json(&record)),
            Status::Aborted => Err(ApiError::NotFound),
            _ if record.is_expired(now_ms()) => Err(ApiError::Expired),
            Status::Uploading | Status::Completing => Ok(json!({
                "upload_id": record.upload_id,
                "offset": record.offset,
                "expires": iso8601(record.expires_at_ms),
                "status": record.status.as_str(),
                "filename": record.filename,
                "size": record.total,
            })),
        }
    }

    /// Aborts an unfinished upload: no chunk is accepted from then on, its bytes are removed, then its record.
    pub async fn abort(&self, owner: &str, upload_id: &str) -> Result<Value, ApiError> {
        protocol::validate_upload_id(upload_id)?;
        let record = match self.table.mark_aborted(upload_id, owner).await? {
            Written::Won(record) => record,
            Written::Lost(Some(r)) if r.owner == owner && r.status == Status::Complete => {
                return Err(ApiError::AlreadyComplete { result: self.result_json(&r) });
            }
            Written::Lost(Some(r)) if r.owner == owner && r.status == Status::Completing => {
                return Err(ApiError::Conflict("The upload is being completed".into()));
            }
            Written::Lost(_) => return Err(ApiError::NotFound),
        };
        self.discard(&record).await?;
        self.table.delete(upload_id).await?;
        Ok(json!({"upload_id": upload_id, "status": Status::Aborted.as_str()}))
    }

    /// Removes an unfinished upload's bytes from S3: its multipart upload and every buffered chunk, including those
    /// of requests that never committed. Idempotent: what is already gone is success. Never the final object.
    pub async fn discard(&self, record: &UploadRecord) -> Result<(), ApiError> {
        self.bucket.abort(&record.key, &record.multipart_id).await?;
        self.bucket.delete_prefix(&buffer_prefix_of(&self.config.buffer_prefix, &record.upload_id)).await
    }

    /// [`Self::discard`] where a failure only leaves garbage for the cleanup function and the lifecycle rules.
    async fn discard_quietly(&self, record: &UploadRecord) {
        if let Err(e) = self.discard(record).await {
            tracing::warn!(upload_id = %record.upload_id, error = %e, "could not remove an upload's bytes");
        }
    }

    /// Deletes objects nothing refers to any more; a failure only leaves garbage for the lifecycle rule.
    async fn delete_quietly(&self, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        if let Err(e) = self.bucket.delete(keys).await {
            tracing::warn!(error = %e, count = keys.len(), "could not delete buffered chunks");
        }
    }

    async fn owned(&self, upload_id: &str, owner: &str) -> Result<UploadRecord, ApiError> {
        match self.table.get(upload_id).await? {
            Some(record) if record.owner == owner => Ok(record),
            _ => Err(ApiError::NotFound),
        }
    }

    /// Why a chunk cannot be taken at this record, in django-chunked-upload's order of checks.
    fn check_chunk(
        &self,
        record: &UploadRecord,
        owner: &str,
        range: &ContentRange,
        now_ms: u64,
    ) -> Result<(), ApiError> {
        if record.owner != owner {
            return Err(ApiError::NotFound);
        }
        match record.status {
            Status::Complete => return Err(ApiError::AlreadyComplete { result: self.result_json(record) }),
            Status::Completing => return Err(ApiError::Conflict("The upload is being completed".into())),
            Status::Aborted => return Err(ApiError::NotFound),
            Status::Uploading => {}
        }
        if record.is_expired(now_ms) {
            return Err(ApiError::Expired);
        }
        if range.total != record.total {
            return Err(ApiError::BadRequest(format!(
                "Content-Range total {} differs from the upload's size {}",
                range.total, record.total
            )));
        }
        if range.start != record.offset {
            return Err(ApiError::OffsetMismatch { offset: record.offset });
        }
        Ok(())
    }

    fn result_json(&self, record: &UploadRecord) -> Value {
        let (md5, etag) = record.completed.as_ref().map(|c| (c.md5.as_str(), c.etag.as_str())).unwrap_or_default();
        json!({
            "upload_id": record.upload_id,
            "status": record.status.as_str(),
            "bucket": self.bucket.name(),
            "key": record.key,
            "filename": record.filename,
            "content_type": record.content_type,
            "size": record.total,
            "offset": record.offset,
            "md5": md5,
            "etag": etag,
        })
    }
}

/// Chunks other than the last must be large enough that a part gathers at most [`MAX_BUFFERED_CHUNKS`] of them.
fn check_chunk_size(range: &ContentRange, part_size: u64) -> Result<(), ApiError> {
    let min = part_size.min(range.total).div_ceil(MAX_BUFFERED_CHUNKS);
    if !range.is_last() && range.chunk_len() < min {
        return Err(ApiError::BadRequest(format!(
            "Chunks must be at least {min} bytes for a file of this size (except the last)"
        )));
    }
    Ok(())
}

/// The ETag S3 gives a multipart object: the MD5 of the parts' MD5s, then the part count. `None` when a part's ETag
/// is not an MD5 (SSE-KMS), in which case it cannot be predicted.
fn multipart_etag(parts: &[Part]) -> Option<String> {
    let mut hasher = Md5::new();
    for part in parts {
        let hex = part.etag.trim_matches('"');
        if hex.len() != 32 {
            return None;
        }
        for i in 0..16 {
            hasher.update([u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?]);
        }
    }
    Some(format!("\"{}-{}\"", md5state::hex(&hasher.finalize()), parts.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_795_888_582_186), "2026-11-28T17:56:22.186Z");
    }

    #[test]
    fn multipart_etags() {
        let parts = vec![
            Part { number: 1, etag: format!("\"{}\"", md5state::hex(&Md5::digest(b"a"))) },
            Part { number: 2, etag: format!("\"{}\"", md5state::hex(&Md5::digest(b"b"))) },
        ];
        let mut joined = Md5::digest(b"a").to_vec();
        joined.extend_from_slice(&Md5::digest(b"b"));
        let expected = format!("\"{}-2\"", md5state::hex(&Md5::digest(&joined)));
        assert_eq!(multipart_etag(&parts), Some(expected));
        assert_eq!(multipart_etag(&[Part { number: 1, etag: "\"x\"".into() }]), None);
    }

    #[test]
    fn small_chunks_are_refused_unless_last() {
        let part = 5 * protocol::MIB;
        let small = ContentRange { start: 0, end: 99, total: 10 * part };
        assert!(check_chunk_size(&small, part).is_err());
        let last = ContentRange { start: 0, end: 99, total: 100 };
        assert!(check_chunk_size(&last, part).is_ok());
        let fine = ContentRange { start: 0, end: 65_535, total: 10 * part };
        assert!(check_chunk_size(&fine, part).is_ok());
        let small_file = ContentRange { start: 0, end: 0, total: 1000 };
        assert!(check_chunk_size(&small_file, part).is_ok());
    }
}
