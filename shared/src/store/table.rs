//! DynamoDB: every change to an upload is one conditional write on the state it was computed from.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, ReturnValue, ReturnValuesOnConditionCheckFailure};

use super::bucket::Finished;
use super::ledger::{BufferChain, FlushLease, PartLedger};
use super::record::{Status, UploadRecord, attr, blob};
use super::{ambiguous, unavailable};
use crate::error::ApiError;
use crate::hook::HookOutcome;
use crate::protocol::{ContentRange, UploadId};
use crate::secret::Caller;

/// BatchGetItem's most keys a call.
pub(super) const BATCH: usize = 100;

#[derive(Clone)]
pub struct Table {
    client: Client,
    name: String,
}

/// The outcome of a conditional write.
pub enum Written {
    /// The write happened; the item as it is now.
    Won(UploadRecord),
    /// The condition failed; the item as it was (`None`: there is no such upload).
    Lost(Option<UploadRecord>),
}

/// What a chunk changes in the record when it commits.
pub struct ChunkCommit<'a> {
    pub upload_id: &'a UploadId,
    pub start: u64,
    pub new_offset: u64,
    pub md5_state: Vec<u8>,
    pub parts: &'a PartLedger,
    pub buffers: BufferChain,
    pub part_start: u64,
    pub flush_at: u64,
    /// The multipart upload, set by the first chunk's commit.
    pub multipart_id: Option<&'a str>,
    /// The flush lease a chunk that wrote a part holds: its commit must still hold it, and gives it up.
    pub lease: Option<&'a FlushLease>,
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

/// `#name` placeholders for every attribute used in expressions (many of ours are DynamoDB reserved words).
fn names(list: &[&str]) -> HashMap<String, String> {
    list.iter().map(|a| (format!("#{a}"), (*a).to_string())).collect()
}

