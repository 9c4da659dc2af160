//! The concatenation extension's final upload: an object made in S3 from the caller's partial uploads, in order,
//! without their bytes passing through the service again.
//!
//! A partial upload is a sequential upload whose object waits under its buffer prefix (`ObjectKey::staging`). The
//! final upload's creation completes each piece's multipart upload there (as any completion, its parts proven by its
//! ledger), then makes the final object's parts: a range of one piece is copied inside S3 (`UploadPartCopy`); pieces
//! under S3's smallest part that are not last cannot be parts of their own, so they are joined with what follows them
//! into one part, which the function reads and uploads (at most twice the smallest part's bytes each). The final
//! object is completed with the whole file's CRC64NVME combined from the pieces', which S3 checks. Then the pieces,
//! consumed, are removed.
//!
//! The final upload's id is derived from its owner and its pieces, so the same request sent again (its answer lost,
//! or its time run out on a large file while parts were being copied) goes on with the same upload: the parts S3
//! already holds are not copied again.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt, stream};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::tus::TusState;
use crate::app::App;
use crate::checksum::Crc64;
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::md5state::hex;
use crate::protocol::{MIB, UploadId, plan_part_size};
use crate::secret::Caller;
use crate::store::bucket::{PartSource, Piece};
use crate::store::tus::MAX_PIECES;
use crate::store::{CompleteFailure, Concat, Finished, Part, Status, TusRecord, UploadRecord};
use crate::tus::metadata::Metadata;

/// Parts made at once: copies run inside S3, so more in flight only waits on S3.
const PARTS_IN_FLIGHT: usize = 8;
/// A copied part is at most this, or the part size that keeps the file within S3's part count if larger: one
/// `UploadPartCopy` then takes seconds, well inside a request.
const COPY_PART: u64 = 256 * MIB;
/// What the creation leaves itself after copying: to complete and answer.
const FINISH_MARGIN: Duration = Duration::from_secs(5);

/// A piece ready to be copied from.
struct Source {
    key: String,
    size: u64,
    crc: Crc64,
}

/// A byte range `[start, end)` of piece `piece`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    piece: usize,
    start: u64,
    end: u64,
}

/// A part of the final object, from one segment (copied by S3) or several (read and uploaded).
type Planned = Vec<Segment>;

fn planned_len(part: &Planned) -> u64 {
    part.iter().map(|s| s.end - s.start).sum()
}

/// The final object's parts, in order, from its pieces' sizes: every part but the last at least `min` bytes; a
/// piece's range of at least `min` (or the file's end) is one copied part of at most `copy_max`; a piece, or rest of
/// one, under `min` is joined with the start of what follows, taking a whole next piece when taking less would leave
/// a rest under `min` that is not the end.
fn plan(sizes: &[u64], min: u64, copy_max: u64) -> Vec<Planned> {
    let last = sizes.iter().rposition(|&s| s > 0);
    let mut parts = Vec::new();
    let mut joining: Planned = Vec::new();
    for (piece, &size) in sizes.iter().enumerate() {
        if size == 0 {
            continue;
        }
        let is_last = Some(piece) == last;
        let mut start = 0;
        let joined = planned_len(&joining);
        if joined > 0 {
            let need = min - joined;
            let take = if size <= need || size - need >= min || is_last { size.min(need) } else { size };
            joining.push(Segment { piece, start: 0, end: take });
            start = take;
            if joined + take >= min {
                parts.push(std::mem::take(&mut joining));
            }
        }
        let rest = size - start;
        if rest == 0 {
            continue;
        }
        if rest >= min || is_last {
            let count = rest.div_ceil(copy_max);
            let step = rest.div_ceil(count);
            let mut at = start;
            while at < size {
                let end = (at + step).min(size);
                parts.push(vec![Segment { piece, start: at, end }]);
                at = end;
            }
        } else {
            joining.push(Segment { piece, start, end: size });
        }
    }
    if !joining.is_empty() {
        parts.push(joining);
    }
    parts
}

/// The final upload's id: the same owner (and anonymous secret) concatenating the same pieces names the same upload.
fn final_id(caller: &Caller, pieces: &[UploadId]) -> UploadId {
    let mut hash = Sha256::new();
    hash.update(b"tus-final\0");
    hash.update(caller.owner().as_bytes());
    hash.update(b"\0");
    if let Some(secret) = caller.secret_hash() {
        hash.update(secret.as_bytes());
    }
    for piece in pieces {
        hash.update(piece.as_str().as_bytes());
    }
    let digest = hash.finalize();
    // 32 lowercase hex digits: an id as any other.
    UploadId::parse(&hex(&digest[..16])).unwrap_or_else(|_| UploadId::new())
}

