//! The upload operations, one module each. Sequential mode (django-chunked-upload's): [`create`] (an upload's first
//! chunk) and [`append`] (every later chunk). Parallel and direct modes: [`open`] (creating the upload on its grid),
//! [`parallel`] (a chunk, and the upload of the part it fills) and [`direct`] (presigned part URLs). Every mode:
//! [`complete`], [`status`] and [`abort`]; and [`list`], an owner's uploads. They know the protocol's rules and the commit discipline of
//! `docs/design.md`, and reach storage only through `store`.

mod abort;
mod append;
mod companion;
mod complete;
mod concat;
mod create;
mod direct;
mod list;
mod open;
mod parallel;
mod status;
mod tus;

pub use companion::{NamedPart, Posted, UppyFile};
pub use complete::Declared;
pub use list::Listing;
pub use open::Opening;
pub use tus::{TusCreation, TusPatch, TusState};

use std::time::Instant;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::app::App;
use crate::checksum::Crc64;
use crate::clock::{iso8601, now_ms};
use crate::error::ApiError;
use crate::grid::Mode;
use crate::metrics::Metric;
use crate::protocol::{ContentRange, MAX_BUFFERED_CHUNKS, UploadId};
use crate::secret::{Caller, UploadSecret};

/// A file smaller than this many of the configured smallest chunks may be sent in chunks of a hundredth of it.
const SMALL_FILE_CHUNKS: u64 = 100;
use crate::md5state;
use crate::protocol::{ObjectKey, sanitize_filename, stored_content_type};
use crate::store::bucket::PartSource;
use crate::store::record::buffer_prefix_of;
use crate::store::{BufferChain, PartLedger, Status, UploadRecord};

/// A chunk as the protocol delivers it, already decoded from the request.
pub struct Chunk {
    pub upload_id: Option<UploadId>,
    pub range: ContentRange,
    pub data: Bytes,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    /// The CRC64NVME the client declared (`X-Checksum-CRC64NVME`): required in parallel mode.
    pub crc64: Option<Crc64>,
}

/// The upload after an accepted chunk.
pub struct Accepted {
    pub upload_id: UploadId,
    pub offset: u64,
    pub expires_at_ms: u64,
    /// An anonymous upload's secret, in the answer that created it (and only there).
    pub secret: Option<UploadSecret>,
}

impl Accepted {
    pub fn to_json(&self) -> Value {
        let mut json =
            json!({"upload_id": self.upload_id, "offset": self.offset, "expires": iso8601(self.expires_at_ms)});
        if let Some(secret) = &self.secret {
            json[crate::secret::FIELD] = json!(secret.reveal());
        }
        json
    }
}

impl App {
    pub async fn accept_chunk(&self, caller: &Caller, chunk: Chunk) -> Result<Value, ApiError> {
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
        // SIMD: a small fraction of the MD5 a sequential chunk also needs.
        let crc = Crc64::of(&chunk.data);
        if chunk.crc64.is_some_and(|declared| declared != crc) {
            return Err(ApiError::BadRequest("The chunk's bytes do not match its X-Checksum-CRC64NVME".into()));
        }
        let bytes = range.chunk_len();
        let accepted = |mode| self.metrics.emit(Metric::ChunkAccepted { mode, bytes });
        let Some(id) = chunk.upload_id.clone() else {
            let created = self.create(caller, chunk, crc).await?.to_json();
            accepted(Mode::Sequential);
            return Ok(created);
        };
        // Only parallel chunks must carry a checksum; the record says which mode the upload is in. Sequential
        // chunks without one go straight to their claim, which reads the record anyway.
        if chunk.crc64.is_some() {
            let record = self.owned(&id, caller).await?;
            if record.mode == Mode::Parallel {
                let taken = self.accept_parallel(caller, record, &chunk.range, chunk.data, crc).await?;
                accepted(Mode::Parallel);
                return Ok(taken);
            }
        }
        let appended = self.append(caller, &id, chunk.range, chunk.data, crc).await?.to_json();
        accepted(Mode::Sequential);
        Ok(appended)
    }

    /// Uploads a part gathered from chunks (both relayed modes), timed for the `FlushLatency` metric.
    async fn flush_part(
        &self,
        record: &UploadRecord,
        multipart_id: &str,
        number: u32,
        part: PartSource,
    ) -> Result<String, ApiError> {
        let started = Instant::now();
        let etag = self.bucket.upload_part(&record.key, multipart_id, number, part).await?;
        self.metrics.emit(Metric::PartFlushed { mode: record.mode, millis: started.elapsed().as_millis() as u64 });
        Ok(etag)
    }

