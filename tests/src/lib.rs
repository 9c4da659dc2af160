//! Test harness: the service's handlers behind the emulated API Gateway, on the emulators whose endpoints
//! `make test` exports (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL_DYNAMODB`, `CHUNKED_UPLOAD_BUCKET`, ...); or the
//! function binaries themselves under an emulated Lambda Runtime API ([`lambda_runtime`]).

pub mod lambda_invoke;
pub mod lambda_runtime;
pub mod proxy;
pub mod strict;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use lambda_http::http::{self, Method};
use md5::{Digest, Md5};
use serde_json::{Value, json};
use shared::app::Function;
use shared::{ApiError, App, Config, handlers, local};
use strict::Rules;

pub const KIB: usize = 1024;
pub const MIB: usize = 1024 * 1024;

/// A DynamoDB item as the SDK gives it.
pub type Item = HashMap<String, AttributeValue>;

/// The service under test, with the settings of the environment plus `overrides`: the chunk, complete and tus
/// functions' apps (each route goes to the function that serves it in the deployment), their S3 and DynamoDB calls
/// through a pair of strict-AWS proxies; and clients of the emulators' own for the tests' checks.
pub struct Service {
    pub app: App,
    pub complete: App,
    pub tus: App,
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub s3_proxy: proxy::Proxy,
    pub dynamodb_proxy: proxy::Proxy,
}

/// A pair of proxies, S3's and DynamoDB's, in front of the emulators the environment names.
pub async fn strict_proxies(rules: Rules) -> (proxy::Proxy, proxy::Proxy) {
    let s3 = proxy::Proxy::start(&env_endpoint("AWS_ENDPOINT_URL_S3"), "s3", rules.clone()).await;
    let dynamodb = proxy::Proxy::start(&env_endpoint("AWS_ENDPOINT_URL_DYNAMODB"), "dynamodb", rules).await;
    (s3, dynamodb)
}

fn env_endpoint(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} must point at the emulators: run `make test`"))
}

/// A response: status and JSON body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn upload_id(&self) -> String {
        self.body["upload_id"].as_str().unwrap_or_else(|| panic!("no upload_id in {self:?}")).to_string()
    }

    pub fn offset(&self) -> u64 {
        self.body["offset"].as_u64().unwrap_or_else(|| panic!("no offset in {self:?}"))
    }

    /// The secret an anonymous upload's first answer hands out.
    pub fn secret(&self) -> Option<String> {
        self.body["upload_secret"].as_str().map(str::to_string)
    }

    pub fn detail(&self) -> &str {
        self.body["detail"].as_str().unwrap_or_default()
    }

    /// A 503 that says the request may have been accepted: the client asks for the status before sending again.
    pub fn may_have_been_accepted(&self) -> bool {
        self.status == 503 && self.detail() == ApiError::Ambiguous(String::new()).to_string()
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "unexpected reply: {self:?}");
        self
    }

    /// The reply in a function's API Gateway (payload 2.0) response, as API Gateway would turn it into HTTP.
    pub fn from_lambda(response: &Value) -> Reply {
        let status = response["statusCode"].as_u64().unwrap_or_else(|| panic!("no statusCode in {response}")) as u16;
        let mut headers = http::HeaderMap::new();
        for (name, value) in response["headers"].as_object().into_iter().flatten() {
            let (Ok(name), Some(Ok(value))) =
                (http::HeaderName::try_from(name.as_str()), value.as_str().map(http::HeaderValue::from_str))
            else {
                panic!("malformed header {name}: {value} in {response}")
            };
            headers.insert(name, value);
        }
        let text = response["body"].as_str().unwrap_or_default();
        let bytes = match response["isBase64Encoded"].as_bool() {
            Some(true) => BASE64.decode(text).unwrap_or_else(|e| panic!("body is not base64 ({e}): {response}")),
            _ => text.as_bytes().to_vec(),
        };
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {response}"));
        Reply { status, headers, body }
    }
}

/// A user of the API: sends requests with their bearer token (none for anonymous), and the `X-Upload-Secret` of
/// the upload they work on if they hold one.
#[derive(Clone)]
pub struct User {
    pub token: Option<String>,
    pub secret: Option<String>,
}

impl User {
    pub fn named(sub: &str) -> Self {
        User { token: Some(local::dev_token(sub)), secret: None }
    }

