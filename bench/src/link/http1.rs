//! Requests on an HTTP/1.1 connection, as a proxy in the middle sees them: where each head ends and its body
//! begins and ends (`Content-Length` or chunked), where each goes (absolute-form, `CONNECT` or a fixed upstream),
//! and what it is (an S3 or DynamoDB operation, or a route of an API; file data or not). The bytes themselves pass
//! unchanged, but for a forward proxy's request line, which is rewritten to origin-form.

use integration_tests::proxy::operation;

/// A head larger than this is refused: no client of the benchmark sends one.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Headers a request may carry.
const MAX_HEADERS: usize = 100;

/// A request's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    /// As sent: origin-form (`/path?query`), absolute-form (`http://host/path`) or, for `CONNECT`, `host:port`.
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// The head as it arrived, terminating blank line included.
    pub raw: Vec<u8>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn body(&self) -> Result<Body, String> {
        if self.method.eq_ignore_ascii_case("CONNECT") {
            return Ok(Body::Length(0));
        }
        let chunked = self.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            return Ok(Body::Chunked(Chunked::default()));
        }
        match self.header("content-length") {
            Some(n) => n.trim().parse().map(Body::Length).map_err(|_| format!("bad Content-Length {n:?}")),
            None => Ok(Body::Length(0)),
        }
    }

    /// The head again with `target` in its request line and without the headers meant for the proxy.
    pub fn with_target(&self, target: &str) -> Vec<u8> {
        let mut head = format!("{} {target} HTTP/1.1\r\n", self.method);
        for (name, value) in &self.headers {
            if !name.to_ascii_lowercase().starts_with("proxy-") {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        head.push_str("\r\n");
        head.into_bytes()
    }
}

/// A piece of what arrived, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Segment<'a> {
    /// A complete head; `has_body` says whether body bytes follow.
    Head { head: Head, has_body: bool },
    /// Body bytes (a chunked body's framing included); `ends` on the piece that completes the body.
    Body { bytes: &'a [u8], ends: bool },
    /// Bytes after a tunnel was opened that are not HTTP (TLS inside a `CONNECT`).
    Raw(&'a [u8]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Length(u64),
    Chunked(Chunked),
}

/// Where a chunked body stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunked {
    /// In a chunk-size line: the size so far, and whether an extension (after `;`) began.
    Size(u64, bool),
    Data(u64),
    /// After a chunk's data: its CRLF (bytes of it left).
    DataEnd(u8),
    /// In the trailer section: the length of the current line so far.
    Trailer(usize),
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked::Size(0, false)
    }
}

#[derive(Debug)]
enum State {
    Head,
    Body(Body),
    Raw,
}

/// Splits a connection's bytes into requests.
#[derive(Debug)]
pub struct Framer {
    state: State,
    head: Vec<u8>,
}

impl Default for Framer {
    fn default() -> Self {
        Framer { state: State::Head, head: Vec::new() }
    }
}

impl Framer {
    /// From now on the bytes are not HTTP (a tunnel carrying TLS).
    pub fn raw(&mut self) {
        self.state = State::Raw;
    }

    /// The segments in `data`, which follows what was pushed before.
    pub fn push<'a>(&mut self, mut data: &'a [u8]) -> Result<Vec<Segment<'a>>, String> {
        let mut segments = Vec::new();
        while !data.is_empty() {
            match &mut self.state {
                State::Raw => {
                    segments.push(Segment::Raw(data));
                    data = &[];
                }
                State::Head => {
                    let (taken, complete) = head_end(&self.head, data);
                    self.head.extend_from_slice(&data[..taken]);
                    data = &data[taken..];
                    if !complete {
                        if self.head.len() > MAX_HEAD_BYTES {
                            return Err("a request head over 64 KiB".into());
                        }
                        continue;
                    }
                    let head = parse_head(std::mem::take(&mut self.head))?;
                    let body = head.body()?;
                    let has_body = body != Body::Length(0);
                    self.state = if has_body { State::Body(body) } else { State::Head };
                    segments.push(Segment::Head { head, has_body });
                }
                State::Body(body) => {
                    let (taken, ends) = advance(body, data);
                    segments.push(Segment::Body { bytes: &data[..taken], ends });
                    data = &data[taken..];
                    if ends {
                        self.state = State::Head;
                    }
                }
            }
        }
        Ok(segments)
    }
}

