//! The link model on sockets (`bench/link/README.md`): HTTP/1.1 proxies that hold each byte for the modeled delays
//! (`bench::link::model`) and count what crosses them (`bench::link::ledger`).
//!
//! Usage: `link_proxy CONFIG.json`. The configuration names a control address and the links:
//! - a forward proxy (no `upstream`): the client's link. Clients reach it through `HTTP_PROXY` (absolute-form
//!   requests) or `CONNECT`; `aliases` send one destination to another (the region's front door for S3 is S3 itself
//!   on the client's link);
//! - a reverse proxy (`upstream`): the service's in-region link to S3 or DynamoDB;
//! - a sink (`sink: true`): an HTTP server that reads any request's body and answers how long its bytes took to
//!   arrive, for the model's verification.
//!
//! The client link's bandwidth is not this program's: the kernel shapes the client's side of its veth pair. Once
//! bound, it prints one JSON line, `{"control": ADDR, "links": {NAME: ADDR}, "shaper_bits_per_second": {NAME: N}}`
//! (the rate for the kernel's shaper of each link), and serves until killed. Control: `POST /mark` starts a run
//! (counts from zero, times from now); `POST /profile?link=NAME` with a JSON profile changes a link's (and answers
//! its shaper's rate); `POST /cut?link=NAME&after=BYTES` cuts every connection of the link once that many payload
//! bytes crossed it in this run; `GET /report` gives each link's summary and requests.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bench::link::http1::{self, Framer, Head, Segment};
use bench::link::ledger::{Ledger, RequestRecord};
use bench::link::model::{Profile, SlowStart, crossed, hand_on_at};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1 as server;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::sleep_until;

/// The kernel's receive buffer of each accepted connection: small, so that bytes the proxy holds back (a handshake,
/// a window) hold the client's sender back too, as the real link would, instead of piling up in the kernel.
const RECEIVE_BUFFER: u32 = 256 * 1024;
const READ_BYTES: usize = 64 * 1024;
/// Links without a bandwidth of their own (in-region) are accounted at this rate.
const UNSHAPED_MBIT: f64 = 100_000.0;
/// The resolution of Tokio's timer.
const TIMER_TICK: Duration = Duration::from_millis(1);

#[derive(Deserialize)]
struct Config {
    control: String,
    links: Vec<LinkConfig>,
}

#[derive(Deserialize, Clone)]
struct LinkConfig {
    name: String,
    listen: String,
    upstream: Option<String>,
    #[serde(default)]
    sink: bool,
    profile: Option<ProfileConfig>,
    #[serde(default)]
    aliases: HashMap<String, String>,
    /// Destinations (after aliases) that are S3, and DynamoDB: their requests are named by operation.
    #[serde(default)]
    s3: Vec<String>,
    #[serde(default)]
    dynamodb: Vec<String>,
}

#[derive(Deserialize, Clone, Copy)]
struct ProfileConfig {
    uplink_mbit: Option<f64>,
    rtt_ms: f64,
    #[serde(default)]
    slow_start: bool,
    #[serde(default)]
    tls: bool,
}

impl ProfileConfig {
    fn profile(&self) -> Profile {
        Profile {
            uplink_bits_per_second: (self.uplink_mbit.unwrap_or(UNSHAPED_MBIT) * 1e6) as u64,
            rtt: Duration::from_secs_f64(self.rtt_ms / 1000.0),
            slow_start: self.slow_start,
            tls: self.tls,
        }
    }
}

/// A request's place in a run's ledger: the run (its generation) and the index there.
type RecordId = (u64, usize);

/// One link: its profile, its run's counts, and the signal that cuts its connections.
struct Link {
    config: LinkConfig,
    profile: RwLock<Profile>,
    run: Mutex<Run>,
    cuts: watch::Sender<u64>,
    origin: Instant,
    /// When the last bytes put on the link finish crossing it (all its connections share it).
    busy_until: Mutex<Duration>,
}

struct Run {
    ledger: Ledger,
    generation: u64,
    mark: Instant,
    cut_after: Option<u64>,
    /// When the cut came: connections accepted before it are dying, and count no more.
    cut: Option<Instant>,
}

