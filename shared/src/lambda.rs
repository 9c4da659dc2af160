//! AWS Lambda glue: API Gateway events in, API Gateway responses out.
//!
//! `lambda_http`'s own adapter panics on a body that claims to be base64 but is not (a 502 for the client), so events
//! are decoded here: the body once, with a clear 400 for bad base64, and the rest by `lambda_http`.
//!
//! A chunk's event is a few KB of JSON around a body string of several MiB. The body is found in the raw event and
//! cut out of it before the runtime parses the rest with serde_json, which would scan the whole string for its end
//! and copy it into a `String` (about a sixth of the chunk function's CPU: bench/analysis.md).

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::task::{Context, Poll};

use aws_lambda_events::event::dynamodb;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use lambda_runtime::tower::Service;
use lambda_runtime::tower::layer::layer_fn;
use lambda_runtime::{LambdaInvocation, Runtime};
use tokio::task::futures::TaskLocalFuture;

use lambda_http::aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayV2httpResponse};
use lambda_http::aws_lambda_events::encodings::Body as EventBody;
use lambda_http::http::HeaderMap;
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, LambdaEvent, Request, RequestExt, Response, service_fn};
use serde::{Deserialize, Serialize};
use tracing_subscriber::filter::Targets;

use crate::error::ApiError;
use crate::protocol::UploadId;
use crate::store::UploadRecord;
use crate::store::record::attr;

pub use lambda_http::Error;

/// The response shape of the API Gateway flavour the event came from.
#[derive(Serialize)]
#[serde(untagged)]
pub enum ApiResponse {
    V1(ApiGatewayProxyResponse),
    V2(ApiGatewayV2httpResponse),
}

/// Runs a service of invocations. The runtime does everything else (the Runtime API, context, deadline, errors, the
/// X-Ray header); the outer layer sees each invocation's raw bytes before the runtime parses them. As
/// `lambda_runtime::run`, with tracing.
macro_rules! run_service {
    ($service:expr) => {
        Runtime::new($service)
            .layer(lambda_runtime::layers::TracingLayer::new())
            .layer(layer_fn(|inner| CutBody { inner }))
            .run()
            .await
    };
}

/// Runs a Lambda function whose every request goes to `handler`.
pub async fn run<H, F>(handler: H) -> Result<(), Error>
where
    H: Fn(Request) -> F,
    F: Future<Output = Response<Body>>,
{
    init_logging();
    reuse_large_allocations();
    let service = service_fn(|event: LambdaEvent<LambdaRequest>| {
        let answer = answer_http(&handler, event.payload, event.context);
        async move { Ok::<_, std::convert::Infallible>(answer.await) }
    });
    run_service!(service)
}

/// S3's report of an object created, as EventBridge delivers it to a function (`detail-type` `Object Created`,
/// source `aws.s3`; README: Uppy S3).
#[derive(Debug, Deserialize)]
pub struct ObjectCreated {
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub source: String,
    pub detail: ObjectCreatedDetail,
}

#[derive(Debug, Deserialize)]
pub struct ObjectCreatedDetail {
    pub object: CreatedObject,
}

