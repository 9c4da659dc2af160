//! Completion, in every mode: check what the client declares, take the completion lease, prove S3's parts are the
//! accepted ones, complete with the whole file's CRC64NVME (S3 refuses a mismatch itself), record; then call the
//! completion hook, if there is one, until it answers (`hook`).

use std::collections::HashMap;

use serde_json::Value;
use tokio::time::Instant;

use crate::app::{App, DYNAMODB_ATTEMPT_TIMEOUT};
use crate::checksum::{self, Crc64};
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::grid::{Grid, Mode, ranges};
use crate::hook::{self, HookOutcome};
use crate::md5state;
use crate::metrics::{Metric, Race};
use crate::protocol::{self, UploadId};
use crate::secret::Caller;
use crate::store::{CompleteFailure, Finished, HeldPart, Part, Status, UploadRecord, Written};

/// What a client declares the whole file to be.
pub struct Declared<'a> {
    /// django-chunked-upload's MD5: required in sequential mode.
    pub md5: Option<&'a str>,
    /// The whole file's CRC64NVME: required in parallel and direct modes, checked when given in sequential mode.
    pub crc64: Option<&'a str>,
}

fn mismatch() -> ApiError {
    ApiError::BadRequest("crc64nvme checksum does not match".into())
}

impl App {
    /// Completes the upload, and answers its result; `deadline` is the request's, which the hook's call keeps to.
    pub async fn complete(
        &self,
        caller: &Caller,
        upload_id: &UploadId,
        declared: Declared<'_>,
        deadline: Instant,
    ) -> Result<Value, ApiError> {
        let md5 = declared.md5.map(protocol::parse_md5_hex).transpose()?;
        let crc = declared.crc64.map(|c| checksum::parse(c, "crc64nvme")).transpose()?;
        let started = Instant::now();
        let record = self.owned(upload_id, caller).await?;
        let now = now_ms();
        match record.status {
            Status::Complete => {
                return Err(ApiError::AlreadyComplete { result: self.answer(record, caller, deadline).await });
            }
            Status::Aborted => return Err(ApiError::NotFound),
            // A completion under way was started in time; only an upload still taking chunks expires.
            Status::Uploading if record.is_expired(now) => return Err(ApiError::Expired),
            Status::Uploading | Status::Completing => {}
        }
        let required = |name: &str| ApiError::BadRequest(format!("Field {name:?} is required"));
        match record.mode {
            // tus has the client declare no MD5: the upload's own is its result's (`UploadRecord::computed_md5`).
            Mode::Sequential if record.tus.is_some() => {}
            Mode::Sequential => {
                let md5 = md5.as_deref().ok_or_else(|| required("md5"))?;
                if record.offset != record.total {
                    return Err(ApiError::BadRequest(format!(
                        "The upload is incomplete: {} of {} bytes received",
                        record.offset, record.total
                    )));
                }
                if md5state::finish_hex(&record.md5_state)? != md5 {
                    return Err(ApiError::BadRequest("md5 checksum does not match".into()));
                }
            }
            // Checking an MD5 would mean reading the whole object back; taking one unchecked would put a checksum
            // nobody verified in the result. Said whether or not a crc64nvme came with it.
            Mode::Parallel | Mode::Direct if md5.is_some() => {
                return Err(ApiError::BadRequest(
                    "A parallel or direct upload is checked by its crc64nvme; md5 is for sequential uploads".into(),
                ));
            }
            Mode::Parallel | Mode::Direct if crc.is_none() => return Err(required("crc64nvme")),
            Mode::Parallel | Mode::Direct => {}
        }
        // A lease outlives the longest a request can run (its deadline), plus a margin for S3 to finish a completion
        // it already received: past that, its holder is gone.
        let lease = self.config.lease_ms();
        let stale_before = now.saturating_sub(lease);
        let keep_until = (now + lease) / 1000 + self.config.expiration_delta_secs;
        let record = match self.table.claim_completion(upload_id, caller, now, stale_before, keep_until).await? {
            Written::Won(record) => record,
            Written::Lost(Some(r)) if r.status == Status::Complete => {
                return Err(ApiError::AlreadyComplete { result: self.answer(r, caller, deadline).await });
            }
            Written::Lost(Some(r)) if r.status == Status::Completing => {
                self.metrics.emit(Metric::RaceLost { race: Race::Completion });
                let since = r.completing_since_ms.unwrap_or(now);
                return Err(self.still_completing(since, now));
            }
            Written::Lost(_) => return Err(ApiError::NotFound),
        };
        // S3's answer must leave the request time to record the result: a DynamoDB attempt, or half of what is left
        // when that is less (as the S3 client's own time limit, `app::sdk_timeouts`).
        let left = deadline.saturating_duration_since(Instant::now());
        let until = deadline - DYNAMODB_ATTEMPT_TIMEOUT.min(left / 2);
        let finished = match self.complete_in_s3(&record, crc, until).await {
            Ok(finished) => finished,
            // S3 may be assembling the object still: the lease stays, so nobody sends another completion meanwhile,
            // and a complete after it finds the object (or takes the lease over and completes).
            Err(e @ ApiError::StillCompleting { .. }) => return Err(e),
            Err(e) => {
                if let Err(release) = self.table.release_completion(upload_id, now).await {
                    tracing::warn!(upload_id = %upload_id, error = %release, "could not release a completion claim");
                }
                return Err(e);
            }
        };
        let retained_until = now_ms() / 1000 + self.config.expiration_delta_secs;
        // The owner's share goes back before the record says complete (once: `store::quota`), so no completed
        // upload is ever left counted. If it fails, so does this request, and a repeated complete gives it back.
        if let Err(e) = self.table.release(&record, retained_until).await {
            if let Err(release) = self.table.release_completion(upload_id, now).await {
                tracing::warn!(upload_id = %upload_id, error = %release, "could not release a completion claim");
            }
            return Err(e);
        }
        let md5 =
            if record.tus.is_some() { record.computed_md5()?.unwrap_or_default() } else { md5.unwrap_or_default() };
        match self.table.mark_complete(upload_id, now, &md5, &finished, retained_until).await? {
            Written::Won(record) => {
                // Chunks of requests that failed after their S3 write were never referenced; the object is whole
                // now, so nothing under the buffer prefix is needed any more.
                if let Err(e) = self.bucket.delete_prefix(&self.buffer_prefix(upload_id)).await {
                    tracing::warn!(upload_id = %upload_id, error = %e, "could not delete leftover buffered chunks");
                }
                let millis = started.elapsed().as_millis() as u64;
                self.metrics.emit(Metric::Completed { mode: record.mode, bytes: record.total, millis });
                Ok(self.answer(record, caller, deadline).await)
            }
            // Our claim ran out and another request finished the same bytes: the same result.
            Written::Lost(Some(current)) if current.status == Status::Complete => {
                Ok(self.answer(current, caller, deadline).await)
            }
            Written::Lost(_) => Err(ApiError::Conflict("The completion was interrupted; retry".into())),
        }
    }

