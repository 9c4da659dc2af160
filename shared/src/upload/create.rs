//! An upload's first chunk: the record is written first, then the multipart upload is created and the chunk staged,
//! then one commit makes both count. A crash at any step leaves a record that leads to everything S3 holds.

use bytes::Bytes;

use super::{Accepted, Chunk};
use crate::app::App;
use crate::checksum::Crc64;
use crate::error::ApiError;
use crate::protocol::{self, ObjectKey, attachment_disposition, plan_part_size};
use crate::secret::Caller;
use crate::store::{ChunkCommit, UploadRecord};

impl App {
    pub(super) async fn create(&self, caller: &Caller, chunk: Chunk, crc: Crc64) -> Result<Accepted, ApiError> {
        let range = chunk.range;
        if range.start != 0 {
            return Err(ApiError::OffsetMismatch { offset: 0 });
        }
        let part_size = plan_part_size(range.total, self.config.min_part_bytes, self.config.max_part_bytes)?;
        super::check_chunk_size(&range, part_size, self.config.min_chunk_bytes)?;
        let (base, key) =
            self.new_record(caller, chunk.filename.as_deref(), chunk.content_type.as_deref(), range.total, part_size);
        let flushes = range.end_exclusive() >= part_size.min(range.total);
        // Nobody else knows the id yet, so the first chunk needs no claim nor lease: it writes part 1 itself.
        let mut record = base;
        self.table.create_within(&record, self.config.limits).await?;
        match self.first_chunk(&mut record, &key, chunk.data, crc, flushes).await {
            Ok(()) => Ok(Accepted {
                upload_id: record.upload_id,
                offset: record.offset,
                expires_at_ms: record.expires_at_ms,
                secret: caller.secret().cloned(),
            }),
            // The client never learned this upload's id, so it cannot ask for its status: it sends the chunk again,
            // which starts another upload. This one, committed or not, is left to TTL and the cleanup function.
            Err(ApiError::Ambiguous(detail)) => Err(ApiError::Unavailable(detail)),
            Err(e) => {
                // Nothing was accepted: remove what this request wrote. What cannot be removed now, the record
                // still leads the cleanup function to.
                self.discard_quietly(&record).await;
                self.forget_quietly(&record).await;
                Err(e)
            }
        }
    }

    /// Creates the multipart upload at `key` (the record's), stages the first chunk and commits both into `record`.
    async fn first_chunk(
        &self,
        record: &mut UploadRecord,
        key: &ObjectKey,
        data: Bytes,
        crc: Crc64,
        flushes: bool,
    ) -> Result<(), ApiError> {
        let disposition = attachment_disposition(&record.filename);
        let storage_class = &self.config.storage_class;
        let multipart_id = self.bucket.create_multipart(key, &record.content_type, &disposition, storage_class).await?;
        record.multipart_id = Some(multipart_id);
        let range = protocol::ContentRange { start: 0, end: data.len() as u64 - 1, total: record.total };
        let staged = self.stage(record, &range, data, crc, flushes.then_some(1)).await?;
        let committed = self
            .table
            .commit_chunk(ChunkCommit {
                upload_id: &record.upload_id,
                start: 0,
                new_offset: range.end_exclusive(),
                md5_state: staged.md5_state.clone(),
                parts: &staged.parts,
                buffers: staged.buffers,
                part_start: staged.part_start,
                flush_at: staged.flush_at,
                multipart_id: record.multipart_id.as_deref(),
                lease: None,
            })
            .await?;
        if !committed {
            // Only an abort or a removal can have touched a record nobody else knew of.
            return Err(ApiError::NotFound);
        }
        record.offset = range.end_exclusive();
        Ok(())
    }
}
