//! A parallel chunk: its bytes are buffered under a key of its own, then one conditional write records it in its
//! part's slot. The write that fills the part's last slot elects its request to upload the part: no lock, no
//! contention on the upload's record. A part whose uploader died is uploaded by the next request that finds it full:
//! a retried chunk of it, or the completion.

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};

use crate::app::App;
use crate::checksum::Crc64;
use crate::clock::{iso8601, now_ms};
use crate::error::ApiError;
use crate::metrics::{Metric, Race};
use crate::protocol::ContentRange;
use crate::secret::Caller;
use crate::store::bucket::{PartSource, Piece};
use crate::store::{PartItem, Slot, SlotWritten, UploadRecord};

impl App {
    pub(super) async fn accept_parallel(
        &self,
        caller: &Caller,
        record: UploadRecord,
        range: &ContentRange,
        data: Bytes,
        crc: Crc64,
    ) -> Result<Value, ApiError> {
        if !caller.may_use(&record.owner, record.secret_hash.as_ref()) {
            return Err(ApiError::NotFound);
        }
        self.check_taking(&record, now_ms())?;
        let grid = record.grid();
        let at = grid.locate(range)?;
        let slot = Slot { crc64: crc, nonce: rand::random() };
        let own = self.parallel_buffer_key(&record, at.index, slot.nonce);
        self.bucket.put_checked(&own, crc, data.clone()).await?;
        let part = match self.table.record_slot(&record.upload_id, at.part, at.slot, slot, self.part_ttl(&record)).await
        {
            Ok(SlotWritten::Won(part)) => part,
            Ok(SlotWritten::Held(part)) => {
                // Our bytes are not referenced: the slot names another request's buffer.
                self.metrics.emit(Metric::RaceLost { race: Race::ParallelSlot });
                self.delete_quietly(vec![own]).await;
                match part.slots.get(&at.slot) {
                    Some(held) if held.crc64 == crc => part,
                    _ => {
                        return Err(ApiError::Conflict(format!(
                            "Chunk {} is already held with other bytes; ask for the upload's status",
                            at.index
                        )));
                    }
                }
            }
            Err(e) => {
                self.delete_quietly(vec![own]).await;
                return Err(e);
            }
        };
        let slots = grid.slots_in(at.part);
        let done = match (&part.etag, part.is_full(slots)) {
            (Some(_), _) => true,
            (None, true) => {
                self.flush_parallel(&record, at.part, &part, Some((at.slot, data))).await?;
                true
            }
            (None, false) => false,
        };
        Ok(json!({
            "upload_id": record.upload_id,
            "chunk": at.index,
            "part": at.part,
            "part_complete": done,
            "expires": iso8601(record.expires_at_ms),
        }))
    }

    /// Uploads a full part from its slots' buffered chunks (`own` is one of them, already in memory) and records it.
    /// Several requests may do it at once with the same slots, so the same bytes: one records its ETag first, and
    /// S3 keeps one of the identical uploads.
    pub(super) async fn flush_parallel(
        &self,
        record: &UploadRecord,
        number: u32,
        part: &PartItem,
        own: Option<(u32, Bytes)>,
    ) -> Result<(), ApiError> {
        let grid = record.grid();
        let multipart_id = record.multipart_id.as_deref().ok_or_else(|| {
            ApiError::Unrecoverable("The upload record has no multipart upload; start the upload again".into())
        })?;
        let slots: Vec<(u64, Slot)> =
            (0..grid.slots_in(number)).map(|s| (grid.chunk_index(number, s), part.slots[&s])).collect();
        let crc = Crc64::concat(slots.iter().map(|(index, slot)| (slot.crc64, grid.chunk_len(*index))))
            .ok_or_else(|| ApiError::Unrecoverable("A part has no chunks".into()))?;
        let keys: Vec<String> =
            slots.iter().map(|(index, slot)| self.parallel_buffer_key(record, *index, slot.nonce)).collect();
        let pieces = slots.iter().zip(&keys).map(|((index, _), key)| match &own {
            Some((slot, data)) if grid.chunk_index(number, *slot) == *index => Piece::InHand(data.clone()),
            _ => Piece::Buffered(key.clone()),
        });
        let length = slots.iter().map(|(index, _)| grid.chunk_len(*index)).sum();
        let part = PartSource { pieces: pieces.collect(), length, crc };
        let etag = match self.flush_part(record, multipart_id, number, part).await {
            Ok(etag) => etag,
            // A buffered chunk is gone, or was cut off while we read it: another request uploaded the part and
            // removed them. Whatever failed, a part recorded by another is done.
            Err(e) => return if self.is_flushed(record, number).await? { Ok(()) } else { Err(e) },
        };
        self.table.record_flushed(&record.upload_id, number, crc, &etag, self.part_ttl(record)).await?;
        // The part is in S3 and recorded: its buffered chunks are garbage, whoever recorded it. Deleted before the
        // answer, as in `append`.
        self.delete_quietly(keys).await;
        Ok(())
    }

