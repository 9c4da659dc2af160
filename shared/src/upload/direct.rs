//! A direct upload's parts: the API presigns each part's `UploadPart` for the CRC64NVME the client declares, which
//! is recorded first and never changes, and S3 then refuses any other bytes. S3 itself is the record of the parts
//! sent; the API only hands out URLs for the caller's own upload while it takes bytes.

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};

use crate::app::App;
use crate::checksum::Crc64;
use crate::clock::{iso8601, now_ms};
use crate::error::ApiError;
use crate::grid::{Grid, Mode};
use crate::metrics::Metric;
use crate::protocol::UploadId;
use crate::secret::Caller;
use crate::store::PartPin;
use crate::store::UploadRecord;
use crate::store::bucket::Signer;

/// Part URLs one request may ask for.
pub const MAX_URLS_PER_REQUEST: usize = 100;
/// Declarations and signatures made at once.
const IN_FLIGHT: usize = 8;

impl App {
    /// Presigned `UploadPart` URLs for these (part number, CRC64NVME) pairs.
    pub async fn presign_parts(
        &self,
        caller: &Caller,
        upload_id: &UploadId,
        wanted: Vec<(u32, Crc64)>,
    ) -> Result<Value, ApiError> {
        check_count(&wanted)?;
        let record = self.owned(upload_id, caller).await?;
        let now = now_ms();
        self.check_taking(&record, now)?;
        if record.mode != Mode::Direct {
            return Err(ApiError::BadRequest("Only direct uploads have part URLs".into()));
        }
        self.sign_parts(&record, wanted, now).await
    }

    /// URLs for parts of a direct upload that takes bytes (the caller checked whose it is): each part's CRC declared
    /// once, then its `UploadPart` signed for exactly its length and that CRC. The answer of `POST
    /// /upload/{id}/parts`, which opening also gives for the first parts.
    pub(super) async fn sign_parts(
        &self,
        record: &UploadRecord,
        wanted: Vec<(u32, Crc64)>,
        now: u64,
    ) -> Result<Value, ApiError> {
        let grid = record.grid();
        check_on_grid(&grid, &wanted)?;
        let multipart_id = record.multipart_id.as_deref().ok_or_else(|| {
            ApiError::Unrecoverable("The upload record has no multipart upload; start the upload again".into())
        })?;
        let upload_id = &record.upload_id;
        let signer = self.bucket.signer().await?;
        let lifetime = self.url_lifetime(record, now, &signer)?;
        let ttl = self.part_ttl(record);
        let (key, signer) = (record.key.as_str(), &signer);
        // Collected first: a lazy iterator of futures trips the compiler's Send check in the servers' spawned tasks.
        let signing: Vec<_> = wanted
            .into_iter()
            .map(|(number, crc)| async move {
                if !self.table.declare_part(upload_id, number, crc, ttl).await? {
                    return Err(ApiError::Conflict(format!(
                        "Part {number} was declared with another CRC64NVME: its bytes cannot change"
                    )));
                }
                let (_, len) = grid.part_span(number);
                let pin = Some(PartPin { crc, len });
                let signed = self.bucket.presign_part(signer, key, multipart_id, number, pin, lifetime).await?;
                let headers: serde_json::Map<String, Value> =
                    signed.headers.into_iter().map(|(name, value)| (name, Value::String(value))).collect();
                Ok(json!({"number": number, "size": len, "url": signed.url, "method": "PUT", "headers": headers}))
            })
            .collect();
        let parts: Vec<Value> = stream::iter(signing).buffered(IN_FLIGHT).try_collect().await?;
        self.metrics.emit(Metric::PartUrlsIssued { count: parts.len() as u64 });
        Ok(json!({
            "upload_id": upload_id,
            "parts": parts,
            "expires": iso8601(now + lifetime.as_millis() as u64),
        }))
    }

    /// How long a URL handed out now for this upload lives: `CHUNKED_UPLOAD_PRESIGN_EXPIRY_SECS`, and never past the
    /// upload's expiry (after which S3 must not take its bytes either), nor past the credentials it is signed with:
    /// S3 refuses it when they expire (400 ExpiredToken), and a client then asks for another.
    pub(super) fn url_lifetime(
        &self,
        record: &UploadRecord,
        now_ms: u64,
        signer: &Signer,
    ) -> Result<Duration, ApiError> {
        let upload_left = Duration::from_millis(record.expires_at_ms.saturating_sub(now_ms));
        let lifetime = self.config.presign_expiry.min(upload_left).min(signer.left.unwrap_or(Duration::MAX));
        if lifetime < Duration::from_secs(1) {
            return Err(ApiError::Unavailable("The credentials to sign URLs with are about to expire".into()));
        }
        Ok(lifetime)
    }
}

/// A request names 1 to [`MAX_URLS_PER_REQUEST`] parts.
pub(super) fn check_count(wanted: &[(u32, Crc64)]) -> Result<(), ApiError> {
    if wanted.is_empty() || wanted.len() > MAX_URLS_PER_REQUEST {
        return Err(ApiError::BadRequest(format!("Ask for 1 to {MAX_URLS_PER_REQUEST} parts at a time")));
    }
    Ok(())
}

/// Every part named is one of the grid's.
pub(super) fn check_on_grid(grid: &Grid, wanted: &[(u32, Crc64)]) -> Result<(), ApiError> {
    match wanted.iter().find(|(n, _)| !grid.has_part(*n)) {
        Some((number, _)) => {
            Err(ApiError::BadRequest(format!("Part {number} is not one of this upload's {}", grid.parts())))
        }
        None => Ok(()),
    }
}
