//! The expiration extension: an unfinished upload expires `CHUNKED_UPLOAD_EXPIRATION_DELTA` after its creation (as
//! every upload here), said in `Upload-Expires` on its creation, on every PATCH that leaves it unfinished and on
//! HEAD; past it every request for it but a DELETE (which aborts it) is a 410, and TTL and the cleanup function
//! remove what it left.

use super::answer::Answer;
use crate::clock::http_date;

/// `Upload-Expires` for an upload that can still expire (not once it is complete).
pub fn with_expiry(answer: Answer, expires_at_ms: Option<u64>) -> Answer {
    match expires_at_ms {
        Some(ms) => answer.header("upload-expires", http_date(ms)),
        None => answer,
    }
}