#[derive(Debug, Deserialize)]
pub struct CreatedObject {
    pub key: String,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Answer {
    Http(Box<ApiResponse>),
    ObjectCreated(serde_json::Value),
}

/// Runs a Lambda function whose HTTP requests go to `handler` and S3's reports of created objects to `objects`. A
/// report that fails fails its invocation, which Lambda retries (EventBridge invokes asynchronously), then sends to
/// the function's failure destination.
pub async fn run_with_objects<H, F, O, G, T>(handler: H, objects: O) -> Result<(), Error>
where
    H: Fn(Request) -> F,
    F: Future<Output = Response<Body>>,
    O: Fn(ObjectCreated) -> G,
    G: Future<Output = Result<T, ApiError>>,
    T: Serialize,
{
    init_logging();
    reuse_large_allocations();
    // An EventBridge event has a `detail-type`, an API Gateway event never. (Parsed as a value first: serde's untagged
    // enums cannot hold lambda_http's event types.)
    let service = service_fn(|event: LambdaEvent<serde_json::Value>| {
        let (handler, objects) = (&handler, &objects);
        async move {
            if event.payload.get("detail-type").is_some() {
                let outcome = objects(serde_json::from_value(event.payload)?).await.map_err(|e| e.to_string())?;
                return Ok::<_, Error>(Answer::ObjectCreated(serde_json::to_value(outcome)?));
            }
            let request = serde_json::from_value(event.payload)?;
            Ok(Answer::Http(Box::new(answer_http(handler, request, event.context).await)))
        }
    });
    run_service!(service)
}

/// Answers an API Gateway event whose body [`CutBody`] cut out, with the invocation's context, whose deadline bounds
/// the handler's (`handlers`).
async fn answer_http<H, F>(handler: &H, event: LambdaRequest, context: lambda_runtime::Context) -> ApiResponse
where
    H: Fn(Request) -> F,
    F: Future<Output = Response<Body>>,
{
    let body = CUT_BODY.try_with(Cell::take).ok().flatten();
    let with_context = |req: Request| handler(req.with_lambda_context(context.clone()));
    serve_cut(&with_context, event, body).await
}

tokio::task_local! {
    /// The body [`CutBody`] cut out of the invocation's event, for the handler of that invocation.
    static CUT_BODY: Cell<Option<Bytes>>;
}

/// The runtime layer that cuts the body out of each event before the runtime parses it.
struct CutBody<S> {
    inner: S,
}

impl<S> Service<LambdaInvocation> for CutBody<S>
where
    S: Service<LambdaInvocation, Response = (), Error = lambda_runtime::Error>,
{
    type Response = ();
    type Error = lambda_runtime::Error;
    type Future = TaskLocalFuture<Cell<Option<Bytes>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut invocation: LambdaInvocation) -> Self::Future {
        let (rest, body) = cut_body(std::mem::take(&mut invocation.body));
        invocation.body = rest;
        // The handler reads it when first polled, inside this scope.
        CUT_BODY.scope(Cell::new(body), self.inner.call(invocation))
    }
}

/// Cuts the body string out of an event's JSON: returns the event with `"body":null` in its place, and the string's
/// bytes as a slice of the event's buffer (not copied). A body with escapes in it (a text body with quotes, say;
/// base64 has none) is left in place for serde_json, and so is everything else this scan does not expect: it only
/// walks the top-level keys of what serde_json will then parse and check.
pub fn cut_body(event: Bytes) -> (Bytes, Option<Bytes>) {
    let Some(range) = body_string(&event) else {
        return (event, None);
    };
    let mut rest = Vec::with_capacity(event.len() - range.len() + 4);
    rest.extend_from_slice(&event[..range.start - 1]);
    rest.extend_from_slice(b"null");
    rest.extend_from_slice(&event[range.end + 1..]);
    let body = event.slice(range);
    (rest.into(), Some(body))
}

/// Where the top-level "body" string's contents are, if it has no escapes.
fn body_string(json: &[u8]) -> Option<Range<usize>> {
    let mut at = skip_whitespace(json, 0);
    if json.get(at) != Some(&b'{') {
        return None;
    }
    at += 1;
    loop {
        at = skip_whitespace(json, at);
        if json.get(at) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(json, at + 1)?;
        let key = &json[at + 1..key_end];
        at = skip_whitespace(json, key_end + 1);
        if json.get(at) != Some(&b':') {
            return None;
        }
        at = skip_whitespace(json, at + 1);
        if key == b"body" {
            if json.get(at) != Some(&b'"') {
                return None;
            }
            let end = at + 1 + memchr::memchr2(b'"', b'\\', &json[at + 1..])?;
            return (json[end] == b'"').then_some(at + 1..end);
        }
        at = value_end(json, at)?;
        if json[at] != b',' {
            return None;
        }
        at += 1;
    }
}

