//! A proxy between the service and an emulator, on loopback: it names each AWS call it forwards (`UploadPart`,
//! `UpdateItem`, ...), counts calls and bytes, applies the strict-AWS layer's rules (`strict`), and can fail a chosen
//! call before it reaches the emulator, cut it after the emulator acted but before the reply, hold that reply until
//! the test lets it go, never answer, or refuse it as signed with an expired session. Every integration test's calls
//! go through a pair of them (`Service`); the benchmarks count with them, rules off.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::strict::{self, Rules, Strict, Verdict};

/// Calls and bytes of one kind of AWS call.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub calls: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// What to do to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer 500 without forwarding: the emulator never sees the call.
    FailBefore,
    /// Forward, let the emulator act, then close the connection without a reply.
    CutAfter,
    /// Forward, let the emulator act, then keep the reply until the test decides: [`Proxy::held`] hands it over.
    HoldAfter,
    /// Hold the call, as received and in progress, until the test decides ([`Proxy::held`] hands it over); then
    /// forward it. Its caller may have given up by then: the call goes on all the same.
    HoldBefore,
    /// Never answer and never forward, keeping the connection open: a call that hangs until the caller gives up.
    Hang,
    /// Answer S3's 503 SlowDown without forwarding: a throttled call, where the layer's own throttling never comes
    /// (an UploadPart, whose streamed body the SDK cannot send again).
    SlowDown,
    /// Answer 400 ExpiredToken without forwarding, as S3 does to a call signed with a session that has ended (a
    /// presigned URL used after the credentials that signed it expired).
    ExpiredToken,
}

/// A call the emulator has acted on whose reply the proxy is holding. [`Held::release`] sends the reply on;
/// dropping it closes the connection unanswered, as [`Fault::CutAfter`] does.
#[derive(Debug)]
pub struct Held {
    pub operation: String,
    release: oneshot::Sender<()>,
}

impl Held {
    pub fn release(self) {
        let _ = self.release.send(());
    }
}

struct State {
    tallies: HashMap<String, Tally>,
    /// Faults armed for the next call of an operation: `(operation, fault)`, each used once.
    armed: Vec<(String, Fault)>,
    /// Where held calls are announced.
    holds: mpsc::UnboundedSender<Held>,
    strict: Arc<Mutex<Strict>>,
}

/// A running proxy; it stops when the last clone is dropped.
#[derive(Clone)]
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    held: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Held>>>,
    /// Held for its `Drop`, which stops the proxy.
    _task: Arc<Task>,
}

struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Proxy {
    /// Starts a proxy in front of `upstream` (for example `http://127.0.0.1:4566`) applying `rules`; `role` (`s3`,
    /// `dynamodb`) seeds its draws apart from its twin's.
    pub async fn start(upstream: &str, role: &str, rules: Rules) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("address");
        let (holds, held) = mpsc::unbounded_channel();
        let strict = Arc::new(Mutex::new(Strict::new(rules, role)));
        let state = Arc::new(Mutex::new(State { tallies: HashMap::new(), armed: Vec::new(), holds, strict }));
        let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let upstream: Arc<str> = upstream.trim_end_matches('/').into();
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (state, client, upstream) = (shared.clone(), client.clone(), upstream.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| forward(req, state.clone(), client.clone(), upstream.clone()));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Proxy { addr, state, held: Arc::new(tokio::sync::Mutex::new(held)), _task: Arc::new(Task(task)) }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Arms `fault` for the next call of `operation` that the strict layer does not answer itself.
    pub fn arm(&self, operation: &str, fault: Fault) {
        self.lock().armed.push((operation.to_string(), fault));
    }

    /// Waits for the next call held by [`Fault::HoldAfter`] (the emulator has acted on it and answered, and its reply
    /// has not reached the caller) or by [`Fault::HoldBefore`] (received, not yet forwarded).
    pub async fn held(&self) -> Held {
        let mut held = self.held.lock().await;
        // The sender lives in the proxy's own state, so the channel cannot close while `self` exists.
        held.recv().await.expect("the proxy's hold channel is open")
    }

    /// From now on, session tokens are judged as if `ahead` had passed (`Duration::ZERO`: as the clock says).
    pub fn judge_tokens_ahead(&self, ahead: std::time::Duration) {
        let strict = self.lock().strict.clone();
        strict.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clock_ahead = ahead;
    }

    /// Whether every armed fault has fired.
    pub fn all_fired(&self) -> bool {
        self.lock().armed.is_empty()
    }

    /// Calls so far, by operation.
    pub fn tallies(&self) -> HashMap<String, Tally> {
        self.lock().tallies.clone()
    }

    pub fn reset(&self) {
        self.lock().tallies.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The error that makes the server drop a connection unanswered.
#[derive(Debug)]
pub struct Cut;

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected cut after the upstream acted")
    }
}

