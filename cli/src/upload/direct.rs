//! The direct mode: each part read and its CRC64NVME computed, a URL presigned for exactly those bytes, and the part
//! PUT straight to S3; `parallel` parts at a time. A part whose URL S3 no longer takes (expired while it waited: 403;
//! or signed with credentials that expired first: 400 ExpiredToken) gets a fresh URL once.

use std::collections::HashSet;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};

use super::{Run, unexpected};
use crate::error::{Error, Result};
use wire::Crc64;

/// Sends every part not in `held` (indexes from 0: part numbers less one); every part's CRC, by index.
pub(super) async fn send(run: &Run<'_>, held: &HashSet<u64>) -> Result<Vec<(u64, Crc64)>> {
    let parts = (0..run.pieces()).map(|index| async move {
        let (bytes, crc) = run.read(index).await?;
        if !held.contains(&index) {
            run.carrying(put(run, index, bytes, crc)).await?;
            run.accepted(index, crc)?;
        }
        Ok((index, crc))
    });
    let mut crcs: Vec<(u64, Crc64)> = stream::iter(parts).buffer_unordered(run.parallel).try_collect().await?;
    crcs.sort_unstable_by_key(|(index, _)| *index);
    Ok(crcs)
}

async fn put(run: &Run<'_>, index: u64, bytes: Bytes, crc: Crc64) -> Result<()> {
    let number = index as u32 + 1;
    let mut fresh_url = true;
    loop {
        let (url, headers) = presigned(run, number, crc).await?;
        let answer = run.api.put_presigned(&url, &headers, bytes.clone()).await?;
        match answer.status {
            200 => return Ok(()),
            403 if fresh_url => fresh_url = false,
            400 if fresh_url && answer.s3_code().as_deref() == Some("ExpiredToken") => fresh_url = false,
            status => {
                return Err(Error::Refused {
                    status,
                    detail: format!("S3 refused part {number}: {}", answer.detail()),
                });
            }
        }
    }
}

/// Part `number`'s URL and the headers to send with it.
async fn presigned(run: &Run<'_>, number: u32, crc: Crc64) -> Result<(String, Vec<(String, String)>)> {
    let wanted = [(number, crc.to_base64())];
    let answer = run.api.part_urls(&run.header.upload_id, &wanted, run.header.secret.as_deref()).await?;
    if answer.status == 409 {
        return Err(Error::FileChanged(format!("part {number} was declared with other bytes: {}", answer.detail())));
    }
    let body = answer.ok()?;
    let part = body["parts"].get(0).ok_or_else(|| unexpected("a part URL"))?;
    let url = part["url"].as_str().ok_or_else(|| unexpected("a part's url"))?.to_string();
    let headers = part["headers"].as_object().into_iter().flatten();
    let headers = headers.filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_string()))).collect();
    Ok((url, headers))
}
