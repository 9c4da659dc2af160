//! Shared pieces of the benchmarks: CPU time, medians, and API Gateway events as Lambda receives them.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

/// CPU time (user + system, all threads) this process has used so far.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}

/// The HTTP API (payload 2.0) event of a raw chunk, as API Gateway hands it to the chunk function.
pub fn chunk_event(sub: &str, upload_id: Option<&str>, start: usize, chunk: &[u8], total: usize) -> Vec<u8> {
    let query = upload_id.map_or_else(|| "filename=bench.bin".to_string(), |id| format!("upload_id={id}"));
    let (key, value) = query.split_once('=').unwrap_or_default();
    let event: Value = json!({
        "version": "2.0",
        "routeKey": "POST /upload",
        "rawPath": "/upload",
        "rawQueryString": query,
        "queryStringParameters": {key: value},
        "headers": {
            "content-type": "application/octet-stream",
            "content-range": format!("bytes {}-{}/{}", start, start + chunk.len() - 1, total),
            "content-length": chunk.len().to_string(),
        },
        "requestContext": {
            "http": {"method": "POST", "path": "/upload", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                     "userAgent": "bench"},
            "authorizer": {"jwt": {"claims": {"sub": sub}, "scopes": null}},
            "requestId": "bench", "routeKey": "POST /upload", "stage": "$default", "timeEpoch": 0
        },
        "body": BASE64.encode(chunk),
        "isBase64Encoded": true
    });
    serde_json::to_vec(&event).unwrap_or_default()
}