    pub fn anonymous() -> Self {
        User { token: None, secret: None }
    }

    /// The same user, sending `secret` (as a client does once the first answer gave it).
    pub fn with_secret(&self, secret: Option<String>) -> Self {
        User { secret, ..self.clone() }
    }
}

/// How a chunk is put into the request body.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Encoding {
    Multipart,
    Raw,
}

/// How a [`Service`] meets AWS: the strict layer's rules, the life of its session credentials, the SDK's retries.
pub struct Setup {
    pub rules: Rules,
    /// How long each session credential the service is handed lives (the SDK asks for a new one before then).
    pub session: Duration,
    /// The SDK's own retries, off where a test wants every injected fault to reach the service's code.
    pub sdk_retries: bool,
    /// Whether the service's calls go through the proxies at all: not for the benchmarks that measure the service's
    /// own CPU, which an in-process proxy would add to.
    pub proxied: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup { rules: Rules::aws(), session: Duration::from_secs(3600), sdk_retries: true, proxied: true }
    }
}

impl Service {
    /// The service under the strict-AWS layer, with the settings of the environment plus `overrides`.
    pub async fn new(overrides: &[(&str, &str)]) -> Self {
        Self::with(overrides, Setup::default()).await
    }

    /// As [`Service::new`], set up as `setup` says.
    pub async fn with(overrides: &[(&str, &str)], setup: Setup) -> Self {
        let mut overrides: HashMap<String, String> =
            overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        // Metric lines would go to the test's stdout, past the test harness's capture: a test that reads them
        // collects them (`collect_metrics`).
        overrides.entry("CHUNKED_UPLOAD_METRICS_NAMESPACE".into()).or_insert_with(|| "off".into());
        let config = Config::from_lookup(|name| overrides.get(name).cloned().or_else(|| std::env::var(name).ok()))
            .unwrap_or_else(|e| panic!("{e}: run the tests with `make test`, which starts the emulators"));
        let (s3_proxy, dynamodb_proxy) = strict_proxies(setup.rules).await;
        let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
        // The backoff the SDK waits before retrying a throttled call: short, so the layer's throttling does not make
        // the suite slow; the number of attempts is the SDK's.
        let retries = if setup.sdk_retries {
            RetryConfig::standard().with_initial_backoff(Duration::from_millis(20))
        } else {
            RetryConfig::disabled()
        };
        let session = strict::session_credentials(setup.session);
        let app = |function: Function| {
            let mut loader = aws_config::from_env().retry_config(retries.clone()).credentials_provider(session.clone());
            if let Some(name) = function.app_name() {
                loader = loader.app_name(name);
            }
            let (s3_url, dynamodb_url) = match setup.proxied {
                true => (s3_proxy.url(), dynamodb_proxy.url()),
                false => (env_endpoint("AWS_ENDPOINT_URL_S3"), env_endpoint("AWS_ENDPOINT_URL_DYNAMODB")),
            };
            let (config, overrides) = (config.clone(), &overrides);
            async move {
                let sdk = loader.load().await;
                let s3 = aws_sdk_s3::config::Builder::from(&sdk).endpoint_url(s3_url).force_path_style(true).build();
                let dynamodb = aws_sdk_dynamodb::config::Builder::from(&sdk).endpoint_url(dynamodb_url).build();
                let (s3, dynamodb) = (aws_sdk_s3::Client::from_conf(s3), aws_sdk_dynamodb::Client::from_conf(dynamodb));
                App::with_clients(config, &sdk, s3, dynamodb, &lambda_client(&sdk, overrides))
            }
        };
        let (chunk, complete, tus) =
            (app(Function::Chunk).await, app(Function::Complete).await, app(Function::Tus).await);
        // The tests' own reads and checks go to the emulators directly. LocalStack may pause before streaming a
        // freshly completed object; the checks wait for it.
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
                .build(),
        );
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        Service { app: chunk, complete, tus, s3, dynamodb, s3_proxy, dynamodb_proxy }
    }

    /// The service with the SDK's own retries off, so an injected fault reaches the service's code instead of being
    /// retried away; and the proxies its S3 and DynamoDB calls go through, to count them and inject faults.
    pub async fn through_proxies(overrides: &[(&str, &str)]) -> (Self, proxy::Proxy, proxy::Proxy) {
        let svc = Self::with(overrides, Setup { sdk_retries: false, ..Setup::default() }).await;
        let (s3, dynamodb) = (svc.s3_proxy.clone(), svc.dynamodb_proxy.clone());
        (svc, s3, dynamodb)
    }

    /// [`Self::through_proxies`] with a per-owner limit high enough never to refuse, so uploads are counted in
    /// transactions (`store::quota`), on a table of its own (see [`own_table`]).
    pub async fn counting_through_proxies() -> (Self, proxy::Proxy, proxy::Proxy) {
        let table = own_table().await;
        Self::through_proxies(&[("CHUNKED_UPLOAD_TABLE", &table), ("CHUNKED_UPLOAD_MAX_UPLOADS_PER_OWNER", "1000000")])
            .await
    }

    pub async fn default() -> Self {
        Self::new(&[]).await
    }

    /// The environment of a function process on the emulators, as Lambda would give it ([`service_env`]), its S3
    /// and DynamoDB calls going through this service's strict proxies, signed with a session token as an execution
    /// role's are.
    pub fn env(&self, overrides: &[(&str, &str)]) -> Vec<(String, String)> {
        let (s3, dynamodb) = (self.s3_proxy.url(), self.dynamodb_proxy.url());
        let token = strict::session_token(SystemTime::now() + Duration::from_secs(3600));
        let mut all = vec![
            ("AWS_ENDPOINT_URL_S3", s3.as_str()),
            ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb.as_str()),
            ("AWS_SESSION_TOKEN", token.as_str()),
        ];
        all.extend_from_slice(overrides);
        service_env(&all)
    }

    /// From now on, the service's metric lines go to the returned buffer instead of stdout.
    pub fn collect_metrics(&mut self) -> Arc<Mutex<Vec<String>>> {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let metrics = shared::metrics::Metrics::to_sink(
            Some(METRICS_NAMESPACE.into()),
            Arc::new(move |line: &str| sink.lock().unwrap_or_else(PoisonError::into_inner).push(line.to_string())),
        );
        self.app.metrics = metrics.clone();
        self.complete.metrics = metrics.clone();
        self.tus.metrics = metrics;
        lines
    }

    /// One HTTP request through the emulated API Gateway, to the function that serves its route, its answer as it
    /// comes (tus answers are headers and text).
    pub async fn send_raw(&self, request: http::Request<Bytes>) -> http::Response<Bytes> {
        local::invoke(&|r| handlers::handle(&self.app, &self.complete, &self.tus, r), request).await
    }

    /// One HTTP request through the emulated API Gateway.
    pub async fn send(&self, request: http::Request<Bytes>) -> Reply {
        let response = self.send_raw(request).await;
        let status = response.status().as_u16();
        let body = serde_json::from_slice(response.body())
            .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {:?}", response.body()));
        Reply { status, headers: response.headers().clone(), body }
    }

    pub fn request(user: &User, method: Method, uri: &str) -> http::request::Builder {
        let mut builder = http::Request::builder().method(method).uri(uri);
        if let Some(token) = &user.token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        if let Some(secret) = &user.secret {
            builder = builder.header("x-upload-secret", secret);
        }
        builder
    }

    /// Sends bytes `[start, start + data.len())` of a `total`-byte file.
    pub async fn chunk(
        &self,
        user: &User,
        upload_id: Option<&str>,
        start: usize,
        data: &[u8],
        total: usize,
        encoding: Encoding,
    ) -> Reply {
        let range = format!("bytes {}-{}/{}", start, start + data.len() - 1, total);
        self.chunk_with_range(user, upload_id, &range, data, encoding).await
    }

    pub async fn chunk_with_range(
        &self,
        user: &User,
        upload_id: Option<&str>,
        range: &str,
        data: &[u8],
        encoding: Encoding,
    ) -> Reply {
        let request = match encoding {
            Encoding::Multipart => {
                let mut fields = vec![];
                if let Some(id) = upload_id {
                    fields.push(("upload_id", id));
                }
                let (content_type, body) = multipart_body(&fields, Some(("file", "data.bin", data)));
                Self::request(user, Method::POST, "/upload")
                    .header("content-type", content_type)
                    .header("content-range", range)
                    .body(body)
            }
            Encoding::Raw => {
                let uri = match upload_id {
                    Some(id) => format!("/upload?upload_id={id}&filename=data.bin"),
                    None => "/upload?filename=data.bin".to_string(),
                };
                Self::request(user, Method::POST, &uri)
                    .header("content-type", "application/octet-stream")
                    .header("content-range", range)
                    .body(Bytes::copy_from_slice(data))
            }
        };
        self.send(request.expect("request")).await
    }

    pub async fn complete(&self, user: &User, upload_id: &str, md5: &str) -> Reply {
        let body = format!("upload_id={upload_id}&md5={md5}");
        let request = Self::request(user, Method::POST, "/upload/complete")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Bytes::from(body));
        self.send(request.expect("request")).await
    }

    pub async fn status(&self, user: &User, upload_id: &str) -> Reply {
        let request = Self::request(user, Method::GET, &format!("/upload/{upload_id}")).body(Bytes::new());
        self.send(request.expect("request")).await
    }

    /// `GET /upload` with this query string (`""` for none).
    pub async fn list(&self, user: &User, query: &str) -> Reply {
        let uri = if query.is_empty() { "/upload".to_string() } else { format!("/upload?{query}") };
        self.send(Self::request(user, Method::GET, &uri).body(Bytes::new()).expect("request")).await
    }

    pub async fn abort(&self, user: &User, upload_id: &str) -> Reply {
        let request = Self::request(user, Method::DELETE, &format!("/upload/{upload_id}")).body(Bytes::new());
        self.send(request.expect("request")).await
    }

    /// Opens a parallel or direct upload (`POST /upload/create`) with this JSON body.
    pub async fn open(&self, user: &User, body: Value) -> Reply {
        let request = Self::request(user, Method::POST, "/upload/create")
            .header("content-type", "application/json")
            .body(Bytes::from(body.to_string()));
        self.send(request.expect("request")).await
    }

    /// Sends bytes `[start, start + data.len())` of a parallel upload, with their CRC64NVME.
    pub async fn parallel_chunk(&self, user: &User, upload_id: &str, start: usize, data: &[u8], total: usize) -> Reply {
        self.parallel_chunk_declaring(user, upload_id, start, data, total, &crc64(data)).await
    }

    /// As [`Self::parallel_chunk`], declaring `crc` whatever the bytes are.
    pub async fn parallel_chunk_declaring(
        &self,
        user: &User,
        upload_id: &str,
        start: usize,
        data: &[u8],
        total: usize,
        crc: &str,
    ) -> Reply {
        self.send(parallel_chunk_request(Self::request(user, Method::POST, "/"), upload_id, start, data, total, crc))
            .await
    }

    /// Asks for a direct upload's part URLs, for parts given by number and bytes.
    pub async fn part_urls(&self, user: &User, upload_id: &str, parts: &[(u32, &[u8])]) -> Reply {
        let parts: Vec<Value> = parts.iter().map(|(n, d)| json!({"number": n, "crc64nvme": crc64(d)})).collect();
        let request = Self::request(user, Method::POST, &format!("/upload/{upload_id}/parts"))
            .header("content-type", "application/json")
            .body(Bytes::from(json!({ "parts": parts }).to_string()));
        self.send(request.expect("request")).await
    }

    /// Completes a parallel or direct upload with the whole file's CRC64NVME.
    pub async fn complete_crc(&self, user: &User, upload_id: &str, crc: &str) -> Reply {
        self.complete_json(user, json!({"upload_id": upload_id, "crc64nvme": crc})).await
    }

    /// Completes with a JSON body of the caller's choosing.
    pub async fn complete_json(&self, user: &User, body: Value) -> Reply {
        let request = Self::request(user, Method::POST, "/upload/complete")
            .header("content-type", "application/json")
            .body(Bytes::from(body.to_string()));
        self.send(request.expect("request")).await
    }

    /// Starts an upload of `file` with its first `first` bytes sent; returns the upload id.
    pub async fn start_upload(&self, user: &User, file: &[u8], first: usize) -> String {
        let reply = self.chunk(user, None, 0, &file[..first], file.len(), Encoding::Raw).await;
        reply.assert_status(200);
        reply.upload_id()
    }

    /// Uploads `data` in `chunk_size` chunks, in order, and returns the upload id.
    pub async fn upload_all(&self, user: &User, data: &[u8], chunk_size: usize, encoding: Encoding) -> String {
        let mut upload_id: Option<String> = None;
        for (i, piece) in data.chunks(chunk_size).enumerate() {
            let reply = self.chunk(user, upload_id.as_deref(), i * chunk_size, piece, data.len(), encoding).await;
            reply.assert_status(200);
            assert_eq!(reply.offset(), (i * chunk_size + piece.len()) as u64);
            upload_id = Some(reply.upload_id());
        }
        upload_id.expect("at least one chunk")
    }

    /// Uploads `data` and completes it the way a well-behaved client does: it retries what failed for reasons of the
    /// server's (5xx, 409), asks for the status before sending again when the answer says the chunk may have been
    /// accepted, goes on from the offset a 400 gives, and takes a repeated completion's result.
    /// Returns the completion's answer.
    pub async fn upload_retrying(&self, user: &User, data: &[u8], chunk_size: usize) -> Reply {
        self.go_on_retrying(user, data, chunk_size, None).await
    }

    /// As [`Service::upload_retrying`], going on with `upload_id` from the offset its status gives, if there is one.
    pub async fn go_on_retrying(
        &self,
        user: &User,
        data: &[u8],
        chunk_size: usize,
        upload_id: Option<String>,
    ) -> Reply {
        let (mut ask_status, mut upload_id, mut offset, mut attempts) = (upload_id.is_some(), upload_id, 0, 0);
        loop {
            attempts += 1;
            assert!(attempts < 100, "the upload does not make progress");
            if let (true, Some(id)) = (ask_status, &upload_id) {
                let reply = self.status(user, id).await;
                match reply.status {
                    200 => {
                        offset = reply.offset() as usize;
                        ask_status = false;
                    }
                    409 | 500..=599 => continue,
                    _ => panic!("the client cannot learn the offset: {reply:?}"),
                }
            }
            if offset == data.len() {
                break;
            }
            let end = (offset + chunk_size).min(data.len());
            let reply =
                self.chunk(user, upload_id.as_deref(), offset, &data[offset..end], data.len(), Encoding::Raw).await;
            match reply.status {
                200 => {
                    upload_id = Some(reply.upload_id());
                    offset = reply.offset() as usize;
                }
                400 if reply.body.get("offset").is_some() && upload_id.is_some() => offset = reply.offset() as usize,
                503 if reply.may_have_been_accepted() => ask_status = true,
                409 | 500..=599 => {}
                _ => panic!("the client cannot go on: {reply:?}"),
            }
        }
        let upload_id = upload_id.expect("an upload");
        let md5 = md5_hex(data);
        let mut last = None;
        for _ in 0..20 {
            let reply = self.complete(user, &upload_id, &md5).await;
            match reply.status {
                200 => return reply,
                400 if reply.detail() == "Upload has already been completed" => return reply,
                // S3 may still be assembling the object: ask again when the service says.
                202 => {
                    let wait = reply.body["retry_after"].as_u64().expect("a 202 says when to ask again");
                    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
                }
                409 | 500..=599 => {}
                _ => panic!("the client cannot complete: {reply:?}"),
            }
            last = Some(reply);
        }
        panic!("completion does not succeed: {last:?}")
    }

    /// The bytes of an object in the bucket.
    pub async fn object(&self, key: &str) -> Vec<u8> {
        let out = self.s3.get_object().bucket(&self.app.config.bucket).key(key).send().await;
        let out = out.unwrap_or_else(|e| panic!("object {key}: {e:?}"));
        out.body.collect().await.expect("object body").into_bytes().to_vec()
    }

    /// The object at `key` is `file`, byte for byte, and S3 holds its full-object CRC64NVME.
    pub async fn assert_object(&self, key: &str, file: &[u8]) {
        assert!(self.object(key).await == file, "the object in S3 is not the file");
        let head = self.s3.head_object().bucket(&self.app.config.bucket).key(key);
        let head = head.checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled).send().await.expect("HeadObject");
        assert_eq!(head.checksum_crc64_nvme(), Some(crc64(file).as_str()), "S3's full-object checksum");
    }

    /// Keys under a prefix.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let out = self.s3.list_objects_v2().bucket(&self.app.config.bucket).prefix(prefix).send().await;
        let out = out.unwrap_or_else(|e| panic!("list {prefix}: {e:?}"));
        out.contents().iter().filter_map(|o| o.key.clone()).collect()
    }

    /// Buffered chunks of an upload still in S3.
    pub async fn buffered_keys(&self, upload_id: &str) -> Vec<String> {
        self.keys(&format!("{}{upload_id}/", self.app.config.buffer_prefix)).await
    }

    /// Multipart uploads in progress for a key.
    pub async fn multipart_uploads(&self, key: &str) -> usize {
        let out = self.s3.list_multipart_uploads().bucket(&self.app.config.bucket).prefix(key).send().await;
        out.unwrap_or_else(|e| panic!("list multipart uploads: {e:?}")).uploads().len()
    }

    /// The DynamoDB item of an upload as stored, if any.
    pub async fn raw_item(&self, upload_id: &str) -> Option<Item> {
        let out = self
            .dynamodb
            .get_item()
            .table_name(&self.app.config.table)
            .key("upload_id", AttributeValue::S(upload_id.to_string()))
            .consistent_read(true)
            .send()
            .await;
        out.unwrap_or_else(|e| panic!("GetItem: {e:?}")).item
    }

    /// The uploads and bytes counted against `owner` (its quota counters).
    pub async fn counted(&self, owner: &str) -> (u64, u64) {
        let key = shared::store::quota::counter_key(owner);
        self.app.table.in_progress(&key).await.expect("counters")
    }

    /// The record of an upload, if any.
    pub async fn record(&self, upload_id: &str) -> Option<shared::store::UploadRecord> {
        let id = shared::protocol::UploadId::parse(upload_id).expect("an upload id");
        self.app.table.get(&id).await.expect("GetItem")
    }

    /// Removes an upload's record as TTL would (the stream record of it is the test's to deliver: [`Self::removal`]).
    pub async fn remove_record(&self, upload_id: &str) {
        let id = shared::protocol::UploadId::parse(upload_id).expect("an upload id");
        self.app.table.delete(&id).await.expect("TTL deletes the item");
    }

    /// The stream record of the item's removal as DynamoDB sends it, made from the item as it is now: by TTL (the
    /// DynamoDB service itself) or by a user's DeleteItem (no `userIdentity`).
    pub async fn removal(&self, upload_id: &str, sequence: u64, by_ttl: bool) -> Value {
        let item = self.raw_item(upload_id).await.unwrap_or_else(|| panic!("no item for {upload_id}"));
        removal_of(&item, sequence, by_ttl)
    }
}

