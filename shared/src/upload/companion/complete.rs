//! `POST /s3/multipart/{uploadId}/complete`: the plugin names its parts, and the upload is completed only if they
//! are exactly what S3 holds. AWS requires part numbers 1 to N, consecutive, where parts carry checksums (LocalStack
//! only checks that they ascend), and a part named by an ETag S3 no longer holds was changed since the client sent
//! it: both are refused here, before S3 is asked. So are parts outside S3's sizes and a file over the deployment's
//! limit. S3 then completes exactly those parts and computes the object's full-object CRC64NVME, which the result
//! and the completion event carry.

use serde_json::Value;
use tokio::time::Instant;

use super::not_multipart;
use md5::{Digest, Md5};

use crate::app::{App, DYNAMODB_ATTEMPT_TIMEOUT};
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::grid::ranges;
use crate::md5state;
use crate::metrics::{Metric, Race};
use crate::protocol::{S3_MAX_PARTS, UploadId};
use crate::secret::Caller;
use crate::store::companion::Finishing;
use crate::store::{CompleteFailure, Finished, HeldPart, Part, Status, UploadRecord, Written};

/// A part as the client names it at completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPart {
    pub number: u32,
    pub etag: String,
}

/// An ETag without its quotes: the plugin strips them from the ETags it read itself, and keeps those of the parts it
/// listed.
fn bare(etag: &str) -> &str {
    etag.trim_matches('"')
}

/// The plan the client names: parts 1 to N, each once, in order.
fn check_plan(named: &[NamedPart]) -> Result<(), ApiError> {
    if named.is_empty() || named.len() > S3_MAX_PARTS as usize {
        return Err(ApiError::BadRequest(format!("Name 1 to {S3_MAX_PARTS} parts")));
    }
    if let Some((i, part)) = named.iter().enumerate().find(|(i, p)| p.number as usize != i + 1) {
        return Err(ApiError::BadRequest(format!(
            "Parts must be numbered 1 to {}, consecutively and in order: part {} is named {}th",
            named.len(),
            part.number,
            i + 1
        )));
    }
    Ok(())
}

/// Sizes S3 takes for parts, and the largest file the deployment takes.
#[derive(Debug, Clone, Copy)]
struct PartRules {
    min_part: u64,
    max_part: u64,
    max_file: u64,
}

/// Checks that S3 holds exactly the named parts, as named, within S3's rules; answers the file's size.
fn check_held(named: &[NamedPart], held: &[HeldPart], rules: PartRules) -> Result<u64, ApiError> {
    let n = named.len() as u32;
    let extra: Vec<u64> = held.iter().filter(|p| p.number > n).map(|p| u64::from(p.number)).collect();
    if !extra.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "S3 holds parts {:?} that the completion leaves out: name every part, or abort the upload",
            ranges(extra)
        )));
    }
    let missing: Vec<u64> = (1..=n).filter(|&number| !held.iter().any(|p| p.number == number)).map(u64::from).collect();
    if !missing.is_empty() {
        return Err(ApiError::BadRequest(format!("Parts {:?} are not in S3: send them first", ranges(missing))));
    }
    let mut size = 0u64;
    for (part, held) in named.iter().zip(held) {
        if bare(&part.etag) != bare(&held.etag) {
            return Err(part_changed(part.number));
        }
        if held.size > rules.max_part || (held.number < n && held.size < rules.min_part) {
            return Err(ApiError::BadRequest(format!(
                "Part {} is {} bytes: parts must be at most {} bytes, and all but the last at least {}",
                held.number, held.size, rules.max_part, rules.min_part
            )));
        }
        size += held.size;
    }
    if size > rules.max_file {
        return Err(ApiError::BadRequest(format!("Size of file exceeds the limit ({} bytes)", rules.max_file)));
    }
    Ok(size)
}

/// The ETag S3 gives an object completed from these parts: the MD5 of their MD5s, then their count (`None` if an
/// ETag is not an MD5, as under SSE-KMS).
fn multipart_etag(parts: &[NamedPart]) -> Option<String> {
    let mut digest = Md5::new();
    for part in parts {
        let hex = bare(&part.etag);
        if hex.len() != 32 {
            return None;
        }
        for pair in hex.as_bytes().chunks(2) {
            digest.update([u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?]);
        }
    }
    Some(format!("\"{}-{}\"", md5state::hex(&digest.finalize()), parts.len()))
}

/// A completion S3 did not answer within the request: the plugin is told to try again, never that it is done
/// (Companion's callers take any 2xx for the result).
fn still() -> ApiError {
    ApiError::Ambiguous("S3 is still assembling the object: complete again shortly".into())
}

fn part_changed(number: u32) -> ApiError {
    ApiError::BadRequest(format!(
        "Part {number} in S3 is not the one named (its ETag differs): it changed since; list the parts again \
         (GET /s3/multipart/{{uploadId}}) and complete with what S3 holds, or send the part again"
    ))
}

