//! The strict-AWS layer: rules that S3 and DynamoDB enforce, or errors they produce, which the emulators lack. Every
//! [`crate::proxy::Proxy`] applies [`Rules::aws`] unless a test says otherwise, so every integration test's S3 and
//! DynamoDB calls meet them; `docs/testing.md` lists each rule, its source and how to switch one off.
//!
//! Injected errors are drawn from a generator seeded by `STRICT_SEED` (default 1) and the proxy's count of calls, so
//! a sequential test meets the same errors on every run; a test must pass whichever calls they hit. What the
//! service's SDK retries by itself (throttling, a completion's error in its 200) is injected only into attempts the
//! SDK will retry (its `amz-sdk-request` header says attempts remain), so no call fails because of the layer alone;
//! what the service must handle itself (transaction conflicts, DeleteObjects' per-key errors) comes at any attempt.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use bytes::Bytes;
use http_body_util::Full;
use hyper::http::request::Parts;
use hyper::{Response, StatusCode};
use md5::{Digest, Md5};
use serde_json::{Value, json};

/// One of the rules, to switch off where a test says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// CompleteMultipartUpload of a checksum-typed upload whose part numbers are not 1..N: 400 InvalidPartOrder.
    PartOrder,
    /// CompleteMultipartUpload answers 200 with an `<Error>` in its body (InternalError), having completed nothing.
    CompletionErrorIn200,
    /// DeleteObjects answers 200 with per-key `<Error>` entries (SlowDown, InternalError) for keys it left in place.
    DeleteErrors,
    /// GetObject and HeadObject of a missing key answer 403 AccessDenied where the caller's role lacks
    /// `s3:ListBucket` on the bucket.
    MissingKeyAccessDenied,
    /// TransactWriteItems meeting an item another write holds is canceled (`TransactionConflict`); a single write
    /// meeting a transaction's item fails with TransactionConflictException. Also at a rate, as when the other
    /// writer is one this proxy does not see.
    TransactionConflict,
    /// TransactWriteItems with a ClientRequestToken is idempotent: the same call again while the first is in progress
    /// answers TransactionInProgressException; after it succeeded, its success without writing again; the token
    /// with other parameters, IdempotentParameterMismatchException.
    IdempotentTransactions,
    /// S3 503 SlowDown and DynamoDB ThrottlingException, in bursts.
    Throttling,
    /// A request signed with a session token that has expired answers 400 ExpiredToken, whatever a presigned URL's
    /// `X-Amz-Expires` says.
    ExpiredToken,
}

impl Rule {
    pub const ALL: [Rule; 8] = [
        Rule::PartOrder,
        Rule::CompletionErrorIn200,
        Rule::DeleteErrors,
        Rule::MissingKeyAccessDenied,
        Rule::TransactionConflict,
        Rule::IdempotentTransactions,
        Rule::Throttling,
        Rule::ExpiredToken,
    ];
}

/// Which rules a proxy applies, and how often it injects the errors that come at a rate.
#[derive(Debug, Clone)]
pub struct Rules {
    on: HashSet<Rule>,
    /// One in this many calls a retry would cure starts a burst of throttling.
    pub throttle_one_in: u64,
    /// One in this many TransactWriteItems is canceled for a conflict with a writer out of the proxy's sight.
    pub conflict_one_in: u64,
    /// One in this many retryable CompleteMultipartUpload attempts answers 200 with an error.
    pub completion_error_one_in: u64,
    /// One in this many DeleteObjects leaves its keys in place, with an error for each (a key at most once).
    pub delete_error_one_in: u64,
}

impl Rules {
    /// Every rule, at the rates the suite runs with.
    pub fn aws() -> Self {
        Rules {
            on: Rule::ALL.into_iter().collect(),
            throttle_one_in: 40,
            conflict_one_in: 6,
            completion_error_one_in: 4,
            delete_error_one_in: 4,
        }
    }

    /// No rule: the emulators as they are (the benchmarks, which count calls).
    pub fn none() -> Self {
        Rules { on: HashSet::new(), ..Self::aws() }
    }

    /// These rules without `rule`. A test that switches one off says why.
    pub fn without(mut self, rule: Rule) -> Self {
        self.on.remove(&rule);
        self
    }