fn skip_whitespace(json: &[u8], mut at: usize) -> usize {
    while json.get(at).is_some_and(|b| b" \t\r\n".contains(b)) {
        at += 1;
    }
    at
}

/// The index of the quote that ends the string whose contents start at `at`.
fn string_end(json: &[u8], mut at: usize) -> Option<usize> {
    loop {
        at += memchr::memchr2(b'"', b'\\', json.get(at..)?)?;
        if json[at] == b'"' {
            return Some(at);
        }
        at += 2;
    }
}

/// The index of the `,` or `}` after the value that starts at `at`, in the object holding it.
fn value_end(json: &[u8], mut at: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match *json.get(at)? {
            b'"' => at = string_end(json, at + 1)? + 1,
            b'{' | b'[' => {
                depth += 1;
                at += 1;
            }
            b'}' | b']' if depth > 0 => {
                depth -= 1;
                at += 1;
            }
            b',' | b'}' | b']' if depth == 0 => return Some(at),
            _ => at += 1,
        }
    }
}

/// Runs a Lambda function for events other than HTTP requests (the cleanup function's stream batches).
pub async fn run_events<E, R, H, F>(handler: H) -> Result<(), Error>
where
    E: serde::de::DeserializeOwned + Send,
    R: Serialize,
    H: Fn(E) -> F,
    F: Future<Output = R>,
{
    init_logging();
    lambda_runtime::run(service_fn(|event: LambdaEvent<E>| {
        let response = handler(event.payload);
        async move { Ok::<_, std::convert::Infallible>(response.await) }
    }))
    .await
}

/// Handles each record of a DynamoDB stream batch with `handle`; a record that fails is reported so Lambda retries
/// from it (`ReportBatchItemFailures`). The records after it are handled still: each handler is idempotent, so their
/// redelivery does no harm.
pub async fn each_record<'a, T, H, F>(event: &'a dynamodb::Event, handle: H) -> DynamoDbEventResponse
where
    T: std::fmt::Debug,
    H: Fn(&'a dynamodb::EventRecord) -> F,
    F: Future<Output = Result<T, ApiError>>,
{
    let mut response = DynamoDbEventResponse::default();
    for record in &event.records {
        let sequence_number = &record.change.sequence_number;
        // Boxed: the handler's future nested in the runtime's is deeper than rustc computes layouts of.
        match Box::pin(handle(record)).await {
            Ok(outcome) => tracing::info!(?outcome, by_ttl = is_ttl_removal(record), sequence_number, "stream record"),
            Err(e) => {
                tracing::warn!(error = %e, sequence_number, "stream record failed");
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = sequence_number.clone();
                response.batch_item_failures.push(failure);
            }
        }
    }
    response
}

/// The upload record in a stream record's image, for the cleanup and events functions; `None` for other items
/// (counters, tombstones, markers) and for what cannot be one.
pub fn upload_in(image: &serde_dynamo::Item, which: &str) -> Option<UploadRecord> {
    let item: HashMap<String, AttributeValue> = image.clone().into();
    if item.is_empty() {
        tracing::error!(image = which, "stream record without its image: the stream must be NEW_AND_OLD_IMAGES");
        return None;
    }
    if item.get(attr::UPLOAD_ID).and_then(|k| k.as_s().ok()).is_none_or(|k| UploadId::parse(k).is_err()) {
        return None;
    }
    UploadRecord::from_item(&item)
        // Retrying cannot repair it.
        .inspect_err(|e| tracing::error!(error = %e, image = which, "a stream item is not an upload record"))
        .ok()
}

/// TTL deletions are made by the DynamoDB service itself.
pub fn is_ttl_removal(record: &dynamodb::EventRecord) -> bool {
    record.event_name == "REMOVE"
        && record
            .user_identity
            .as_ref()
            .is_some_and(|u| u.type_ == "Service" && u.principal_id == "dynamodb.amazonaws.com")
}

/// A chunk's event, body and part are buffers of several MiB. glibc maps blocks that big afresh and unmaps them on
/// free, so every request paid again for faulting in and zeroing its pages: about a tenth of the chunk function's
/// CPU at 4 MiB chunks (perf, bench/handler_cost). Serving them from the heap, which keeps freed memory, reuses the
/// pages; the peak stays what one request needs.
pub fn reuse_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's thresholds; it is called before the first request.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
    }
}