impl App {
    /// Completes the caller's upload with the parts `named`; a repeated completion answers the same result.
    /// `deadline` is the request's, which the completion hook's call keeps to.
    pub async fn uppy_complete(
        &self,
        caller: &Caller,
        upload_id: &UploadId,
        key: &str,
        named: &[NamedPart],
        deadline: Instant,
    ) -> Result<Value, ApiError> {
        check_plan(named)?;
        let started = Instant::now();
        let record = self.uppy_upload(caller, upload_id, key).await?;
        let multipart_id = record.multipart_id.clone().ok_or_else(not_multipart)?;
        let now = now_ms();
        match record.status {
            Status::Complete => return Ok(self.answer(record, caller, deadline).await),
            Status::Aborted => return Err(ApiError::NotFound),
            Status::Uploading if record.is_expired(now) => return Err(ApiError::Expired),
            Status::Uploading | Status::Completing => {}
        }
        // As every mode's completion (`upload::complete`): one request at a time, TTL held off while it runs.
        let lease = self.config.lease_ms();
        let keep_until = (now + lease) / 1000 + self.config.expiration_delta_secs;
        let record =
            match self.table.claim_completion(upload_id, caller, now, now.saturating_sub(lease), keep_until).await? {
                Written::Won(record) => record,
                Written::Lost(Some(r)) if r.status == Status::Complete => {
                    return Ok(self.answer(r, caller, deadline).await);
                }
                Written::Lost(Some(r)) if r.status == Status::Completing => {
                    self.metrics.emit(Metric::RaceLost { race: Race::Completion });
                    return Err(ApiError::Conflict("Another request is completing this upload; retry shortly".into()));
                }
                Written::Lost(_) => return Err(ApiError::NotFound),
            };
        // S3's answer must leave the request time to record the result.
        let until = deadline.checked_sub(DYNAMODB_ATTEMPT_TIMEOUT).unwrap_or(deadline);
        let completing = self.uppy_complete_in_s3(&record, &multipart_id, named, keep_until);
        let (finished, size) = match tokio::time::timeout_at(until, completing).await.unwrap_or_else(|_| Err(still())) {
            Ok(done) => done,
            // S3 may be assembling the object still: the lease stays, so nobody completes meanwhile; a completion
            // after it finds the object, or completes again.
            Err(e @ ApiError::Ambiguous(_)) => return Err(e),
            Err(e) => {
                if let Err(release) = self.table.release_completion(upload_id, now).await {
                    tracing::warn!(upload_id = %upload_id, error = %release, "could not release a completion claim");
                }
                return Err(e);
            }
        };
        let retained_until = now_ms() / 1000 + self.config.expiration_delta_secs;
        let finishing = Finishing::Leased { since_ms: now };
        match self.table.mark_complete_sized(upload_id, finishing, &finished, size, retained_until).await? {
            Written::Won(record) => {
                let millis = started.elapsed().as_millis() as u64;
                self.metrics.emit(Metric::Completed { mode: record.mode, bytes: size, millis });
                Ok(self.answer(record, caller, deadline).await)
            }
            // Our lease ran out and another request finished the same parts: the same result.
            Written::Lost(Some(current)) if current.status == Status::Complete => {
                Ok(self.answer(current, caller, deadline).await)
            }
            Written::Lost(_) => Err(ApiError::Conflict("The completion was interrupted; retry".into())),
        }
    }

    /// Completes the multipart upload with the named parts if S3 holds exactly those; answers the object and its
    /// size.
    async fn uppy_complete_in_s3(
        &self,
        record: &UploadRecord,
        multipart_id: &str,
        named: &[NamedPart],
        keep_until: u64,
    ) -> Result<(Finished, u64), ApiError> {
        let held = match self.bucket.list_parts(&record.key, multipart_id).await {
            Ok(held) => held,
            Err(CompleteFailure::NoSuchUpload) => return self.uppy_completed_elsewhere(record, named).await,
            Err(CompleteFailure::Other(e)) => return Err(e),
            Err(CompleteFailure::InvalidPart | CompleteFailure::BadDigest | CompleteFailure::Unanswered) => {
                return Err(ApiError::Unavailable("ListParts failed".into()));
            }
        };
        let rules = PartRules {
            min_part: self.config.min_part_bytes,
            max_part: self.config.max_part_bytes,
            max_file: self.config.size_limit(),
        };
        let size = check_held(named, &held, rules)?;
        // Its owner's limits counted the upload with no bytes (its size was unknown): it is given back before its
        // size is recorded, so that no later release (the cleanup function's, say) gives back bytes never counted.
        self.table.release(record, keep_until).await?;
        let parts: Vec<Part> = held.iter().map(|p| Part { number: p.number, etag: p.etag.clone() }).collect();
        let finished = match self.bucket.complete_unchecked(&record.key, multipart_id, &parts).await {
            Ok(finished) => finished,
            Err(CompleteFailure::NoSuchUpload) => return self.uppy_completed_elsewhere(record, named).await,
            // A part was sent again between the listing and the completion.
            Err(CompleteFailure::InvalidPart) => {
                return Err(ApiError::Conflict(
                    "A part changed while the upload was being completed; list the parts again and retry".into(),
                ));
            }
            Err(CompleteFailure::BadDigest) => {
                return Err(ApiError::Unavailable("CompleteMultipartUpload: BadDigest without a checksum".into()));
            }
            Err(CompleteFailure::Unanswered) => return Err(still()),
            Err(CompleteFailure::Other(e)) => return Err(e),
        };
        Ok((self.with_object_crc(&record.key, finished).await?, size))
    }