    /// `rule`'s errors, if it injects them at a rate, at every call they may hit: a test of its handling.
    pub fn every(mut self, rule: Rule) -> Self {
        match rule {
            Rule::Throttling => self.throttle_one_in = 1,
            Rule::TransactionConflict => self.conflict_one_in = 1,
            Rule::CompletionErrorIn200 => self.completion_error_one_in = 1,
            Rule::DeleteErrors => self.delete_error_one_in = 1,
            Rule::PartOrder | Rule::MissingKeyAccessDenied | Rule::IdempotentTransactions | Rule::ExpiredToken => {}
        }
        self
    }

    pub fn has(&self, rule: Rule) -> bool {
        self.on.contains(&rule)
    }
}

/// What the functions' roles grant, as the template grants it, by the SDK app id each function's clients carry
/// (`App::from_env_as`); `deploy/test_rules.py` checks this file against template.yaml.
#[derive(serde::Deserialize)]
struct Grant {
    app: String,
    /// `s3:ListBucket` on the bucket without a condition, which GetObject and HeadObject of a missing key need for
    /// a 404 (a condition on `s3:prefix` does not match those requests, which have no prefix).
    list_bucket: bool,
}

static GRANTS: LazyLock<Vec<Grant>> = LazyLock::new(|| {
    let grants: HashMap<String, Grant> =
        serde_json::from_str(include_str!("../aws-grants.json")).expect("tests/aws-grants.json is valid");
    grants.into_values().collect()
});

/// Multipart uploads created with a checksum algorithm, by upload id, whichever proxy of this process saw them.
static CHECKSUM_UPLOADS: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Mutex::default);

/// The prefix of a session token whose expiry the layer can read: [`session_token`].
const SESSION_TOKEN_PREFIX: &str = "StrictSession.";

/// A session token that expires at `expiry`, as STS's would; only this layer can read when.
pub fn session_token(expiry: SystemTime) -> String {
    let ms = expiry.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    format!("{SESSION_TOKEN_PREFIX}{ms}")
}

fn token_expiry(token: &str) -> Option<SystemTime> {
    let ms: u64 = token.strip_prefix(SESSION_TOKEN_PREFIX)?.parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_millis(ms))
}

/// A proxy's rules and what they remember.
pub struct Strict {
    rules: Rules,
    draws: u64,
    seed: u64,
    /// Calls left in the current throttling burst.
    burst_left: u32,
    /// Items (table and key) held by writes the proxy is forwarding: whether by a transaction.
    held: HashMap<String, Holder>,
    /// TransactWriteItems calls by their ClientRequestToken.
    tokens: HashMap<String, Token>,
    /// Keys a DeleteObjects was made to fail once; each fails at most once, so a retry removes it.
    failed_deletes: HashSet<String>,
    /// How far ahead of the clock the layer judges session tokens: a test's time passing without waiting for it.
    pub clock_ahead: Duration,
}

/// A TransactWriteItems call a ClientRequestToken names: its request's digest, and its success once it has one.
struct Token {
    digest: [u8; 16],
    succeeded: Option<(SystemTime, Bytes)>,
}

/// How long DynamoDB keeps a token's outcome: "A client request token is valid for 10 minutes after the first
/// request that uses it is completed."
const TOKEN_WINDOW: Duration = Duration::from_secs(600);

#[derive(Clone, Copy)]
struct Holder {
    transaction: bool,
    count: u32,
}

/// A proxy's answer to a call, before it forwards it.
pub enum Verdict {
    /// Refused as AWS would refuse it; never forwarded.
    Answer(Response<Full<Bytes>>),
    /// Forwarded, with this body (the one sent, or a rewritten one); `after` is applied to the reply.
    Forward { body: Bytes, after: After },
}