/// The service's Lambda client: to `AWS_ENDPOINT_URL_LAMBDA` in `overrides` if there is one (an emulated Lambda,
/// [`lambda_invoke`]), as a function process given that variable would be.
fn lambda_client(sdk: &aws_config::SdkConfig, overrides: &HashMap<String, String>) -> aws_sdk_lambda::Client {
    let mut config = aws_sdk_lambda::config::Builder::from(sdk);
    if let Some(endpoint) = overrides.get("AWS_ENDPOINT_URL_LAMBDA") {
        config = config.endpoint_url(endpoint);
    }
    aws_sdk_lambda::Client::from_conf(config.build())
}

/// A stream record (`NEW_AND_OLD_IMAGES`) as DynamoDB sends it, of an item's change from `old` to `new` (a MODIFY),
/// or of its removal (a REMOVE, without `new`).
pub fn stream_record(sequence: u64, old: &Item, new: Option<&Item>) -> Value {
    let image = |item: &Item| serde_json::to_value(serde_dynamo::Item::from(item.clone())).expect("an image");
    let key = HashMap::from([("upload_id".to_string(), old["upload_id"].clone())]);
    let name = if new.is_some() { "MODIFY" } else { "REMOVE" };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let mut change = json!({
        "ApproximateCreationDateTime": now.as_secs(),
        "Keys": image(&key),
        "SequenceNumber": sequence.to_string(),
        "SizeBytes": 512,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
        "OldImage": image(old)
    });
    if let Some(new) = new {
        change["NewImage"] = image(new);
    }
    json!({
        "eventID": format!("{sequence:x}"),
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": change,
        "eventSourceARN":
            "arn:aws:dynamodb:us-east-1:123456789012:table/chunked-uploads/stream/2026-11-28T00:00:00.000"
    })
}

