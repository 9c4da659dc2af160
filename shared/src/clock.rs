//! The wall clock, in the forms the records and answers use: milliseconds since the epoch, and ISO 8601.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn utc(ms: u64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// `2026-11-28T17:56:22.186Z`, as django-chunked-upload answers `expires`.
pub fn iso8601(ms: u64) -> String {
    utc(ms)
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .unwrap_or_default()
}

/// RFC 9110's preferred date form (IMF-fixdate), `Sun, 06 Nov 1994 08:49:37 GMT`, as tus answers `Upload-Expires`.
pub fn http_date(ms: u64) -> String {
    utc(ms)
        .format(time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_795_888_582_186), "2026-11-28T17:56:22.186Z");
        assert_eq!(http_date(784_111_777_000), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(1_795_888_582_186), "Sat, 28 Nov 2026 17:56:22 GMT");
    }
}