    /// The answer while the completion lease taken at `since_ms` holds: retry once it may have ended.
    pub(super) fn still_completing(&self, since_ms: u64, now_ms: u64) -> ApiError {
        let left_ms = (since_ms + self.config.lease_ms()).saturating_sub(now_ms);
        ApiError::StillCompleting { retry_after_secs: left_ms.div_ceil(1000).clamp(1, 60) }
    }

    /// A completed upload's answer: its result, with the hook's answer. A hook that has not answered yet (never
    /// called, or failed) is called now; what it says is kept, unless another request's call answered first, whose
    /// answer everybody gets then. The completion stands whatever the hook does.
    async fn answer(&self, record: UploadRecord, caller: &Caller, deadline: Instant) -> Value {
        let Some(hook) = &self.hook else { return self.result_json(&record) };
        if let Some(HookOutcome::Answered(_)) = record.hook {
            return self.result_json(&record);
        }
        let upload_id = &record.upload_id;
        // Leaves the request a DynamoDB attempt's time to keep what the hook said.
        let left = deadline.saturating_duration_since(Instant::now()).saturating_sub(DYNAMODB_ATTEMPT_TIMEOUT);
        let outcome = match hook.call(&hook::event(&self.plain_result(&record), caller), left).await {
            Ok(answer) => HookOutcome::Answered(answer),
            Err(failure) => {
                tracing::warn!(upload_id = %upload_id, error = %failure, "completion hook failed");
                self.metrics.emit(Metric::HookFailed);
                HookOutcome::Failed(failure)
            }
        };
        let kept = match self.table.set_hook_outcome(upload_id, &outcome).await {
            Ok(Written::Won(kept)) => Some(kept),
            Ok(Written::Lost(Some(current))) if matches!(current.hook, Some(HookOutcome::Answered(_))) => Some(current),
            // The record is gone (its TTL), or keeping failed: a later complete calls the hook again.
            Ok(Written::Lost(_)) => None,
            Err(e) => {
                tracing::warn!(upload_id = %upload_id, error = %e, "could not keep what the completion hook said");
                None
            }
        };
        self.result_json(&kept.unwrap_or(UploadRecord { hook: Some(outcome), ..record }))
    }