/// How many bytes of `data` belong to a head of which `so_far` arrived, and whether they complete it.
fn head_end(so_far: &[u8], data: &[u8]) -> (usize, bool) {
    const END: &[u8] = b"\r\n\r\n";
    // The terminator may straddle what arrived before and `data`.
    let tail = &so_far[so_far.len().saturating_sub(3)..];
    let mut window: Vec<u8> = tail.to_vec();
    for (i, &b) in data.iter().enumerate() {
        window.push(b);
        if window.ends_with(END) {
            return (i + 1, true);
        }
        if window.len() > 3 {
            window.remove(0);
        }
    }
    (data.len(), false)
}

fn parse_head(raw: Vec<u8>) -> Result<Head, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(&raw) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("an incomplete request head".into()),
        Err(e) => return Err(format!("a malformed request head: {e}")),
    }
    let method = request.method.unwrap_or_default().to_string();
    let target = request.path.unwrap_or_default().to_string();
    let headers =
        request.headers.iter().map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned())).collect();
    Ok(Head { method, target, headers, raw })
}

/// Moves a body's state over `data`: the bytes of it taken, and whether they end it.
fn advance(body: &mut Body, data: &[u8]) -> (usize, bool) {
    match body {
        Body::Length(left) => {
            let taken = (*left).min(data.len() as u64);
            *left -= taken;
            (taken as usize, *left == 0)
        }
        Body::Chunked(state) => {
            let mut i = 0;
            while i < data.len() {
                let b = data[i];
                match *state {
                    Chunked::Size(size, extension) => {
                        *state = match b {
                            b'\n' if size == 0 => Chunked::Trailer(0),
                            b'\n' => Chunked::Data(size),
                            b';' => Chunked::Size(size, true),
                            _ if extension => Chunked::Size(size, true),
                            _ => match (b as char).to_digit(16) {
                                Some(d) => Chunked::Size(size.saturating_mul(16) + u64::from(d), false),
                                None => Chunked::Size(size, false), // the CR, or whitespace
                            },
                        };
                        i += 1;
                    }
                    Chunked::Data(left) => {
                        let taken = left.min((data.len() - i) as u64);
                        i += taken as usize;
                        *state = if taken == left { Chunked::DataEnd(2) } else { Chunked::Data(left - taken) };
                    }
                    Chunked::DataEnd(left) => {
                        *state = if left == 1 { Chunked::default() } else { Chunked::DataEnd(left - 1) };
                        i += 1;
                    }
                    Chunked::Trailer(line) => {
                        i += 1;
                        match b {
                            b'\n' if line == 0 => {
                                *state = Chunked::default();
                                return (i, true);
                            }
                            b'\n' => *state = Chunked::Trailer(0),
                            b'\r' => {}
                            _ => *state = Chunked::Trailer(line + 1),
                        }
                    }
                }
            }
            (data.len(), false)
        }
    }
}

/// Where a request goes, and the request line's target to send there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `host:port`.
    pub destination: String,
    pub target: String,
}

/// A forward proxy's reading of a head: `CONNECT host:port`, an absolute-form URL, or else the `Host` header.
pub fn forward_route(head: &Head) -> Result<Route, String> {
    if head.method.eq_ignore_ascii_case("CONNECT") {
        return Ok(Route { destination: with_port(&head.target), target: head.target.clone() });
    }
    if let Some(rest) = head.target.strip_prefix("http://") {
        let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
        return Ok(Route { destination: with_port(authority), target: path.to_string() });
    }
    if head.target.starts_with("https://") {
        return Err("https:// in absolute form: a client speaks TLS through CONNECT".into());
    }
    let host = head.header("host").ok_or("an origin-form request without a Host header")?;
    Ok(Route { destination: with_port(host), target: head.target.clone() })
}

fn with_port(authority: &str) -> String {
    let has_port = authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok());
    if has_port { authority.to_string() } else { format!("{authority}:80") }
}