/// Why a piece cannot be concatenated, if it cannot.
fn check_piece(piece: &UploadRecord, now: u64) -> Result<(), ApiError> {
    let id = &piece.upload_id;
    if !piece.tus.as_ref().is_some_and(TusRecord::is_partial) {
        return Err(ApiError::BadRequest(format!("Upload {id} is not a partial upload (Upload-Concat: partial)")));
    }
    match piece.status {
        Status::Uploading if piece.is_expired(now) => Err(ApiError::Expired),
        Status::Uploading if piece.tus.as_ref().is_some_and(|t| t.deferred) || piece.offset != piece.total => {
            Err(ApiError::BadRequest(format!(
                "Partial upload {id} is not finished ({} of {} bytes): concatenate finished uploads only",
                piece.offset, piece.total
            )))
        }
        Status::Uploading | Status::Completing => Ok(()),
        Status::Complete | Status::Aborted => Err(ApiError::NotFound),
    }
}

impl App {
    /// `Upload-Concat: final;...`: creates the final upload (or goes on with it) and assembles it within the request's
    /// time; a 503 that says so when the copying takes longer, which the same request, sent again, goes on with.
    pub async fn concatenate(
        &self,
        caller: &Caller,
        pieces: Vec<UploadId>,
        metadata: &Metadata,
        deadline: Instant,
    ) -> Result<TusState, ApiError> {
        if pieces.len() > MAX_PIECES {
            return Err(ApiError::BadRequest(format!(
                "A final upload concatenates at most {MAX_PIECES} partial uploads"
            )));
        }
        let upload_id = final_id(caller, &pieces);
        let mut record = match self.table.get(&upload_id).await? {
            Some(r) if !caller.may_use(&r.owner, r.secret_hash.as_ref()) => return Err(ApiError::NotFound),
            Some(r) if r.multipart_id.is_some() || r.status != Status::Uploading => r,
            // A creation that stopped before its multipart upload was recorded: begun again.
            Some(r) => {
                self.forget_quietly(&r).await;
                Box::pin(self.begin_final(caller, upload_id.clone(), &pieces, metadata)).await?
            }
            None => Box::pin(self.begin_final(caller, upload_id.clone(), &pieces, metadata)).await?,
        };
        match record.status {
            Status::Complete => {
                Box::pin(self.consume(&pieces)).await;
                return Ok(TusState::of(&record));
            }
            Status::Aborted => return Err(ApiError::NotFound),
            Status::Uploading if record.is_expired(now_ms()) => return Err(ApiError::Expired),
            Status::Uploading | Status::Completing => {}
        }
        // Each step boxed, as every call of a large operation from another (`tus::Context::by`).
        let sources = Box::pin(self.sources(&record, &pieces, deadline)).await?;
        let multipart_id = record.multipart_id.clone().unwrap_or_default();
        let until = deadline.checked_sub(FINISH_MARGIN).unwrap_or(deadline);
        Box::pin(self.make_parts(&record, &multipart_id, &sources, Some(until))).await?;
        self.finish_tus(caller, &upload_id, deadline).await?;
        Box::pin(self.consume(&pieces)).await;
        record.status = Status::Complete;
        Ok(TusState::of(&record))
    }

    /// The final upload's record and multipart upload, once its pieces are checked.
    async fn begin_final(
        &self,
        caller: &Caller,
        upload_id: UploadId,
        pieces: &[UploadId],
        metadata: &Metadata,
    ) -> Result<UploadRecord, ApiError> {
        let found = self.table.records(pieces).await?;
        let now = now_ms();
        let mut total: u64 = 0;
        for id in pieces {
            let piece =
                found.get(id).filter(|p| caller.may_use(&p.owner, p.secret_hash.as_ref())).ok_or(ApiError::NotFound)?;
            check_piece(piece, now)?;
            total = total.saturating_add(piece.total);
        }
        if total > self.config.size_limit() {
            return Err(ApiError::PayloadTooLarge(format!(
                "The pieces make {total} bytes, over the {} an upload may have",
                self.config.size_limit()
            )));
        }
        let part_size = plan_part_size(total, self.config.min_part_bytes, self.config.max_part_bytes)?;
        let (base, _) = self.new_record(caller, metadata.filename(), metadata.filetype(), total, part_size);
        let key = self.config.key_template.render(&upload_id, &base.filename, caller.owner());
        let mut record = UploadRecord {
            upload_id,
            key: key.as_str().to_string(),
            // Every byte is in, in its pieces: no chunk is ever taken, and the completion may run at once.
            offset: total,
            part_start: total,
            flush_at: total,
            // Its bytes are its pieces', which are counted until it consumes them.
            counted: None,
            tus: Some(TusRecord {
                metadata: metadata.raw().to_string(),
                concat: Concat::Final(pieces.to_vec()),
                deferred: false,
            }),
            ..base
        };
        record.multipart_id = Some(self.start(&record, &key).await?);
        Ok(record)
    }