/// JSON logs, one line an event; `RUST_LOG` picks the level (default info).
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // `info`, `warn`, or targets: `info,aws_smithy_runtime=debug`.
    let filter: Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().json().with_current_span(false))
        .with(filter)
        .try_init();
}

/// Answers one API Gateway event (HTTP API or REST API) with `handler`.
pub async fn serve<H, F>(handler: &H, event: LambdaRequest) -> ApiResponse
where
    H: Fn(Request) -> F,
    F: Future<Output = Response<Body>>,
{
    serve_cut(handler, event, None).await
}

/// Answers one event given as JSON, as in Lambda: its body cut out, the rest parsed.
pub async fn serve_json<H, F>(handler: &H, event: Bytes) -> Result<ApiResponse, serde_json::Error>
where
    H: Fn(Request) -> F,
    F: Future<Output = Response<Body>>,
{
    let (rest, body) = cut_body(event);
    let event = serde_json::from_slice(&rest)?;
    Ok(serve_cut(handler, event, body).await)
}

/// Answers an event whose body string, if `cut`, was cut out of it by [`cut_body`].
async fn serve_cut<H, F>(handler: &H, event: LambdaRequest, cut: Option<Bytes>) -> ApiResponse
where
    H: Fn(Request) -> F,
    F: Future<Output = Response<Body>>,
{
    let rest_api = matches!(event, LambdaRequest::ApiGatewayV1(_));
    let response = match decode_cut(event, cut) {
        Ok(request) => handler(request).await,
        Err(e) => e.to_response(),
    };
    encode(rest_api, response)
}

/// Turns an event into a request, decoding a base64 body exactly once.
pub fn decode(event: LambdaRequest) -> Result<Request, ApiError> {
    decode_cut(event, None)
}

/// [`decode`] of an event whose body string, if `cut`, was cut out of it (the string's bytes, without escapes).
pub fn decode_cut(mut event: LambdaRequest, cut: Option<Bytes>) -> Result<Request, ApiError> {
    let (body, is_base64) = take_body_making_safe(&mut event)?;
    let bad_base64 = |_| ApiError::BadRequest("The request body is not valid base64".into());
    let body = match (cut, body) {
        // SIMD, straight from the event's buffer.
        (Some(cut), _) if is_base64 => Body::Binary(base64_simd::STANDARD.decode_to_vec(&cut).map_err(bad_base64)?),
        (Some(cut), _) => Body::Text(
            String::from_utf8(cut.to_vec())
                .map_err(|_| ApiError::BadRequest("The request body is not valid UTF-8".into()))?,
        ),
        (None, None) => Body::Empty,
        (None, Some(text)) if is_base64 => {
            // Decoded in place (SIMD): no second buffer of a chunk's size, and a fraction of the CPU.
            let mut bytes = text.into_bytes();
            let decoded = base64_simd::STANDARD.decode_inplace(&mut bytes).map_err(bad_base64)?.len();
            bytes.truncate(decoded);
            Body::Binary(bytes)
        }
        (None, Some(text)) => Body::Text(text),
    };
    // The inputs lambda_http is known to panic on were made safe above. Release builds abort on panic (cargo-lambda
    // builds the bootstraps so); where panics unwind (debug builds, the tests) any other is caught here.
    let mut request = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Request::from(event)))
        .map_err(|_| ApiError::BadRequest("The request's path, query string or Host header is malformed".into()))?;
    *request.body_mut() = body;
    Ok(request)
}

