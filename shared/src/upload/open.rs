//! Opening a parallel or direct upload (`POST /upload/create`): its grid is fixed from its size before any byte is
//! sent, so chunks and parts can then come in any order. The record is written first, then the multipart upload is
//! created and recorded, as for a sequential upload's first chunk.

use serde_json::{Value, json};

use super::direct;
use crate::app::App;
use crate::checksum::Crc64;
use crate::clock::{iso8601, now_ms};
use crate::error::ApiError;
use crate::grid::{Grid, Mode};
use crate::protocol::{MIB, ObjectKey, attachment_disposition};
use crate::secret::{self, Caller};
use crate::store::{PartChecksums, UploadRecord, Written};

/// A parallel part's chunks are slots of its item (`store::parts`): this many keep the item within two write units,
/// and a part's flush within as many reads.
pub const MAX_SLOTS: u64 = 64;
/// Parallel chunks unless the client asks otherwise: whole MiB under API Gateway's payload limit.
const DEFAULT_PARALLEL_CHUNK: u64 = 4 * MIB;

/// What a client asks for when it opens an upload.
pub struct Opening {
    pub size: u64,
    pub mode: Mode,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    /// Parallel mode: the chunk size it will send.
    pub chunk_size: Option<u64>,
    /// Direct mode: the part size it would like.
    pub part_size: Option<u64>,
    /// Direct mode: the first parts' CRC64NVMEs, of parts of `part_size`. Their URLs come with the answer when the
    /// grid's parts are of that size, saving the client a round trip before its first byte.
    pub part_urls: Vec<(u32, Crc64)>,
}

impl App {
    pub async fn open(&self, caller: &Caller, opening: Opening) -> Result<Value, ApiError> {
        let grid = self.plan(&opening)?;
        if !opening.part_urls.is_empty() {
            if opening.mode != Mode::Direct {
                return Err(ApiError::BadRequest("Only direct uploads have part URLs".into()));
            }
            direct::check_count(&opening.part_urls)?;
            direct::check_on_grid(&grid, &opening.part_urls)?;
        }
        let (base, key) = self.new_record(
            caller,
            opening.filename.as_deref(),
            opening.content_type.as_deref(),
            grid.total,
            grid.part_size,
        );
        let record = UploadRecord {
            // All at the end: the sequential mode's writes, conditioned on the offset, never match this record.
            offset: grid.total,
            part_start: grid.total,
            flush_at: grid.total,
            mode: opening.mode,
            chunk_size: grid.chunk_size,
            ..base
        };
        let multipart_id = self.start(&record, &key, PartChecksums::Crc64Nvme).await?;
        let mut answer = json!({
            "upload_id": record.upload_id,
            "mode": record.mode.as_str(),
            "size": grid.total,
            "part_size": grid.part_size,
            "parts": grid.parts(),
            "expires": iso8601(record.expires_at_ms),
        });
        if record.mode == Mode::Parallel {
            answer["chunk_size"] = json!(grid.chunk_size);
            answer["chunks"] = json!(grid.chunks());
        }
        if let Some(secret) = caller.secret() {
            answer[secret::FIELD] = json!(secret.reveal());
        }
        // CRCs of parts of another size than the grid's are no use: the client asks for those URLs afterwards.
        if !opening.part_urls.is_empty() && opening.part_size == Some(grid.part_size) {
            let record = UploadRecord { multipart_id: Some(multipart_id), ..record };
            match self.sign_parts(&record, opening.part_urls, now_ms()).await {
                Ok(urls) => answer["part_urls"] = urls,
                // The upload is open all the same; its client asks for the URLs with `POST /upload/{id}/parts`.
                Err(e) => tracing::warn!(upload_id = %record.upload_id, error = %e, "first part URLs not signed"),
            }
        }
        Ok(answer)
    }

    /// Stores a new upload's record, then creates its multipart upload at `key` (with `checksums`) and records it: an
    /// upload that takes its bytes later (a parallel, direct, tus or Uppy one); returns the multipart upload's id.
    /// What fails is removed again.
    pub(super) async fn start(
        &self,
        record: &UploadRecord,
        key: &ObjectKey,
        checksums: PartChecksums,
    ) -> Result<String, ApiError> {
        self.table.create_within(record, self.config.limits).await?;
        let disposition = attachment_disposition(&record.filename);
        let created = async {
            let (content_type, storage_class) = (&record.content_type, &self.config.storage_class);
            let id = self.bucket.create_multipart(key, content_type, &disposition, storage_class, checksums).await?;
            self.table.set_multipart(&record.upload_id, &id).await.map(|written| (written, id))
        };
        match created.await {
            Ok((Written::Won(_), id)) => Ok(id),
            // The client never learned the id: as for a first chunk, the upload is left to TTL and cleanup.
            Err(ApiError::Ambiguous(detail)) => Err(ApiError::Unavailable(detail)),
            failed => {
                self.discard_quietly(record).await;
                self.forget_quietly(record).await;
                Err(failed.err().unwrap_or(ApiError::NotFound))
            }
        }
    }

    /// The grid an opening asks for, within the service's limits.
    fn plan(&self, opening: &Opening) -> Result<Grid, ApiError> {
        let config = &self.config;
        if opening.size > config.size_limit() {
            return Err(ApiError::BadRequest(format!(
                "Size of file exceeds the limit ({} bytes)",
                config.size_limit()
            )));
        }
        match opening.mode {
            Mode::Sequential => Err(ApiError::BadRequest(
                "A sequential upload starts with its first chunk (POST /upload); open parallel or direct ones".into(),
            )),
            Mode::UppyS3 => Err(ApiError::BadRequest(
                "Uppy S3 uploads start at POST /s3/multipart or GET /s3/params; open parallel or direct ones".into(),
            )),
            Mode::Direct => {
                Grid::plan_direct(opening.size, opening.part_size, config.min_part_bytes, config.max_part_bytes)
            }
            Mode::Parallel => {
                let chunk = opening.chunk_size.unwrap_or(DEFAULT_PARALLEL_CHUNK.min(config.max_chunk_bytes));
                if chunk > config.max_chunk_bytes {
                    return Err(ApiError::BadRequest(format!(
                        "chunk_size may be at most {} bytes",
                        config.max_chunk_bytes
                    )));
                }
                if chunk < config.min_chunk_bytes.min(opening.size) || chunk == 0 {
                    return Err(ApiError::BadRequest(format!(
                        "chunk_size must be at least {} bytes",
                        config.min_chunk_bytes
                    )));
                }
                let grid = Grid::plan(opening.size, chunk, config.min_part_bytes, config.max_part_bytes)?;
                if grid.chunks_per_part() > MAX_SLOTS {
                    return Err(ApiError::BadRequest(format!(
                        "A file of this size needs parts of {} bytes, over {MAX_SLOTS} chunks of {chunk}: send larger chunks",
                        grid.part_size
                    )));
                }
                Ok(grid)
            }
        }
    }
}