    /// The pieces of a final upload, each one's object completed (once per piece, however often it is listed), in
    /// order. They must still be its owner's and finished. S3's completions are awaited until `until`.
    async fn sources(
        &self,
        record: &UploadRecord,
        pieces: &[UploadId],
        until: Instant,
    ) -> Result<Vec<Source>, ApiError> {
        let found = self.table.records(pieces).await?;
        let now = now_ms();
        let same_owner = |p: &&UploadRecord| p.owner == record.owner && p.secret_hash == record.secret_hash;
        let mut unique: Vec<&UploadRecord> = Vec::new();
        for id in pieces {
            let piece = found.get(id).filter(same_owner).ok_or(ApiError::Expired)?;
            check_piece(piece, now)?;
            if piece.total > 0 && !unique.iter().any(|u| u.upload_id == *id) {
                unique.push(piece);
            }
        }
        let completions: Vec<_> = unique.into_iter().map(|piece| self.source(piece, until)).collect();
        let ready: HashMap<UploadId, Source> =
            stream::iter(completions).buffer_unordered(PARTS_IN_FLIGHT).try_collect().await?;
        Ok(pieces
            .iter()
            .filter_map(|id| ready.get(id))
            .map(|s| Source { key: s.key.clone(), size: s.size, crc: s.crc })
            .collect())
    }

    /// A piece's object, completed in S3 as any upload's (its parts proven by its ledger); a repeat finds it done.
    async fn source(&self, piece: &UploadRecord, until: Instant) -> Result<(UploadId, Source), ApiError> {
        // Boxed: the completion may itself assemble (a final upload's), which completes pieces.
        let finished = Box::pin(self.complete_in_s3(piece, None, until)).await?;
        let crc = Crc64::from_base64(&finished.crc64).ok_or_else(|| {
            ApiError::Unrecoverable(format!("Partial upload {} has no CRC64NVME in S3", piece.upload_id))
        })?;
        Ok((piece.upload_id.clone(), Source { key: piece.key.clone(), size: piece.total, crc }))
    }

    /// The parts of the final object's plan that S3 does not hold yet (with their planned size), made by `until`:
    /// past it, a 503 that says the assembly goes on when the request is sent again.
    async fn make_parts(
        &self,
        record: &UploadRecord,
        multipart_id: &str,
        sources: &[Source],
        until: Option<Instant>,
    ) -> Result<(), ApiError> {
        let planned = self.plan_for(record, sources);
        let held: HashMap<u32, u64> = match self.bucket.list_parts(&record.key, multipart_id).await {
            Ok(held) => held.into_iter().map(|p| (p.number, p.size)).collect(),
            // Completed already: the completion finds the object.
            Err(CompleteFailure::NoSuchUpload) => return Ok(()),
            Err(CompleteFailure::Other(e)) => return Err(e),
            Err(CompleteFailure::InvalidPart | CompleteFailure::BadDigest | CompleteFailure::Unanswered) => {
                return Err(mismatch(record));
            }
        };
        let missing: Vec<(u32, &Planned)> =
            (1..).zip(&planned).filter(|(number, part)| held.get(number) != Some(&planned_len(part))).collect();
        let total = planned.len();
        let done = total - missing.len();
        let makes: Vec<_> = missing
            .into_iter()
            .map(|(number, part)| self.make_part(record, multipart_id, number, part, sources))
            .collect();
        let making = stream::iter(makes).buffer_unordered(PARTS_IN_FLIGHT).try_collect::<Vec<()>>();
        match until {
            None => making.await.map(|_| ()),
            Some(until) => tokio::time::timeout_at(until, making).await.unwrap_or_else(|_| {
                Err(ApiError::Unavailable(format!(
                    "The final upload is being assembled ({done} of {total} parts were in S3 when this request began): \
                     send the same request again to go on"
                )))
            }).map(|_| ()),
        }
    }

