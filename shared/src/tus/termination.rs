//! `DELETE /files/{id}`: the termination extension. An unfinished upload is aborted (its multipart upload and
//! buffered chunks removed, its share of the owner's limits given back), a complete one's object and record are
//! deleted. Answered 204, as tus-js-client requires; the URL is unknown from then on (404).

use lambda_http::http::StatusCode;

use super::Context;
use super::answer::{Answer, TusError};
use crate::handlers::Late;
use crate::protocol::UploadId;

pub(super) async fn delete(context: &Context<'_>, upload_id: &UploadId) -> Result<Answer, TusError> {
    let caller = context.caller()?;
    context.by(Late::Retry, context.app.tus_terminate(&caller, upload_id)).await?;
    Ok(Answer::new(StatusCode::NO_CONTENT))
}