/// What a request is: the S3 or DynamoDB operation for storage (`storage`: its destination is S3 or DynamoDB), else
/// the method and path with ids as `{id}` and numbers as `{n}`.
pub fn name_of(head: &Head, storage: bool) -> String {
    if storage {
        return storage_operation(head);
    }
    let path = head.target.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path
        .split('/')
        .map(|s| match s {
            _ if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => "{n}",
            _ if s.len() >= 16 => "{id}",
            _ => s,
        })
        .collect();
    format!("{} {}", head.method, segments.join("/"))
}

fn storage_operation(head: &Head) -> String {
    // A browser's CORS preflight, and its form upload with a presigned POST, which the SDKs never send.
    if head.method.eq_ignore_ascii_case("OPTIONS") {
        return "Preflight".into();
    }
    if head.method.eq_ignore_ascii_case("POST") && media_type(head) == "multipart/form-data" {
        return "PostObject".into();
    }
    let mut request = hyper::Request::builder().method(head.method.as_str()).uri(head.target.as_str());
    if let Some(target) = head.header("x-amz-target") {
        request = request.header("x-amz-target", target);
    }
    request.body(()).map(|r| operation(&r)).unwrap_or_else(|_| "Other".into())
}

/// Whether a request's body is file data: S3's `UploadPart`, `PutObject` and `PostObject`, and elsewhere the bodies
/// of binary or form types (a chunk, a tus `PATCH`), not JSON or XML.
pub fn carries_payload(head: &Head, name: &str, s3: bool) -> bool {
    if s3 {
        return matches!(name, "UploadPart" | "PutObject" | "PostObject");
    }
    matches!(head.method.as_str(), "POST" | "PUT" | "PATCH")
        && matches!(
            media_type(head).as_str(),
            "application/octet-stream" | "application/offset+octet-stream" | "multipart/form-data"
        )
}

fn media_type(head: &Head) -> String {
    let content_type = head.header("content-type").unwrap_or_default().to_ascii_lowercase();
    content_type.split(';').next().unwrap_or_default().trim().to_string()
}