    /// A new upload's record and its object's key, with nothing received yet, in sequential mode: the modes' own
    /// operations set what differs.
    fn new_record(
        &self,
        caller: &Caller,
        filename: Option<&str>,
        content_type: Option<&str>,
        total: u64,
        part_size: u64,
    ) -> (UploadRecord, ObjectKey) {
        let upload_id = UploadId::new();
        let filename = sanitize_filename(filename.unwrap_or_default());
        let content_type = stored_content_type(content_type, &filename, &self.config.trusted_content_types);
        let key = self.config.key_template.render(&upload_id, &filename, caller.owner());
        let created_at_ms = now_ms();
        let record = UploadRecord {
            upload_id,
            owner: caller.owner().to_string(),
            filename,
            content_type,
            total,
            offset: 0,
            status: Status::Uploading,
            created_at_ms,
            expires_at_ms: created_at_ms + self.config.expiration_delta_secs * 1000,
            key: key.as_str().to_string(),
            multipart_id: None,
            part_size,
            part_start: 0,
            flush_at: part_size.min(total),
            flush_lease: None,
            parts: PartLedger::default(),
            buffers: BufferChain::default(),
            md5_state: md5state::empty(),
            completing_since_ms: None,
            completed: None,
            secret_hash: caller.secret_hash(),
            counted: self.config.limits.any().then(|| crate::store::quota::counter_of(caller)),
            mode: Mode::Sequential,
            chunk_size: 0,
            hook: None,
            tus: None,
        };
        (record, key)
    }

    /// Where this upload's buffered chunks are.
    fn buffer_prefix(&self, upload_id: &UploadId) -> String {
        buffer_prefix_of(&self.config.buffer_prefix, upload_id)
    }

    /// Removes an unfinished upload's bytes from S3: its multipart upload and every buffered chunk, including those
    /// of requests that never committed. Idempotent: what is already gone is success. Never the final object.
    pub async fn discard(&self, record: &UploadRecord) -> Result<(), ApiError> {
        match &record.multipart_id {
            Some(id) => self.bucket.abort(&record.key, id).await?,
            None => self.bucket.abort_all(&record.key).await?,
        }
        self.bucket.delete_prefix(&self.buffer_prefix(&record.upload_id)).await
    }

    /// [`Self::discard`] where a failure only leaves garbage for the cleanup function and the lifecycle rules.
    async fn discard_quietly(&self, record: &UploadRecord) {
        if let Err(e) = self.discard(record).await {
            tracing::warn!(upload_id = %record.upload_id, error = %e, "could not remove an upload's bytes");
        }
    }

    /// Removes the record of an upload nothing was accepted for, and gives back its share of the owner's limits; what
    /// fails here, TTL and the cleanup function finish. The record goes only once the share is back: the cleanup
    /// function acts on TTL's removals alone, so a record deleted with its share still counted would stay counted.
    async fn forget_quietly(&self, record: &UploadRecord) {
        let forgotten = async {
            self.table.release(record, record.expires_at_ms / 1000).await?;
            self.table.delete(&record.upload_id).await
        };
        if let Err(e) = forgotten.await {
            tracing::warn!(upload_id = %record.upload_id, error = %e, "could not remove a failed upload's record");
        }
    }

    /// Deletes objects nothing refers to any more; a failure only leaves garbage for the lifecycle rule.
    async fn delete_quietly(&self, keys: Vec<String>) {
        if keys.is_empty() {
            return;
        }
        if let Err(e) = self.bucket.delete(&keys).await {
            tracing::warn!(error = %e, count = keys.len(), "could not delete buffered chunks");
        }
    }

    async fn owned(&self, upload_id: &UploadId, caller: &Caller) -> Result<UploadRecord, ApiError> {
        match self.table.get(upload_id).await? {
            Some(record) if caller.may_use(&record.owner, record.secret_hash.as_ref()) => Ok(record),
            _ => Err(ApiError::NotFound),
        }
    }

    /// Why an upload takes no more bytes, in any mode: it is complete, being completed, aborted or expired.
    fn check_taking(&self, record: &UploadRecord, now_ms: u64) -> Result<(), ApiError> {
        match record.status {
            Status::Complete => return Err(ApiError::AlreadyComplete { result: self.result_json(record) }),
            Status::Completing => return Err(ApiError::Conflict("The upload is being completed".into())),
            Status::Aborted => return Err(ApiError::NotFound),
            Status::Uploading => {}
        }
        if record.is_expired(now_ms) {
            return Err(ApiError::Expired);
        }
        Ok(())
    }