    /// The plan of a final upload from its pieces; an empty file (or one of empty pieces) is one empty part.
    fn plan_for(&self, record: &UploadRecord, sources: &[Source]) -> Vec<Planned> {
        let sizes: Vec<u64> = sources.iter().map(|s| s.size).collect();
        let copy_max = COPY_PART.max(record.part_size).min(self.config.max_part_bytes);
        let planned = plan(&sizes, self.config.min_part_bytes, copy_max);
        if planned.is_empty() { vec![Vec::new()] } else { planned }
    }

    async fn make_part(
        &self,
        record: &UploadRecord,
        multipart_id: &str,
        number: u32,
        part: &Planned,
        sources: &[Source],
    ) -> Result<(), ApiError> {
        if let [one] = part.as_slice() {
            let source = &sources[one.piece];
            self.bucket.copy_part(&record.key, multipart_id, number, &source.key, (one.start, one.end)).await?;
            return Ok(());
        }
        // Pieces too small to be parts: read and uploaded as one.
        let mut joined = BytesMut::with_capacity(planned_len(part) as usize);
        for segment in part {
            joined.extend_from_slice(
                &self.bucket.get_range(&sources[segment.piece].key, (segment.start, segment.end)).await?,
            );
        }
        let data: Bytes = joined.freeze();
        let crc = Crc64::of(&data);
        let length = data.len() as u64;
        self.bucket
            .upload_part(
                &record.key,
                multipart_id,
                number,
                PartSource { pieces: vec![Piece::InHand(data)], length, crc },
            )
            .await?;
        Ok(())
    }

