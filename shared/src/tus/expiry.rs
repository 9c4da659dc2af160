//! The expiration extension: an unfinished upload expires `CHUNKED_UPLOAD_EXPIRATION_DELTA` after its creation (as
//! every upload here), said in `Upload-Expires` on its creation, on every PATCH and on HEAD; past it every request
//! for it is a 410, and TTL and the cleanup function remove what it left.

use super::answer::Answer;

/// `Upload-Expires` for an upload that can still expire (not once it is complete).
pub fn with_expiry(answer: Answer, expires_at_ms: Option<u64>) -> Answer {
    match expires_at_ms {
        Some(ms) => answer.header("upload-expires", http_date(ms)),
        None => answer,
    }
}

/// RFC 9110's preferred date form (IMF-fixdate): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    ))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_imf_fixdates() {
        assert_eq!(http_date(784_111_777_000), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(1_795_888_582_186), "Sat, 28 Nov 2026 17:56:22 GMT");
    }
}