/// The stream record of `item`'s removal: by TTL (the DynamoDB service itself) or by a user's DeleteItem (no
/// `userIdentity`).
pub fn removal_of(item: &Item, sequence: u64, by_ttl: bool) -> Value {
    let mut record = stream_record(sequence, item, None);
    if by_ttl {
        record["userIdentity"] = json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"});
    }
    record
}

/// A new, empty uploads table on the emulator (the same key as the shared one), named for `CHUNKED_UPLOAD_TABLE`.
/// For tests whose uploads are counted against per-owner limits: moto serves a transaction by deep-copying the whole
/// table, which on the table the rest of the suite has filled takes seconds and trips the SDK's time limits.
pub async fn own_table() -> String {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
        ScalarAttributeType,
    };
    let attribute = |name: &str, kind: ScalarAttributeType| {
        AttributeDefinition::builder().attribute_name(name).attribute_type(kind).build().expect("attribute")
    };
    let key = |name: &str, kind: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
    // The listing's index, as emulators/create_resources.py and template.yaml make it.
    let by_owner = GlobalSecondaryIndex::builder()
        .index_name(shared::store::listing::OWNER_INDEX)
        .key_schema(key("owner", KeyType::Hash).expect("key"))
        .key_schema(key("created_at_ms", KeyType::Range).expect("key"))
        .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
        .build()
        .expect("index");
    let name = format!("uploads-{}", shared::protocol::UploadId::new());
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    aws_sdk_dynamodb::Client::new(&sdk)
        .create_table()
        .table_name(&name)
        .attribute_definitions(attribute("upload_id", ScalarAttributeType::S))
        .attribute_definitions(attribute("owner", ScalarAttributeType::S))
        .attribute_definitions(attribute("created_at_ms", ScalarAttributeType::N))
        .key_schema(key("upload_id", KeyType::Hash).expect("key"))
        .global_secondary_indexes(by_owner)
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateTable {name}: {e:?}"));
    name
}