impl Link {
    fn profile(&self) -> Profile {
        *self.profile.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn run(&self) -> MutexGuard<'_, Run> {
        self.run.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn mark(&self) {
        let mut run = self.run();
        run.ledger = Ledger::default();
        run.generation += 1;
        run.mark = Instant::now();
        run.cut_after = None;
        run.cut = None;
    }

    /// Time as an offset from the model's origin, and back.
    fn since_origin(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.origin)
    }

    fn at(&self, offset: Duration) -> Instant {
        self.origin + offset
    }

    /// When `len` bytes read at `read` and let go at `ready` have crossed the link (`model::crossed`), after all its
    /// connections' bytes before them.
    fn cross(&self, read: Duration, ready: Duration, len: u64, profile: &Profile) -> Duration {
        let mut busy = self.busy_until.lock().unwrap_or_else(PoisonError::into_inner);
        let done = crossed(read, ready, *busy, len, profile.uplink_bits_per_second);
        *busy = (*busy).max(done);
        done
    }

    fn destination(&self, wanted: String) -> String {
        self.config.aliases.get(&wanted).cloned().unwrap_or(wanted)
    }

    fn answered(&self, record: RecordId, at: Instant, status: Option<u16>) {
        let mut run = self.run();
        let t = seconds_since(run.mark, at);
        if let Some(r) = run.record(record) {
            r.answer_from_far_side = Some(t);
            r.status = status;
        }
    }

    fn delivered(&self, at: Instant, bytes: usize, record: Option<RecordId>) {
        let mut run = self.run();
        let t = seconds_since(run.mark, at);
        run.ledger.delivered_to_client(t, bytes as u64);
        if let Some(r) = record.and_then(|id| run.record(id)) {
            r.answer_at_client.get_or_insert(t);
        }
    }

    fn report(&self) -> Value {
        let profile = self.profile();
        let run = self.run();
        json!({
            // The mark on CLOCK_MONOTONIC, which every process on the machine shares (namespaces too): clients say
            // when they started on it, so their own time before the first request counts.
            "mark_monotonic": monotonic_seconds() - run.mark.elapsed().as_secs_f64(),
            "rtt_ms": profile.rtt.as_secs_f64() * 1000.0,
            "uplink_mbit": profile.uplink_bits_per_second as f64 / 1e6,
            "slow_start": profile.slow_start,
            "tls": profile.tls,
            "summary": run.ledger.summary(profile.uplink_bits_per_second as f64 / 8.0),
            "requests": run.ledger.requests(),
        })
    }
}

impl Run {
    fn record(&mut self, (generation, index): RecordId) -> Option<&mut RequestRecord> {
        if generation == self.generation { self.ledger.request_mut(index) } else { None }
    }
}

fn monotonic_seconds() -> f64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes into `now`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}

fn seconds_since(mark: Instant, t: Instant) -> f64 {
    if t >= mark { (t - mark).as_secs_f64() } else { -(mark - t).as_secs_f64() }
}