    /// S3 says the multipart upload is gone. If the object is there and its ETag is the one the named parts make, an
    /// earlier completion finished in S3 but not in the record: that is success. Anything else means the bytes are
    /// gone.
    async fn uppy_completed_elsewhere(
        &self,
        record: &UploadRecord,
        named: &[NamedPart],
    ) -> Result<(Finished, u64), ApiError> {
        let Some(object) = self.bucket.stored(&record.key).await? else { return Err(ApiError::Expired) };
        if multipart_etag(named).as_deref() != Some(object.finished.etag.as_str()) {
            return Err(ApiError::Expired);
        }
        Ok((self.with_object_crc(&record.key, object.finished).await?, object.size))
    }

    /// A completion's result with the object's full-object CRC64NVME, read from the object if S3's answer to the
    /// completion did not carry it.
    async fn with_object_crc(&self, key: &str, finished: Finished) -> Result<Finished, ApiError> {
        if !finished.crc64.is_empty() {
            return Ok(finished);
        }
        let crc64 = self.bucket.head(key).await?.map(|object| object.crc64).unwrap_or_default();
        if crc64.is_empty() {
            tracing::warn!(key, "S3 gave the completed object no CRC64NVME");
        }
        Ok(Finished { crc64, ..finished })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const RULES: PartRules = PartRules { min_part: 5 * MIB, max_part: 5 << 30, max_file: 5 << 40 };

    fn named(etags: &[&str]) -> Vec<NamedPart> {
        etags.iter().enumerate().map(|(i, e)| NamedPart { number: i as u32 + 1, etag: (*e).to_string() }).collect()
    }

    fn held(parts: &[(u32, &str, u64)]) -> Vec<HeldPart> {
        parts
            .iter()
            .map(|&(number, etag, size)| HeldPart { number, etag: format!("\"{etag}\""), size, crc64: None })
            .collect()
    }

    #[test]
    fn plans_are_parts_one_to_n_in_order() {
        assert!(check_plan(&named(&["a", "b", "c"])).is_ok());
        assert!(check_plan(&[]).is_err());
        let mut gap = named(&["a", "b"]);
        gap[1].number = 3;
        assert!(check_plan(&gap).is_err());
        let mut backwards = named(&["a", "b"]);
        backwards.reverse();
        assert!(check_plan(&backwards).is_err());
        let mut twice = named(&["a", "b"]);
        twice[1].number = 1;
        assert!(check_plan(&twice).is_err());
    }

    #[test]
    fn s3_must_hold_exactly_the_named_parts() {
        let s3 = held(&[(1, "a", 5 * MIB), (2, "b", 7)]);
        assert_eq!(check_held(&named(&["a", "\"b\""]), &s3, RULES).unwrap(), 5 * MIB + 7);
        // One left out, one missing, one changed.
        assert!(check_held(&named(&["a"]), &s3, RULES).is_err());
        assert!(check_held(&named(&["a", "b", "c"]), &s3, RULES).is_err());
        assert!(check_held(&named(&["a", "x"]), &s3, RULES).is_err());
    }

    #[test]
    fn the_objects_etag_is_the_md5_of_the_parts_md5s() {
        // Two parts' ETags and the ETag S3 (LocalStack) gave the object it completed from them.
        let parts = named(&["\"b06aa8ff6fb3fd163e2e8a541c2a75cd\"", "c606371f12d0571667f13d2141fe3361"]);
        assert_eq!(multipart_etag(&parts).as_deref(), Some("\"624a93e5ca922c6086ff936019ae461f-2\""));
        assert_eq!(multipart_etag(&named(&["not-an-md5"])), None);
    }

    #[test]
    fn sizes_follow_s3s_rules_and_the_limit() {
        let small_first = held(&[(1, "a", 5 * MIB - 1), (2, "b", 7)]);
        assert!(check_held(&named(&["a", "b"]), &small_first, RULES).is_err());
        let small_last = held(&[(1, "a", 5 * MIB), (2, "b", 1)]);
        assert!(check_held(&named(&["a", "b"]), &small_last, RULES).is_ok());
        let one_small = held(&[(1, "a", 1)]);
        assert!(check_held(&named(&["a"]), &one_small, RULES).is_ok());
        let too_large = PartRules { max_file: 5 * MIB, ..RULES };
        assert!(check_held(&named(&["a", "b"]), &small_last, too_large).is_err());
        let huge_part = PartRules { max_part: 5 * MIB - 1, ..RULES };
        assert!(check_held(&named(&["a", "b"]), &small_last, huge_part).is_err());
    }
}
