//! tus answers: mostly headers, `Tus-Resumable` on every one, and errors as a short text line in tusd's form
//! (`ERR_CODE: what happened`), which tus clients show their users as it is.

use lambda_http::Body;
use lambda_http::Response;
use lambda_http::http::{HeaderName, HeaderValue, StatusCode};

use super::headers::{TUS_RESUMABLE, VERSION};
use crate::error::ApiError;

/// A tus answer being built.
pub struct Answer {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: String,
}

impl Answer {
    pub fn new(status: StatusCode) -> Self {
        Answer { status, headers: Vec::new(), body: String::new() }
    }

    /// Adds a header; a value that cannot be one (it never comes from a client) is left out.
    pub fn header(mut self, name: &'static str, value: impl ToString) -> Self {
        if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
            self.headers.push((HeaderName::from_static(name), value));
        }
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The text body of an error, for the log.
    pub fn detail(&self) -> Option<&str> {
        Some(self.body.trim_end()).filter(|b| !b.is_empty())
    }

    /// The HTTP response; a HEAD's has no body.
    pub fn into_response(self, head: bool) -> Response<Body> {
        let mut response =
            Response::new(if head || self.body.is_empty() { Body::Empty } else { Body::Text(self.body.clone()) });
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(TUS_RESUMABLE, HeaderValue::from_static(VERSION));
        if !self.body.is_empty() {
            headers.insert("content-type", HeaderValue::from_static("text/plain; charset=utf-8"));
        }
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}

/// Why a tus request is refused.
#[derive(Debug)]
pub enum TusError {
    /// The service's own refusals, in tus's statuses.
    Api(ApiError),
    /// `Tus-Resumable` missing or another version: 412, with `Tus-Version`.
    Version,
    /// The body does not match its `Upload-Checksum`: 460, and nothing of it is kept.
    ChecksumMismatch(&'static str),
    /// An `Upload-Checksum` algorithm not served: 400.
    UnsupportedChecksum(String),
    /// HEAD of an upload being completed, or whose completion failed for now: 423, which tus clients retry (they
    /// start over after any other refusal of a HEAD).
    Locked(String),
}

impl From<ApiError> for TusError {
    fn from(e: ApiError) -> Self {
        TusError::Api(e)
    }
}

impl TusError {
    fn status_code_and_message(&self) -> (u16, &'static str, String) {
        match self {
            TusError::Version => (412, "ERR_UNSUPPORTED_VERSION", format!("send Tus-Resumable: {VERSION}")),
            TusError::ChecksumMismatch(algorithm) => (
                460,
                "ERR_CHECKSUM_MISMATCH",
                format!("the body does not match its {algorithm} checksum; nothing of it was kept"),
            ),
            TusError::Locked(why) => (423, "ERR_UPLOAD_LOCKED", format!("{why}; retry shortly")),
            TusError::UnsupportedChecksum(algorithm) => (
                400,
                "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM",
                format!("checksum algorithm {algorithm:?} is not one of {}", super::checksum::ALGORITHMS),
            ),
            TusError::Api(e) => {
                let message = e.to_string();
                match e {
                    ApiError::BadRequest(_) => (400, "ERR_BAD_REQUEST", message),
                    ApiError::OffsetMismatch { offset } => (
                        409,
                        "ERR_MISMATCHED_OFFSET",
                        format!("the upload is at offset {offset}: send a HEAD request, then go on from there"),
                    ),
                    ApiError::AlreadyComplete { .. } => (409, "ERR_UPLOAD_COMPLETE", "the upload is complete".into()),
                    ApiError::Unauthenticated => (403, "ERR_UNAUTHENTICATED", message),
                    ApiError::Forbidden(_) => (403, "ERR_FORBIDDEN", message),
                    ApiError::NotFound => (404, "ERR_UPLOAD_NOT_FOUND", "upload not found".into()),
                    ApiError::Expired => {
                        (410, "ERR_UPLOAD_GONE", "the upload expired or its bytes are gone: start a new one".into())
                    }
                    ApiError::OverLimit(_) => (429, "ERR_OVER_LIMIT", message),
                    ApiError::MethodNotAllowed { .. } => (405, "ERR_METHOD_NOT_ALLOWED", message),
                    ApiError::PayloadTooLarge(_) => (413, "ERR_TOO_LARGE", message),
                    ApiError::UnsupportedMediaType(_) => (415, "ERR_INVALID_CONTENT_TYPE", message),
                    // A request lost a race, or the upload is being completed: retry (tus clients retry 409 and
                    // ask HEAD where the upload stands).
                    ApiError::Conflict(_) => (409, "ERR_CONFLICT", message),
                    ApiError::Unavailable(_) => (503, "ERR_UNAVAILABLE", message),
                    ApiError::Ambiguous(_) => (503, "ERR_UNAVAILABLE", message),
                    ApiError::Unrecoverable(_) => (422, "ERR_UNRECOVERABLE", message),
                    // S3 is assembling the object: tus clients retry a 423, and HEAD answers once it is done.
                    ApiError::StillCompleting { .. } => (423, "ERR_UPLOAD_LOCKED", message),
                }
            }
        }
    }

    pub fn answer(&self) -> Answer {
        let (status, code, message) = self.status_code_and_message();
        let mut answer = Answer::new(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST));
        answer.body = format!("{code}: {message}\n");
        match self {
            TusError::Version => answer.header("tus-version", VERSION),
            TusError::Api(ApiError::MethodNotAllowed { allow }) => answer.header("allow", allow),
            TusError::Api(ApiError::StillCompleting { retry_after_secs }) => {
                answer.header("retry-after", retry_after_secs)
            }
            _ => answer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_a_text_line_with_their_code() {
        let response = TusError::ChecksumMismatch("sha1").answer().into_response(false);
        assert_eq!(response.status().as_u16(), 460);
        assert_eq!(response.headers()["tus-resumable"], "1.0.0");
        assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
        let Body::Text(text) = response.body() else { panic!("a text body") };
        assert!(text.starts_with("ERR_CHECKSUM_MISMATCH: ") && text.ends_with('\n'), "{text}");
        let version = TusError::Version.answer().into_response(true);
        assert_eq!(
            (version.status().as_u16(), &version.headers()["tus-version"]),
            (412, &HeaderValue::from_static("1.0.0"))
        );
        assert!(matches!(version.body(), Body::Empty));
        assert_eq!(TusError::from(ApiError::OffsetMismatch { offset: 7 }).answer().status(), StatusCode::CONFLICT);
    }
}
