//! The service's HTTP API as a client calls it: one method per route, each retried with exponential backoff and full
//! jitter on network errors, timeouts, 408, 429 and 5xx (a 429's `Retry-After` is honoured); any other answer goes
//! back to the caller, which knows what a 400 or a 409 means for its mode.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// How hard a request is retried before it counts as failed.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Retries after the first attempt.
    pub retries: u32,
    /// The first wait's upper bound; each later one doubles, up to `cap`.
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { retries: 8, base: Duration::from_millis(500), cap: Duration::from_secs(30) }
    }
}

impl Retry {
    /// Full jitter: a uniformly random wait below the attempt's bound, so that many clients do not retry in step.
    fn wait(&self, attempt: u32) -> Duration {
        let bound = self.base.saturating_mul(1 << attempt.min(16)).min(self.cap);
        bound.mul_f64(rand::random::<f64>())
    }
}

/// An answer the server gave, whatever its status.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// The body of a 2xx answer; any other status becomes its error.
    pub fn ok(self) -> Result<Value> {
        if (200..300).contains(&self.status) { Ok(self.body) } else { Err(self.refusal()) }
    }

    pub fn detail(&self) -> String {
        match &self.body["detail"] {
            Value::String(s) => s.clone(),
            Value::Null => self.body.get("message").and_then(Value::as_str).unwrap_or_default().to_string(),
            other => other.to_string(),
        }
    }

    /// The code of S3's XML error in the body (`<Code>ExpiredToken</Code>`), for answers from S3 itself.
    pub fn s3_code(&self) -> Option<String> {
        let detail = self.detail();
        let (_, rest) = detail.split_once("<Code>")?;
        rest.split_once("</Code>").map(|(code, _)| code.to_string())
    }

    /// The error this (non-2xx) answer stands for.
    pub fn refusal(&self) -> Error {
        let detail = self.detail();
        match self.status {
            401 | 403 => Error::Auth { status: self.status, detail },
            404 => Error::NotFound(detail),
            410 => Error::Expired(detail),
            400 if detail.contains("checksum does not match") => Error::ChecksumMismatch(detail),
            status => Error::Refused { status, detail },
        }
    }
}

/// A client of one service endpoint.
pub struct Api {
    http: reqwest::Client,
    endpoint: String,
    token: Option<String>,
    retry: Retry,
}

impl std::fmt::Debug for Api {
    // Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Where a request goes and what it carries; built again for each attempt (bodies are `Bytes`: cheap to clone).
struct Call<'a> {
    method: reqwest::Method,
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Option<Bytes>,
    secret: Option<&'a str>,
    /// S3's presigned URLs take no bearer token.
    authorized: bool,
}

