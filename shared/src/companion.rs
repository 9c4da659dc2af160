//! Companion's S3 endpoints, as `@uppy/aws-s3` calls them on a Companion URL (`companionEndpoint` in its current
//! major version, `endpoint` before): the routes, the decoding of their requests and the shapes of their answers.
//! The operations are `upload::companion`'s.
//!
//! | route | operation |
//! |---|---|
//! | `POST /s3/multipart` | a new upload: `{filename, type, metadata}` → `{key, uploadId, bucket}` |
//! | `GET /s3/multipart/{uploadId}/{partNumber}?key=` | a part's URL: `{url, expires}` |
//! | `GET /s3/multipart/{uploadId}/batch?key=&partNumbers=1,2` | several: `{presignedUrls: {"1": url, ...}}` |
//! | `GET /s3/multipart/{uploadId}?key=` | the parts S3 holds: `[{PartNumber, ETag, Size}]` |
//! | `POST /s3/multipart/{uploadId}/complete?key=` | `{parts: [{PartNumber, ETag}]}` → `{location, key, bucket}` |
//! | `DELETE /s3/multipart/{uploadId}?key=` | abort |
//! | `GET /s3/params?filename=&type=` | a small file's presigned POST: `{method, url, fields, expires}` |
//!
//! Answers carry the service's result fields beside Companion's; errors are the service's `{"detail": ...}`.

use std::collections::BTreeMap;

use lambda_http::{Request, RequestExt};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::app::App;
use crate::error::ApiError;
use crate::lambda::ObjectCreated;
use crate::protocol::{S3_MAX_PARTS, UploadId};
use crate::request::{self, json_body, text_field};
use crate::secret::{Caller, Network};
use crate::upload::{NamedPart, Posted, UppyFile};

/// Part URLs one batch request may ask for, as a direct upload's (`POST /upload/{upload_id}/parts`).
const MAX_BATCH: usize = 100;

/// Companion's S3 routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Create,
    Params,
    SignPart,
    SignBatch,
    ListParts,
    Complete,
    Abort,
}

impl Route {
    pub fn name(self) -> &'static str {
        match self {
            Route::Create => "s3-create",
            Route::Params => "s3-params",
            Route::SignPart => "s3-sign-part",
            Route::SignBatch => "s3-sign-batch",
            Route::ListParts => "s3-list-parts",
            Route::Complete => "s3-complete",
            Route::Abort => "s3-abort",
        }
    }

    /// Whether a request of this route that ran out of time may have been accepted (its client then asks first).
    pub fn may_land_late(self) -> bool {
        self == Route::Complete
    }
}

/// Serves a request of a Companion route; `upload_id` is the one its path names.
pub async fn serve(
    app: &App,
    req: Request,
    route: Route,
    (principal, network): (Option<String>, Option<Network>),
    upload_id: Option<&UploadId>,
    deadline: Instant,
) -> Result<Value, ApiError> {
    let creating = || Caller::creating(principal.clone(), network.clone());
    let named = || -> Result<(Caller, &UploadId, String), ApiError> {
        let caller = Caller::naming(principal.clone(), request::upload_secret(&req)?)?;
        Ok((caller, upload_id.ok_or(ApiError::NotFound)?, object_key(&req)?))
    };
    match route {
        Route::Create => app.uppy_create(&creating(), created_file(req)?).await,
        Route::Params => app.uppy_params(&creating(), params_file(&req)?).await,
        Route::SignPart => {
            let (caller, id, key) = named()?;
            let number = part_number(&part_segment(&req))?;
            let (urls, lifetime) = app.uppy_part_urls(&caller, id, &key, &[number]).await?;
            Ok(json!({"url": urls.first(), "expires": lifetime.as_secs()}))
        }
        Route::SignBatch => {
            let (caller, id, key) = named()?;
            let numbers = part_numbers(&req)?;
            let (urls, lifetime) = app.uppy_part_urls(&caller, id, &key, &numbers).await?;
            let presigned: BTreeMap<String, String> = numbers.iter().map(u32::to_string).zip(urls).collect();
            Ok(json!({"presignedUrls": presigned, "expires": lifetime.as_secs()}))
        }
        Route::ListParts => {
            let (caller, id, key) = named()?;
            let held = app.uppy_parts(&caller, id, &key).await?;
            Ok(held.iter().map(|p| json!({"PartNumber": p.number, "ETag": p.etag, "Size": p.size})).collect())
        }
        Route::Complete => {
            let (caller, id, key) = named()?;
            let parts = named_parts(req)?;
            let mut result = app.uppy_complete(&caller, id, &key, &parts, deadline).await?;
            result["location"] = json!(app.bucket.object_url(&key).await?);
            Ok(result)
        }
        Route::Abort => {
            let (caller, id, key) = named()?;
            app.uppy_abort(&caller, id, &key).await
        }
    }
}

/// S3's report of an object created (the complete function's EventBridge rule passes on `Object Created` events of
/// POSTs to the bucket). EventBridge's documentation does not say whether it encodes the key as S3's other
/// notifications do (URL-encoded, spaces as `+`): the key is looked up as given, then decoded.
pub async fn object_created(app: &App, report: ObjectCreated) -> Result<Posted, ApiError> {
    if report.source != "aws.s3" || report.detail_type != "Object Created" {
        return Ok(Posted::Ignored);
    }
    let key = report.detail.object.key;
    match app.object_posted(&key).await? {
        Posted::Ignored => {
            let decoded: String = form_urlencoded::parse(format!("k={key}").as_bytes()).map(|(_, v)| v).collect();
            if decoded == key { Ok(Posted::Ignored) } else { app.object_posted(&decoded).await }
        }
        outcome => Ok(outcome),
    }
}

