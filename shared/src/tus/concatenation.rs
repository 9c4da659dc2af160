//! The concatenation extension, at creation: `Upload-Concat: partial` makes a piece (an upload like any other whose
//! object waits under its buffer prefix), `Upload-Concat: final;<urls>` makes the final upload from the caller's
//! finished pieces, in order, assembled in S3 (`upload::concat`) before the 201. tus-js-client's `parallelUploads`
//! works this way. A PATCH to a final upload is a 403 (`upload::tus`).

use lambda_http::Request;

use super::Context;
use super::answer::TusError;
use super::headers;
use super::metadata::Metadata;
use crate::error::ApiError;
use crate::handlers::Late;
use crate::protocol::UploadId;
use crate::secret::Caller;
use crate::upload::TusState;

pub(super) async fn create_final(
    context: &Context<'_>,
    caller: &Caller,
    req: Request,
    pieces: Vec<UploadId>,
    metadata: &Metadata,
) -> Result<TusState, TusError> {
    if headers::upload_length(&req)?.is_some() {
        return Err(ApiError::BadRequest("A final upload's length is its pieces': send no Upload-Length".into()).into());
    }
    if !context.body(req)?.is_empty() {
        return Err(ApiError::BadRequest("A final upload is made from its pieces: send no body".into()).into());
    }
    // Assembled by the deadline, or a 503 that the same request, sent again, goes on from.
    context.by(Late::Retry, context.app.concatenate(caller, pieces, metadata, context.deadline)).await
}
