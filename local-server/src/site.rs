//! The static side of the local server: the demo page and the browser client, and CORS answers like those the
//! template configures on the HTTP API.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};

/// Folders served as they are, below the site root (`examples/`: the Uppy page, examples/uppy/README.md).
const SERVED: [&str; 3] = ["demo", "client", "examples"];

pub struct Site {
    root: PathBuf,
    /// `CHUNKED_UPLOAD_CORS_ORIGINS`: `*` or a comma-separated list of origins.
    origins: Vec<String>,
}

impl Site {
    /// `CHUNKED_UPLOAD_STATIC_DIR` (default: the current directory) holds `demo/` and `client/`.
    pub fn from_env() -> Result<Self, String> {
        let root = PathBuf::from(std::env::var("CHUNKED_UPLOAD_STATIC_DIR").unwrap_or_else(|_| ".".into()));
        let origins = std::env::var("CHUNKED_UPLOAD_CORS_ORIGINS").unwrap_or_else(|_| "*".into());
        let origins: Vec<String> =
            origins.split(',').map(str::trim).filter(|o| !o.is_empty()).map(str::to_string).collect();
        if origins.is_empty() {
            return Err("invalid configuration: CHUNKED_UPLOAD_CORS_ORIGINS: give `*` or a list of origins".into());
        }
        Ok(Site { root, origins })
    }

    /// Answers preflights and static files; `None` for what goes to the API. A preflight is an OPTIONS with `Origin`
    /// and `Access-Control-Request-Method`, which an HTTP API with CORS configured answers itself; any other OPTIONS
    /// (tus's discovery) goes to the API, as there.
    pub async fn answer(&self, method: &Method, path: &str, headers: &HeaderMap) -> Option<Response<Full<Bytes>>> {
        if method == Method::OPTIONS
            && headers.contains_key("origin")
            && headers.contains_key("access-control-request-method")
        {
            return Some(status(StatusCode::NO_CONTENT));
        }
        if method != Method::GET && method != Method::HEAD {
            return None;
        }
        let relative = if path == "/" { "demo/index.html" } else { path.strip_prefix('/')? };
        let mut segments = relative.split('/');
        if !SERVED.contains(&segments.next()?) {
            return None;
        }
        // Only plain names: no `..`, no empty or hidden segments, no backslashes.
        if !segments.all(|s| !s.is_empty() && !s.starts_with('.') && !s.contains('\\')) {
            return Some(status(StatusCode::NOT_FOUND));
        }
        Some(self.file(&self.root.join(relative)).await)
    }

    async fn file(&self, path: &Path) -> Response<Full<Bytes>> {
        match tokio::fs::read(path).await {
            Ok(bytes) => {
                let mut response = Response::new(Full::new(Bytes::from(bytes)));
                response.headers_mut().insert("content-type", HeaderValue::from_static(content_type(path)));
                response.headers_mut().insert("cache-control", HeaderValue::from_static("no-cache"));
                response
            }
            Err(_) => status(StatusCode::NOT_FOUND),
        }
    }

    /// The CORS headers for a request from `origin`.
    pub fn add_cors(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        let allowed = if self.origins.iter().any(|o| o == "*") {
            HeaderValue::from_static("*")
        } else {
            match origin.filter(|o| self.origins.iter().any(|allowed| allowed.as_bytes() == o.as_bytes())) {
                Some(origin) => origin.clone(),
                None => return,
            }
        };
        headers.insert("access-control-allow-origin", allowed);
        headers.insert(
            "access-control-allow-methods",
            HeaderValue::from_static("GET, POST, PATCH, HEAD, DELETE, OPTIONS"),
        );
        // As the template's CORS configuration: the service's headers, and tus's (tusd's list, with
        // Upload-Checksum).
        headers.insert(
            "access-control-allow-headers",
            HeaderValue::from_static(
                "authorization, content-type, content-range, content-disposition, x-upload-secret, x-checksum-crc64nvme, \
                 tus-resumable, upload-length, upload-offset, upload-metadata, upload-defer-length, upload-concat, \
                 upload-checksum, x-http-method-override, x-request-id, x-requested-with",
            ),
        );
        // Scripts on other origins may read an anonymous upload's secret from the first answer's header, and a tus
        // client the answers' tus headers.
        headers.insert(
            "access-control-expose-headers",
            HeaderValue::from_static(
                "x-upload-secret, location, upload-offset, upload-length, upload-expires, upload-metadata, \
                 upload-defer-length, upload-concat, tus-resumable, tus-version, tus-extension, tus-max-size, \
                 tus-checksum-algorithm, retry-after",
            ),
        );
        headers.insert("access-control-max-age", HeaderValue::from_static("600"));
        headers.append("vary", HeaderValue::from_static("origin"));
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    response
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("md") => "text/markdown; charset=utf-8",
        _ => "application/octet-stream",
    }
}