impl std::error::Error for Cut {}

async fn forward(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    client: Client<HttpConnector, Full<Bytes>>,
    upstream: Arc<str>,
) -> Result<Response<Full<Bytes>>, Cut> {
    if req.uri().path() == "/__strict/arm" {
        return Ok(arm_from(&req, &state));
    }
    let operation = operation(&req);
    let (mut parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let fault = {
        let mut state = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let tally = state.tallies.entry(operation.clone()).or_default();
        tally.calls += 1;
        tally.bytes_sent += body.len() as u64;
        let position = state.armed.iter().position(|(op, _)| *op == operation);
        position.map(|i| state.armed.remove(i).1)
    };
    if fault == Some(Fault::Hang) {
        // Held until the caller drops the connection or the test's runtime ends.
        let never: std::convert::Infallible = std::future::pending().await;
        match never {}
    }
    if fault == Some(Fault::FailBefore) {
        let mut response = Response::new(Full::new(Bytes::from_static(
            b"<Error><Code>InternalError</Code><Message>injected</Message></Error>",
        )));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        return Ok(response);
    }
    // S3 applies the bucket's CORS rule to its error answers too, so a page can read them.
    let origin = parts.headers.get("origin").cloned();
    if fault == Some(Fault::ExpiredToken) {
        return Ok(with_cors(strict::s3_error(400, "ExpiredToken", "The provided token has expired."), origin));
    }
    if fault == Some(Fault::SlowDown) {
        return Ok(with_cors(strict::s3_error(503, "SlowDown", "Please reduce your request rate."), origin));
    }
    let rules = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).strict.clone();
    let sent = body.clone();
    let (body, after) = match strict::before(&rules, &operation, &parts, body) {
        Verdict::Answer(response) => {
            // A call the layer answers itself (a throttle the SDK then retries) never reaches the emulator: the fault
            // armed for the next call is for the next one that does, or a test waiting on its hold would wait forever.
            if let Some(fault) = fault {
                state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).armed.insert(0, (operation, fault));
            }
            return Ok(with_cors(response, origin));
        }
        Verdict::Forward { body, after } => (body, after),
    };
    if body.as_ptr() != sent.as_ptr() || body.len() != sent.len() {
        strict::rewrite_body_headers(&mut parts, &body);
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("{upstream}{path}").parse().expect("upstream uri");
    // AWS carries out a call it has received whether or not the caller waits for the answer (an SDK attempt timed
    // out, a function cut off): the call goes on upstream, and the layer learns its outcome, if its caller leaves.
    let upstream_call = tokio::spawn({
        let (operation, state) = (operation.clone(), state.clone());
        async move {
            if fault == Some(Fault::HoldBefore) {
                let (release, released) = oneshot::channel();
                let held = Held { operation: operation.clone(), release };
                let _ = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).holds.send(held);
                released.await.map_err(|_| None)?;
            }
            let response = client
                .request(Request::from_parts(parts, Full::new(body)))
                .await
                .map_err(|e| Some(format!("proxy: {e}")))?;
            let (mut parts, body) = response.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let (status, body, rewritten) = strict::after(after, &operation, parts.status, body);
            if rewritten {
                parts.status = status;
                parts.headers.remove("content-length");
                parts.headers.remove("content-md5");
            }
            Ok::<_, Option<String>>((parts, body))
        }
    });
    let (parts, body) = match upstream_call.await {
        Ok(Ok(reply)) => reply,
        Ok(Err(Some(error))) => {
            let mut response = Response::new(Full::new(Bytes::from(error)));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            return Ok(response);
        }
        Ok(Err(None)) | Err(_) => return Err(Cut),
    };
    {
        let mut state = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.tallies.entry(operation.clone()).or_default().bytes_received += body.len() as u64;
    }
    if fault == Some(Fault::CutAfter) {
        // A service error makes hyper close the connection without a reply.
        return Err(Cut);
    }
    if fault == Some(Fault::HoldAfter) {
        let (release, released) = oneshot::channel();
        let held = Held { operation, release };
        let _ = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).holds.send(held);
        if released.await.is_err() {
            return Err(Cut);
        }
    }
    Ok(Response::from_parts(parts, Full::new(body)))
}