#[tokio::main]
async fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: link_proxy CONFIG.json");
        return ExitCode::from(2);
    };
    let config: Config = match std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
    {
        Ok(config) => config,
        Err(e) => {
            eprintln!("link_proxy: {path}: {e}");
            return ExitCode::from(2);
        }
    };
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("link_proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), String> {
    let origin = Instant::now();
    let (mut bound, mut shapers) = (serde_json::Map::new(), serde_json::Map::new());
    let mut links = HashMap::new();
    for link in config.links {
        let listener = listen(&link.listen).map_err(|e| format!("cannot listen on {}: {e}", link.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        bound.insert(link.name.clone(), json!(addr.to_string()));
        if link.sink {
            tokio::spawn(serve_http(listener, Arc::new(()), |_, req| sink(req)));
            continue;
        }
        let profile = link.profile.ok_or_else(|| format!("link {} has no profile", link.name))?.profile();
        shapers.insert(link.name.clone(), json!(profile.shaper_bits_per_second()));
        let (cuts, _) = watch::channel(0);
        let run = Run { ledger: Ledger::default(), generation: 0, mark: origin, cut_after: None, cut: None };
        let busy_until = Mutex::new(Duration::ZERO);
        let link = Arc::new(Link {
            config: link,
            profile: RwLock::new(profile),
            run: Mutex::new(run),
            cuts,
            origin,
            busy_until,
        });
        tokio::spawn(accept(link.clone(), listener));
        links.insert(link.config.name.clone(), link);
    }
    let control = TcpListener::bind(&config.control).await.map_err(|e| format!("control {}: {e}", config.control))?;
    let addr = control.local_addr().map_err(|e| e.to_string())?;
    println!("{}", json!({"control": addr.to_string(), "links": bound, "shaper_bits_per_second": shapers}));
    serve_http(control, Arc::new(links), control_request).await;
    Ok(())
}

fn listen(addr: &str) -> std::io::Result<TcpListener> {
    let addr: std::net::SocketAddr =
        addr.parse().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    // Inherited by accepted connections, and set before their handshake so that the window they offer fits it.
    socket.set_recv_buffer_size(RECEIVE_BUFFER)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept(link: Arc<Link>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(link.clone(), stream, Instant::now()));
    }
}

/// A task that is aborted when its handle is dropped.
struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What goes down to the client, in order.
enum Down {
    Bytes {
        at: Instant,
        bytes: Bytes,
        record: Option<RecordId>,
    },
    /// The far side closed: so does the client's connection, once what came before is delivered.
    Close {
        at: Instant,
    },
}

/// One client connection: the requests read from it, and a connection to each destination they went to.
struct Connection {
    link: Arc<Link>,
    down: mpsc::UnboundedSender<Down>,
    accepted: Instant,
    framer: Framer,
    upstreams: HashMap<String, Upstream>,
    /// A `CONNECT` tunnel's destination; `fresh` until its first bytes are seen.
    tunnel: Option<(String, bool)>,
    /// The request whose body is arriving: its destination, its record and whether it is file data.
    current: Option<(String, Option<RecordId>, bool)>,
}

struct Upstream {
    bytes: mpsc::UnboundedSender<(Instant, Bytes)>,
    window: SlowStart,
    ready_at: Instant,
    last_handed_on: Duration,
    /// Requests sent and not answered yet.
    waiting: Arc<Mutex<VecDeque<Option<RecordId>>>>,
    task: tokio::task::JoinHandle<()>,
}

async fn connection(link: Arc<Link>, client: TcpStream, accepted: Instant) {
    let fd = client.as_raw_fd();
    let (mut reader, writer) = client.into_split();
    let (down, from_far_side) = mpsc::unbounded_channel();
    let downlink = tokio::spawn(deliver(link.clone(), writer, from_far_side));
    let mut cut = link.cuts.subscribe();
    let mut conn = Connection {
        link: link.clone(),
        down,
        accepted,
        framer: Framer::default(),
        upstreams: HashMap::new(),
        tunnel: None,
        current: None,
    };
    let mut buffer = vec![0u8; READ_BYTES];
    loop {
        let read = tokio::select! {
            read = reader.read(&mut buffer) => read,
            _ = cut.changed() => return conn.cut(fd, &downlink),
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let now = Instant::now();
        let leaves = match conn.take(now, &buffer[..n]) {
            Ok(leaves) => leaves,
            Err(e) => {
                eprintln!("link_proxy: {}: {e}", link.config.name);
                break;
            }
        };
        // Bytes held back (a handshake, a window) hold the client back too: read nothing more until they leave.
        if leaves > now {
            tokio::select! {
                _ = sleep_until(leaves.into()) => {}
                _ = cut.changed() => return conn.cut(fd, &downlink),
            }
        }
    }
    // Dropping the connection closes what it sends upstream: each upstream connection delivers what it holds, then
    // closes, and the client's closes once their answers are down.
}

impl Connection {
    /// Cuts the client connection and its upstream ones at once, as a link that drops does: the client's is closed
    /// with a reset (`fd` is its socket, open until the caller returns), the far sides see theirs end mid-request.
    fn cut(&self, fd: RawFd, downlink: &tokio::task::JoinHandle<()>) {
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: the socket is open, and setsockopt only reads `linger`.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        downlink.abort();
        self.upstreams.values().for_each(|upstream| upstream.task.abort());
    }

    /// Takes what the client sent; returns when the last of it leaves on the link.
    fn take(&mut self, now: Instant, data: &[u8]) -> Result<Instant, String> {
        if let Some((_, fresh)) = &mut self.tunnel
            && *fresh
        {
            *fresh = false;
            // TLS's first record: not HTTP, passed as it is.
            if data.first() == Some(&0x16) {
                self.framer.raw();
            }
        }
        let mut leaves = now;
        for segment in self.framer.push(data)? {
            let left = match segment {
                Segment::Head { head, has_body } => self.head(now, head, has_body)?,
                Segment::Body { bytes, .. } => {
                    let (destination, record, payload) = self.current.clone().ok_or("a body without a request")?;
                    self.send(&destination, now, Bytes::copy_from_slice(bytes), payload, record, false)?
                }
                Segment::Raw(bytes) => {
                    let destination = self.tunnel.clone().ok_or("raw bytes outside a tunnel")?.0;
                    self.send(&destination, now, Bytes::copy_from_slice(bytes), false, None, false)?
                }
            };
            leaves = leaves.max(left);
        }
        Ok(leaves)
    }

    fn head(&mut self, now: Instant, head: Head, has_body: bool) -> Result<Instant, String> {
        let config = &self.link.config;
        if head.method.eq_ignore_ascii_case("CONNECT") {
            let route = http1::forward_route(&head)?;
            self.tunnel = Some((self.link.destination(route.destination), true));
            let established = Bytes::from_static(b"HTTP/1.1 200 Connection established\r\n\r\n");
            let _ = self.down.send(Down::Bytes { at: now, bytes: established, record: None });
            return Ok(now);
        }
        let mut head = head;
        let (destination, bytes) = match (&config.upstream, &self.tunnel) {
            (Some(upstream), _) => (upstream.clone(), head.raw.clone()),
            (None, Some((tunnel, _))) => (tunnel.clone(), head.raw.clone()),
            (None, None) => {
                let route = http1::forward_route(&head)?;
                head.target = route.target;
                (self.link.destination(route.destination), head.with_target(&head.target))
            }
        };
        let s3 = config.s3.contains(&destination);
        let name = http1::name_of(&head, s3 || config.dynamodb.contains(&destination));
        let payload = has_body && http1::carries_payload(&head, &name, s3);
        let record = RequestRecord { destination: destination.clone(), name, payload, ..Default::default() };
        let id = {
            let mut run = self.link.run();
            let index = run.ledger.add_request(record);
            (run.generation, index)
        };
        self.upstream(&destination, now).waiting.lock().unwrap_or_else(PoisonError::into_inner).push_back(Some(id));
        self.current = has_body.then(|| (destination.clone(), Some(id), payload));
        self.send(&destination, now, Bytes::from(bytes), false, Some(id), true)
    }

    fn upstream(&mut self, destination: &str, now: Instant) -> &mut Upstream {
        let first = self.upstreams.is_empty();
        let link = self.link.clone();
        let down = self.down.clone();
        let accepted = self.accepted;
        self.upstreams.entry(destination.to_string()).or_insert_with(|| {
            let profile = link.profile();
            // The connection's handshake began when the client connected, or, for a further destination on the same
            // proxy connection, when the request for it came.
            let opened = if first { accepted } else { now };
            let ready_at = link.at(profile.ready_at(link.since_origin(opened)));
            link.run().ledger.connection_opened(destination);
            let (bytes, to_send) = mpsc::unbounded_channel();
            let waiting = Arc::new(Mutex::new(VecDeque::new()));
            let task = tokio::spawn(forward(link.clone(), destination.to_string(), to_send, down, waiting.clone()));
            Upstream {
                bytes,
                window: SlowStart::new(&profile),
                ready_at,
                last_handed_on: Duration::ZERO,
                waiting,
                task,
            }
        })
    }

    /// Puts bytes on the link towards `destination`: when they leave (the handshake, the window) and when they reach
    /// the far side (one way later), counted in the run's ledger.
    fn send(
        &mut self,
        destination: &str,
        now: Instant,
        bytes: Bytes,
        payload: bool,
        record: Option<RecordId>,
        starts_request: bool,
    ) -> Result<Instant, String> {
        let (link, accepted) = (self.link.clone(), self.accepted);
        let profile = link.profile();
        let upstream = self.upstream(destination, now);
        let ready = link.since_origin(now.max(upstream.ready_at));
        let pieces = if profile.slow_start {
            upstream.window.schedule(ready, bytes.len() as u64)
        } else {
            vec![(ready, bytes.len() as u64)]
        };
        let mut offset = 0;
        let mut last_leaves = now;
        let read = link.since_origin(now);
        for (ready, len) in pieces {
            let leaves = link.cross(read, ready, len, &profile);
            let handed_on = hand_on_at(leaves, profile.one_way(), upstream.last_handed_on);
            upstream.last_handed_on = handed_on;
            let piece = bytes.slice(offset..offset + len as usize);
            offset += len as usize;
            last_leaves = link.at(leaves);
            let sent =
                Sent { record, leaves: last_leaves, handed_on: link.at(handed_on), len, payload, starts_request };
            link.on_link(accepted, sent);
            upstream.bytes.send((link.at(handed_on), piece)).map_err(|_| format!("{destination} closed"))?;
        }
        Ok(last_leaves)
    }
}

/// Bytes put on the link: which request's, when they leave and reach the far side.
struct Sent {
    record: Option<RecordId>,
    leaves: Instant,
    handed_on: Instant,
    len: u64,
    payload: bool,
    starts_request: bool,
}

impl Link {
    /// Counts bytes of a connection accepted at `accepted` in the run's ledger, and fires an armed cut.
    fn on_link(&self, accepted: Instant, sent: Sent) {
        let Sent { record, leaves, handed_on, len, payload, starts_request } = sent;
        let mut run = self.run();
        if run.cut.is_some_and(|cut| accepted < cut) {
            return;
        }
        let (t, delivered) = (seconds_since(run.mark, leaves), seconds_since(run.mark, handed_on));
        run.ledger.on_link(t, len, payload);
        if payload && run.cut.is_some() {
            run.ledger.resumed(t);
        }
        if starts_request {
            run.ledger.request_started(t);
        }
        if let Some(r) = record.and_then(|id| run.record(id)) {
            if starts_request {
                r.first_on_link = t;
            } else {
                r.body_bytes += len;
            }
            r.last_on_link = t;
            r.last_delivered = delivered;
        }
        if payload && run.cut_after.is_some_and(|after| run.ledger.payload_bytes() >= after) {
            run.cut_after = None;
            let now = Instant::now();
            run.cut = Some(now);
            let at = seconds_since(run.mark, now);
            run.ledger.cut(at);
            self.cuts.send_modify(|cuts| *cuts += 1);
        }
    }
}

/// One connection to a destination: the bytes for it, each at its time; its answers go down to the client.
async fn forward(
    link: Arc<Link>,
    destination: String,
    mut to_send: mpsc::UnboundedReceiver<(Instant, Bytes)>,
    down: mpsc::UnboundedSender<Down>,
    waiting: Arc<Mutex<VecDeque<Option<RecordId>>>>,
) {
    let stream = match TcpStream::connect(&destination).await {
        Ok(stream) => stream,
        Err(e) => {
            eprintln!("link_proxy: {}: cannot reach {destination}: {e}", link.config.name);
            let refused = "HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
            let _ = down.send(Down::Bytes { at: Instant::now(), bytes: Bytes::from(refused), record: None });
            let _ = down.send(Down::Close { at: Instant::now() });
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = stream.into_split();
    // Aborted with this task (a cut); otherwise awaited, as the far side answers what it was sent, then closes.
    let mut answers = Task(tokio::spawn(answers(link, reader, down, waiting)));
    while let Some((at, bytes)) = to_send.recv().await {
        hand_on(at).await;
        if writer.write_all(&bytes).await.is_err() {
            break;
        }
    }
    let _ = writer.shutdown().await;
    let _ = (&mut answers.0).await;
}

/// A destination's answers, one way later at the client.
async fn answers(
    link: Arc<Link>,
    mut reader: OwnedReadHalf,
    down: mpsc::UnboundedSender<Down>,
    waiting: Arc<Mutex<VecDeque<Option<RecordId>>>>,
) {
    let mut buffer = vec![0u8; READ_BYTES];
    let mut last = Duration::ZERO;
    loop {
        let n = match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let now = Instant::now();
        let status = http1::status_of(&buffer[..n]);
        // An interim 100 Continue is not the answer yet.
        let record = if status == Some(100) {
            None
        } else {
            waiting.lock().unwrap_or_else(PoisonError::into_inner).pop_front().flatten()
        };
        if let Some(id) = record {
            link.answered(id, now, status);
        }
        last = hand_on_at(link.since_origin(now), link.profile().one_way(), last);
        let bytes = Bytes::copy_from_slice(&buffer[..n]);
        if down.send(Down::Bytes { at: link.at(last), bytes, record }).is_err() {
            return;
        }
    }
    let at = link.at(hand_on_at(link.since_origin(Instant::now()), link.profile().one_way(), last));
    let _ = down.send(Down::Close { at });
}

/// Writes what comes down to the client, each piece at its time.
async fn deliver(link: Arc<Link>, mut writer: OwnedWriteHalf, mut from_far_side: mpsc::UnboundedReceiver<Down>) {
    while let Some(down) = from_far_side.recv().await {
        match down {
            Down::Bytes { at, bytes, record } => {
                hand_on(at).await;
                if writer.write_all(&bytes).await.is_err() {
                    return;
                }
                link.delivered(Instant::now(), bytes.len(), record);
            }
            Down::Close { at } => {
                hand_on(at).await;
                let _ = writer.shutdown().await;
                return;
            }
        }
    }
}

/// Waits until bytes are due. Tokio's timer fires on the first millisecond tick after a deadline: aiming half a
/// tick early centres the delay line's error on zero instead of adding half a millisecond to every hop.
async fn hand_on(at: Instant) {
    sleep_until(at.checked_sub(TIMER_TICK / 2).unwrap_or(at).into()).await;
}

// ------------------------------------------------------------------------------------------- HTTP servers

async fn serve_http<S, F, Fut>(listener: TcpListener, state: Arc<S>, handle: F)
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, Request<Incoming>) -> Fut + Copy + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(state, req).await) }
            });
            let _ = server::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn json_response(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
}

