//! The tus request headers, each parsed into what it means: offsets and lengths, the concatenation, the version,
//! the content type of a body, and the method a client that cannot send PATCH or DELETE asks for.

use lambda_http::Request;
use lambda_http::http::Method;

use super::answer::TusError;
use crate::error::ApiError;
use crate::protocol::UploadId;
use crate::request::header;

pub const TUS_RESUMABLE: &str = "tus-resumable";
pub const UPLOAD_OFFSET: &str = "upload-offset";
pub const UPLOAD_LENGTH: &str = "upload-length";
pub const UPLOAD_DEFER_LENGTH: &str = "upload-defer-length";
pub const UPLOAD_METADATA: &str = "upload-metadata";
pub const UPLOAD_CONCAT: &str = "upload-concat";
pub const UPLOAD_CHECKSUM: &str = "upload-checksum";
const METHOD_OVERRIDE: &str = "x-http-method-override";
/// The body type of PATCH, and of a creation that carries bytes.
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

/// The only version served.
pub const VERSION: &str = "1.0.0";

/// The method the request stands for: `X-HTTP-Method-Override` on a POST (tus clients send PATCH and DELETE that
/// way where they cannot send them), else its own.
pub fn method(req: &Request) -> Result<Method, TusError> {
    match header(req, METHOD_OVERRIDE)? {
        Some(name) if req.method() == Method::POST => Method::from_bytes(name.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| ApiError::BadRequest(format!("X-HTTP-Method-Override {name:?} is not a method")).into()),
        _ => Ok(req.method().clone()),
    }
}

/// `Tus-Resumable` must name the version served on requests that change an upload; a HEAD may leave it out.
pub fn check_version(req: &Request, method: &Method) -> Result<(), TusError> {
    match header(req, TUS_RESUMABLE)? {
        Some(v) if v.trim() == VERSION => Ok(()),
        None if *method == Method::HEAD => Ok(()),
        _ => Err(TusError::Version),
    }
}

/// A non-negative decimal number, as tus headers carry them.
fn number(req: &Request, name: &str) -> Result<Option<u64>, TusError> {
    let Some(text) = header(req, name)? else { return Ok(None) };
    let text = text.trim();
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::BadRequest(format!("{name} must be a non-negative whole number")).into());
    }
    text.parse().map(Some).map_err(|_| ApiError::BadRequest(format!("{name} is out of range")).into())
}

pub fn upload_offset(req: &Request) -> Result<u64, TusError> {
    number(req, UPLOAD_OFFSET)?.ok_or_else(|| ApiError::BadRequest("Upload-Offset is required".into()).into())
}

pub fn upload_length(req: &Request) -> Result<Option<u64>, TusError> {
    number(req, UPLOAD_LENGTH)
}

/// A creation's length: known (`Upload-Length`), or deferred (`Upload-Defer-Length: 1`), never both.
pub fn creation_length(req: &Request) -> Result<Option<u64>, TusError> {
    let length = upload_length(req)?;
    let deferred = match header(req, UPLOAD_DEFER_LENGTH)? {
        None => false,
        Some(v) if v.trim() == "1" => true,
        Some(_) => return Err(ApiError::BadRequest("Upload-Defer-Length must be 1".into()).into()),
    };
    match (length, deferred) {
        (Some(_), true) => {
            Err(ApiError::BadRequest("Give Upload-Length or Upload-Defer-Length, not both".into()).into())
        }
        (None, false) => {
            Err(ApiError::BadRequest("Upload-Length (or Upload-Defer-Length: 1) is required".into()).into())
        }
        (length, _) => Ok(length),
    }
}

/// `Upload-Concat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConcatHeader {
    Partial,
    /// The pieces, in order, by the upload ids their URLs end with.
    Final(Vec<UploadId>),
}