    async fn is_flushed(&self, record: &UploadRecord, number: u32) -> Result<bool, ApiError> {
        let items = self.table.part_items(&record.upload_id, &[number]).await?;
        Ok(items.get(&number).is_some_and(|p| p.etag.is_some()))
    }

    /// Where a parallel chunk's bytes wait: named by its index and the nonce of the request that sent it, so two
    /// requests for one chunk never write the same object.
    fn parallel_buffer_key(&self, record: &UploadRecord, index: u64, nonce: u64) -> String {
        format!("{}c{index:016x}-{nonce:016x}", self.buffer_prefix(&record.upload_id))
    }

    /// Part items expire (the table's TTL) when the upload does, after any completion begun in time has finished.
    pub(super) fn part_ttl(&self, record: &UploadRecord) -> u64 {
        (record.expires_at_ms + self.config.lease_ms()) / 1000
    }
}

/// Full parts a completion uploads at once.
const FLUSHES_IN_FLIGHT: usize = 4;

impl App {
    /// Before a parallel upload completes: every part's chunks must be held, and a full part whose upload died is
    /// uploaded now.
    pub(super) async fn flush_full_parts(&self, record: &UploadRecord) -> Result<(), ApiError> {
        let grid = record.grid();
        let numbers: Vec<u32> = (1..=grid.parts()).collect();
        let items = self.table.part_items(&record.upload_id, &numbers).await?;
        let empty = PartItem::default();
        let missing: Vec<u64> = numbers
            .iter()
            .flat_map(|&n| {
                let item = items.get(&n).unwrap_or(&empty);
                (0..grid.slots_in(n)).filter(|s| !item.slots.contains_key(s)).map(move |s| grid.chunk_index(n, s))
            })
            .collect();
        if !missing.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "The upload is incomplete: chunks {:?} are missing",
                crate::grid::ranges(missing)
            )));
        }
        let unflushed = items.iter().filter(|(_, item)| item.etag.is_none());
        let flushes: Vec<_> = unflushed.map(|(&n, item)| self.flush_parallel(record, n, item, None)).collect();
        stream::iter(flushes).buffer_unordered(FLUSHES_IN_FLIGHT).try_collect::<Vec<()>>().await?;
        Ok(())
    }

    /// What a parallel upload holds: the parts in S3, and every chunk recorded (those of parts in S3 included).
    pub(super) async fn parallel_holdings(&self, record: &UploadRecord) -> Result<(Vec<u64>, Vec<u64>), ApiError> {
        let grid = record.grid();
        let numbers: Vec<u32> = (1..=grid.parts()).collect();
        let items = self.table.part_items(&record.upload_id, &numbers).await?;
        let mut parts = Vec::new();
        let mut chunks = Vec::new();
        for n in numbers {
            let Some(item) = items.get(&n) else { continue };
            if item.etag.is_some() {
                parts.push(u64::from(n));
            }
            chunks.extend(item.slots.keys().map(|&s| grid.chunk_index(n, s)));
        }
        Ok((parts, chunks))
    }
}