/// An answer of the proxy's own, with the CORS headers the bucket's rule would add for a page of `origin`.
fn with_cors(mut response: Response<Full<Bytes>>, origin: Option<hyper::header::HeaderValue>) -> Response<Full<Bytes>> {
    if let Some(origin) = origin {
        response.headers_mut().insert("access-control-allow-origin", origin);
        response.headers_mut().insert("vary", hyper::header::HeaderValue::from_static("Origin"));
    }
    response
}

/// Arms a fault from a test out of the process (`strict-proxy`): `/__strict/arm?operation=...&fault=...`.
fn arm_from<B>(req: &Request<B>, state: &Mutex<State>) -> Response<Full<Bytes>> {
    let query = req.uri().query().unwrap_or_default();
    let field =
        |name: &str| form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    let fault = match field("fault").as_deref() {
        Some("FailBefore") => Some(Fault::FailBefore),
        Some("CutAfter") => Some(Fault::CutAfter),
        Some("ExpiredToken") => Some(Fault::ExpiredToken),
        _ => None,
    };
    let mut response = Response::new(Full::new(Bytes::new()));
    match (field("operation"), fault) {
        (Some(operation), Some(fault)) => {
            state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).armed.push((operation, fault));
        }
        _ => *response.status_mut() = StatusCode::BAD_REQUEST,
    }
    response
}

/// Names the AWS call of a request: DynamoDB says it in `x-amz-target`; S3 by method, path and query.
pub fn operation<B>(req: &Request<B>) -> String {
    if let Some(target) = req.headers().get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return target.rsplit('.').next().unwrap_or(target).to_string();
    }
    let query = req.uri().query().unwrap_or_default();
    let has = |name: &str| query.split('&').any(|p| p == name || p.starts_with(&format!("{name}=")));
    let object = req.uri().path().trim_matches('/').contains('/');
    let name = match (req.method(), object) {
        (&Method::POST, true) if has("uploads") => "CreateMultipartUpload",
        (&Method::POST, true) if has("uploadId") => "CompleteMultipartUpload",
        (&Method::POST, false) if has("delete") => "DeleteObjects",
        (&Method::PUT, true) if has("partNumber") && req.headers().contains_key("x-amz-copy-source") => {
            "UploadPartCopy"
        }
        (&Method::PUT, true) if has("partNumber") => "UploadPart",
        (&Method::PUT, true) => "PutObject",
        (&Method::GET, true) if has("uploadId") => "ListParts",
        (&Method::GET, true) => "GetObject",
        (&Method::HEAD, true) => "HeadObject",
        (&Method::DELETE, true) if has("uploadId") => "AbortMultipartUpload",
        (&Method::DELETE, true) => "DeleteObject",
        (&Method::GET, false) if has("uploads") => "ListMultipartUploads",
        (&Method::GET, false) => "ListObjectsV2",
        _ => "Other",
    };
    name.to_string()
}
