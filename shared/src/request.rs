//! Decoding requests: who is asking, the chunk and its fields, the complete request's fields, and an anonymous
//! upload's secret.

use std::collections::HashMap;

use bytes::Bytes;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt};
use serde_json::Value;

use crate::checksum::{self, Crc64};
use crate::error::ApiError;
use crate::grid::Mode;
use crate::protocol::{ContentRange, UploadId};
use crate::secret::{self, Network, UploadSecret};
use crate::upload::{Chunk, Listing, Opening};

/// The header that carries a chunk's CRC64NVME, in S3's form (base64 of its 8 big-endian bytes).
pub const CRC64_HEADER: &str = "x-checksum-crc64nvme";

/// Longest text field we read (ids, names, checksums); anything longer is not ours.
pub(crate) const MAX_TEXT_FIELD: usize = 4096;

/// The caller's identity as API Gateway's authorizer established it: the `sub` claim of an HTTP API JWT authorizer,
/// or of a REST API Cognito authorizer (or a Lambda authorizer's `sub`/`principalId`); `None` without an authorizer.
/// A JWT without `sub` is valid to API Gateway's authorizer, which passes it on: refused here, as uploads are bound
/// to it.
pub fn principal(req: &Request) -> Result<Option<String>, ApiError> {
    let authorizer = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => match ctx.authorizer.as_ref() {
            Some(authorizer) => authorizer,
            None => return Ok(None),
        },
        Some(RequestContext::ApiGatewayV1(ctx)) => &ctx.authorizer,
        _ => return Ok(None),
    };
    let jwt_sub = authorizer.jwt.as_ref().and_then(|jwt| jwt.claims.get("sub").cloned());
    let field = |name: &str| authorizer.fields.get(name).and_then(Value::as_str).map(str::to_string);
    let cognito_sub =
        authorizer.fields.get("claims").and_then(|c| c.get("sub")).and_then(Value::as_str).map(str::to_string);
    let sub =
        jwt_sub.or(cognito_sub).or_else(|| field("sub")).or_else(|| field("principalId")).filter(|s| !s.is_empty());
    match sub {
        Some(sub) => Ok(Some(sub)),
        None if authorizer.jwt.is_some() => Err(ApiError::Forbidden(
            "The token has no \"sub\" claim, which identifies the caller: uploads are bound to it".into(),
        )),
        None => Ok(None),
    }
}

/// The network the caller calls from, by the address API Gateway saw (`sourceIp`): what an anonymous caller's
/// uploads count against.
pub fn network(req: &Request) -> Option<Network> {
    let address = match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => ctx.http.source_ip.as_deref()?,
        RequestContext::ApiGatewayV1(ctx) => ctx.identity.source_ip.as_deref()?,
        _ => return None,
    };
    Network::of(address)
}

/// Decoded fields of a request: query string and the secret's header first, then the body's form fields, each name
/// at most once.
#[derive(Default)]
struct Fields(HashMap<String, String>);

impl Fields {
    fn insert(&mut self, name: &str, value: String) -> Result<(), ApiError> {
        if value.len() > MAX_TEXT_FIELD {
            return Err(ApiError::BadRequest(format!("Field {name:?} is too long")));
        }
        if self.0.insert(name.to_string(), value).is_some() {
            return Err(ApiError::BadRequest(format!("Field {name:?} is given more than once")));
        }
        Ok(())
    }

    /// The query string's fields among `names`, and the upload secret's header (as the field, so that a secret in
    /// both the header and the body is a duplicate).
    fn from_query_and_header(req: &Request, names: &[&str]) -> Result<Self, ApiError> {
        let mut fields = Fields::default();
        let query = req.query_string_parameters_ref();
        if query.and_then(|q| q.first(secret::FIELD)).is_some() {
            return Err(ApiError::BadRequest(format!(
                "Send {} in the X-Upload-Secret header or the body, never in the query string (it reaches logs)",
                secret::FIELD
            )));
        }
        if let Some(value) = header(req, secret::HEADER)? {
            fields.insert(secret::FIELD, value.to_string())?;
        }
        for name in names {
            if let Some(values) = query.and_then(|q| q.all(name)) {
                for value in values {
                    fields.insert(name, value.to_string())?;
                }
            }
        }
        Ok(fields)
    }

    fn take(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }

    /// The upload secret, if one was sent (empty counts as none: a form may carry the field before it is known).
    fn secret(&mut self) -> Result<Option<UploadSecret>, ApiError> {
        self.take(secret::FIELD).filter(|s| !s.is_empty()).map(|s| UploadSecret::parse(&s)).transpose()
    }
}

/// The upload secret of a request without a body (status, abort): its `X-Upload-Secret` header.
pub fn upload_secret(req: &Request) -> Result<Option<UploadSecret>, ApiError> {
    Fields::from_query_and_header(req, &[])?.secret()
}

pub(crate) fn header<'a>(req: &'a Request, name: &str) -> Result<Option<&'a str>, ApiError> {
    let mut values = req.headers().get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::BadRequest(format!("{name} is given more than once")));
    }
    value.to_str().map(Some).map_err(|_| ApiError::BadRequest(format!("{name} header is not valid text")))
}

