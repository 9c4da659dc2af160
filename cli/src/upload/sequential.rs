//! The sequential mode, django-chunked-upload's protocol: chunks in order, the first one creating the upload, then
//! complete with the MD5 (the next chunk read, and the last one accepted hashed, while one is on its way).

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use md5::{Digest, Md5};
use serde_json::Value;

use super::{Options, Run, Uploader, unexpected};
use crate::api::ChunkTarget;
use crate::error::{Error, Result};
use crate::source::Source;
use crate::state::{Header, Mode};

/// A new sequential upload: its first chunk creates it.
pub(super) async fn start(
    uploader: &Uploader<'_>,
    source: &Source,
    path: &Path,
    options: &Options,
    filename: &str,
) -> Result<Value> {
    let unit = options.chunk_size;
    let (bytes, crc) = source.read(0, unit.min(source.size())).await?;
    let answer = uploader.api.chunk(ChunkTarget::First { filename }, 0, bytes.clone(), source.size()).await?;
    let first = answer.ok()?;
    let header = Header {
        endpoint: uploader.api.endpoint().to_string(),
        path: path.display().to_string(),
        identity: source.identity.clone(),
        upload_id: first["upload_id"].as_str().ok_or_else(|| unexpected("the first chunk's upload_id"))?.to_string(),
        mode: Mode::Sequential,
        unit,
        secret: first["upload_secret"].as_str().map(str::to_string),
    };
    let journal = uploader.states.create(&header, path)?;
    let run = uploader.run(source, header, journal, BTreeMap::new(), options);
    run.started(0);
    let mut md5 = Md5::new();
    md5.update(&bytes);
    run.accepted(0, crc)?;
    send_from(&run, md5, bytes.len() as u64).await
}

/// An interrupted sequential upload whose server holds `offset` bytes: they are read again for the MD5 (and checked
/// against the CRCs recorded when they were sent), then the rest is sent.
pub(super) async fn go_on(run: &Run<'_>, offset: u64) -> Result<Value> {
    if !offset.is_multiple_of(run.header.unit) && offset != run.source.size() {
        return Err(Error::FileChanged(format!("the server holds {offset} bytes, not a whole number of chunks")));
    }
    run.started(offset);
    let mut md5 = Md5::new();
    for index in 0..offset.div_ceil(run.header.unit) {
        md5.update(&run.read(index).await?.0);
    }
    send_from(run, md5, offset).await
}

async fn send_from(run: &Run<'_>, md5: Md5, mut offset: u64) -> Result<Value> {
    let (total, unit) = (run.source.size(), run.header.unit);
    let upload_id = run.header.upload_id.as_str();
    let target = ChunkTarget::Sequential { upload_id, secret: run.header.secret.as_deref() };
    let mut next = if offset < total { Some(run.read(offset / unit).await?) } else { None };
    // The MD5 takes each accepted chunk while the next one is on its way: it is never what the link waits for.
    let mut hashing = hash(md5, Bytes::new());
    while let Some((bytes, crc)) = next.take() {
        let end = offset + bytes.len() as u64;
        let send = run.carrying(run.api.chunk(target, offset, bytes.clone(), total));
        let read_ahead = async { if end < total { Some(run.read(end / unit).await) } else { None } };
        let (answer, ahead, md5) = tokio::join!(send, read_ahead, hashing);
        let answer = answer?;
        match answer.status {
            200 => {}
            // A retry of a chunk the server had taken (its answer lost): the server is past it.
            400 if answer.body["offset"].as_u64() == Some(end) => {}
            _ => return Err(answer.refusal()),
        }
        hashing = hash(md5?, bytes);
        run.accepted(offset / unit, crc)?;
        offset = end;
        next = ahead.transpose()?;
    }
    let md5: String = hashing.await?.finalize().iter().map(|b| format!("{b:02x}")).collect();
    run.complete(("md5", &md5)).await
}

/// The MD5 state after `bytes`, on a blocking thread.
fn hash(mut md5: Md5, bytes: Bytes) -> impl Future<Output = Result<Md5>> {
    let hashed = tokio::task::spawn_blocking(move || {
        md5.update(&bytes);
        md5
    });
    async move { hashed.await.map_err(|e| Error::local("the MD5", e)) }
}