/// The status of an answer whose first bytes are `start`, when they hold its status line: `HTTP/1.1 200 OK`.
pub fn status_of(start: &[u8]) -> Option<u16> {
    let line = start.strip_prefix(b"HTTP/1.")?;
    std::str::from_utf8(line.get(2..5)?).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads_and_bodies(framer: &mut Framer, data: &[u8]) -> Vec<String> {
        framer
            .push(data)
            .unwrap()
            .into_iter()
            .map(|s| match s {
                Segment::Head { head, has_body } => format!("head {} {} {has_body}", head.method, head.target),
                Segment::Body { bytes, ends } => format!("body {} {ends}", bytes.len()),
                Segment::Raw(bytes) => format!("raw {}", bytes.len()),
            })
            .collect()
    }

    #[test]
    fn requests_with_lengths_split_wherever_the_reads_fall() {
        let wire = b"PUT /b/k?partNumber=1 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\n\r\n";
        let mut framer = Framer::default();
        assert_eq!(
            heads_and_bodies(&mut framer, wire),
            ["head PUT /b/k?partNumber=1 true", "body 5 true", "head GET /b false"]
        );
        // The same bytes one at a time: the head's terminator straddles reads, the body comes byte by byte.
        let mut framer = Framer::default();
        let one_by_one: Vec<String> = wire.iter().flat_map(|b| heads_and_bodies(&mut framer, &[*b])).collect();
        assert_eq!(one_by_one.len(), 1 + 5 + 1);
        assert_eq!(one_by_one[5], "body 1 true");
    }

    #[test]
    fn a_chunked_body_ends_after_its_trailer() {
        const BODY: &[u8] = b"4;ext=1\r\nabcd\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\n";
        let wire = [b"PATCH /files/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", BODY, b"GET / HTTP/1.1\r\n\r\n"]
            .concat();
        let mut framer = Framer::default();
        assert_eq!(
            heads_and_bodies(&mut framer, &wire),
            ["head PATCH /files/x true".to_string(), format!("body {} true", BODY.len()), "head GET / false".into()]
        );
        let mut framer = Framer::default();
        let one_by_one: Vec<String> = wire.iter().flat_map(|b| heads_and_bodies(&mut framer, &[*b])).collect();
        assert_eq!(one_by_one.iter().filter(|s| *s == "body 1 true").count(), 1);
        assert_eq!(one_by_one.len(), 1 + BODY.len() + 1);
        assert_eq!(one_by_one.last().unwrap(), "head GET / false");
    }

    #[test]
    fn a_tunnel_carrying_tls_is_passed_raw() {
        let mut framer = Framer::default();
        assert_eq!(heads_and_bodies(&mut framer, b"CONNECT s3:443 HTTP/1.1\r\n\r\n"), ["head CONNECT s3:443 false"]);
        framer.raw();
        assert_eq!(heads_and_bodies(&mut framer, &[0x16, 3, 1]), ["raw 3"]);
    }

    #[test]
    fn bad_heads_are_errors() {
        assert!(Framer::default().push(b"NOT HTTP\r\n\r\n").is_err());
        assert!(Framer::default().push(b"PUT / HTTP/1.1\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(Framer::default().push(&vec![b'a'; 70_000]).is_err());
    }

    fn head(method: &str, target: &str, headers: &[(&str, &str)]) -> Head {
        let headers = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        Head { method: method.into(), target: target.into(), headers, raw: Vec::new() }
    }

    #[test]
    fn a_forward_proxy_routes_by_absolute_form_connect_or_host() {
        let absolute = head("PUT", "http://127.0.0.1:4566/b/k?x=1", &[("Proxy-Connection", "keep-alive")]);
        let route = forward_route(&absolute).unwrap();
        assert_eq!(route, Route { destination: "127.0.0.1:4566".into(), target: "/b/k?x=1".into() });
        assert_eq!(absolute.with_target(&route.target), b"PUT /b/k?x=1 HTTP/1.1\r\n\r\n");
        assert_eq!(forward_route(&head("GET", "http://example.com", &[])).unwrap().destination, "example.com:80");
        assert_eq!(forward_route(&head("CONNECT", "h:8443", &[])).unwrap().target, "h:8443");
        assert_eq!(forward_route(&head("GET", "/x", &[("Host", "a:1")])).unwrap().destination, "a:1");
        assert!(forward_route(&head("GET", "https://a/", &[])).is_err());
    }

    #[test]
    fn requests_are_named_and_file_data_is_told_apart() {
        let part = head("PUT", "/b/k?partNumber=3&uploadId=x", &[]);
        assert_eq!(name_of(&part, true), "UploadPart");
        assert!(carries_payload(&part, "UploadPart", true));
        let dynamo = head("POST", "/", &[("X-Amz-Target", "DynamoDB_20120810.UpdateItem")]);
        assert_eq!(name_of(&dynamo, true), "UpdateItem");
        let parts =
            head("POST", "/upload/0123456789abcdef0123456789abcdef/parts", &[("content-type", "application/json")]);
        assert_eq!(name_of(&parts, false), "POST /upload/{id}/parts");
        assert!(!carries_payload(&parts, "", false));
        let chunk = head("POST", "/upload?upload_id=ab", &[("Content-Type", "application/octet-stream")]);
        assert_eq!(name_of(&chunk, false), "POST /upload");
        assert!(carries_payload(&chunk, "", false));
        let patch = head("PATCH", "/files/abc", &[("content-type", "application/offset+octet-stream")]);
        assert!(carries_payload(&patch, "", false));
        assert_eq!(name_of(&head("GET", "/s3/multipart/x/12", &[]), false), "GET /s3/multipart/x/{n}");
        // A browser's preflight, and a presigned POST form upload (Uppy's for files of one part).
        assert_eq!(name_of(&head("OPTIONS", "/b/k?partNumber=1", &[]), true), "Preflight");
        let form = head("POST", "/b", &[("Content-Type", "multipart/form-data; boundary=x")]);
        assert_eq!(name_of(&form, true), "PostObject");
        assert!(carries_payload(&form, "PostObject", true));
    }

    #[test]
    fn an_answers_status_is_read_from_its_first_bytes() {
        assert_eq!(status_of(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_of(b"HTTP/1.1 1"), None);
        assert_eq!(status_of(b"garbage"), None);
    }
}