/// Takes the body (and whether it is base64) out of an event, and makes the rest safe for lambda_http to convert.
fn take_body_making_safe(event: &mut LambdaRequest) -> Result<(Option<String>, bool), ApiError> {
    match event {
        LambdaRequest::ApiGatewayV1(e) => {
            make_uri_safe(&mut e.headers, &mut e.multi_value_headers, e.path.as_mut(), None);
            // A key with an empty list of values panics in query_map; its map serializes as it is held.
            let mut values: HashMap<String, Vec<String>> = serde_json::to_value(&e.multi_value_query_string_parameters)
                .and_then(serde_json::from_value)
                .unwrap_or_default();
            values.retain(|_, v| !v.is_empty());
            e.multi_value_query_string_parameters = values.into();
            Ok((e.body.take(), std::mem::take(&mut e.is_base64_encoded)))
        }
        LambdaRequest::ApiGatewayV2(e) => {
            make_uri_safe(&mut e.headers, &mut HeaderMap::new(), e.raw_path.as_mut(), e.raw_query_string.as_mut());
            Ok((e.body.take(), std::mem::take(&mut e.is_base64_encoded)))
        }
        _ => Err(ApiError::BadRequest("Unsupported event source".into())),
    }
}

/// lambda_http builds the request's URI from the Host and X-Forwarded-Proto headers, the path and the raw query
/// string, and panics when they do not make a valid one (found by fuzzing). None of them matter to the handlers,
/// which read the path and query parameters API Gateway parsed; so odd headers are dropped and odd bytes
/// percent-encoded.
fn make_uri_safe(
    headers: &mut HeaderMap,
    multi: &mut HeaderMap,
    path: Option<&mut String>,
    query: Option<&mut String>,
) {
    // lambda_http unwraps `Url::parse` of `{scheme}://{host}{path}`: a host the parser refuses (a bracket out of an
    // IPv6 literal, a label IDNA rejects, a port that is not a number) would panic there.
    let host_ok = |v: &[u8]| {
        !v.is_empty()
            && v.iter().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(b))
            && std::str::from_utf8(v).is_ok_and(|host| url::Url::parse(&format!("https://{host}/")).is_ok())
    };
    let scheme_ok = |v: &[u8]| v == b"https" || v == b"http";
    for map in [headers, multi] {
        if map.get_all("host").iter().any(|v| !host_ok(v.as_bytes())) {
            map.remove("host");
        }
        if map.get_all("x-forwarded-proto").iter().any(|v| !scheme_ok(v.as_bytes())) {
            map.remove("x-forwarded-proto");
        }
    }
    if let Some(path) = path {
        *path = format!("/{}", percent_encode_odd(path.trim_start_matches('/')));
    }
    if let Some(query) = query {
        *query = percent_encode_odd(query);
    }
}

