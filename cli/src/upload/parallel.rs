//! The parallel mode: chunks on the server's grid, sent in any order, `parallel` at a time, each with its CRC64NVME
//! (which the function checks); the server uploads a part when its last chunk arrives.

use std::collections::HashSet;

use futures_util::{StreamExt, TryStreamExt, stream};

use super::Run;
use crate::api::ChunkTarget;
use crate::error::{Error, Result};
use wire::Crc64;

/// Sends every chunk not in `held`; every chunk's CRC, by index.
pub(super) async fn send(run: &Run<'_>, held: &HashSet<u64>) -> Result<Vec<(u64, Crc64)>> {
    let upload_id = run.header.upload_id.as_str();
    let secret = run.header.secret.as_deref();
    let chunks = (0..run.pieces()).map(|index| async move {
        let (bytes, crc) = run.read(index).await?;
        if held.contains(&index) {
            return Ok((index, crc));
        }
        let crc64nvme = crc.to_base64();
        let target = ChunkTarget::Parallel { upload_id, secret, crc64nvme: &crc64nvme };
        let start = run.span(index).0;
        let answer = run.carrying(run.api.chunk(target, start, bytes, run.source.size())).await?;
        match answer.status {
            200 => run.accepted(index, crc).map(|()| (index, crc)),
            409 => {
                Err(Error::FileChanged(format!("the server holds other bytes for chunk {index}: {}", answer.detail())))
            }
            _ => Err(answer.refusal()),
        }
    });
    let mut crcs: Vec<(u64, Crc64)> = stream::iter(chunks).buffer_unordered(run.parallel).try_collect().await?;
    crcs.sort_unstable_by_key(|(index, _)| *index);
    Ok(crcs)
}
