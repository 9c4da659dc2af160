//! The direct mode: each part read and its CRC64NVME computed, a URL presigned for exactly those bytes, and the part
//! PUT straight to S3; `parallel` parts at a time. The first parts are read before the upload opens, and their URLs
//! come with the opening's answer; while parts are on their way, the next ones are read and their URLs fetched, so
//! a part goes out as soon as one before it is done. A part whose URL S3 no longer takes (expired while it waited:
//! 403; or signed with credentials that expired first: 400 ExpiredToken) gets a fresh URL once.

use std::collections::{HashSet, VecDeque};

use bytes::Bytes;
use futures_util::stream::{FuturesOrdered, FuturesUnordered};
use futures_util::{StreamExt, future};
use serde_json::{Value, json};

use super::{Run, unexpected};
use crate::error::{Error, Result};
use crate::source::Source;
use wire::Crc64;

/// Parts of 5 MiB unless asked otherwise: the service's own default, S3's smallest part (for files over 44 GiB the
/// service rounds it up, and the first URLs come one request later).
pub const DEFAULT_PART_SIZE: u64 = 5 * 1024 * 1024;

/// A part read: its index (part number less one), bytes and CRC, and its URL once signed. A part the server holds
/// is read for its CRC only.
pub struct Part {
    index: u64,
    bytes: Bytes,
    crc: Crc64,
    url: Option<Signed>,
    held: bool,
}

struct Signed {
    url: String,
    headers: Vec<(String, String)>,
}

/// The first `count` parts of `part_size` (fewer for a small file), read at once.
pub(super) async fn read_first(source: &Source, part_size: u64, count: usize) -> Result<Vec<Part>> {
    let parts = source.size().div_ceil(part_size).min(count as u64);
    let reads = (0..parts).map(|index| async move {
        let start = index * part_size;
        let (bytes, crc) = source.read(start, part_size.min(source.size() - start)).await?;
        Ok(Part { index, bytes, crc, url: None, held: false })
    });
    future::try_join_all(reads).await
}

/// The opening's `part_urls`: the parts' numbers and CRCs.
pub(super) fn declared(parts: &[Part]) -> Value {
    json!(parts.iter().map(|p| json!({"number": p.index + 1, "crc64nvme": p.crc.to_base64()})).collect::<Vec<_>>())
}

/// The parts with the URLs the opening's answer signed for them (`part_urls`, if it has them).
pub(super) fn signed(mut parts: Vec<Part>, answer: &Value) -> Vec<Part> {
    for url in answer["parts"].as_array().into_iter().flatten() {
        let number = url["number"].as_u64();
        if let Some(part) = parts.iter_mut().find(|p| Some(p.index + 1) == number) {
            part.url = signed_url(url);
        }
    }
    parts
}

/// Sends every part not in `held` (indexes from 0: part numbers less one), `first` already read; every part's
/// CRC, by index.
pub(super) async fn send(run: &Run<'_>, held: &HashSet<u64>, first: Vec<Part>) -> Result<Vec<(u64, Crc64)>> {
    let pieces = run.pieces();
    let mut next = first.len() as u64;
    let mut ready: VecDeque<Part> = first.into();
    let mut preparing = FuturesOrdered::new();
    let mut sending = FuturesUnordered::new();
    let mut crcs = Vec::with_capacity(pieces as usize);
    loop {
        // As many parts read ahead as are on their way: memory stays at about twice `parallel` parts.
        while next < pieces && preparing.len() + ready.len() < run.parallel {
            preparing.push_back(prepare(run, next, held.contains(&next)));
            next += 1;
        }
        while sending.len() < run.parallel
            && let Some(part) = ready.pop_front()
        {
            if part.held {
                crcs.push((part.index, part.crc));
            } else {
                sending.push(run.carrying(put(run, part)));
            }
        }
        if preparing.is_empty() && sending.is_empty() && ready.is_empty() {
            break;
        }
        tokio::select! {
            Some(part) = preparing.next(), if !preparing.is_empty() => ready.push_back(part?),
            Some(sent) = sending.next(), if !sending.is_empty() => {
                let (index, crc) = sent?;
                run.accepted(index, crc)?;
                crcs.push((index, crc));
            }
        }
    }
    crcs.sort_unstable_by_key(|(index, _)| *index);
    Ok(crcs)
}

/// Part `index` read (checked against what an earlier run recorded) and, unless the server holds it, signed.
async fn prepare(run: &Run<'_>, index: u64, held: bool) -> Result<Part> {
    let (bytes, crc) = run.read(index).await?;
    let url = if held { None } else { Some(presigned(run, index as u32 + 1, crc).await?) };
    Ok(Part { index, bytes, crc, url, held })
}

async fn put(run: &Run<'_>, part: Part) -> Result<(u64, Crc64)> {
    let number = part.index as u32 + 1;
    let mut url = part.url;
    let mut fresh_url = true;
    loop {
        let signed = match url.take() {
            Some(signed) => signed,
            None => presigned(run, number, part.crc).await?,
        };
        let answer = run.api.put_presigned(&signed.url, &signed.headers, part.bytes.clone()).await?;
        match answer.status {
            200 => return Ok((part.index, part.crc)),
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
async fn presigned(run: &Run<'_>, number: u32, crc: Crc64) -> Result<Signed> {
    let wanted = [(number, crc.to_base64())];
    let answer = run.api.part_urls(&run.header.upload_id, &wanted, run.header.secret.as_deref()).await?;
    if answer.status == 409 {
        return Err(Error::FileChanged(format!("part {number} was declared with other bytes: {}", answer.detail())));
    }
    let body = answer.ok()?;
    signed_url(body["parts"].get(0).ok_or_else(|| unexpected("a part URL"))?).ok_or_else(|| unexpected("a part's url"))
}

fn signed_url(part: &Value) -> Option<Signed> {
    let url = part["url"].as_str()?.to_string();
    let headers = part["headers"].as_object().into_iter().flatten();
    let headers = headers.filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_string()))).collect();
    Some(Signed { url, headers })
}