/// Percent-encodes every byte a URI may not carry as it is.
fn percent_encode_odd(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn encode(rest_api: bool, response: Response<Body>) -> ApiResponse {
    let (parts, body) = response.into_parts();
    let (body, is_base64_encoded) = match body {
        Body::Text(text) => (Some(EventBody::Text(text)), false),
        Body::Binary(bytes) => (Some(EventBody::Binary(bytes)), true),
        _ => (None, false),
    };
    let status_code = i64::from(parts.status.as_u16());
    if rest_api {
        let mut r = ApiGatewayProxyResponse::default();
        r.status_code = status_code;
        r.multi_value_headers = parts.headers;
        r.body = body;
        r.is_base64_encoded = is_base64_encoded;
        ApiResponse::V1(r)
    } else {
        let mut r = ApiGatewayV2httpResponse::default();
        r.status_code = status_code;
        r.headers = parts.headers;
        r.multi_value_headers = HeaderMap::new();
        r.body = body;
        r.is_base64_encoded = is_base64_encoded;
        ApiResponse::V2(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events on which lambda_http's conversion panicked, found by fuzzing: once made safe, it must not.
    #[test]
    fn events_lambda_http_panicked_on_convert_cleanly() {
        let events = [
            r#"{"version":"2.0","rawPath":"/upload","rawQueryString":"","headers":{"host":"a b"},"requestContext":{"http":{"method":"POST"}}}"#,
            r#"{"version":"2.0","rawPath":"/upload","rawQueryString":"","headers":{"host":"h","x-forwarded-proto":"a b"},"requestContext":{"http":{"method":"POST"}}}"#,
            r#"{"version":"2.0","rawPath":"x%","rawQueryString":"","headers":{},"requestContext":{"http":{"method":"POST"}}}"#,
            r#"{"version":"2.0","rawPath":"/upload","rawQueryString":"a=\"<> ","headers":{},"requestContext":{"http":{"method":"POST"}}}"#,
            r#"{"resource":"/upload","httpMethod":"POST","path":"/upload","headers":{"Host":"a b"},"requestContext":{"httpMethod":"POST"}}"#,
            r#"{"resource":"/upload","httpMethod":"POST","path":"/upload","headers":{"Host":"a`b"},"requestContext":{"httpMethod":"POST"}}"#,
            r#"{"httpMethod":"POST","path":"/upload","multiValueQueryStringParameters":{"a":[],"b":["1","2"]},"requestContext":{"httpMethod":"POST"}}"#,
            r#"{"resource":"/upload","httpMethod":"POST","path":"/upload","headers":{"Host":"example.co[m"},"requestContext":{"httpMethod":"POST"}}"#,
            r#"{"version":"2.0","rawPath":"/upload","rawQueryString":"","headers":{"host":"h:x"},"requestContext":{"http":{"method":"POST"}}}"#,
            r#"{"version":"2.0","rawPath":"/upload","rawQueryString":"","headers":{"host":"[::1"},"requestContext":{"http":{"method":"POST"}}}"#,
        ];
        for json in events {
            let mut event: LambdaRequest = serde_json::from_str(json).expect(json);
            take_body_making_safe(&mut event).expect(json);
            // Not caught here: a panic fails the test.
            let request = Request::from(event);
            assert!(request.uri().path().starts_with('/'), "{json}");
        }
    }

    /// Whether the body was cut out, and the request the cut event decodes to is the one the whole event does.
    #[test]
    fn bodies_cut_out_of_events_decode_as_the_whole_events_do() {
        let events = [
            (
                true,
                r#"{"version":"2.0","rawPath":"/upload","headers":{"body":"\"body\":\"x\""},"requestContext":{"http":{"method":"POST"}},"body":"aGVsbG8=","isBase64Encoded":true}"#,
            ),
            (
                true,
                r#"{"httpMethod":"POST","path":"/upload","headers":{"x":"[{\\"},"requestContext":{"httpMethod":"POST"},"isBase64Encoded":false, "body" : "plain text"}"#,
            ),
            (
                true,
                r#"{"version":"2.0","rawPath":"/upload","body":"!!","isBase64Encoded":true,"requestContext":{"http":{"method":"POST"}}}"#,
            ),
            (
                true,
                r#"{"version":"2.0","rawPath":"/upload","body":"","isBase64Encoded":true,"requestContext":{"http":{"method":"POST"}}}"#,
            ),
            (
                false,
                r#"{"version":"2.0","rawPath":"/upload","body":"{\"a\":1}","requestContext":{"http":{"method":"POST"}}}"#,
            ),
            (false, r#"{"version":"2.0","rawPath":"/upload","body":null,"requestContext":{"http":{"method":"POST"}}}"#),
            (false, r#"{"version":"2.0","rawPath":"/upload","requestContext":{"http":{"method":"POST"},"body":"x"}}"#),
        ];
        for (cut, json) in events {
            let (rest, body) = cut_body(Bytes::from(json));
            assert_eq!(body.is_some(), cut, "{json}");
            let whole = decode(serde_json::from_str(json).expect(json)).map(Request::into_body);
            let split = decode_cut(serde_json::from_slice(&rest).expect(json), body).map(Request::into_body);
            assert_eq!(format!("{whole:?}"), format!("{split:?}"), "{json}");
        }
    }
}
