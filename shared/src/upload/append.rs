//! Every chunk after the first: claim, stage the bytes in S3, commit. A chunk that reaches the part's end joins the
//! buffered chunks and itself into the upload's next part (numbers run 1..N without a gap, as S3 requires), under a
//! flush lease that no other chunk's request can share; any other chunk is buffered under a key named by its start
//! and CRC64NVME. Exactly one request commits each offset.

use bytes::Bytes;

use super::Accepted;
use crate::app::App;
use crate::checksum::Crc64;
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::md5state;
use crate::metrics::{Metric, Race};
use crate::protocol::{ContentRange, S3_MAX_PARTS, UploadId};
use crate::secret::Caller;
use crate::store::bucket::{PartSource, Piece};
use crate::store::ledger::find_chain;
use crate::store::{BufferChain, BufferedChunk, ChunkCommit, FlushLease, PartLedger, UploadRecord, Written};

/// What the record becomes once a staged chunk commits.
pub(super) struct Staged {
    pub md5_state: Vec<u8>,
    pub parts: PartLedger,
    pub buffers: BufferChain,
    pub part_start: u64,
    pub flush_at: u64,
    /// Buffered objects of the part just written (and leftovers of lost races among them): deleted once the commit
    /// holds.
    pub joined: Vec<String>,
    /// This request's own buffered chunk, if it buffered one.
    pub own_buffer: Option<String>,
}

impl App {
    pub(super) async fn append(
        &self,
        caller: &Caller,
        upload_id: &UploadId,
        range: ContentRange,
        data: Bytes,
        crc: Crc64,
    ) -> Result<Accepted, ApiError> {
        let now = now_ms();
        // Held until this request's deadline is long past: no upload of this request can land after it.
        let lease =
            FlushLease { start: range.start, end: range.end_exclusive(), crc, until_ms: now + self.config.lease_ms() };
        let (record, flushes) = match self.table.claim(upload_id, caller, &range, &lease, now).await? {
            Written::Won(record) => {
                if let Err(refused) = self.check_flush(&record, caller, &range, now) {
                    // Refused before it wrote anything, as every request for this chunk is: the next chunk need not
                    // wait for the lease to run out.
                    if let Err(e) = self.table.release_flush(upload_id, &lease).await {
                        tracing::warn!(upload_id = %upload_id, error = %e, "could not give a flush lease up");
                    }
                    return Err(refused);
                }
                (record, true)
            }
            Written::Lost(None) => return Err(ApiError::NotFound),
            Written::Lost(Some(record)) => {
                // Refused, at the offset but not completing a part, or completing it while another chunk's request
                // uploads the part: the checks tell.
                self.check_chunk(&record, caller, &range, now)?;
                if range.end_exclusive() >= record.flush_at {
                    self.metrics.emit(Metric::RaceLost { race: Race::FlushLease });
                    return Err(ApiError::Conflict(
                        "Another request is uploading this part with other bytes; retry in a few seconds".into(),
                    ));
                }
                super::check_chunk_size(&range, record.part_size, self.config.min_chunk_bytes)?;
                (record, false)
            }
        };
        let number = record.parts.next_number();
        let staged = match self.stage(&record, &range, data, crc, flushes.then_some(number)).await {
            Ok(staged) => staged,
            // A buffered chunk may have vanished because a request for the same offset won, or an abort removed
            // it: if the upload moved on, that is the answer.
            Err(e) => return Err(self.refusal(upload_id, caller, &range, now, e).await),
        };
        let committed = self
            .table
            .commit_chunk(ChunkCommit {
                upload_id,
                start: range.start,
                new_offset: range.end_exclusive(),
                md5_state: staged.md5_state,
                parts: &staged.parts,
                buffers: staged.buffers,
                part_start: staged.part_start,
                flush_at: staged.flush_at,
                multipart_id: None,
                lease: flushes.then_some(&lease),
            })
            .await?;
        if !committed {
            self.metrics.emit(Metric::RaceLost { race: Race::SequentialCommit });
            let lost = ApiError::Conflict("Another request changed this upload; ask for its status".into());
            let refusal = self.refusal(upload_id, caller, &range, now, lost).await;
            // While the upload goes on, this request's own buffered chunk is left for the next flush or the
            // completion to remove: another request with the same bytes may have won with the very same key. Once
            // it is gone (an abort raced this chunk), nothing else will.
            if matches!(refusal, ApiError::NotFound) {
                self.delete_quietly(staged.own_buffer.into_iter().collect()).await;
            }
            return Err(refusal);
        }
        // Awaited: Lambda may freeze the sandbox as soon as the answer is out, and work left for after it may never
        // run. What this deletion misses, the completion's sweep of the buffer prefix or the lifecycle rule removes.
        self.delete_quietly(staged.joined).await;
        Ok(Accepted {
            upload_id: record.upload_id,
            offset: range.end_exclusive(),
            expires_at_ms: record.expires_at_ms,
            secret: None,
        })
    }

