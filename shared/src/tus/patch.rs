//! `PATCH /files/{id}`: bytes at the upload's offset, `Content-Type: application/offset+octet-stream` (else 415),
//! `Upload-Offset` equal to the upload's (else 409, nothing changed). Each is one sequential chunk of the upload;
//! checked first against its `Upload-Checksum`, if it has one (460 and nothing kept on a mismatch). The last byte
//! completes the upload in the same request. Answered 204 with the new `Upload-Offset` and `Upload-Expires`.

use lambda_http::Request;
use lambda_http::http::StatusCode;

use super::Context;
use super::answer::{Answer, TusError};
use super::checksum::UploadChecksum;
use super::expiry::with_expiry;
use super::headers::{self, UPLOAD_CHECKSUM};
use crate::handlers::Late;
use crate::protocol::UploadId;
use crate::request::header;
use crate::upload::TusPatch;

pub(super) async fn patch(context: &Context<'_>, req: Request, upload_id: &UploadId) -> Result<Answer, TusError> {
    headers::check_body_type(&req)?;
    let offset = headers::upload_offset(&req)?;
    let length = headers::upload_length(&req)?;
    let checksum = header(&req, UPLOAD_CHECKSUM)?.map(UploadChecksum::parse).transpose()?;
    let caller = context.caller()?;
    let data = context.body(req)?;
    if let Some(checksum) = checksum {
        checksum.verify(&data)?;
    }
    let patch = TusPatch { offset, length, data };
    let state =
        context.by(Late::MayHaveLanded, context.app.tus_patch(&caller, upload_id, patch, context.deadline)).await?;
    let answer = Answer::new(StatusCode::NO_CONTENT).header("upload-offset", state.offset.unwrap_or_default());
    Ok(with_expiry(answer, state.expires_at_ms))
}