    /// Completes a final (or empty) upload's object in S3: every planned part made, then completed with the whole
    /// file's CRC64NVME combined from its pieces', which S3 checks against the parts it holds. Called by the completion,
    /// which awaits S3's answers until `until`.
    pub(super) async fn assemble(
        &self,
        record: &UploadRecord,
        multipart_id: &str,
        pieces: &[UploadId],
        until: Instant,
    ) -> Result<Finished, ApiError> {
        let sources = self.sources(record, pieces, until).await?;
        let whole = Crc64::concat(sources.iter().map(|s| (s.crc, s.size))).unwrap_or(Crc64::of(&[]));
        self.make_parts(record, multipart_id, &sources, None).await?;
        let planned = self.plan_for(record, &sources);
        let held = match self.bucket.list_parts(&record.key, multipart_id).await {
            Ok(held) => held,
            Err(CompleteFailure::NoSuchUpload) => return self.assembled_before(record, whole).await,
            Err(CompleteFailure::Other(e)) => return Err(e),
            Err(CompleteFailure::InvalidPart | CompleteFailure::BadDigest | CompleteFailure::Unanswered) => {
                return Err(mismatch(record));
            }
        };
        let by_number: HashMap<u32, _> = held.iter().map(|p| (p.number, p)).collect();
        let parts = (1..)
            .zip(&planned)
            .map(|(number, part)| match by_number.get(&number) {
                Some(held) if held.size == planned_len(part) => Ok(Part { number, etag: held.etag.clone() }),
                _ => Err(mismatch(record)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let completing = self.bucket.complete(&record.key, multipart_id, &parts, whole);
        match tokio::time::timeout_at(until, completing).await.unwrap_or(Err(CompleteFailure::Unanswered)) {
            Ok(finished) => Ok(finished),
            // S3 may be assembling the object still: the completion's lease stays, and a later request finds it.
            Err(CompleteFailure::Unanswered) => {
                Err(self.still_completing(record.completing_since_ms.unwrap_or_else(now_ms), now_ms()))
            }
            Err(CompleteFailure::NoSuchUpload) => self.assembled_before(record, whole).await,
            Err(CompleteFailure::InvalidPart | CompleteFailure::BadDigest) => Err(mismatch(record)),
            Err(CompleteFailure::Other(e)) => Err(e),
        }
    }

    /// The multipart upload is gone: an earlier attempt completed the object if it is there with the whole CRC.
    async fn assembled_before(&self, record: &UploadRecord, whole: Crc64) -> Result<Finished, ApiError> {
        match self.bucket.head(&record.key).await? {
            Some(object) if object.crc64 == whole.to_base64() => Ok(object),
            _ => Err(ApiError::Expired),
        }
    }

    /// Removes pieces a complete final upload took: their objects and records, and their share of their owner's
    /// limits. What fails here, TTL and the cleanup function finish.
    async fn consume(&self, pieces: &[UploadId]) {
        let found = match self.table.records(pieces).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the pieces of a complete final upload");
                return;
            }
        };
        for piece in found.values().filter(|p| p.tus.as_ref().is_some_and(TusRecord::is_partial)) {
            self.discard_quietly(piece).await;
            self.forget_quietly(piece).await;
        }
    }
}

fn mismatch(record: &UploadRecord) -> ApiError {
    tracing::error!(upload_id = %record.upload_id, "a final upload's parts do not match its pieces");
    ApiError::Unrecoverable("The final upload's parts in S3 do not match its pieces; start the upload again".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 5;
    const MAX: u64 = 20;

    fn seg(piece: usize, start: u64, end: u64) -> Segment {
        Segment { piece, start, end }
    }

    /// Every byte once, in order; every part but the last within [MIN, MAX] if copied, at least MIN if joined.
    fn check(sizes: &[u64], planned: &[Planned]) {
        let mut expected =
            sizes.iter().enumerate().filter(|(_, s)| **s > 0).flat_map(|(p, &s)| (0..s).map(move |b| (p, b)));
        for (i, part) in planned.iter().enumerate() {
            for s in part {
                for b in s.start..s.end {
                    assert_eq!(expected.next(), Some((s.piece, b)), "{planned:?}");
                }
            }
            let last = i + 1 == planned.len();
            assert!(last || planned_len(part) >= MIN, "{planned:?}");
            if part.len() == 1 {
                assert!(planned_len(part) <= MAX, "{planned:?}");
            } else {
                assert!(planned_len(part) < 2 * MIN, "{planned:?}");
            }
        }
        assert_eq!(expected.next(), None, "{planned:?}");
    }

    #[test]
    fn large_pieces_are_copied_and_small_ones_joined() {
        // Four equal pieces over MIN: four copies.
        assert_eq!(
            plan(&[6, 6, 6, 6], MIN, MAX),
            vec![vec![seg(0, 0, 6)], vec![seg(1, 0, 6)], vec![seg(2, 0, 6)], vec![seg(3, 0, 6)]]
        );
        // tus-js-client's parallelUploads on a small file: every piece under MIN, joined into parts of MIN.
        assert_eq!(plan(&[3, 3, 3], MIN, MAX), vec![vec![seg(0, 0, 3), seg(1, 0, 3)], vec![seg(2, 0, 3)]]);
        // A small piece before a large one takes what it lacks from it; the rest is copied.
        assert_eq!(
            plan(&[2, 30], MIN, MAX),
            vec![vec![seg(0, 0, 2), seg(1, 0, 3)], vec![seg(1, 3, 17)], vec![seg(1, 17, 30)]]
        );
        // Taking only what it lacks would leave a rest under MIN that is not last: the whole next piece is joined.
        assert_eq!(plan(&[2, 6, 9], MIN, MAX), vec![vec![seg(0, 0, 2), seg(1, 0, 6)], vec![seg(2, 0, 9)]]);
        // A small last piece is a copied last part; empty pieces are nothing.
        assert_eq!(plan(&[7, 0, 1, 0], MIN, MAX), vec![vec![seg(0, 0, 7)], vec![seg(2, 0, 1)]]);
        assert_eq!(plan(&[0, 0], MIN, MAX), Vec::<Planned>::new());
    }

    #[test]
    fn every_plan_keeps_s3s_rules() {
        let mut state = 7u64;
        for _ in 0..2000 {
            let sizes: Vec<u64> = (0..(state % 6 + 1))
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state % 45
                })
                .collect();
            check(&sizes, &plan(&sizes, MIN, MAX));
        }
    }

    #[test]
    fn final_ids_name_the_owner_and_the_pieces() {
        let (a, b) = (UploadId::new(), UploadId::new());
        let alice = Caller::Principal("alice".into());
        assert_eq!(final_id(&alice, &[a.clone(), b.clone()]), final_id(&alice, &[a.clone(), b.clone()]));
        assert_ne!(final_id(&alice, &[a.clone(), b.clone()]), final_id(&alice, &[b.clone(), a.clone()]));
        let one = std::slice::from_ref(&a);
        assert_ne!(final_id(&alice, one), final_id(&Caller::Principal("bob".into()), one));
        assert_ne!(final_id(&Caller::creating(None, None), one), final_id(&Caller::creating(None, None), one));
    }
}