/// A DynamoDB stream batch of these records, as Lambda delivers it to the cleanup function.
pub fn batch(records: Vec<Value>) -> aws_lambda_events::event::dynamodb::Event {
    serde_json::from_value(json!({ "Records": records })).expect("a stream event")
}

/// A `multipart/form-data` body with text fields and an optional file part `(field, filename, bytes)`.
pub fn multipart_body(fields: &[(&str, &str)], file: Option<(&str, &str, &[u8])>) -> (String, Bytes) {
    let boundary = "----chunked-upload-test-boundary-7d93b1";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    if let Some((name, filename, data)) = file {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), Bytes::from(body))
}

/// `len` pseudo-random bytes from `seed` (xorshift: fast, and no two test files alike).
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// CRC64NVME in S3's form.
pub fn crc64(data: &[u8]) -> String {
    shared::checksum::Crc64::of(data).to_base64()
}

/// PUTs `body` to a presigned URL with the headers the API gave: what a client does with a direct part. Returns
/// S3's status.
pub async fn put_presigned(part: &Value, body: &[u8]) -> u16 {
    let mut request = http::Request::builder().method("PUT").uri(part["url"].as_str().expect("url"));
    for (name, value) in part["headers"].as_object().expect("headers") {
        request = request.header(name.as_str(), value.as_str().expect("header value"));
    }
    to_s3(request.body(Bytes::copy_from_slice(body)).expect("request")).await.0
}