/// The `key` query parameter the plugin sends back with every call on an upload.
fn object_key(req: &Request) -> Result<String, ApiError> {
    let keys = req.query_string_parameters_ref().and_then(|q| q.all("key")).unwrap_or_default();
    match keys.as_slice() {
        [key] if !key.is_empty() => Ok((*key).to_string()),
        [] | [_] => {
            Err(ApiError::BadRequest("The query parameter \"key\" (the upload's object key) is required".into()))
        }
        _ => Err(ApiError::BadRequest("Field \"key\" is given more than once".into())),
    }
}

/// The part number's segment of `GET /s3/multipart/{uploadId}/{partNumber}`: API Gateway's path parameter, else the
/// path's last segment.
fn part_segment(req: &Request) -> String {
    match req.path_parameters_ref().and_then(|p| p.first("partNumber")) {
        Some(number) => number.to_string(),
        None => req.uri().path().trim_end_matches('/').rsplit('/').next().unwrap_or_default().to_string(),
    }
}

/// An S3 part number: 1 to 10,000, in plain digits.
fn part_number(text: &str) -> Result<u32, ApiError> {
    text.parse::<u32>()
        .ok()
        .filter(|n| (1..=S3_MAX_PARTS).contains(n) && text.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| ApiError::BadRequest(format!("Part numbers are whole numbers from 1 to {S3_MAX_PARTS}")))
}

/// The batch form's `partNumbers`: a comma-separated list of 1 to [`MAX_BATCH`] part numbers.
fn part_numbers(req: &Request) -> Result<Vec<u32>, ApiError> {
    let lists = req.query_string_parameters_ref().and_then(|q| q.all("partNumbers")).unwrap_or_default();
    let [list] = lists.as_slice() else {
        return Err(ApiError::BadRequest(
            "The query parameter \"partNumbers\" (part numbers separated by commas) is required, once".into(),
        ));
    };
    let mut numbers: Vec<u32> = list.split(',').map(part_number).collect::<Result<_, _>>()?;
    numbers.sort_unstable();
    numbers.dedup();
    if numbers.len() > MAX_BATCH {
        return Err(ApiError::BadRequest(format!("Ask for 1 to {MAX_BATCH} parts at a time")));
    }
    Ok(numbers)
}

/// `POST /s3/multipart`'s JSON: `filename` (required, not empty) and `type`; `metadata`, an object if given, is not
/// kept.
fn created_file(req: Request) -> Result<UppyFile, ApiError> {
    let object = json_body(req)?;
    if object.get("metadata").is_some_and(|m| !m.is_object()) {
        return Err(ApiError::BadRequest("Field \"metadata\" must be an object".into()));
    }
    let filename = text_field(&object, "filename")?.filter(|name| !name.is_empty());
    let filename = filename.ok_or_else(|| ApiError::BadRequest("Field \"filename\" is required".into()))?;
    Ok(UppyFile { filename, content_type: text_field(&object, "type")? })
}

/// `GET /s3/params`'s query: `filename` (required, not empty) and `type`; `metadata[...]` is not kept.
fn params_file(req: &Request) -> Result<UppyFile, ApiError> {
    let query = req.query_string_parameters_ref();
    let once = |name: &str| -> Result<Option<String>, ApiError> {
        match query.and_then(|q| q.all(name)).unwrap_or_default().as_slice() {
            [] => Ok(None),
            [value] if value.len() <= request::MAX_TEXT_FIELD => Ok(Some((*value).to_string())),
            [_] => Err(ApiError::BadRequest(format!("Field {name:?} is too long"))),
            _ => Err(ApiError::BadRequest(format!("Field {name:?} is given more than once"))),
        }
    };
    let filename = once("filename")?.filter(|name| !name.is_empty());
    let filename =
        filename.ok_or_else(|| ApiError::BadRequest("The query parameter \"filename\" is required".into()))?;
    Ok(UppyFile { filename, content_type: once("type")? })
}

/// The completion's JSON: `parts`, a list of `{PartNumber, ETag}`.
fn named_parts(req: Request) -> Result<Vec<NamedPart>, ApiError> {
    let object = json_body(req)?;
    let bad =
        || ApiError::BadRequest("Field \"parts\" must be a list of {\"PartNumber\": N, \"ETag\": \"...\"}".into());
    let list = object.get("parts").and_then(Value::as_array).ok_or_else(bad)?;
    if list.len() > S3_MAX_PARTS as usize {
        return Err(ApiError::BadRequest(format!("Name 1 to {S3_MAX_PARTS} parts")));
    }
    list.iter()
        .map(|entry| {
            let entry = entry.as_object().ok_or_else(bad)?;
            let number = entry.get("PartNumber").and_then(Value::as_u64).ok_or_else(bad)?;
            let number = u32::try_from(number).ok().filter(|n| (1..=S3_MAX_PARTS).contains(n)).ok_or_else(bad)?;
            let etag = text_field(entry, "ETag")?.filter(|e| !e.is_empty() && e.len() <= 128).ok_or_else(bad)?;
            Ok(NamedPart { number, etag })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_numbers_are_s3s() {
        assert_eq!(part_number("1").unwrap(), 1);
        assert_eq!(part_number("10000").unwrap(), 10_000);
        for bad in ["0", "10001", "-1", "+1", " 1", "1.0", "", "batch", "99999999999"] {
            assert!(part_number(bad).is_err(), "{bad:?}");
        }
    }
}
