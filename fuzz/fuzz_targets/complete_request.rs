#![no_main]

//! Input: a Content-Type line (JSON, form-urlencoded or multipart with its boundary), a query string line, then the
//! body.

use chunked_upload_fuzz::{assert_client_error, block_on, request, split_lines};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ([content_type, query], body) = split_lines::<2>(data);
    let req = request(&[("content-type", content_type)], query, body);
    match block_on(shared::request::complete(req)) {
        Ok(fields) => {
            assert!(fields.md5.is_some() || fields.crc64.is_some(), "a checksum is required");
            assert!(shared::protocol::UploadId::parse(fields.upload_id.as_str()).is_ok());
            for value in [fields.md5.as_ref(), fields.crc64.as_ref()].into_iter().flatten() {
                assert!(!value.trim().is_empty() && value.len() <= 4096, "{value:?}");
            }
        }
        Err(e) => assert_client_error(&e),
    }
});