    /// Why a chunk cannot be taken at this record, in django-chunked-upload's order of checks.
    fn check_chunk(
        &self,
        record: &UploadRecord,
        caller: &Caller,
        range: &ContentRange,
        now_ms: u64,
    ) -> Result<(), ApiError> {
        if !caller.may_use(&record.owner, record.secret_hash.as_ref()) {
            return Err(ApiError::NotFound);
        }
        self.check_taking(record, now_ms)?;
        match record.mode {
            Mode::Sequential => {}
            Mode::Parallel => {
                return Err(ApiError::BadRequest(
                    "This upload is in parallel mode: send each chunk with its X-Checksum-CRC64NVME".into(),
                ));
            }
            Mode::Direct => {
                return Err(ApiError::BadRequest(
                    "This upload is in direct mode: PUT its parts to S3 with URLs from POST /upload/{id}/parts".into(),
                ));
            }
            Mode::UppyS3 => return Err(companion::served_elsewhere()),
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

    /// A completed upload's result: what complete answers, and repeats. With what the completion hook said, if it
    /// was called: its answer as `data`, or `"hook": {"status": "failed", ...}`.
    fn result_json(&self, record: &UploadRecord) -> Value {
        let mut result = self.plain_result(record);
        if let Some(outcome) = &record.hook {
            outcome.add_to(&mut result);
        }
        result
    }

    /// The result without the hook's outcome: what the hook is told.
    fn plain_result(&self, record: &UploadRecord) -> Value {
        let (md5, etag, crc64) =
            record.completed.as_ref().map(|c| (c.md5.as_str(), c.etag.as_str(), c.crc64.as_str())).unwrap_or_default();
        let mut result = json!({
            "upload_id": record.upload_id,
            "status": record.status.as_str(),
            "mode": record.mode.as_str(),
            "bucket": self.bucket.name(),
            "key": record.key,
            "filename": record.filename,
            "content_type": record.content_type,
            "size": record.total,
            "offset": record.offset,
            // Only the sequential mode checks an MD5: the others' results say null rather than a value to compare.
            "md5": (!md5.is_empty()).then_some(md5),
            "etag": etag,
            "crc64nvme": crc64,
        });
        if let Some(tus) = &record.tus {
            result["tus"] = tus.to_json();
        }
        result
    }
}

/// Chunks other than the last must be at least the configured smallest chunk (or a hundredth of a file too small for
/// that), and large enough that a part gathers at most [`MAX_BUFFERED_CHUNKS`] of them: each chunk costs a Lambda call,
/// an S3 write and read and two DynamoDB writes, so tiny chunks would make a part cost thousands of calls.
fn check_chunk_size(range: &ContentRange, part_size: u64, smallest: u64) -> Result<(), ApiError> {
    let min = part_size
        .min(range.total)
        .div_ceil(MAX_BUFFERED_CHUNKS)
        .max(smallest.min(range.total.div_ceil(SMALL_FILE_CHUNKS)));
    if !range.is_last() && range.chunk_len() < min {
        return Err(ApiError::BadRequest(format!(
            "Chunks must be at least {min} bytes for a file of this size (except the last)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_chunks_are_refused_unless_last() {
        let part = 5 * crate::protocol::MIB;
        let small = ContentRange { start: 0, end: 99, total: 10 * part };
        assert!(check_chunk_size(&small, part, 1).is_err());
        let last = ContentRange { start: 0, end: 99, total: 100 };
        assert!(check_chunk_size(&last, part, 1).is_ok());
        let fine = ContentRange { start: 0, end: 65_535, total: 10 * part };
        assert!(check_chunk_size(&fine, part, 1).is_ok());
        assert!(check_chunk_size(&fine, part, 65_537).is_err());
        // A small file may come in hundredths: at most a hundred calls.
        let tenth = ContentRange { start: 0, end: 99, total: 1000 };
        assert!(check_chunk_size(&tenth, part, 65_536).is_ok());
        let thousandth = ContentRange { start: 0, end: 9, total: 100_000 };
        assert!(check_chunk_size(&thousandth, part, 65_536).is_err());
        // django-chunked-upload's jQuery-File-Upload demo sends 100,000-byte chunks: the default takes them.
        let demo = ContentRange { start: 0, end: 99_999, total: 10 * part };
        assert!(check_chunk_size(&demo, part, crate::config::DEFAULT_MIN_CHUNK).is_ok());
        let small_file = ContentRange { start: 0, end: 0, total: 1000 };
        assert!(check_chunk_size(&small_file, part, 1).is_ok());
    }
}