    /// Completes the multipart upload with exactly the accepted parts: S3 lists what it holds, and the record (the
    /// ledger, or the part items) proves those are the parts that were accepted; S3 checks they make the whole
    /// file's CRC64NVME. Never completes with bytes nobody accepted.
    /// S3's answer is awaited until `until`: past it, or without an answer, S3 may still be assembling the object.
    pub(super) async fn complete_in_s3(
        &self,
        record: &UploadRecord,
        declared: Option<Crc64>,
        until: Instant,
    ) -> Result<Finished, ApiError> {
        let multipart_id = record.multipart_id.as_deref().ok_or_else(|| changed(record))?;
        // A tus final (or empty) upload's object is made in S3 from others (`concat`).
        if let Some(pieces) = record.assembled_from() {
            return Box::pin(self.assemble(record, multipart_id, pieces, until)).await;
        }
        if record.mode == Mode::Parallel {
            self.flush_full_parts(record).await?;
        }
        let held = match self.bucket.list_parts(&record.key, multipart_id).await {
            Ok(held) => held,
            Err(CompleteFailure::NoSuchUpload) => return self.completed_elsewhere(record, declared).await,
            Err(CompleteFailure::InvalidPart | CompleteFailure::BadDigest | CompleteFailure::Unanswered) => {
                return Err(changed(record));
            }
            Err(CompleteFailure::Other(e)) => return Err(e),
        };
        let (parts, whole) = match record.mode {
            Mode::Sequential => sequential_parts(record, &held)?,
            Mode::Parallel | Mode::Direct => {
                let numbers: Vec<u32> = (1..=record.grid().parts()).collect();
                let items = self.table.part_items(&record.upload_id, &numbers).await?;
                grid_parts(record, &held, |n| items.get(&n).and_then(|i| i.crc64))?
            }
        };
        if declared.is_some_and(|d| d != whole) {
            return Err(mismatch());
        }
        let completing = self.bucket.complete(&record.key, multipart_id, &parts, whole);
        let answered = tokio::time::timeout_at(until, completing).await.unwrap_or(Err(CompleteFailure::Unanswered));
        match answered {
            Ok(finished) => Ok(finished),
            Err(CompleteFailure::Unanswered) => {
                Err(self.still_completing(record.completing_since_ms.unwrap_or_else(now_ms), now_ms()))
            }
            Err(CompleteFailure::NoSuchUpload) => self.completed_elsewhere(record, declared).await,
            // A part was rewritten between the listing and the completion.
            Err(CompleteFailure::InvalidPart) => Err(changed(record)),
            Err(CompleteFailure::BadDigest) => Err(mismatch()),
            Err(CompleteFailure::Other(e)) => Err(e),
        }
    }