impl Api {
    /// `timeout` bounds each request, from connecting to the last byte of the answer.
    pub fn new(endpoint: &str, token: Option<String>, retry: Retry, timeout: Duration) -> Result<Api> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("chunked-upload/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::local("the HTTP client", e))?;
        Ok(Api { http, endpoint: endpoint.trim_end_matches('/').to_string(), token, retry })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `POST /upload/create`: a parallel or direct upload. The caller reads a 404 or 405 as a server that only speaks
    /// django-chunked-upload's protocol.
    pub async fn open(&self, opening: &Value) -> Result<Answer> {
        let call = self.json(reqwest::Method::POST, "/upload/create".into(), opening, None);
        self.send(call).await
    }

    /// `POST /upload`: bytes `[start, start + len)` of a `total`-byte file; the first chunk of a sequential upload has
    /// no `upload_id` and names the file; a parallel chunk carries its CRC64NVME.
    pub async fn chunk(&self, target: ChunkTarget<'_>, start: u64, bytes: Bytes, total: u64) -> Result<Answer> {
        let end = start + bytes.len() as u64 - 1;
        let mut headers = vec![
            ("content-type", "application/octet-stream".to_string()),
            ("content-range", format!("bytes {start}-{end}/{total}")),
        ];
        let (path, secret) = match target {
            ChunkTarget::First { filename } => (format!("/upload?filename={}", urlencode(filename)), None),
            ChunkTarget::Sequential { upload_id, secret } => (format!("/upload?upload_id={upload_id}"), secret),
            ChunkTarget::Parallel { upload_id, secret, crc64nvme } => {
                headers.push(("x-checksum-crc64nvme", crc64nvme.to_string()));
                (format!("/upload?upload_id={upload_id}"), secret)
            }
        };
        let call = Call {
            method: reqwest::Method::POST,
            url: format!("{}{path}", self.endpoint),
            headers,
            body: Some(bytes),
            secret,
            authorized: true,
        };
        self.send(call).await
    }

    /// `POST /upload/{id}/parts`: presigned URLs for these (number, CRC64NVME) parts.
    pub async fn part_urls(&self, upload_id: &str, parts: &[(u32, String)], secret: Option<&str>) -> Result<Answer> {
        let parts: Vec<Value> = parts.iter().map(|(n, crc)| json!({"number": n, "crc64nvme": crc})).collect();
        let call =
            self.json(reqwest::Method::POST, format!("/upload/{upload_id}/parts"), &json!({ "parts": parts }), secret);
        self.send(call).await
    }

    /// `POST /upload/complete` with the whole file's checksum: `("md5", hex)` or `("crc64nvme", base64)`.
    pub async fn complete(&self, upload_id: &str, checksum: (&str, &str), secret: Option<&str>) -> Result<Answer> {
        let mut body = json!({ "upload_id": upload_id });
        body[checksum.0] = json!(checksum.1);
        let call = self.json(reqwest::Method::POST, "/upload/complete".into(), &body, secret);
        self.send(call).await
    }

    /// `GET /upload/{id}`.
    pub async fn status(&self, upload_id: &str, secret: Option<&str>) -> Result<Answer> {
        self.send(self.bare(reqwest::Method::GET, &format!("/upload/{upload_id}"), secret)).await
    }

    /// `GET /upload`: a page of the caller's uploads, newest first, after `cursor` (a page's `next_cursor`).
    pub async fn list(&self, limit: usize, cursor: Option<&str>) -> Result<Answer> {
        let mut path = format!("/upload?limit={limit}");
        if let Some(cursor) = cursor {
            // The service's cursors are base64url: nothing to escape.
            path.push_str(&format!("&cursor={cursor}"));
        }
        self.send(self.bare(reqwest::Method::GET, &path, None)).await
    }

    /// `DELETE /upload/{id}`.
    pub async fn abort(&self, upload_id: &str, secret: Option<&str>) -> Result<Answer> {
        self.send(self.bare(reqwest::Method::DELETE, &format!("/upload/{upload_id}"), secret)).await
    }

    /// A presigned `PUT` straight to S3, with the headers the service named; S3's status (and its XML, as `detail`).
    pub async fn put_presigned(&self, url: &str, headers: &[(String, String)], bytes: Bytes) -> Result<Answer> {
        let call = Call {
            method: reqwest::Method::PUT,
            url: url.to_string(),
            headers: Vec::new(),
            body: Some(bytes),
            secret: None,
            authorized: false,
        };
        self.send_with(call, headers).await
    }

    fn json<'a>(&self, method: reqwest::Method, path: String, body: &Value, secret: Option<&'a str>) -> Call<'a> {
        Call {
            method,
            url: format!("{}{path}", self.endpoint),
            headers: vec![("content-type", "application/json".to_string())],
            body: Some(Bytes::from(body.to_string())),
            secret,
            authorized: true,
        }
    }

    fn bare<'a>(&self, method: reqwest::Method, path: &str, secret: Option<&'a str>) -> Call<'a> {
        Call {
            method,
            url: format!("{}{path}", self.endpoint),
            headers: Vec::new(),
            body: None,
            secret,
            authorized: true,
        }
    }

    async fn send(&self, call: Call<'_>) -> Result<Answer> {
        self.send_with(call, &[]).await
    }

    async fn send_with(&self, call: Call<'_>, extra: &[(String, String)]) -> Result<Answer> {
        let mut attempt = 0;
        loop {
            let mut request = self.http.request(call.method.clone(), &call.url);
            for (name, value) in &call.headers {
                request = request.header(*name, value);
            }
            for (name, value) in extra {
                request = request.header(name.as_str(), value.as_str());
            }
            if let (true, Some(token)) = (call.authorized, &self.token) {
                request = request.bearer_auth(token);
            }
            if let Some(secret) = call.secret {
                request = request.header("x-upload-secret", secret);
            }
            if let Some(body) = &call.body {
                request = request.body(body.clone());
            }
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(Duration::from_secs);
                    match response.bytes().await {
                        Ok(bytes) => Ok((Answer { status, body: parse_body(&bytes) }, retry_after)),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            let wait = match outcome {
                Ok((answer, _)) if !retryable(answer.status) => return Ok(answer),
                Ok((answer, retry_after)) => {
                    if attempt >= self.retry.retries {
                        return Ok(answer);
                    }
                    retry_after.unwrap_or_else(|| self.retry.wait(attempt)).min(self.retry.cap)
                }
                Err(e) => {
                    if attempt >= self.retry.retries {
                        return Err(Error::Unreachable { endpoint: host_of(&call.url), reason: describe(&e) });
                    }
                    self.retry.wait(attempt)
                }
            };
            attempt += 1;
            tokio::time::sleep(wait).await;
        }
    }
}

