//! A Lambda Runtime API emulator (version 2018-06-01): a real function binary runs as a child process, the way
//! Lambda's sandbox runs `bootstrap`, and polls this harness for events on a loopback port. One invocation at a time,
//! as in Lambda. The kill tests SIGKILL it mid-invocation; the benchmarks time its start-up and read its memory.

use std::collections::HashMap;
use std::convert::Infallible;
use std::ffi::OsStr;
use std::io;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

/// How long an invocation may take before the function is killed, as Lambda does: the template's 29 seconds for the
/// chunk and complete functions. Also how long start-up may take.
pub const TIMEOUT: Duration = Duration::from_secs(29);
/// The memory size the function is told it has (the template's `ChunkMemorySize`); nothing enforces it.
pub const MEMORY_MB: u32 = 1024;

/// Why an invocation got no response.
#[derive(Debug)]
pub enum InvokeError {
    /// The function reported an error for the invocation (`POST /runtime/invocation/{id}/error`).
    Function { error_type: String, body: String },
    /// The runtime reported that it could not start (`POST /runtime/init/error`).
    Init(String),
    /// The process ended before answering.
    Exited(ExitStatus),
    /// No answer within [`TIMEOUT`]; the process has been killed.
    Timeout,
    /// The response was not JSON.
    NotJson(String),
}

impl std::fmt::Display for InvokeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvokeError::Function { error_type, body } => write!(f, "the function failed ({error_type}): {body}"),
            InvokeError::Init(body) => write!(f, "the runtime could not start: {body}"),
            InvokeError::Exited(status) => write!(f, "the function process ended ({status})"),
            InvokeError::Timeout => write!(f, "no answer within {TIMEOUT:?}; the function was killed"),
            InvokeError::NotJson(e) => write!(f, "the response is not JSON: {e}"),
        }
    }
}

impl std::error::Error for InvokeError {}

type Outcome = Result<Bytes, InvokeError>;

/// An event waiting for the function's next `GET /runtime/invocation/next`.
struct Invocation {
    request_id: String,
    event: Bytes,
}

/// What the Runtime API server shares with the [`FunctionProcess`].
struct Api {
    function_name: String,
    region: String,
    spawned_at: Instant,
    next: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    /// Invocations handed out and not answered yet, by request id.
    pending: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    /// Time from spawn to the first `GET /next`.
    ready: watch::Sender<Option<Duration>>,
    init_error: watch::Sender<Option<String>>,
}

/// A function binary running under the emulated Runtime API. Dropping it kills the process.
pub struct FunctionProcess {
    pid: libc::pid_t,
    api: Arc<Api>,
    /// Exit status and peak RSS in bytes (`ru_maxrss`), once the process is reaped.
    reaped: Arc<Mutex<Option<(ExitStatus, u64)>>>,
    exited: watch::Receiver<Option<ExitStatus>>,
    next: mpsc::UnboundedSender<Invocation>,
    /// One invocation at a time, as Lambda sends a sandbox.
    turn: tokio::sync::Mutex<()>,
    invocations: AtomicU64,
    server: JoinHandle<()>,
}

impl Drop for FunctionProcess {
    fn drop(&mut self) {
        self.kill();
        self.server.abort();
    }
}

