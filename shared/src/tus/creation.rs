//! `POST /files`: the creation extension (`Upload-Length`, or `Upload-Defer-Length: 1`, and `Upload-Metadata`),
//! creation-with-upload (the first bytes in the same request), and the concatenation's partial and final uploads.
//! Answered 201 with a `Location` relative to the request's own URL, so it resolves behind any API Gateway stage or
//! custom domain mapping.
//!
//! An anonymous caller (where the deployment allows them) binds the upload to the `X-Upload-Secret` it sends, as a
//! tus client adds a header to all its requests; without one, a secret is drawn and answered in that header once.

use lambda_http::Request;
use lambda_http::http::StatusCode;

use super::Context;
use super::answer::{Answer, TusError};
use super::checksum::UploadChecksum;
use super::concatenation;
use super::expiry::with_expiry;
use super::headers::{self, ConcatHeader, UPLOAD_CHECKSUM, UPLOAD_METADATA};
use super::metadata::Metadata;
use crate::error::ApiError;
use crate::handlers::Late;
use crate::protocol::UploadId;
use crate::request::header;
use crate::secret::{self, Caller};
use crate::upload::{TusCreation, TusPatch, TusState};

pub(super) async fn create(
    context: &Context<'_>,
    req: Request,
    trailing_slash: bool,
) -> (Option<UploadId>, Result<Answer, TusError>) {
    match created(context, req).await {
        Ok((state, drawn_secret)) => {
            let answer = answer(&state, trailing_slash);
            let answer = match drawn_secret {
                Some(secret) => answer.header(secret::HEADER, secret),
                None => answer,
            };
            (Some(state.upload_id), Ok(answer))
        }
        Err(e) => (None, Err(e)),
    }
}

/// The upload made, and the secret drawn for an anonymous caller who sent none.
async fn created(context: &Context<'_>, req: Request) -> Result<(TusState, Option<String>), TusError> {
    let metadata = Metadata::parse(header(&req, UPLOAD_METADATA)?.unwrap_or_default())?;
    let concat = headers::upload_concat(&req)?;
    let caller = match (&context.principal, &context.secret) {
        (Some(sub), _) => Caller::Principal(sub.clone()),
        (None, Some(secret)) => Caller::Anonymous(secret.clone(), context.network.clone()),
        (None, None) => Caller::creating(None, context.network.clone()),
    };
    let drawn = context.secret.is_none().then(|| caller.secret().map(|s| s.reveal())).flatten();
    if let Some(ConcatHeader::Final(pieces)) = concat {
        let state = Box::pin(concatenation::create_final(context, &caller, req, pieces, &metadata)).await?;
        return Ok((state, drawn));
    }
    let length = headers::creation_length(&req)?;
    let checksum = header(&req, UPLOAD_CHECKSUM)?.map(UploadChecksum::parse).transpose()?;
    let body_type = headers::check_body_type(&req);
    let body = context.body(req)?;
    if !body.is_empty() {
        body_type?;
    }
    if let Some(checksum) = &checksum {
        checksum.verify(&body)?;
    }
    if length.is_some_and(|length| body.len() as u64 > length) {
        return Err(ApiError::BadRequest("The body is longer than Upload-Length".into()).into());
    }
    let creation = TusCreation { length, metadata: &metadata, partial: concat == Some(ConcatHeader::Partial) };
    let state = context.by(Late::Retry, context.app.tus_create(&caller, creation, context.deadline)).await?;
    if body.is_empty() {
        return Ok((state, drawn));
    }
    // creation-with-upload: the upload exists whatever becomes of its first bytes; the answer's Upload-Offset says
    // how many were taken, and the client sends the rest with PATCH.
    let patch = TusPatch { offset: 0, length: None, data: body };
    let upload_id = state.upload_id.clone();
    match context.by(Late::MayHaveLanded, context.app.tus_patch(&caller, &upload_id, patch, context.deadline)).await {
        Ok(patched) => Ok((TusState { secret: state.secret, ..patched }, drawn)),
        Err(e) => {
            tracing::info!(upload_id = %upload_id, error = ?e, "the bytes of a creation were not taken");
            Ok((state, drawn))
        }
    }
}

/// 201, with where the upload is and what the creation took.
fn answer(state: &TusState, trailing_slash: bool) -> Answer {
    // Relative to the request's URL: `…/files` + `files/{id}`, or `…/files/` + `{id}`.
    let location = if trailing_slash { state.upload_id.to_string() } else { format!("files/{}", state.upload_id) };
    let answer = Answer::new(StatusCode::CREATED).header("location", location);
    let answer = match state.offset {
        Some(offset) => answer.header("upload-offset", offset),
        None => answer,
    };
    with_expiry(answer, state.expires_at_ms)
}
