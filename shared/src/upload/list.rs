//! `GET /upload`: the caller's uploads, newest first, a page at a time (`store::listing`). Only an authenticated
//! caller has a listing: anonymous uploads all share one owner and are each bound to their own secret, so no request
//! can name them together.

use serde_json::{Value, json};

use super::status::progress_json;
use crate::app::App;
use crate::clock::{iso8601, now_ms};
use crate::error::ApiError;
use crate::secret::Caller;
use crate::store::listing::MAX_PAGE;
use crate::store::{Cursor, Status, UploadRecord};

/// A page asked for when the request names no `limit`.
pub const DEFAULT_PAGE: usize = 50;

/// A listing request, checked: how many uploads, from where.
#[derive(Debug)]
pub struct Listing {
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

impl Listing {
    /// From the query string's `limit` and `cursor`, as given (or absent).
    pub fn parse(limit: Option<&str>, cursor: Option<&str>) -> Result<Self, ApiError> {
        let limit =
            match limit {
                None => DEFAULT_PAGE,
                Some(text) => text.parse::<usize>().ok().filter(|n| (1..=MAX_PAGE).contains(n)).ok_or_else(|| {
                    ApiError::BadRequest(format!("limit must be a whole number from 1 to {MAX_PAGE}"))
                })?,
            };
        Ok(Listing { limit, cursor: cursor.map(Cursor::parse).transpose()? })
    }
}

impl App {
    pub async fn list(&self, caller: &Caller, listing: Listing) -> Result<Value, ApiError> {
        let Caller::Principal(owner) = caller else {
            return Err(ApiError::Forbidden(
                "Listing uploads needs an authenticated caller: anonymous uploads are reached by their secrets only"
                    .into(),
            ));
        };
        let page = self.table.list_by_owner(owner, listing.limit, listing.cursor.as_ref()).await?;
        let now = now_ms();
        let uploads: Vec<Value> = page
            .records
            .iter()
            // A token whose sub is `anonymous` is not the owner of the anonymous uploads (they hold a secret).
            .filter(|r| caller.may_use(&r.owner, r.secret_hash.as_ref()))
            .map(|r| self.listed_json(r, now))
            .collect();
        Ok(json!({"uploads": uploads, "next_cursor": page.next.map(|c| c.encode())}))
    }

    /// One upload as the listing shows it: a completed one's result, an unfinished one's progress (`expired` once
    /// past its expiry, until TTL removes it), both with when it was created, its content type and key.
    fn listed_json(&self, record: &UploadRecord, now_ms: u64) -> Value {
        let mut item = match record.status {
            // Without the completion hook's answer: up to 16 KiB each, it is the complete response's and the
            // status's to repeat, not every page's.
            Status::Complete => self.plain_result(record),
            _ => progress_json(record),
        };
        if record.status == Status::Uploading && record.is_expired(now_ms) {
            item["status"] = json!("expired");
        }
        item["created"] = json!(iso8601(record.created_at_ms));
        item["content_type"] = json!(record.content_type);
        item["key"] = json!(record.key);
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_whole_numbers_within_a_page() {
        assert_eq!(Listing::parse(None, None).unwrap().limit, DEFAULT_PAGE);
        assert_eq!(Listing::parse(Some("1"), None).unwrap().limit, 1);
        assert_eq!(Listing::parse(Some("100"), None).unwrap().limit, 100);
        for bad in ["0", "101", "-1", "", "ten", "1.5", " 5", "99999999999999999999999"] {
            assert!(matches!(Listing::parse(Some(bad), None), Err(ApiError::BadRequest(_))), "{bad:?}");
        }
    }
}