/// Sends a request straight to S3 (a presigned URL's, a form's), as a browser would; returns S3's status, headers
/// and body.
pub async fn to_s3(request: http::Request<Bytes>) -> (u16, http::HeaderMap, Bytes) {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(request.map(Full::new)).await.expect("S3 answers");
    let (parts, body) = response.into_parts();
    (parts.status.as_u16(), parts.headers, body.collect().await.expect("S3's body").to_bytes())
}

/// The namespace of the lines [`Service::collect_metrics`] collects.
pub const METRICS_NAMESPACE: &str = "ChunkedUploadTest";

/// Every metric line collected so far, each checked to be an EMF document of [`METRICS_NAMESPACE`] whose declared
/// metrics and dimensions are all present, with a timestamp of now.
pub fn emitted_metrics(lines: &Mutex<Vec<String>>) -> Vec<Value> {
    let lines = lines.lock().unwrap_or_else(PoisonError::into_inner);
    lines
        .iter()
        .map(|line| {
            let value: Value = serde_json::from_str(line).expect("every metric line is JSON");
            let meta = &value["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(meta["Namespace"], METRICS_NAMESPACE, "{line}");
            let now = shared::clock::now_ms();
            assert!(value["_aws"]["Timestamp"].as_u64().is_some_and(|t| t.abs_diff(now) < 600_000), "{line}");
            for dimension in meta["Dimensions"][0].as_array().expect("a dimension set") {
                assert!(value[dimension.as_str().expect("name")].is_string(), "{line}");
            }
            for metric in meta["Metrics"].as_array().expect("metrics") {
                assert!(value[metric["Name"].as_str().expect("name")].is_u64(), "{line}");
            }
            value
        })
        .collect()
}

/// The sum of metric `name` over the lines whose dimensions include `dimensions`.
pub fn total(lines: &[Value], name: &str, dimensions: &[(&str, &str)]) -> u64 {
    lines.iter().filter(|l| dimensions.iter().all(|(k, v)| l[*k] == *v)).filter_map(|l| l[name].as_u64()).sum()
}

pub fn md5_hex(data: &[u8]) -> String {
    shared::md5state::hex(&Md5::digest(data))
}

/// The environment of a function process on the emulators, as Lambda would give it: every `CHUNKED_UPLOAD_*` and
/// `AWS_*` variable of the tests' environment (settings, endpoints, dummy credentials, region) and `RUST_LOG`, with
/// `overrides` on top (to point the endpoints at proxies, say).
pub fn service_env(overrides: &[(&str, &str)]) -> Vec<(String, String)> {
    assert!(
        std::env::var("AWS_ENDPOINT_URL_S3").is_ok() && std::env::var("AWS_ENDPOINT_URL_DYNAMODB").is_ok(),
        "AWS_ENDPOINT_URL_S3 and AWS_ENDPOINT_URL_DYNAMODB must point at the emulators: run `make test`"
    );
    let mut env: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("CHUNKED_UPLOAD_") || k.starts_with("AWS_") || k == "RUST_LOG")
        .filter(|(k, _)| !k.starts_with("AWS_LAMBDA_"))
        .collect();
    env.extend(overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env.into_iter().collect()
}

/// The HTTP API (payload format 2.0) event API Gateway hands a function for `request`, the caller holding a token
/// whose `sub` is `sub` (the emulated API Gateway's own event, `shared::local`).
pub fn api_gateway_event(sub: &str, request: &http::Request<Bytes>) -> Vec<u8> {
    let mut request = request.clone();
    let bearer = format!("Bearer {}", local::dev_token(sub));
    request.headers_mut().insert("authorization", bearer.parse().expect("a header value"));
    local::event_for(request).unwrap_or_else(|answer| panic!("API Gateway answers by itself: {answer:?}"))
}

/// `builder` made the request of a parallel chunk: bytes `[start, start + data.len())` of a `total`-byte upload,
/// declaring `crc`.
pub fn parallel_chunk_request(
    builder: http::request::Builder,
    upload_id: &str,
    start: usize,
    data: &[u8],
    total: usize,
    crc: &str,
) -> http::Request<Bytes> {
    builder
        .method(Method::POST)
        .uri(format!("/upload?upload_id={upload_id}"))
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("bytes {}-{}/{}", start, start + data.len() - 1, total))
        .header("x-checksum-crc64nvme", crc)
        .body(Bytes::copy_from_slice(data))
        .expect("a parallel chunk request")
}

/// The event of a raw chunk (`application/octet-stream`): bytes `[start, start + chunk.len())` of a `total`-byte file.
pub fn chunk_event(sub: &str, upload_id: Option<&str>, start: usize, chunk: &[u8], total: usize) -> Vec<u8> {
    let uri = match upload_id {
        Some(id) => format!("/upload?upload_id={id}"),
        None => "/upload?filename=data.bin".to_string(),
    };
    let request = http::Request::post(uri)
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("bytes {}-{}/{}", start, start + chunk.len() - 1, total))
        .body(Bytes::copy_from_slice(chunk))
        .expect("a chunk request");
    api_gateway_event(sub, &request)
}