/// The media type of the request without parameters, lowercased.
fn media_type(req: &Request) -> Result<Option<String>, ApiError> {
    Ok(header(req, "content-type")?.map(|ct| ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()))
}

pub(crate) fn body_bytes(body: Body) -> Bytes {
    match body {
        Body::Binary(bytes) => Bytes::from(bytes),
        Body::Text(text) => Bytes::from(text.into_bytes()),
        _ => Bytes::new(),
    }
}

fn multipart(content_type: &str, body: Bytes) -> Result<multer::Multipart<'static>, ApiError> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| ApiError::BadRequest("multipart/form-data without a boundary".into()))?;
    let stream = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    Ok(multer::Multipart::new(stream, boundary))
}

fn multipart_error(e: multer::Error) -> ApiError {
    ApiError::BadRequest(format!("Malformed multipart body: {e}"))
}

/// Decodes a chunk request: `multipart/form-data` with the chunk in `field_name`, or a raw body with the fields in
/// the query string; and the upload secret, from the header or a form field.
pub async fn chunk(req: Request, field_name: &str) -> Result<(Chunk, Option<UploadSecret>), ApiError> {
    let range = header(&req, "content-range")?
        .ok_or_else(|| ApiError::BadRequest("Missing Content-Range header".into()))
        .and_then(ContentRange::parse)?;
    let crc64 = header(&req, CRC64_HEADER)?.map(|c| checksum::parse(c, "X-Checksum-CRC64NVME")).transpose()?;
    let mut fields = Fields::from_query_and_header(&req, &["upload_id", "filename"])?;
    let media = media_type(&req)?;
    let content_type = header(&req, "content-type")?.unwrap_or_default().to_string();
    let (data, file_name, file_type) = match media.as_deref() {
        Some("multipart/form-data") => {
            let mut form = multipart(&content_type, body_bytes(req.into_body()))?;
            let mut file = None;
            while let Some(field) = form.next_field().await.map_err(multipart_error)? {
                let name = field.name().unwrap_or_default().to_string();
                if name == field_name {
                    if file.is_some() {
                        return Err(ApiError::BadRequest(format!("Field {name:?} is given more than once")));
                    }
                    let file_name = field.file_name().map(str::to_string);
                    let file_type = field.content_type().map(ToString::to_string);
                    file = Some((field.bytes().await.map_err(multipart_error)?, file_name, file_type));
                } else if ["upload_id", "filename", secret::FIELD].contains(&name.as_str()) {
                    let value = field.text().await.map_err(multipart_error)?;
                    fields.insert(&name, value)?;
                }
                // Other fields (jQuery-File-Upload adds its own) are not ours to judge.
            }
            file.ok_or_else(|| ApiError::BadRequest("No chunk file was submitted".into()))?
        }
        None | Some("application/octet-stream") => (body_bytes(req.into_body()), None, None),
        Some(other) => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Unsupported content type {other:?}: send the chunk as multipart/form-data or application/octet-stream"
            )));
        }
    };
    let chunk = Chunk {
        upload_id: fields.take("upload_id").filter(|id| !id.is_empty()).map(|id| UploadId::parse(&id)).transpose()?,
        range,
        data,
        filename: fields.take("filename").or(file_name),
        content_type: file_type,
        crc64,
    };
    Ok((chunk, fields.secret()?))
}

/// The fields of a complete request: `upload_id`, and `md5` or `crc64nvme` (which the mode requires, the operation
/// says), from a JSON, form-urlencoded or multipart body; and the upload secret, from the header or a body field.
pub struct CompleteFields {
    pub upload_id: UploadId,
    pub md5: Option<String>,
    pub crc64: Option<String>,
    pub secret: Option<UploadSecret>,
}

pub async fn complete(req: Request) -> Result<CompleteFields, ApiError> {
    const QUERY: [&str; 3] = ["upload_id", "md5", "crc64nvme"];
    const NAMES: [&str; 4] = ["upload_id", "md5", "crc64nvme", secret::FIELD];
    let mut fields = Fields::from_query_and_header(&req, &QUERY)?;
    let media = media_type(&req)?;
    let content_type = header(&req, "content-type")?.unwrap_or_default().to_string();
    let body = body_bytes(req.into_body());
    match media.as_deref() {
        _ if body.is_empty() => {}
        Some("application/json") => {
            let object = json_object(&body)?;
            for name in NAMES {
                match object.get(name) {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) => fields.insert(name, s.clone())?,
                    Some(_) => {
                        return Err(ApiError::BadRequest(format!("Field {name:?} must be a string")));
                    }
                }
            }
        }
        Some("application/x-www-form-urlencoded") => {
            for (name, value) in form_urlencoded::parse(&body) {
                if NAMES.contains(&name.as_ref()) {
                    fields.insert(&name, value.into_owned())?;
                }
            }
        }
        Some("multipart/form-data") => {
            let mut form = multipart(&content_type, body)?;
            while let Some(field) = form.next_field().await.map_err(multipart_error)? {
                let name = field.name().unwrap_or_default().to_string();
                if NAMES.contains(&name.as_str()) {
                    let value = field.text().await.map_err(multipart_error)?;
                    fields.insert(&name, value)?;
                }
            }
        }
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Unsupported content type {:?}: send JSON, form-urlencoded or multipart/form-data",
                other.unwrap_or("none")
            )));
        }
    }
    let mut given = |name: &str| fields.take(name).filter(|v| !v.trim().is_empty());
    let upload_id = given("upload_id").ok_or_else(|| ApiError::BadRequest("Field \"upload_id\" is required".into()))?;
    let upload_id = UploadId::parse(&upload_id)?;
    let (md5, crc64) = (given("md5"), given("crc64nvme"));
    if md5.is_none() && crc64.is_none() {
        return Err(ApiError::BadRequest(
            "Field \"md5\" (or, for parallel and direct uploads, \"crc64nvme\") is required".into(),
        ));
    }
    Ok(CompleteFields { upload_id, md5, crc64, secret: fields.secret()? })
}