impl Table {
    pub fn new(client: Client, name: String) -> Self {
        Table { client, name }
    }

    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// An update of one upload's item that returns the item: as it is now, or as it was if the condition failed.
    fn update(&self, upload_id: &UploadId) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.name)
            .key(attr::UPLOAD_ID, s(upload_id.as_str()))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
    }

    pub async fn get(&self, upload_id: &UploadId) -> Result<Option<UploadRecord>, ApiError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .key(attr::UPLOAD_ID, s(upload_id.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", &e))?;
        out.item.as_ref().map(UploadRecord::from_item).transpose()
    }

    /// The items of these keys (at most [`BATCH`]) that exist, read consistently, in no particular order.
    pub(super) async fn items(&self, keys: Vec<String>) -> Result<Vec<HashMap<String, AttributeValue>>, ApiError> {
        let mut keys: Vec<HashMap<String, AttributeValue>> =
            keys.into_iter().map(|k| HashMap::from([(attr::UPLOAD_ID.to_string(), s(&k))])).collect();
        let mut found = Vec::new();
        // DynamoDB may leave keys unprocessed (throttling, the 16 MB answer limit): asked again, a bounded number
        // of times before the request is answered 503.
        for _ in 0..8 {
            if keys.is_empty() {
                return Ok(found);
            }
            let wanted = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut keys)))
                .consistent_read(true)
                .build()
                .map_err(|e| ApiError::Unavailable(format!("BatchGetItem: {e}")))?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.name, wanted)
                .send()
                .await
                .map_err(|e| unavailable("BatchGetItem", &e))?;
            found.extend(out.responses.and_then(|mut r| r.remove(&self.name)).unwrap_or_default());
            keys = out.unprocessed_keys.and_then(|mut u| u.remove(&self.name)).map(|k| k.keys).unwrap_or_default();
        }
        Err(ApiError::Unavailable("BatchGetItem left keys unprocessed".into()))
    }

    /// Stores a new upload; fails only if the id exists, which a fresh random id never does.
    pub(super) async fn create(&self, record: &UploadRecord) -> Result<(), ApiError> {
        self.client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(record.to_item()))
            .condition_expression("attribute_not_exists(#upload_id)")
            .set_expression_attribute_names(Some(names(&[attr::UPLOAD_ID])))
            .send()
            .await
            .map_err(|e| unavailable("PutItem", &e))?;
        Ok(())
    }

    /// Reads the upload for a chunk and, when this chunk will complete a part, takes the part's flush lease, in one
    /// call. `Won`: the chunk is at the offset, flushes, and holds `lease` (alone, or with requests for the very
    /// same chunk): it uploads the ledger's next part. `Lost`: the chunk only buffers, another chunk holds the lease,
    /// or the chunk is refused; the caller checks the record it gets. A lease past its time is taken over.
    pub async fn claim(
        &self,
        upload_id: &UploadId,
        caller: &Caller,
        range: &ContentRange,
        lease: &FlushLease,
        now_ms: u64,
    ) -> Result<Written, ApiError> {
        let request = self
            .update(upload_id)
            .update_expression("SET #flush_holder = :holder, #flush_until_ms = :until")
            .condition_expression(
                "#status = :uploading AND #offset = :start AND #total = :total AND #flush_at <= :end \
                 AND (attribute_not_exists(#flush_holder) OR #flush_holder = :holder OR #flush_until_ms < :now)",
            )
            .set_expression_attribute_names(Some(names(&[
                attr::FLUSH_HOLDER,
                attr::FLUSH_UNTIL_MS,
                attr::STATUS,
                attr::OFFSET,
                attr::TOTAL,
                attr::FLUSH_AT,
            ])))
            .expression_attribute_values(":holder", blob(lease.holder()))
            .expression_attribute_values(":until", n(lease.until_ms))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":uploading", s(Status::Uploading.as_str()))
            .expression_attribute_values(":start", n(range.start))
            .expression_attribute_values(":total", n(range.total))
            .expression_attribute_values(":end", n(range.end_exclusive()));
        conditional(owned_by(request, caller)).await
    }

    /// Gives a flush lease up, if `lease`'s chunk still holds it. Only for a chunk refused before it uploaded
    /// anything: any other request for the same chunk is refused the same way, so no upload under it can land later.
    pub async fn release_flush(&self, upload_id: &UploadId, lease: &FlushLease) -> Result<(), ApiError> {
        let request = self
            .update(upload_id)
            .update_expression("REMOVE #flush_holder, #flush_until_ms")
            .condition_expression("#flush_holder = :holder")
            .set_expression_attribute_names(Some(names(&[attr::FLUSH_HOLDER, attr::FLUSH_UNTIL_MS])))
            .expression_attribute_values(":holder", blob(lease.holder()));
        conditional(request).await.map(|_| ())
    }

    /// Commits a chunk, only if the upload is still at `start` and uploading (and, for a chunk that wrote a part, its
    /// lease is still held: then it is given up). True if it did; the caller already knows the record it wrote, so
    /// nothing is read back.
    pub async fn commit_chunk(&self, c: ChunkCommit<'_>) -> Result<bool, ApiError> {
        let mut set = "SET #offset = :offset, #md5_state = :md5, #part_ledger = :parts, #buffer_chain = :buffers, \
                       #part_start = :part_start, #flush_at = :flush_at"
            .to_string();
        let mut attributes = vec![
            attr::OFFSET,
            attr::MD5_STATE,
            attr::PARTS,
            attr::BUFFERS,
            attr::PART_START,
            attr::FLUSH_AT,
            attr::STATUS,
        ];
        if c.multipart_id.is_some() {
            set.push_str(", #multipart_id = :multipart_id");
            attributes.push(attr::MULTIPART_ID);
        }
        let mut condition = "#offset = :start AND #status = :uploading".to_string();
        if c.lease.is_some() {
            set.push_str(" REMOVE #flush_holder, #flush_until_ms");
            condition.push_str(" AND #flush_holder = :holder");
            attributes.extend([attr::FLUSH_HOLDER, attr::FLUSH_UNTIL_MS]);
        }
        let mut request = self
            .client
            .update_item()
            .table_name(&self.name)
            .key(attr::UPLOAD_ID, s(c.upload_id.as_str()))
            .update_expression(set)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names(&attributes)))
            .expression_attribute_values(":offset", n(c.new_offset))
            .expression_attribute_values(":md5", blob(c.md5_state))
            .expression_attribute_values(":parts", blob(c.parts.encode()))
            .expression_attribute_values(":buffers", blob(c.buffers.0.to_vec()))
            .expression_attribute_values(":part_start", n(c.part_start))
            .expression_attribute_values(":flush_at", n(c.flush_at))
            .expression_attribute_values(":start", n(c.start))
            .expression_attribute_values(":uploading", s(Status::Uploading.as_str()));
        if let Some(id) = c.multipart_id {
            request = request.expression_attribute_values(":multipart_id", s(id));
        }
        if let Some(lease) = c.lease {
            request = request.expression_attribute_values(":holder", blob(lease.holder()));
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(false),
            Err(err) => Err(ambiguous("UpdateItem", &err)),
        }
    }

    /// Takes the right to complete a fully uploaded upload: only one request at a time calls S3's completion. A
    /// claim older than `stale_before_ms` belonged to a request that died, and is taken over. TTL is moved to
    /// `keep_until_secs` so the record cannot be removed while the completion runs.
    pub async fn claim_completion(
        &self,
        upload_id: &UploadId,
        caller: &Caller,
        now_ms: u64,
        stale_before_ms: u64,
        keep_until_secs: u64,
    ) -> Result<Written, ApiError> {
        let request = self
            .update(upload_id)
            .update_expression("SET #status = :completing, #completing_since_ms = :now, #expires_at = :keep")
            .condition_expression(
                "#offset = #total AND (#status = :uploading \
                 OR (#status = :completing AND #completing_since_ms < :stale))",
            )
            .set_expression_attribute_names(Some(names(&[
                attr::STATUS,
                attr::COMPLETING_SINCE_MS,
                attr::EXPIRES_AT,
                attr::OFFSET,
                attr::TOTAL,
            ])))
            .expression_attribute_values(":completing", s(Status::Completing.as_str()))
            .expression_attribute_values(":uploading", s(Status::Uploading.as_str()))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":keep", n(keep_until_secs))
            .expression_attribute_values(":stale", n(stale_before_ms));
        conditional(owned_by(request, caller)).await
    }

    /// Gives a completion claim back (S3 failed), so a retry need not wait for the lease to run out.
    pub async fn release_completion(&self, upload_id: &UploadId, since_ms: u64) -> Result<Written, ApiError> {
        let request = self
            .update(upload_id)
            .update_expression("SET #status = :uploading REMOVE #completing_since_ms")
            .condition_expression("#status = :completing AND #completing_since_ms = :since")
            .set_expression_attribute_names(Some(names(&[attr::STATUS, attr::COMPLETING_SINCE_MS])))
            .expression_attribute_values(":completing", s(Status::Completing.as_str()))
            .expression_attribute_values(":uploading", s(Status::Uploading.as_str()))
            .expression_attribute_values(":since", n(since_ms));
        conditional(request).await
    }

    /// Records the completion's result, only if this request's claim still holds. The completed record stays until
    /// `keep_until_secs` (its own TTL), so a repeated complete answers the same result meanwhile.
    pub async fn mark_complete(
        &self,
        upload_id: &UploadId,
        since_ms: u64,
        md5: &str,
        finished: &Finished,
        keep_until_secs: u64,
    ) -> Result<Written, ApiError> {
        let request = self
            .update(upload_id)
            .update_expression(
                "SET #status = :complete, #md5 = :md5, #etag = :etag, #crc64nvme = :crc, #expires_at = :keep",
            )
            .condition_expression("#status = :completing AND #completing_since_ms = :since")
            .set_expression_attribute_names(Some(names(&[
                attr::STATUS,
                attr::MD5,
                attr::ETAG,
                attr::CRC64,
                attr::EXPIRES_AT,
                attr::COMPLETING_SINCE_MS,
            ])))
            .expression_attribute_values(":keep", n(keep_until_secs))
            .expression_attribute_values(":complete", s(Status::Complete.as_str()))
            .expression_attribute_values(":completing", s(Status::Completing.as_str()))
            .expression_attribute_values(":since", n(since_ms))
            .expression_attribute_values(":md5", s(md5))
            .expression_attribute_values(":etag", s(&finished.etag))
            .expression_attribute_values(":crc", s(&finished.crc64));
        conditional(request).await
    }

    /// Records what the completion hook said for a completed upload, unless an answer is kept already (another
    /// request's call answered first): an answer replaces an earlier failure, a failure is kept until an answer.
    pub async fn set_hook_outcome(&self, upload_id: &UploadId, outcome: &HookOutcome) -> Result<Written, ApiError> {
        let request = match outcome {
            HookOutcome::Answered(answer) => self
                .update(upload_id)
                .update_expression("SET #hook_data = :hook REMOVE #hook_error")
                .expression_attribute_values(":hook", s(answer.text())),
            HookOutcome::Failed(failure) => self
                .update(upload_id)
                .update_expression("SET #hook_error = :hook")
                .expression_attribute_values(":hook", s(failure.detail())),
        };
        let request = request
            .condition_expression("#status = :complete AND attribute_not_exists(#hook_data)")
            .set_expression_attribute_names(Some(names(&[attr::STATUS, attr::HOOK_DATA, attr::HOOK_ERROR])))
            .expression_attribute_values(":complete", s(Status::Complete.as_str()));
        conditional(request).await
    }

    /// Records the multipart upload of a parallel or direct upload, created right after its record.
    pub async fn set_multipart(&self, upload_id: &UploadId, multipart_id: &str) -> Result<Written, ApiError> {
        let request = self
            .update(upload_id)
            .update_expression("SET #multipart_id = :multipart_id")
            .condition_expression("#status = :uploading")
            .set_expression_attribute_names(Some(names(&[attr::MULTIPART_ID, attr::STATUS])))
            .expression_attribute_values(":multipart_id", s(multipart_id))
            .expression_attribute_values(":uploading", s(Status::Uploading.as_str()));
        conditional(request).await
    }

    /// Stops all chunks from being accepted, before the bytes are removed.
    pub async fn mark_aborted(&self, upload_id: &UploadId, caller: &Caller) -> Result<Written, ApiError> {
        let request = self
            .update(upload_id)
            .update_expression("SET #status = :aborted")
            .condition_expression("#status IN (:uploading, :aborted)")
            .set_expression_attribute_names(Some(names(&[attr::STATUS])))
            .expression_attribute_values(":aborted", s(Status::Aborted.as_str()))
            .expression_attribute_values(":uploading", s(Status::Uploading.as_str()));
        conditional(owned_by(request, caller)).await
    }

    pub async fn delete(&self, upload_id: &UploadId) -> Result<(), ApiError> {
        self.client
            .delete_item()
            .table_name(&self.name)
            .key(attr::UPLOAD_ID, s(upload_id.as_str()))
            .send()
            .await
            .map_err(|e| unavailable("DeleteItem", &e))?;
        Ok(())
    }
}