/// What to do with the upstream's reply.
#[derive(Default)]
pub struct After {
    /// A GetObject or HeadObject whose 404 becomes 403 AccessDenied.
    missing_is_denied: bool,
    /// A CreateMultipartUpload with a checksum algorithm: its upload id is remembered.
    remember_checksum_upload: bool,
    /// Per-key errors to add to a DeleteObjects answer.
    delete_errors: Vec<(String, &'static str)>,
    /// Items held until the reply is in.
    holding: Option<Holding>,
    /// The token of a TransactWriteItems in progress, to remember its success by.
    token: Option<TokenInProgress>,
}

/// A token whose call is in progress; forgotten when dropped unless the call succeeded, as a failed call is tried
/// anew with its token.
pub struct TokenInProgress {
    strict: Arc<Mutex<Strict>>,
    token: String,
}

impl Drop for TokenInProgress {
    fn drop(&mut self) {
        let mut strict = self.strict.lock().unwrap_or_else(PoisonError::into_inner);
        if strict.tokens.get(&self.token).is_some_and(|t| t.succeeded.is_none()) {
            strict.tokens.remove(&self.token);
        }
    }
}

/// Items a forwarded write holds; let go when dropped.
pub struct Holding {
    strict: Arc<Mutex<Strict>>,
    items: Vec<String>,
}

impl Drop for Holding {
    fn drop(&mut self) {
        let mut strict = self.strict.lock().unwrap_or_else(PoisonError::into_inner);
        for item in &self.items {
            if let Some(holder) = strict.held.get_mut(item) {
                holder.count -= 1;
                if holder.count == 0 {
                    strict.held.remove(item);
                }
            }
        }
    }
}

impl Strict {
    pub fn new(rules: Rules, role: &str) -> Self {
        let seed = std::env::var("STRICT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1u64);
        let role_hash =
            role.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        Strict {
            rules,
            draws: 0,
            seed: seed ^ role_hash,
            burst_left: 0,
            held: HashMap::new(),
            tokens: HashMap::new(),
            failed_deletes: HashSet::new(),
            clock_ahead: Duration::ZERO,
        }
    }

    /// The next draw of the seeded generator (splitmix64 of the seed and the draw's number).
    fn draw(&mut self) -> u64 {
        self.draws += 1;
        let mut z = self.seed.wrapping_add(self.draws.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn one_in(&mut self, n: u64) -> bool {
        n > 0 && self.draw().is_multiple_of(n)
    }
}

/// Decides what becomes of a call before it is forwarded.
pub fn before(strict: &Arc<Mutex<Strict>>, operation: &str, parts: &Parts, body: Bytes) -> Verdict {
    let mut state = strict.lock().unwrap_or_else(PoisonError::into_inner);
    let dynamodb = parts.headers.contains_key("x-amz-target");
    let rules = state.rules.clone();
    // AWS STS, "Using temporary credentials with AWS resources" and the S3 User Guide, "Download and upload objects
    // with presigned URLs": a URL signed with temporary credentials stops working when they expire, whatever its
    // X-Amz-Expires; S3 then answers 400 ExpiredToken.
    let now = SystemTime::now() + state.clock_ahead;
    if rules.has(Rule::ExpiredToken) && session_of(parts).and_then(|t| token_expiry(&t)).is_some_and(|at| at <= now) {
        return Verdict::Answer(if dynamodb {
            dynamodb_error(
                400,
                "com.amazon.coral.service#ExpiredTokenException",
                "The security token included in the request is expired",
                None,
            )
        } else {
            s3_error(400, "ExpiredToken", "The provided token has expired.")
        });
    }
    // S3 User Guide, "Best practices design patterns: optimizing Amazon S3 performance" (503 Slow Down) and the
    // DynamoDB Developer Guide, "Error handling with DynamoDB" (ThrottlingException): both come in bursts, and the
    // SDKs retry them. Only attempts the SDK will retry: UploadPart's body is streamed from S3 by the service and
    // cannot be replayed, so the SDK never retries it (a test throttles it with a retrying client instead).
    if rules.has(Rule::Throttling) && retry_remains(parts) && operation != "UploadPart" {
        let throttled = if state.burst_left > 0 {
            state.burst_left -= 1;
            true
        } else if state.one_in(rules.throttle_one_in) {
            state.burst_left = (state.draw() % 3) as u32;
            true
        } else {
            false
        };
        if throttled {
            return Verdict::Answer(if dynamodb {
                dynamodb_error(
                    400,
                    "com.amazonaws.dynamodb.v20120810#ThrottlingException",
                    "Rate of requests exceeds the allowed throughput.",
                    None,
                )
            } else {
                s3_error(503, "SlowDown", "Please reduce your request rate.")
            });
        }
    }
    let mut after = After::default();
    if dynamodb {
        if rules.has(Rule::IdempotentTransactions) && operation == "TransactWriteItems" {
            match idempotent(&mut state, strict, &body, now) {
                Ok(token) => after.token = token,
                Err(answer) => return Verdict::Answer(*answer),
            }
        }
        if rules.has(Rule::TransactionConflict) {
            match conflict(&mut state, strict, operation, &body, rules.conflict_one_in) {
                Ok(holding) => after.holding = holding,
                Err(refusal) => {
                    // A token in progress is forgotten as `after` drops, which takes the lock held here.
                    drop(state);
                    return Verdict::Answer(*refusal);
                }
            }
        }
        return Verdict::Forward { body, after };
    }
    match operation {
        "CreateMultipartUpload" => {
            after.remember_checksum_upload = parts.headers.contains_key("x-amz-checksum-algorithm")
        }
        "CompleteMultipartUpload" => {
            // S3 API Reference, CompletedPart: "When an additional checksum ... is applied to each part, the
            // PartNumber must start at 1 and the part numbers must be consecutive. Otherwise, Amazon S3 generates an
            // HTTP 400 Bad Request status code and an InvalidPartOrder error code."
            if rules.has(Rule::PartOrder) && checksum_typed(parts) {
                let numbers: Vec<u64> = elements(&body, "PartNumber").iter().filter_map(|n| n.parse().ok()).collect();
                if !numbers.iter().copied().eq(1..=numbers.len() as u64) {
                    return Verdict::Answer(s3_error(
                        400,
                        "InvalidPartOrder",
                        "The list of parts was not in ascending order. The parts list must be specified in order by part number.",
                    ));
                }
            }
            // S3 API Reference, CompleteMultipartUpload: "A request could fail after the initial 200 OK response has
            // been sent. This means that a 200 OK response can contain either a success or an error." Processing
            // may take minutes, during which S3 keeps the connection alive with whitespace; the upload stays.
            if rules.has(Rule::CompletionErrorIn200)
                && retry_remains(parts)
                && state.one_in(rules.completion_error_one_in)
            {
                return Verdict::Answer(error_in_200());
            }
        }
        // S3 API Reference, DeleteObjects: the answer is 200 with a `<Deleted>` or an `<Error>` element for each
        // key (in quiet mode the errors only), e.g. SlowDown or InternalError; the keys in error are not deleted.
        "DeleteObjects" if rules.has(Rule::DeleteErrors) && state.one_in(rules.delete_error_one_in) => {
            let keys = elements(&body, "Key");
            let mut failing = Vec::new();
            for key in &keys {
                if !state.failed_deletes.contains(key) {
                    state.failed_deletes.insert(key.clone());
                    let code = if state.draw().is_multiple_of(2) { "SlowDown" } else { "InternalError" };
                    failing.push((key.clone(), code));
                }
            }
            if !failing.is_empty() {
                let kept: Vec<&String> = keys.iter().filter(|k| failing.iter().all(|(f, _)| f != *k)).collect();
                after.delete_errors = failing;
                if kept.is_empty() {
                    return Verdict::Answer(xml_response(200, delete_result("", &after.delete_errors)));
                }
                return Verdict::Forward { body: delete_request(&body, &kept), after };
            }
        }
        // S3 API Reference, GetObject and HeadObject, Permissions: "If you don't have the s3:ListBucket permission,
        // Amazon S3 returns an HTTP status code 403 Access Denied error" for a key that does not exist.
        "GetObject" | "HeadObject" if rules.has(Rule::MissingKeyAccessDenied) => {
            after.missing_is_denied = caller_app(parts)
                .and_then(|app| GRANTS.iter().find(|g| g.app == app))
                .is_some_and(|grant| !grant.list_bucket);
        }
        _ => {}
    }
    Verdict::Forward { body, after }
}

/// Applies what [`before`] decided to the upstream's reply (status, headers, body).
pub fn after(after: After, operation: &str, status: StatusCode, body: Bytes) -> (StatusCode, Bytes, bool) {
    drop(after.holding);
    if let Some(token) = after.token
        && status.is_success()
    {
        let mut strict = token.strict.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = strict.tokens.get_mut(&token.token) {
            entry.succeeded = Some((SystemTime::now(), body.clone()));
        }
    }
    if after.remember_checksum_upload
        && status.is_success()
        && let Some(id) = elements(&body, "UploadId").into_iter().next()
    {
        CHECKSUM_UPLOADS.lock().unwrap_or_else(PoisonError::into_inner).insert(id);
    }
    if after.missing_is_denied && status == StatusCode::NOT_FOUND {
        let body = if operation == "HeadObject" {
            Bytes::new()
        } else {
            Bytes::from_static(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>")
        };
        return (StatusCode::FORBIDDEN, body, true);
    }
    if !after.delete_errors.is_empty() && status.is_success() {
        let text = String::from_utf8_lossy(&body);
        let inner = text.split_once("<DeleteResult").and_then(|(_, rest)| rest.split_once('>')).map_or("", |(_, r)| r);
        let inner = inner.rsplit_once("</DeleteResult>").map_or(inner, |(r, _)| r);
        return (status, delete_result(inner, &after.delete_errors), true);
    }
    (status, body, false)
}

/// Whether the caller's SDK will retry this attempt if it fails: `amz-sdk-request: attempt=N; max=M`, N < M.
fn retry_remains(parts: &Parts) -> bool {
    let Some(header) = parts.headers.get("amz-sdk-request").and_then(|v| v.to_str().ok()) else { return false };
    let field = |name: &str| {
        header.split(';').find_map(|f| f.trim().strip_prefix(name)?.strip_prefix('=')?.parse::<u32>().ok())
    };
    matches!((field("attempt"), field("max")), (Some(attempt), Some(max)) if attempt < max)
}

/// The SDK app id a function's clients carry (`app/<id>` in the user agent).
fn caller_app(parts: &Parts) -> Option<String> {
    ["x-amz-user-agent", "user-agent"].iter().find_map(|name| {
        let agent = parts.headers.get(*name)?.to_str().ok()?;
        agent.split_whitespace().find_map(|field| field.strip_prefix("app/")).map(str::to_string)
    })
}

/// The session token a request is signed with: in its headers, or in a presigned URL's query.
fn session_of(parts: &Parts) -> Option<String> {
    if let Some(token) = parts.headers.get("x-amz-security-token").and_then(|v| v.to_str().ok()) {
        return Some(token.to_string());
    }
    let query = parts.uri.query()?;
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "X-Amz-Security-Token").map(|(_, v)| v.into_owned())
}

fn checksum_typed(parts: &Parts) -> bool {
    let declared = parts.headers.keys().any(|name| name.as_str().starts_with("x-amz-checksum-"));
    let query = parts.uri.query().unwrap_or_default();
    let created = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "uploadId")
        .is_some_and(|(_, id)| CHECKSUM_UPLOADS.lock().unwrap_or_else(PoisonError::into_inner).contains(id.as_ref()));
    declared || created
}

/// The texts of every `<name>` element of an XML document, unescaped.
fn elements(xml: &[u8], name: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(xml);
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut found = Vec::new();
    let mut rest = text.as_ref();
    while let Some((_, after)) = rest.split_once(open.as_str()) {
        let Some((value, next)) = after.split_once(close.as_str()) else { break };
        found.push(unescape(value));
        rest = next;
    }
    found
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A DeleteObjects request for only these keys, in the request's own mode (quiet or not).
fn delete_request(original: &[u8], keys: &[&String]) -> Bytes {
    let quiet = String::from_utf8_lossy(original).contains("<Quiet>true</Quiet>");
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">",
    );
    for key in keys {
        xml.push_str(&format!("<Object><Key>{}</Key></Object>", escape(key)));
    }
    if quiet {
        xml.push_str("<Quiet>true</Quiet>");
    }
    xml.push_str("</Delete>");
    Bytes::from(xml)
}

/// The headers a rewritten DeleteObjects body needs: its Content-MD5, in place of the SDK's checksum of the body it
/// signed (the emulator checks one of them; it does not check signatures of header-signed requests).
pub fn rewrite_body_headers(parts: &mut Parts, body: &Bytes) {
    use base64::Engine;
    let names: Vec<_> = parts
        .headers
        .keys()
        .filter(|n| {
            n.as_str().starts_with("x-amz-checksum-")
                || n.as_str() == "x-amz-sdk-checksum-algorithm"
                || n.as_str() == "content-md5"
        })
        .cloned()
        .collect();
    for name in names {
        parts.headers.remove(name);
    }
    let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(body));
    parts.headers.insert("content-md5", md5.parse().expect("base64 is a header value"));
    parts.headers.insert("content-length", body.len().into());
}

fn delete_result(inner: &str, errors: &[(String, &'static str)]) -> Bytes {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DeleteResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">",
    );
    xml.push_str(inner);
    for (key, code) in errors {
        let message = if *code == "SlowDown" {
            "Please reduce your request rate."
        } else {
            "We encountered an internal error. Please try again."
        };
        xml.push_str(&format!(
            "<Error><Key>{}</Key><Code>{code}</Code><Message>{message}</Message></Error>",
            escape(key)
        ));
    }
    xml.push_str("</DeleteResult>");
    Bytes::from(xml)
}

/// CompleteMultipartUpload's failure after its 200: whitespace S3 sent to keep the connection alive, then the error.
fn error_in_200() -> Response<Full<Bytes>> {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\n          \n          \n<Error><Code>InternalError</Code>\
                <Message>We encountered an internal error. Please try again.</Message><RequestId>strict</RequestId>\
                <HostId>strict</HostId></Error>";
    xml_response(200, Bytes::from_static(body.as_bytes()))
}

pub fn s3_error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>strict</RequestId></Error>"
    );
    xml_response(status, Bytes::from(body))
}

fn xml_response(status: u16, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert("content-type", "application/xml".parse().expect("a header value"));
    response
}

fn dynamodb_error(status: u16, kind: &str, message: &str, extra: Option<Value>) -> Response<Full<Bytes>> {
    let mut body = json!({"__type": kind, "message": message});
    if let Some(Value::Object(extra)) = extra {
        body.as_object_mut().expect("an object").extend(extra);
    }
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    response.headers_mut().insert("content-type", "application/x-amz-json-1.0".parse().expect("a header value"));
    response
}

/// The items (table and key) a DynamoDB write touches, and whether it is a transaction; `None` for reads.
fn written_items(operation: &str, body: &[u8]) -> Option<(Vec<String>, bool)> {
    let request: Value = serde_json::from_slice(body).ok()?;
    // Every table of this service has the one key attribute `upload_id`; a Put names it among the item's attributes.
    let item = |table: &Value, key: &Value| format!("{}/{}", table.as_str().unwrap_or_default(), key["upload_id"]);
    match operation {
        "TransactWriteItems" => {
            let items = request["TransactItems"]
                .as_array()?
                .iter()
                .filter_map(|action| {
                    let (kind, spec) = action.as_object()?.iter().next()?;
                    let key = if kind == "Put" { &spec["Item"] } else { &spec["Key"] };
                    Some(item(&spec["TableName"], key))
                })
                .collect();
            Some((items, true))
        }
        "PutItem" => Some((vec![item(&request["TableName"], &request["Item"])], false)),
        "UpdateItem" | "DeleteItem" => Some((vec![item(&request["TableName"], &request["Key"])], false)),
        _ => None,
    }
}

/// DynamoDB Developer Guide, "Amazon DynamoDB Transactions: How it works", Transaction conflict handling: a
/// TransactWriteItems whose item is part of another ongoing write is canceled with a `TransactionConflict` reason
/// (the SDK does not retry it); a PutItem, UpdateItem or DeleteItem of an item an ongoing TransactWriteItems holds
/// fails with TransactionConflictException. Writes overlapping in time at the proxy always conflict (the later one
/// is refused, so the earlier one always goes through); a transaction also conflicts at a rate with writers this
/// proxy does not see.
fn conflict(
    state: &mut Strict,
    strict: &Arc<Mutex<Strict>>,
    operation: &str,
    body: &[u8],
    one_in: u64,
) -> Result<Option<Holding>, Box<Response<Full<Bytes>>>> {
    let Some((items, transaction)) = written_items(operation, body) else { return Ok(None) };
    if transaction {
        let busy: Vec<bool> = items.iter().map(|i| state.held.contains_key(i)).collect();
        let unseen = !busy.contains(&true) && state.one_in(one_in);
        if busy.contains(&true) || unseen {
            // With no overlap seen, the item a writer out of sight held: the first one.
            let reasons: Vec<Value> = busy
                .iter()
                .enumerate()
                .map(|(i, &b)| {
                    if b || (unseen && i == 0) {
                        json!({"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"})
                    } else {
                        json!({"Code": "None"})
                    }
                })
                .collect();
            let codes: Vec<&str> = reasons.iter().map(|r| r["Code"].as_str().unwrap_or("None")).collect();
            return Err(Box::new(dynamodb_error(
                400,
                "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                &format!(
                    "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
                    codes.join(", ")
                ),
                Some(json!({"CancellationReasons": reasons})),
            )));
        }
    } else if items.iter().any(|i| state.held.get(i).is_some_and(|h| h.transaction)) {
        return Err(Box::new(dynamodb_error(
            400,
            "com.amazonaws.dynamodb.v20120810#TransactionConflictException",
            "Transaction is ongoing for the item",
            None,
        )));
    }
    for i in &items {
        let holder = state.held.entry(i.clone()).or_insert(Holder { transaction, count: 0 });
        holder.count += 1;
        holder.transaction |= transaction;
    }
    Ok(Some(Holding { strict: strict.clone(), items }))
}