    /// Why a chunk that holds the flush lease cannot be taken: the checks of every chunk, and those that only depend
    /// on the chunk and the record (so every request for the same chunk gets the same answer).
    fn check_flush(
        &self,
        record: &UploadRecord,
        caller: &Caller,
        range: &ContentRange,
        now: u64,
    ) -> Result<(), ApiError> {
        self.check_chunk(record, caller, range, now)?;
        super::check_chunk_size(range, record.part_size, self.config.min_chunk_bytes)?;
        if record.parts.next_number() > S3_MAX_PARTS {
            // Part sizes are planned for at most S3's 10,000 parts: only a damaged record gets here.
            return Err(ApiError::Unrecoverable("This upload has used up S3's part numbers; start it again".into()));
        }
        Ok(())
    }

    /// Why a chunk that failed or lost a race cannot be taken: what became of the upload meanwhile (the offset moved
    /// on: 400 with the offset; aborted: 404), or else `failure` itself.
    async fn refusal(
        &self,
        upload_id: &UploadId,
        caller: &Caller,
        range: &ContentRange,
        now: u64,
        failure: ApiError,
    ) -> ApiError {
        match self.table.get(upload_id).await {
            Ok(Some(current)) => self.check_chunk(&current, caller, range, now).err().unwrap_or(failure),
            Ok(None) => ApiError::NotFound,
            Err(_) => failure,
        }
    }

    /// Puts the chunk's bytes into S3 and computes what the record becomes. With a part number the buffered chunks
    /// and this one become that part; without, this chunk is buffered.
    pub(super) async fn stage(
        &self,
        record: &UploadRecord,
        range: &ContentRange,
        data: Bytes,
        crc: Crc64,
        part_number: Option<u32>,
    ) -> Result<Staged, ApiError> {
        // Hashing runs on a blocking thread while the S3 calls are in flight.
        let md5_state = record.md5_state.clone();
        let hashed = data.clone();
        let hashing = tokio::task::spawn_blocking(move || md5state::extend(&md5_state, &hashed));
        let prefix = self.buffer_prefix(&record.upload_id);
        let mut staged = Staged {
            md5_state: Vec::new(),
            parts: record.parts,
            buffers: record.buffers,
            part_start: record.part_start,
            flush_at: record.flush_at,
            joined: Vec::new(),
            own_buffer: None,
        };
        let multipart_id = record.multipart_id.as_deref().ok_or_else(|| {
            ApiError::Unrecoverable("The upload record has no multipart upload; start the upload again".into())
        })?;
        match part_number {
            Some(number) => {
                let listed = if record.part_start == range.start {
                    Vec::new()
                } else {
                    self.bucket.list_buffered(&prefix, record.part_start, range.start).await?
                };
                let chain = find_chain(&listed, record.part_start, range.start, record.buffers).ok_or_else(|| {
                    ApiError::Conflict("A buffered chunk is gone: another request moved this upload on".into())
                })?;
                // S3 checked each buffered chunk against the CRC its name carries: the part's follows without
                // reading its bytes again, and S3 checks the part against it as the chunks stream through.
                let lengths = chain.iter().map(|l| (Crc64(l.chunk.crc64), l.size));
                let part_crc = Crc64::concat(lengths.chain([(crc, range.chunk_len())])).unwrap_or(crc);
                let length = chain.iter().map(|l| l.size).sum::<u64>() + range.chunk_len();
                let pieces = chain.iter().map(|l| Piece::Buffered(l.key.clone())).chain([Piece::InHand(data)]);
                let part = PartSource { pieces: pieces.collect(), length, crc: part_crc };
                self.flush_part(record, multipart_id, number, part).await?;
                staged.parts = record.parts.with_part(part_crc, length);
                staged.buffers = BufferChain::default();
                staged.part_start = range.end_exclusive();
                staged.flush_at = (range.end_exclusive() + record.part_size).min(record.total);
                staged.joined = listed.into_iter().map(|l| l.key).collect();
            }
            None => {
                let chunk = BufferedChunk { start: range.start, crc64: crc.0 };
                staged.buffers = record.buffers.then(chunk);
                staged.own_buffer = Some(self.bucket.put_buffered(&prefix, chunk, staged.buffers, data).await?);
            }
        }
        staged.md5_state = hashing.await.map_err(|e| ApiError::Unavailable(format!("hashing: {e}")))??;
        Ok(staged)
    }
}