/// Adds to an update's condition (set before, with its names) that the item is the caller's: their owner, and the
/// hash of the secret they sent (`secret::Caller::secret_hash`); an authenticated caller's item has none.
fn owned_by(request: UpdateItemFluentBuilder, caller: &Caller) -> UpdateItemFluentBuilder {
    let condition = request.get_condition_expression().clone().unwrap_or_default();
    let request = request
        .expression_attribute_names("#owner", attr::OWNER)
        .expression_attribute_names("#secret_hash", attr::SECRET_HASH)
        .expression_attribute_values(":owner", s(caller.owner()));
    match caller.secret_hash() {
        Some(hash) => request
            .condition_expression(format!("({condition}) AND #owner = :owner AND #secret_hash = :secret_hash"))
            .expression_attribute_values(":secret_hash", blob(hash.as_bytes().to_vec())),
        None => request
            .condition_expression(format!("({condition}) AND #owner = :owner AND attribute_not_exists(#secret_hash)")),
    }
}

/// Sends a conditional update and sorts its result into won, lost (with the item as it was), or a storage failure.
async fn conditional(request: UpdateItemFluentBuilder) -> Result<Written, ApiError> {
    match request.send().await {
        Ok(out) => match out.attributes {
            Some(item) => Ok(Written::Won(UploadRecord::from_item(&item)?)),
            None => Err(ApiError::Unavailable("UpdateItem returned no item".into())),
        },
        Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
            let old = match e.into_err() {
                UpdateItemError::ConditionalCheckFailedException(c) => c.item,
                _ => None,
            };
            Ok(Written::Lost(old.as_ref().map(UploadRecord::from_item).transpose()?))
        }
        Err(err) => Err(ambiguous("UpdateItem", &err)),
    }
}