async fn control_request(links: Arc<HashMap<String, Arc<Link>>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let named = || query.get("link").and_then(|name| links.get(name)).ok_or("no such link (?link=NAME)");
    let path = req.uri().path().to_string();
    let outcome: Result<Value, String> = match (req.method().as_str(), path.as_str()) {
        ("POST", "/mark") => {
            links.values().for_each(|link| link.mark());
            Ok(json!({}))
        }
        ("POST", "/cut") => named().map_err(str::to_string).and_then(|link| {
            let after = query.get("after").and_then(|n| n.parse().ok()).ok_or("after=BYTES is needed")?;
            link.run().cut_after = Some(after);
            Ok(json!({}))
        }),
        ("POST", "/profile") => match named() {
            Ok(link) => {
                let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                serde_json::from_slice::<ProfileConfig>(&body).map_err(|e| e.to_string()).map(|p| {
                    let profile = p.profile();
                    *link.profile.write().unwrap_or_else(PoisonError::into_inner) = profile;
                    json!({ "shaper_bits_per_second": profile.shaper_bits_per_second() })
                })
            }
            Err(e) => Err(e.to_string()),
        },
        ("GET", "/report") => {
            Ok(Value::Object(links.iter().map(|(name, link)| (name.clone(), link.report())).collect()))
        }
        _ => Err(format!("no such control: {path}")),
    };
    match outcome {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => json_response(StatusCode::BAD_REQUEST, json!({ "error": e })),
    }
}

/// Reads a request's body and answers how many bytes came and the seconds from the first to the last.
async fn sink(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let mut body = req.into_body();
    let (mut bytes, mut first, mut last) = (0u64, None, None);
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref().filter(|d| !d.is_empty()) {
            let now = Instant::now();
            first.get_or_insert(now);
            last = Some(now);
            bytes += data.len() as u64;
        }
    }
    let seconds = match (first, last) {
        (Some(first), Some(last)) => (last - first).as_secs_f64(),
        _ => 0.0,
    };
    json_response(StatusCode::OK, json!({ "bytes": bytes, "seconds": seconds }))
}
