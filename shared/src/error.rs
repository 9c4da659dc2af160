//! The one error type of the service, and the one place it becomes an HTTP status and a JSON body.

use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// START differs from the upload's offset; the body carries the offset so the client can resume.
    #[error("Offsets do not match")]
    OffsetMismatch { offset: u64 },
    /// The upload is complete; the body repeats its result.
    #[error("Upload has already been completed")]
    AlreadyComplete { result: Value },
    #[error("Authentication credentials were not provided")]
    Unauthenticated,
    /// The caller is known but may not do this (an anonymous caller's listing).
    #[error("{0}")]
    Forbidden(String),
    /// Unknown, malformed, or someone else's upload: indistinguishable on purpose.
    #[error("Upload not found")]
    NotFound,
    #[error("Upload expired")]
    Expired,
    /// The caller is over one of its per-owner limits (uploads or bytes in progress).
    #[error("{0}")]
    OverLimit(String),
    /// The path is a route's, but not with this method; `allow` lists those it has. Only where API Gateway passes
    /// every request on (a `$default` route, a REST API's `{proxy+}`): an HTTP API answers 404 itself otherwise.
    #[error("Method not allowed")]
    MethodNotAllowed { allow: String },
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request lost a race with another one and the state it needs is gone; retrying is safe.
    #[error("{0}")]
    Conflict(String),
    /// S3 or DynamoDB failed, throttled or ran past the request's deadline before anything was accepted; retrying
    /// is safe.
    #[error("Storage is unavailable, retry later")]
    Unavailable(String),
    /// The write that accepts the request failed in a way that does not say whether it landed: the client asks for
    /// the upload's status (its offset) before sending again.
    #[error("The request may or may not have been accepted; ask for the upload's status before resending")]
    Ambiguous(String),
    /// S3 is still assembling the object (a CompleteMultipartUpload of thousands of parts may outlast a request),
    /// or another request is completing the upload: the client repeats complete after `retry_after_secs`, and gets
    /// the result once it is done.
    #[error(
        "The upload is being completed: S3 is assembling the object. Repeat complete after the Retry-After seconds to \
         get its result"
    )]
    StillCompleting { retry_after_secs: u64 },
    /// The upload is in a state no retry can repair (a damaged record, a part that changed in S3, S3's part numbers
    /// used up): the detail says what to do, and clients do not retry it.
    #[error("{0}")]
    Unrecoverable(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::OffsetMismatch { .. } | ApiError::AlreadyComplete { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::StillCompleting { .. } => StatusCode::ACCEPTED,
            ApiError::Unauthenticated | ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Expired => StatusCode::GONE,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::OverLimit(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) | ApiError::Ambiguous(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unrecoverable(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    pub fn body(&self) -> Value {
        let mut body = match self {
            ApiError::AlreadyComplete { result } => result.clone(),
            _ => json!({}),
        };
        body["detail"] = json!(self.to_string());
        match self {
            ApiError::OffsetMismatch { offset } => body["offset"] = json!(offset),
            ApiError::StillCompleting { retry_after_secs } => {
                body["status"] = json!("completing");
                body["retry_after"] = json!(retry_after_secs);
            }
            _ => {}
        }
        body
    }

    pub fn to_response(&self) -> Response<Body> {
        let mut response = json_response(self.status(), &self.body());
        match self {
            ApiError::MethodNotAllowed { allow } => {
                if let Ok(value) = HeaderValue::from_str(allow) {
                    response.headers_mut().insert("allow", value);
                }
            }
            ApiError::StillCompleting { retry_after_secs } => {
                response.headers_mut().insert("retry-after", HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        response
    }
}

pub fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::Text(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_mismatch_carries_offset() {
        let e = ApiError::OffsetMismatch { offset: 42 };
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(e.body(), json!({"detail": "Offsets do not match", "offset": 42}));
    }

    #[test]
    fn already_complete_repeats_result() {
        let e = ApiError::AlreadyComplete { result: json!({"key": "k"}) };
        assert_eq!(e.body(), json!({"key": "k", "detail": "Upload has already been completed"}));
    }
}