/// DynamoDB API Reference, TransactWriteItems, ClientRequestToken: "multiple identical calls have the same effect as
/// one single call"; "If you submit a request with the same client token but a change in other parameters within
/// the 10-minute idempotency window, DynamoDB returns an IdempotentParameterMismatch exception"; and, among its
/// errors, TransactionInProgressException: "The transaction with the given request token is already in progress",
/// which the SDK does not retry. moto ignores the token, so an SDK retry of a call that went through (its reply lost
/// or late) would write twice there, or fail its own condition.
fn idempotent(
    state: &mut Strict,
    strict: &Arc<Mutex<Strict>>,
    body: &[u8],
    now: SystemTime,
) -> Result<Option<TokenInProgress>, Box<Response<Full<Bytes>>>> {
    let request: Value = serde_json::from_slice(body).unwrap_or_default();
    let Some(token) = request["ClientRequestToken"].as_str() else { return Ok(None) };
    // The parameters as DynamoDB compares them, not as serialized: keys in order.
    let digest: [u8; 16] = Md5::digest(serde_json::to_vec(&request).unwrap_or_default()).into();
    state.tokens.retain(|_, t| t.succeeded.as_ref().is_none_or(|(at, _)| *at + TOKEN_WINDOW > now));
    match state.tokens.get(token) {
        Some(seen) if seen.digest != digest => Err(Box::new(dynamodb_error(
            400,
            "com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException",
            "Request parameters do not match the parameters of the request with this client token",
            None,
        ))),
        Some(Token { succeeded: None, .. }) => Err(Box::new(dynamodb_error(
            400,
            "com.amazonaws.dynamodb.v20120810#TransactionInProgressException",
            "The transaction with the given request token is already in progress.",
            None,
        ))),
        Some(Token { succeeded: Some((_, reply)), .. }) => {
            let mut response = Response::new(Full::new(reply.clone()));
            response.headers_mut().insert("content-type", "application/x-amz-json-1.0".parse().expect("a header"));
            Err(Box::new(response))
        }
        None => {
            state.tokens.insert(token.to_string(), Token { digest, succeeded: None });
            Ok(Some(TokenInProgress { strict: strict.clone(), token: token.to_string() }))
        }
    }
}

/// Session credentials as an execution role gets them: each lives `life`, its token says until when (for
/// [`Rule::ExpiredToken`]), and the SDK asks for a new one before it expires.
#[derive(Debug, Clone)]
struct Sessions {
    life: Duration,
}

impl ProvideCredentials for Sessions {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let expiry = SystemTime::now() + self.life;
        let token = session_token(expiry);
        future::ProvideCredentials::ready(Ok(Credentials::new("test", "test", Some(token), Some(expiry), "strict")))
    }
}

pub fn session_credentials(life: Duration) -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Sessions { life })
}