/// `partial`, or `final;` and the pieces' URLs (absolute or relative, space separated). A URL names an upload by its
/// last segment after `/files/`; anything else is not one of ours (404, as for an unknown upload).
pub fn upload_concat(req: &Request) -> Result<Option<ConcatHeader>, TusError> {
    let Some(value) = header(req, UPLOAD_CONCAT)? else { return Ok(None) };
    let value = value.trim();
    if value == "partial" {
        return Ok(Some(ConcatHeader::Partial));
    }
    let Some(urls) = value.strip_prefix("final;") else {
        return Err(ApiError::BadRequest(
            "Upload-Concat must be \"partial\" or \"final;\" and the partial URLs".into(),
        )
        .into());
    };
    let pieces = urls.split(' ').filter(|u| !u.is_empty()).map(piece_id).collect::<Result<Vec<_>, _>>()?;
    if pieces.is_empty() {
        return Err(ApiError::BadRequest("Upload-Concat: final names no partial uploads".into()).into());
    }
    Ok(Some(ConcatHeader::Final(pieces)))
}

fn piece_id(url: &str) -> Result<UploadId, ApiError> {
    let path = url.split(['?', '#']).next().unwrap_or_default().trim_end_matches('/');
    match path.rsplit_once('/') {
        Some((before, id)) if before.ends_with("/files") || before == "files" => UploadId::parse(id),
        // A bare id: a reference relative to the final upload's own URL, as HEAD gives them back.
        None => UploadId::parse(path),
        Some(_) => Err(ApiError::NotFound),
    }
}

/// A request body's type must be tus's own (`application/offset+octet-stream`), parameters aside.
pub fn check_body_type(req: &Request) -> Result<(), TusError> {
    let media =
        header(req, "content-type")?.map(|ct| ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    match media.as_deref() {
        Some(OFFSET_OCTET_STREAM) => Ok(()),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be {OFFSET_OCTET_STREAM}, not {:?}",
            other.unwrap_or("none")
        ))
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &str, value: &str) -> Request {
        lambda_http::http::Request::builder()
            .method("POST")
            .uri("/files")
            .header(name, value)
            .body(lambda_http::Body::Empty)
            .unwrap()
    }

    #[test]
    fn concat_names_pieces_by_their_urls() {
        let (a, b) = (UploadId::new(), UploadId::new());
        let header = format!("final;https://api.example.com/prod/files/{a} /files/{b}/ {a}");
        let Some(ConcatHeader::Final(pieces)) = upload_concat(&with(UPLOAD_CONCAT, &header)).unwrap() else { panic!() };
        assert_eq!(pieces, vec![a.clone(), b, a]);
        assert_eq!(upload_concat(&with(UPLOAD_CONCAT, "partial")).unwrap(), Some(ConcatHeader::Partial));
        for bad in ["final;", "final; ", "whole", "final;/upload/abc", &format!("final;/elsewhere/{}", UploadId::new())]
        {
            assert!(upload_concat(&with(UPLOAD_CONCAT, bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn lengths_are_numbers_and_defer_is_one() {
        assert_eq!(creation_length(&with(UPLOAD_LENGTH, "42")).unwrap(), Some(42));
        assert_eq!(creation_length(&with(UPLOAD_DEFER_LENGTH, "1")).unwrap(), None);
        for (name, value) in
            [(UPLOAD_LENGTH, "-1"), (UPLOAD_LENGTH, "1e3"), (UPLOAD_LENGTH, ""), (UPLOAD_DEFER_LENGTH, "2")]
        {
            assert!(creation_length(&with(name, value)).is_err(), "{name}: {value}");
        }
        assert!(creation_length(&with("x", "y")).is_err());
    }

    #[test]
    fn the_override_names_the_method_of_a_post() {
        assert_eq!(method(&with(METHOD_OVERRIDE, "patch")).unwrap(), Method::PATCH);
        assert_eq!(method(&with("x", "y")).unwrap(), Method::POST);
    }
}