impl FunctionProcess {
    /// Starts `binary` with Lambda's environment for a custom runtime, and `env` (see [`crate::service_env`]) on top.
    /// Nothing else is inherited, as in Lambda. The process's stdout (its JSON logs) is discarded; its stderr (panics,
    /// start-up errors) is passed on.
    pub async fn spawn<K, V>(binary: &Path, env: impl IntoIterator<Item = (K, V)>) -> io::Result<FunctionProcess>
    where
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let function_name = binary.file_stem().map_or_else(|| "function".into(), |s| s.to_string_lossy().into_owned());
        let mut command = Command::new(binary);
        command
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &function_name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", MEMORY_MB.to_string())
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{function_name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/01/01/[$LATEST]0123456789abcdef0123456789abcdef")
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env("TZ", ":UTC")
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let region = command
            .get_envs()
            .find(|(k, _)| *k == "AWS_REGION")
            .and_then(|(_, v)| v)
            .map_or_else(|| "us-east-1".to_string(), |v| v.to_string_lossy().into_owned());

        let (next, next_rx) = mpsc::unbounded_channel();
        let (ready, _) = watch::channel(None);
        let (init_error, _) = watch::channel(None);
        let spawned_at = Instant::now();
        let process = command.spawn()?;
        let pid = process.id() as libc::pid_t;
        // Reaped by the thread below, never by `std`'s handle: dropping the handle neither waits nor kills.
        drop(process);

        let api = Arc::new(Api {
            function_name,
            region,
            spawned_at,
            next: tokio::sync::Mutex::new(next_rx),
            pending: Mutex::new(HashMap::new()),
            ready,
            init_error,
        });
        let reaped = Arc::new(Mutex::new(None));
        let (exit_tx, exited) = watch::channel(None);
        let reaper = reaped.clone();
        std::thread::spawn(move || reap(pid, &reaper, &exit_tx));
        let server = tokio::spawn(serve(listener, api.clone(), route));
        Ok(FunctionProcess {
            pid,
            api,
            reaped,
            exited,
            next,
            turn: tokio::sync::Mutex::new(()),
            invocations: AtomicU64::new(0),
            server,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// Waits until the function asks for its first event, and returns the time from spawn to then: the start-up a
    /// cold start adds before the first invocation can run.
    pub async fn ready_after(&self) -> Result<Duration, InvokeError> {
        let mut ready = self.api.ready.subscribe();
        let waiting = ready.wait_for(Option::is_some);
        let outcome = self.until_failure(async { waiting.await.ok().and_then(|r| *r) }).await?;
        // The watch lives as long as `self.api`, so it cannot close while waited for.
        outcome.ok_or(InvokeError::Timeout)
    }

    /// Invokes the function with `event` (JSON) and returns its response, as Lambda's synchronous invoke does.
    pub async fn invoke(&self, event: impl Into<Bytes>) -> Result<Value, InvokeError> {
        let response = self.invoke_raw(event).await?;
        serde_json::from_slice(&response).map_err(|e| InvokeError::NotJson(e.to_string()))
    }

    /// As [`Self::invoke`], the response as the function sent it.
    pub async fn invoke_raw(&self, event: impl Into<Bytes>) -> Result<Bytes, InvokeError> {
        let _turn = self.turn.lock().await;
        if let Some(status) = self.exit_status() {
            return Err(InvokeError::Exited(status));
        }
        let n = self.invocations.fetch_add(1, Ordering::Relaxed) + 1;
        let request_id = format!("{:08x}-0000-4000-8000-{n:012x}", self.pid());
        let (answer, answered) = oneshot::channel();
        lock(&self.api.pending).insert(request_id.clone(), answer);
        let _ = self.next.send(Invocation { request_id: request_id.clone(), event: event.into() });
        let outcome = self.until_failure(answered).await;
        lock(&self.api.pending).remove(&request_id);
        // Never a receive error: the sender is dropped unsent only by the `remove` above, after the wait.
        outcome?.unwrap_or(Err(InvokeError::Timeout))
    }

    /// Runs `work` until it ends, or the process ends, or the runtime reports an init error, or [`TIMEOUT`] passes
    /// (the process is then killed).
    async fn until_failure<T>(&self, work: impl Future<Output = T>) -> Result<T, InvokeError> {
        let mut exited = self.exited.clone();
        let mut init_error = self.api.init_error.subscribe();
        tokio::select! {
            // An answer that arrived just before the process ended still counts.
            biased;
            done = work => Ok(done),
            status = exited.wait_for(Option::is_some) => {
                let status = status.ok().and_then(|s| *s).unwrap_or_else(|| ExitStatus::from_raw(0));
                Err(InvokeError::Exited(status))
            }
            error = init_error.wait_for(Option::is_some) => {
                Err(InvokeError::Init(error.ok().and_then(|e| e.clone()).unwrap_or_default()))
            }
            () = tokio::time::sleep(TIMEOUT) => {
                self.kill();
                Err(InvokeError::Timeout)
            }
        }
    }

    /// Sends SIGKILL, unless the process has already been reaped.
    pub fn kill(&self) {
        let reaped = lock(&self.reaped);
        if reaped.is_none() {
            // SAFETY: kill(2) has no memory effects. The pid is still our child's: it is reaped only under this lock.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }

    /// Waits for the process to end and be reaped.
    pub async fn wait(&self) -> ExitStatus {
        let mut exited = self.exited.clone();
        let status = exited.wait_for(Option::is_some).await.ok().and_then(|s| *s);
        // The reaper thread sends the status before it lets go of the channel.
        status.unwrap_or_else(|| ExitStatus::from_raw(0))
    }

    pub fn exit_status(&self) -> Option<ExitStatus> {
        *self.exited.borrow()
    }

    /// The process's peak resident memory so far: `VmHWM` while it runs, `ru_maxrss` once reaped.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        if let Some((_, max_rss)) = *lock(&self.reaped) {
            return Some(max_rss);
        }
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
        let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits for the child to end, then reaps it and records its status and peak memory.
fn reap(pid: libc::pid_t, reaped: &Mutex<Option<(ExitStatus, u64)>>, exited: &watch::Sender<Option<ExitStatus>>) {
    // First wait without reaping (WNOWAIT): a zombie keeps its pid, so `kill` cannot hit a recycled one; the reaping
    // happens under the lock `kill` takes.
    loop {
        // SAFETY: waitid only writes into the siginfo it is given.
        let waited = unsafe {
            let mut info = std::mem::zeroed::<libc::siginfo_t>();
            libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT)
        };
        if waited == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
    }
    let mut reaped = lock(reaped);
    let mut status = 0;
    // SAFETY: wait4 only writes into the status and the rusage (plain integers, valid zeroed) it is given.
    let (waited, usage) = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        (libc::wait4(pid, &mut status, 0, &mut usage), usage)
    };
    let status = ExitStatus::from_raw(if waited == pid { status } else { 0 });
    // ru_maxrss is in KiB on Linux.
    *reaped = Some((status, usage.ru_maxrss.max(0) as u64 * 1024));
    drop(reaped);
    exited.send_replace(Some(status));
}

/// Serves `handle` over `state` until aborted; aborting also ends every connection (they live in the join set). The
/// Runtime API's server, and the emulated Lambda Invoke API's (`lambda_invoke`).
pub(crate) async fn serve<S, F, R>(listener: TcpListener, state: Arc<S>, handle: F)
where
    S: Send + Sync + 'static,
    F: Fn(Request<Incoming>, Arc<S>) -> R + Copy + Send + Sync + 'static,
    R: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    let mut connections = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        while connections.try_join_next().is_some() {}
        let state = state.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| handle(req, state.clone()));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn route(req: Request<Incoming>, api: Arc<Api>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let error_type = req.headers().get("lambda-runtime-function-error-type").and_then(|v| v.to_str().ok());
    let error_type = error_type.unwrap_or("Unhandled").to_string();
    let Some(route) = path.strip_prefix("/2018-06-01/runtime/") else {
        return Ok(json_reply(StatusCode::NOT_FOUND, &json!({"errorType": "UnknownRoute"})));
    };
    let segments: Vec<&str> = route.split('/').collect();
    let response = match (&method, segments.as_slice()) {
        (&Method::GET, ["invocation", "next"]) => api.next().await,
        (&Method::POST, ["invocation", id, "response"]) => api.answer(id, Ok(body(req).await)),
        (&Method::POST, ["invocation", id, "error"]) => {
            let body = String::from_utf8_lossy(&body(req).await).into_owned();
            api.answer(id, Err(InvokeError::Function { error_type, body }))
        }
        (&Method::POST, ["init", "error"]) => {
            let body = String::from_utf8_lossy(&body(req).await).into_owned();
            api.init_error.send_replace(Some(format!("{error_type}: {body}")));
            json_reply(StatusCode::ACCEPTED, &json!({"status": "OK"}))
        }
        _ => json_reply(StatusCode::NOT_FOUND, &json!({"errorType": "UnknownRoute"})),
    };
    Ok(response)
}

async fn body(req: Request<Incoming>) -> Bytes {
    req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default()
}

impl Api {
    /// `GET /runtime/invocation/next`: blocks until there is an event.
    async fn next(&self) -> Response<Full<Bytes>> {
        self.ready.send_if_modified(|ready| {
            let first = ready.is_none();
            if first {
                *ready = Some(self.spawned_at.elapsed());
            }
            first
        });
        let invocation = self.next.lock().await.recv().await;
        let Some(Invocation { request_id, event }) = invocation else {
            return json_reply(StatusCode::INTERNAL_SERVER_ERROR, &json!({"errorType": "ShuttingDown"}));
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let deadline = (now + TIMEOUT).as_millis();
        let arn = format!("arn:aws:lambda:{}:000000000000:function:{}", self.region, self.function_name);
        let hex = request_id.replace('-', "");
        let trace = format!("Root=1-{:08x}-{};Sampled=0", now.as_secs(), &hex[hex.len().saturating_sub(24)..]);
        let mut response = Response::new(Full::new(event));
        let headers = response.headers_mut();
        let mut set = |name: &'static str, value: &str| {
            if let Ok(value) = value.parse() {
                headers.insert(name, value);
            }
        };
        set("content-type", "application/json");
        set("lambda-runtime-aws-request-id", &request_id);
        set("lambda-runtime-deadline-ms", &deadline.to_string());
        set("lambda-runtime-invoked-function-arn", &arn);
        set("lambda-runtime-trace-id", &trace);
        response
    }

    /// `POST /runtime/invocation/{id}/response` and `.../error`.
    fn answer(&self, request_id: &str, outcome: Outcome) -> Response<Full<Bytes>> {
        match lock(&self.pending).remove(request_id) {
            Some(waiting) => {
                let _ = waiting.send(outcome);
                json_reply(StatusCode::ACCEPTED, &json!({"status": "OK"}))
            }
            None => json_reply(
                StatusCode::BAD_REQUEST,
                &json!({"errorType": "InvalidRequestID", "errorMessage": "unknown or already answered request id"}),
            ),
        }
    }
}

pub(crate) fn json_reply(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    response
}

/// Builds function packages of this workspace (`cargo build -p ...`, in release mode if asked) and returns their
/// executables by name. Cargo runs from here, so a plain `cargo test` needs no build step first; when the binaries
/// are fresh this takes a moment. Cargo's progress goes to stderr.
pub fn build_functions(packages: &[&str], release: bool) -> io::Result<HashMap<String, PathBuf>> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("."));
    let mut command = Command::new(env!("CARGO"));
    command.current_dir(workspace).args(["build", "--message-format=json-render-diagnostics"]);
    if release {
        command.arg("--release");
    }
    for package in packages {
        command.args(["-p", package]);
    }
    let output = command.stderr(Stdio::inherit()).output()?;
    if !output.status.success() {
        return Err(io::Error::other(format!("cargo build {packages:?} failed: {}", output.status)));
    }
    let mut executables = HashMap::new();
    for line in output.stdout.split(|b| *b == b'\n') {
        let Ok(message) = serde_json::from_slice::<Value>(line) else { continue };
        let (Some(name), Some(path)) = (message["target"]["name"].as_str(), message["executable"].as_str()) else {
            continue;
        };
        if message["reason"] == "compiler-artifact" && packages.contains(&name) {
            executables.insert(name.to_string(), PathBuf::from(path));
        }
    }
    match packages.iter().find(|p| !executables.contains_key(**p)) {
        Some(missing) => Err(io::Error::other(format!("cargo built no executable named {missing}"))),
        None => Ok(executables),
    }
}
