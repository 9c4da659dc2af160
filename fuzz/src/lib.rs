//! Helpers shared by the fuzz targets.

use std::future::Future;
use std::sync::OnceLock;

use lambda_http::aws_lambda_events::query_map::QueryMap;
use lambda_http::http::HeaderValue;
use lambda_http::{Body, Request, RequestExt};
use shared::ApiError;

/// Runs a future to completion on one current-thread runtime, built once: building one per input would dominate.
pub fn block_on<F: Future>(future: F) -> F::Output {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("tokio runtime"))
        .block_on(future)
}

/// Inputs are text lines, one per header or query string, then the body, so seeds stay readable and editable.
pub fn split_lines<const N: usize>(mut data: &[u8]) -> ([&[u8]; N], &[u8]) {
    let mut lines = [&[][..]; N];
    for line in &mut lines {
        let (head, rest) = data.split_at(data.iter().position(|&b| b == b'\n').map_or(data.len(), |i| i + 1));
        *line = head.strip_suffix(b"\n").unwrap_or(head);
        data = rest;
    }
    (lines, data)
}

/// A POST with the given headers (an empty line means no such header), query string and binary body.
pub fn request(headers: &[(&str, &[u8])], query: &[u8], body: &[u8]) -> Request {
    let mut builder = lambda_http::http::Request::builder().method("POST").uri("/upload");
    for &(name, value) in headers {
        // Bytes no header may hold (control characters) never reach a function: drop the header.
        if let (false, Ok(value)) = (value.is_empty(), HeaderValue::from_bytes(value)) {
            builder = builder.header(name, value);
        }
    }
    // Parsed as lambda_http parses an HTTP API event's raw query string.
    let query: QueryMap = String::from_utf8_lossy(query).parse().unwrap_or_default();
    builder.body(Body::Binary(body.to_vec())).expect("request").with_query_string_parameters(query)
}

/// Bad input is the client's fault: anything but a 4xx would be a 5xx for a request the service should reject.
pub fn assert_client_error(e: &ApiError) {
    assert!(e.status().is_client_error(), "{e:?} has status {}", e.status());
}
