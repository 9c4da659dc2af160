//! Per-owner limits on uploads in progress, kept consistent under concurrency without a lock server: each owner has a
//! counter item (`owner/{owner}` in the uploads table), and creating an upload writes its record and adds to the
//! counters in one transaction whose condition is the limit. Releasing subtracts again exactly once per upload: the
//! transaction that subtracts also puts a tombstone (`released/{upload_id}`) that a second release would find.
//!
//! Uploads are counted only while a limit is set (the record says whether it was counted), so a deployment without
//! limits pays no transaction; one that sets a limit later counts the uploads started from then on.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use super::record::{UploadRecord, attr};
use super::table::Table;
use super::unavailable;
use crate::error::ApiError;
use crate::protocol::UploadId;
use crate::secret::Caller;

/// How long a tombstone outlives the record it stands for: longer than a DynamoDB stream keeps a record (24 hours),
/// so no late or repeated delivery of the record's removal can release it twice.
const TOMBSTONE_MARGIN_SECS: u64 = 2 * 86_400;

/// Limits on one owner's uploads in progress; `None`: no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub uploads: Option<u64>,
    pub bytes: Option<u64>,
}

impl Limits {
    pub fn any(&self) -> bool {
        self.uploads.is_some() || self.bytes.is_some()
    }
}

const UPLOADS: &str = "uploads_in_progress";
pub(super) const BYTES: &str = "bytes_in_progress";

/// Keys of the items that are not uploads. Upload ids are 32 hex digits, so these never collide with one.
pub fn counter_key(owner: &str) -> String {
    format!("owner/{owner}")
}

/// The counter a new upload of `caller` counts against: an authenticated owner's own; an anonymous caller's, its
/// network's (`secret::Network`), so that one client cannot use up a limit every anonymous caller shares.
pub fn counter_of(caller: &Caller) -> String {
    match caller.network() {
        Some(network) => format!("client/{network}"),
        None => counter_key(caller.owner()),
    }
}

/// How long a transaction canceled by a conflict is tried again, and the longest wait before the first retry (each
/// following one may wait twice as long, up to [`CONFLICT_BACKOFF_MAX`]): most of a request's deadline (25 s as
/// deployed), which bounds it too, and the cleanup function's runs have no other. With 10 s, five runs of
/// `tests/tests/many.rs` (one owner starting 25 uploads at once) still answered one start 503 for a conflict.
const CONFLICT_BUDGET: Duration = Duration::from_secs(20);
const CONFLICT_BACKOFF: Duration = Duration::from_millis(25);
const CONFLICT_BACKOFF_MAX: Duration = Duration::from_secs(1);

