#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::protocol::ContentRange;

fuzz_target!(|data: &[u8]| {
    // Header values reach the parser as text; other bytes are rejected before it.
    let Ok(header) = std::str::from_utf8(data) else { return };
    match ContentRange::parse(header) {
        Ok(range) => {
            assert!(range.start <= range.end && range.end < range.total, "{header:?} gave {range:?}");
            assert_eq!(range.chunk_len(), range.end - range.start + 1);
            let canonical = format!("bytes {}-{}/{}", range.start, range.end, range.total);
            assert_eq!(ContentRange::parse(&canonical).ok(), Some(range), "{canonical:?} does not round-trip");
        }
        Err(e) => chunked_upload_fuzz::assert_client_error(&e),
    }
});
