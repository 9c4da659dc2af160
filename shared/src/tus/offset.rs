//! `HEAD /files/{id}`: where an upload stands. `Upload-Offset` (but for a final upload not assembled yet),
//! `Upload-Length` or `Upload-Defer-Length: 1`, `Upload-Metadata` as sent, `Upload-Concat`, `Upload-Expires`, and
//! `Cache-Control: no-store` (added for every HEAD). An upload whose bytes are all in but whose completion failed is
//! completed here, since that is where tus clients go after a failure.

use lambda_http::http::StatusCode;

use super::Context;
use super::answer::{Answer, TusError};
use super::expiry::with_expiry;
use crate::error::ApiError;
use crate::handlers::Late;
use crate::protocol::UploadId;
use crate::store::Concat;
use crate::upload::TusState;

pub(super) async fn head(context: &Context<'_>, upload_id: &UploadId) -> Result<Answer, TusError> {
    let caller = context.caller()?;
    let state =
        context.by(Late::Retry, context.app.tus_state(&caller, upload_id, context.deadline)).await.map_err(|e| {
            match e {
                // tus clients create a new upload after any refusal of a HEAD but 423, which they retry.
                TusError::Api(ApiError::Conflict(why) | ApiError::Unavailable(why) | ApiError::Ambiguous(why)) => {
                    TusError::Locked(why)
                }
                other => other,
            }
        })?;
    Ok(answer(&state))
}

fn answer(state: &TusState) -> Answer {
    let mut answer = Answer::new(StatusCode::OK);
    if let Some(offset) = state.offset {
        answer = answer.header("upload-offset", offset);
    }
    answer = match state.length {
        Some(length) => answer.header("upload-length", length),
        None => answer.header("upload-defer-length", 1),
    };
    if !state.tus.metadata.is_empty() {
        answer = answer.header("upload-metadata", &state.tus.metadata);
    }
    answer = match &state.tus.concat {
        Concat::Whole => answer,
        Concat::Partial => answer.header("upload-concat", "partial"),
        // Each piece by a reference relative to this upload's URL: a sibling under /files/.
        Concat::Final(pieces) => {
            let ids: Vec<&str> = pieces.iter().map(UploadId::as_str).collect();
            answer.header("upload-concat", format!("final;{}", ids.join(" ")))
        }
    };
    with_expiry(answer, state.expires_at_ms)
}