fn tombstone_key(upload_id: &UploadId) -> String {
    format!("released/{upload_id}")
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn built<T>(part: Result<T, aws_smithy_types::error::operation::BuildError>) -> Result<T, ApiError> {
    part.map_err(|e| ApiError::Unavailable(format!("TransactWriteItems: {e}")))
}

impl Table {
    /// Stores a new upload and, where a limit is set (`record.counted`), counts it against its owner, only if that
    /// stays within `limits`; over a limit: 429.
    pub async fn create_within(&self, record: &UploadRecord, limits: Limits) -> Result<(), ApiError> {
        let Some(counter) = &record.counted else {
            return self.create(record).await;
        };
        if let Some(max) = limits.bytes
            && record.total > max
        {
            return Err(over_bytes(max));
        }
        let put = built(
            Put::builder()
                .table_name(self.name())
                .set_item(Some(record.to_item()))
                .condition_expression("attribute_not_exists(#id)")
                .expression_attribute_names("#id", attr::UPLOAD_ID)
                .build(),
        )?;
        let mut conditions = Vec::new();
        let mut values = HashMap::from([(":one".to_string(), n(1)), (":total".to_string(), n(record.total))]);
        if let Some(max) = limits.uploads {
            conditions.push("#uploads < :max_uploads");
            values.insert(":max_uploads".into(), n(max));
        }
        if let Some(max) = limits.bytes {
            conditions.push("#bytes <= :room");
            values.insert(":room".into(), n(max - record.total));
        }
        let mut count = Update::builder()
            .table_name(self.name())
            .key(attr::UPLOAD_ID, s(counter))
            .update_expression("ADD #uploads :one, #bytes :total")
            .expression_attribute_names("#uploads", UPLOADS)
            .expression_attribute_names("#bytes", BYTES)
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if !conditions.is_empty() {
            count =
                count.condition_expression(format!("attribute_not_exists(#uploads) OR ({})", conditions.join(" AND ")));
        }
        let Some(reasons) = self.put_and_update(put, built(count.build())?).await? else {
            return Ok(());
        };
        match reasons.get(1) {
            Some(r) if r.code() == Some("ConditionalCheckFailed") => {
                let held =
                    |name: &str| r.item().and_then(|i| i.get(name)).and_then(|v| v.as_n().ok()?.parse::<u64>().ok());
                Err(over_limit(limits, held(UPLOADS).unwrap_or(0), held(BYTES).unwrap_or(0), record.total))
            }
            _ => Err(canceled(&reasons)),
        }
    }

    /// Gives an upload's share of its owner's limits back, once: a repeated release finds the tombstone and does
    /// nothing. `record_kept_until_secs` is when the record itself may be removed at the latest (its TTL).
    pub async fn release(&self, record: &UploadRecord, record_kept_until_secs: u64) -> Result<(), ApiError> {
        let Some(counter) = &record.counted else {
            return Ok(());
        };
        let tombstone = built(
            Put::builder()
                .table_name(self.name())
                .item(attr::UPLOAD_ID, s(&tombstone_key(&record.upload_id)))
                .item(attr::EXPIRES_AT, n(record_kept_until_secs + TOMBSTONE_MARGIN_SECS))
                .condition_expression("attribute_not_exists(#id)")
                .expression_attribute_names("#id", attr::UPLOAD_ID)
                .build(),
        )?;
        let uncount = built(
            Update::builder()
                .table_name(self.name())
                .key(attr::UPLOAD_ID, s(counter))
                .update_expression("ADD #uploads :minus_one, #bytes :minus_total")
                .condition_expression("attribute_exists(#uploads)")
                .expression_attribute_names("#uploads", UPLOADS)
                .expression_attribute_names("#bytes", BYTES)
                .expression_attribute_values(":minus_one", AttributeValue::N("-1".into()))
                .expression_attribute_values(":minus_total", AttributeValue::N(format!("-{}", record.total)))
                .build(),
        )?;
        let Some(reasons) = self.put_and_update(tombstone, uncount).await? else {
            return Ok(());
        };
        // Released before (the tombstone is there), or never counted (no counter): nothing to give back.
        let mut codes = reasons.iter().map(|r| r.code().unwrap_or("None"));
        if codes.all(|c| matches!(c, "ConditionalCheckFailed" | "None")) { Ok(()) } else { Err(canceled(&reasons)) }
    }

    /// One transaction of a Put and an Update: `None` when it went through, else why each was refused.
    ///
    /// DynamoDB cancels a transaction one of whose items another write holds (the owner's counter, under concurrent
    /// starts and completions of one owner), with a `TransactionConflict` reason, which the SDK does not retry: it
    /// is tried again here after a random wait (DynamoDB Developer Guide, "Transaction conflict handling": retry
    /// with exponential backoff and jitter), so a conflict a retry would pass is never answered 503.
    ///
    /// Each try carries a client request token (TransactWriteItems, ClientRequestToken: "multiple identical calls
    /// have the same effect as one single call"), so a try whose outcome is unknown (timed out or its reply cut
    /// off once the SDK's own retries are spent, or met TransactionInProgressException, which the SDK does not
    /// retry) is sent again here with the same token until DynamoDB says what became of it: an upload created but
    /// answered 503 would stay counted against its owner until it expired.
    async fn put_and_update(&self, put: Put, update: Update) -> Result<Option<Vec<CancellationReason>>, ApiError> {
        let (started, mut backoff, mut attempt) = (std::time::Instant::now(), CONFLICT_BACKOFF, 1);
        let mut token = request_token();
        loop {
            let result = self
                .client()
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put.clone()).build())
                .transact_items(TransactWriteItem::builder().update(update.clone()).build())
                .client_request_token(&token)
                .send()
                .await;
            let unknown = match result {
                Ok(_) => return Ok(None),
                Err(SdkError::ServiceError(e)) if e.err().is_transaction_canceled_exception() => {
                    let TransactWriteItemsError::TransactionCanceledException(c) = e.into_err() else {
                        return Err(ApiError::Unavailable("TransactWriteItems: canceled".into()));
                    };
                    let reasons = c.cancellation_reasons.unwrap_or_default();
                    let code = |wanted: &str| reasons.iter().any(|r| r.code() == Some(wanted));
                    if started.elapsed() >= CONFLICT_BUDGET
                        || !code("TransactionConflict")
                        || code("ConditionalCheckFailed")
                    {
                        return Ok(Some(reasons));
                    }
                    false
                }
                Err(SdkError::ServiceError(e)) if !e.err().is_transaction_in_progress_exception() => {
                    return Err(unavailable("TransactWriteItems", &SdkError::ServiceError(e)));
                }
                Err(err) if started.elapsed() >= CONFLICT_BUDGET => {
                    return Err(unavailable("TransactWriteItems", &err));
                }
                Err(_) => true,
            };
            // A canceled try wrote nothing: the next one is a new call, with a token of its own.
            if !unknown {
                token = request_token();
            }
            tracing::info!(attempt, unknown, "TransactWriteItems met a conflict or has no known outcome; trying again");
            tokio::time::sleep(backoff.mul_f64(rand::random::<f64>())).await;
            backoff = (backoff * 2).min(CONFLICT_BACKOFF_MAX);
            attempt += 1;
        }
    }

    /// The uploads and bytes in progress counted on `counter` (`counter_key`, `counter_of`), 0 where it has none.
    pub async fn in_progress(&self, counter: &str) -> Result<(u64, u64), ApiError> {
        let out = self
            .client()
            .get_item()
            .table_name(self.name())
            .key(attr::UPLOAD_ID, s(counter))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", &e))?;
        let held = |name: &str| {
            out.item().and_then(|i| i.get(name)).and_then(|v| v.as_n().ok()?.parse::<u64>().ok()).unwrap_or(0)
        };
        Ok((held(UPLOADS), held(BYTES)))
    }
}

/// A ClientRequestToken (1 to 36 characters): 32 random hex digits.
fn request_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn canceled(reasons: &[CancellationReason]) -> ApiError {
    let codes: Vec<&str> = reasons.iter().map(|r| r.code().unwrap_or("None")).collect();
    let detail = format!("TransactWriteItems canceled: {codes:?}");
    tracing::warn!(error = %detail, "storage call failed");
    ApiError::Unavailable(detail)
}

fn over_bytes(max: u64) -> ApiError {
    ApiError::OverLimit(format!("This upload would exceed the {max} bytes an owner may have in progress"))
}

fn over_limit(limits: Limits, uploads: u64, bytes: u64, total: u64) -> ApiError {
    match (limits.uploads, limits.bytes) {
        (Some(max), _) if uploads >= max => ApiError::OverLimit(format!(
            "Too many uploads in progress ({uploads} of at most {max}): complete or abort one, or wait for one to expire"
        )),
        (_, Some(max)) if bytes + total > max => over_bytes(max),
        _ => ApiError::OverLimit("An owner's limit on uploads in progress was reached".into()),
    }
}
