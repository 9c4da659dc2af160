//! A proxy between the service and an emulator, on loopback: it names each AWS call it forwards (`UploadPart`,
//! `UpdateItem`, ...), counts calls and bytes, and can fail a chosen call before it reaches the emulator, cut it
//! after the emulator acted but before the reply, hold that reply until the test lets it go, or never answer. The
//! benchmarks count with it; the fault and kill tests inject with it.

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
    /// Never answer and never forward, keeping the connection open: a call that hangs until the caller gives up.
    Hang,
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
}

/// A running proxy; it stops when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    held: tokio::sync::Mutex<mpsc::UnboundedReceiver<Held>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Starts a proxy in front of `upstream` (for example `http://127.0.0.1:4566`).
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("address");
        let (holds, held) = mpsc::unbounded_channel();
        let state = Arc::new(Mutex::new(State { tallies: HashMap::new(), armed: Vec::new(), holds }));
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
        Proxy { addr, state, held: tokio::sync::Mutex::new(held), task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Arms `fault` for the next call of `operation`.
    pub fn arm(&self, operation: &str, fault: Fault) {
        self.lock().armed.push((operation.to_string(), fault));
    }

    /// Waits for the next call held by [`Fault::HoldAfter`]: the emulator has acted on it and answered, and its reply
    /// has not reached the caller.
    pub async fn held(&self) -> Held {
        let mut held = self.held.lock().await;
        // The sender lives in the proxy's own state, so the channel cannot close while `self` exists.
        held.recv().await.expect("the proxy's hold channel is open")
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
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("{upstream}{path}").parse().expect("upstream uri");
    let result = client.request(Request::from_parts(parts, Full::new(body))).await;
    let response = match result {
        Ok(response) => response,
        Err(e) => {
            let mut response = Response::new(Full::new(Bytes::from(format!("proxy: {e}"))));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            return Ok(response);
        }
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
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