/// A JSON body's object.
fn json_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ApiError::BadRequest("The JSON body must be an object".into())),
        Err(e) => Err(ApiError::BadRequest(format!("Malformed JSON body: {e}"))),
    }
}

/// The JSON object of a request that must send one (`POST /upload/create`, `POST /upload/{id}/parts`, Companion's
/// `POST /s3/multipart` and its completion).
pub(crate) fn json_body(req: Request) -> Result<serde_json::Map<String, Value>, ApiError> {
    if media_type(&req)?.as_deref() != Some("application/json") {
        return Err(ApiError::UnsupportedMediaType("Send a JSON body (application/json)".into()));
    }
    json_object(&body_bytes(req.into_body()))
}

pub(crate) fn text_field(object: &serde_json::Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= MAX_TEXT_FIELD => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(ApiError::BadRequest(format!("Field {name:?} is too long"))),
        Some(_) => Err(ApiError::BadRequest(format!("Field {name:?} must be a string"))),
    }
}

fn number_field(object: &serde_json::Map<String, Value>, name: &str) -> Result<Option<u64>, ApiError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| ApiError::BadRequest(format!("Field {name:?} must be a whole number of at least 0"))),
    }
}

/// `GET /upload`: which page of the caller's uploads, from the query string's `limit` and `cursor`.
pub fn listing(req: &Request) -> Result<Listing, ApiError> {
    let mut fields = Fields::from_query_and_header(req, &["limit", "cursor"])?;
    Listing::parse(fields.take("limit").as_deref(), fields.take("cursor").as_deref())
}

/// `POST /upload/create`: the upload a client opens in parallel or direct mode.
pub fn opening(req: Request) -> Result<Opening, ApiError> {
    let object = json_body(req)?;
    let size =
        number_field(&object, "size")?.ok_or_else(|| ApiError::BadRequest("Field \"size\" is required".into()))?;
    let mode = text_field(&object, "mode")?
        .ok_or_else(|| ApiError::BadRequest("Field \"mode\" is required".into()))
        .and_then(|m| {
            Mode::parse(&m)
                .ok_or_else(|| ApiError::BadRequest("Field \"mode\" must be \"parallel\" or \"direct\"".into()))
        })?;
    Ok(Opening {
        size,
        mode,
        filename: text_field(&object, "filename")?,
        content_type: text_field(&object, "content_type")?,
        chunk_size: number_field(&object, "chunk_size")?,
        part_size: number_field(&object, "part_size")?,
        part_urls: match object.get("part_urls") {
            None | Some(Value::Null) => Vec::new(),
            Some(list) => parts_list(list, "part_urls")?,
        },
    })
}

/// `POST /upload/{id}/parts`: the part numbers and CRC64NVMEs a client wants URLs for, and the upload's secret.
pub struct WantedParts {
    pub parts: Vec<(u32, Crc64)>,
    pub secret: Option<UploadSecret>,
}

pub fn part_urls(req: Request) -> Result<WantedParts, ApiError> {
    let secret = upload_secret(&req)?;
    let object = json_body(req)?;
    let parts = parts_list(object.get("parts").unwrap_or(&Value::Null), "parts")?;
    Ok(WantedParts { parts, secret })
}

/// A list of `{"number": N, "crc64nvme": "..."}`: parts a client wants URLs for, in the field `name`.
fn parts_list(list: &Value, name: &str) -> Result<Vec<(u32, Crc64)>, ApiError> {
    let bad = || {
        ApiError::BadRequest(format!("Field \"{name}\" must be a list of {{\"number\": N, \"crc64nvme\": \"...\"}}"))
    };
    let list = list.as_array().ok_or_else(bad)?;
    list.iter()
        .map(|entry| {
            let entry = entry.as_object().ok_or_else(bad)?;
            let number = number_field(entry, "number")?.and_then(|n| u32::try_from(n).ok()).ok_or_else(bad)?;
            let crc = text_field(entry, "crc64nvme")?.ok_or_else(bad)?;
            Ok((number, checksum::parse(&crc, "crc64nvme")?))
        })
        .collect()
}
