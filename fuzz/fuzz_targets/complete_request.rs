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
            for value in [&fields.upload_id, &fields.md5] {
                assert!(!value.trim().is_empty() && value.len() <= 4096, "{value:?}");
            }
        }
        Err(e) => assert_client_error(&e),
    }
});
