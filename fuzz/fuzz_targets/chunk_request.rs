#![no_main]

//! Input: a Content-Range line, a Content-Type line (the multipart boundary is fuzzed there), a query string line,
//! then the body.

use chunked_upload_fuzz::{assert_client_error, block_on, request, split_lines};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ([range, content_type, query], body) = split_lines::<3>(data);
    let req = request(&[("content-range", range), ("content-type", content_type)], query, body);
    match block_on(shared::request::chunk(req, "file")) {
        Ok((chunk, _secret)) => {
            let r = chunk.range;
            assert!(r.start <= r.end && r.end < r.total, "{r:?}");
            // An id reaches the operations only as one we could have issued.
            assert!(chunk.upload_id.as_ref().is_none_or(|id| shared::protocol::UploadId::parse(id.as_str()).is_ok()));
            // Without multipart, the body is the chunk, byte for byte.
            if content_type.is_empty() || content_type == b"application/octet-stream" {
                assert_eq!(chunk.data, body);
            }
        }
        Err(e) => assert_client_error(&e),
    }
});