/// Where a chunk goes.
#[derive(Clone, Copy)]
pub enum ChunkTarget<'a> {
    /// A sequential upload's first chunk: the server creates the upload.
    First {
        filename: &'a str,
    },
    Sequential {
        upload_id: &'a str,
        secret: Option<&'a str>,
    },
    Parallel {
        upload_id: &'a str,
        secret: Option<&'a str>,
        crc64nvme: &'a str,
    },
}

fn retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// JSON, or S3's XML (or any text) kept as the `detail`.
fn parse_body(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|_| {
        let text = String::from_utf8_lossy(bytes);
        json!({ "detail": text.chars().take(500).collect::<String>() })
    })
}

/// The scheme, host and port of a URL: a presigned URL's query is a credential, and never goes into a message.
fn host_of(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..].find(['/', '?']).map_or(url.len(), |i| after_scheme + i);
    url[..end].to_string()
}

fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "no answer in time"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "the connection failed"
    };
    // The source chain says why (refused, reset, DNS), without the URL reqwest's own message would carry.
    let mut cause = std::error::Error::source(e);
    let mut last = None;
    while let Some(c) = cause {
        last = Some(c.to_string());
        cause = c.source();
    }
    match last {
        Some(reason) => format!("{what} ({reason})"),
        None => what.to_string(),
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_host_and_never_a_presigned_query() {
        assert_eq!(host_of("http://127.0.0.1:4566/bucket/key?X-Amz-Signature=secret"), "http://127.0.0.1:4566");
        assert_eq!(host_of("https://api.example.com"), "https://api.example.com");
    }

    #[test]
    fn waits_grow_up_to_the_cap_and_are_jittered() {
        let retry = Retry { retries: 8, base: Duration::from_millis(100), cap: Duration::from_secs(1) };
        for attempt in 0..20 {
            let bound = Duration::from_millis(100 << attempt.min(16)).min(Duration::from_secs(1));
            assert!(retry.wait(attempt) <= bound);
        }
    }

    #[test]
    fn refusals_map_to_their_errors() {
        let answer = |status, detail: &str| Answer { status, body: json!({ "detail": detail }) };
        assert!(matches!(answer(401, "no").refusal(), Error::Auth { .. }));
        assert!(matches!(answer(410, "gone").refusal(), Error::Expired(_)));
        assert!(matches!(answer(400, "crc64nvme checksum does not match").refusal(), Error::ChecksumMismatch(_)));
        assert!(matches!(answer(400, "other").refusal(), Error::Refused { status: 400, .. }));
        assert_eq!(urlencode("a b/é"), "a%20b%2F%C3%A9");
    }
}