    /// S3 says the multipart upload is gone. If the object is there with exactly our parts, an earlier completion
    /// finished in S3 but not in the record: that is success. Anything else means the bytes are gone.
    async fn completed_elsewhere(&self, record: &UploadRecord, declared: Option<Crc64>) -> Result<Finished, ApiError> {
        let Some(object) = self.bucket.head(&record.key).await? else { return Err(ApiError::Expired) };
        let ours = match record.mode {
            // The accepted bytes' CRC, which S3 checked at that completion.
            Mode::Sequential => record.parts.crc.to_base64() == object.crc64,
            // The whole file's CRC, which the client declared and S3 checked at that completion.
            Mode::Parallel | Mode::Direct => declared.is_some_and(|d| d.to_base64() == object.crc64),
        };
        if ours { Ok(object) } else { Err(ApiError::Expired) }
    }
}

fn changed(record: &UploadRecord) -> ApiError {
    tracing::error!(upload_id = %record.upload_id, "a part in S3 does not match what was accepted");
    ApiError::Unrecoverable(
        "A part in S3 no longer matches what was accepted; the upload cannot be completed: start it again".into(),
    )
}

/// A sequential upload's parts are 1..N, N the parts its ledger accepted, and their bytes must be the accepted
/// bytes: S3's part CRCs must make the ledger's (S3 checks the parts' bytes against it again when completing).
fn sequential_parts(record: &UploadRecord, held: &[HeldPart]) -> Result<(Vec<Part>, Crc64), ApiError> {
    let by_number: HashMap<u32, &HeldPart> = held.iter().map(|p| (p.number, p)).collect();
    let chosen: Vec<&HeldPart> = (1..=record.parts.count)
        .map(|n| by_number.get(&n).copied())
        .collect::<Option<_>>()
        .ok_or_else(|| changed(record))?;
    let whole = whole_crc(&chosen).ok_or_else(|| changed(record))?;
    if whole != record.parts.crc {
        return Err(changed(record));
    }
    let parts = chosen.iter().map(|p| Part { number: p.number, etag: p.etag.clone() }).collect();
    Ok((parts, whole))
}

/// A parallel or direct upload's parts are its grid's, each of the grid's size and of the CRC64NVME its item
/// recorded (`expected`); a part S3 does not hold is the client's to send.
fn grid_parts(
    record: &UploadRecord,
    held: &[HeldPart],
    expected: impl Fn(u32) -> Option<Crc64>,
) -> Result<(Vec<Part>, Crc64), ApiError> {
    let grid: Grid = record.grid();
    let by_number: HashMap<u32, &HeldPart> = held.iter().map(|p| (p.number, p)).collect();
    let missing: Vec<u64> = (1..=grid.parts()).filter(|n| !by_number.contains_key(n)).map(u64::from).collect();
    if !missing.is_empty() {
        return Err(ApiError::BadRequest(format!("The upload is incomplete: parts {:?} are missing", ranges(missing))));
    }
    let chosen: Vec<&HeldPart> = (1..=grid.parts()).map(|n| by_number[&n]).collect();
    for part in &chosen {
        if part.size != grid.part_span(part.number).1 || part.crc64.is_none() || part.crc64 != expected(part.number) {
            return Err(changed(record));
        }
    }
    let parts = chosen.iter().map(|p| Part { number: p.number, etag: p.etag.clone() }).collect();
    Ok((parts, whole_crc(&chosen).ok_or_else(|| changed(record))?))
}

/// The whole file's CRC64NVME from its parts', in order; `None` if a part has none.
fn whole_crc(parts: &[&HeldPart]) -> Option<Crc64> {
    parts.iter().map(|p| p.crc64.map(|c| (c, p.size))).collect::<Option<Vec<_>>>().and_then(Crc64::concat)
}
