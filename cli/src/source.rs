//! The file being uploaded: read by range from blocking threads (so pieces can be read while others are in flight),
//! and known by an identity that changes when the file does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use wire::Crc64;

/// What tells one version of a file from another without reading it: its size and modification time (and inode,
/// where there is one). A resumed upload whose file no longer has it starts over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub size: u64,
    pub modified_ns: u128,
    pub inode: u64,
}

pub struct Source {
    path: PathBuf,
    file: Arc<std::fs::File>,
    pub identity: Identity,
}

impl Source {
    pub fn open(path: &Path) -> Result<Source> {
        let file = std::fs::File::open(path).map_err(|e| Error::local(&path.display().to_string(), e))?;
        let identity = identity(&file).map_err(|e| Error::local(&path.display().to_string(), e))?;
        if identity.size == 0 {
            return Err(Error::Local(format!("{}: an empty file cannot be uploaded", path.display())));
        }
        Ok(Source { path: path.to_path_buf(), file: Arc::new(file), identity })
    }

    pub fn size(&self) -> u64 {
        self.identity.size
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes `[start, start + len)` and their CRC64NVME, computed as they are read.
    pub async fn read(&self, start: u64, len: u64) -> Result<(Bytes, Crc64)> {
        let file = self.file.clone();
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<(Bytes, Crc64)> {
            let mut buffer = vec![0; len as usize];
            read_exact_at(&file, &mut buffer, start)?;
            let crc = Crc64::of(&buffer);
            Ok((Bytes::from(buffer), crc))
        });
        let what = || self.path.display().to_string();
        read.await.map_err(|e| Error::local(&what(), e))?.map_err(|e| Error::local(&what(), e))
    }

    /// Whether the file on disk is still the one opened.
    pub fn unchanged(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| identity_of(&m) == self.identity)
    }
}

fn identity(file: &std::fs::File) -> std::io::Result<Identity> {
    Ok(identity_of(&file.metadata()?))
}

fn identity_of(metadata: &std::fs::Metadata) -> Identity {
    let modified_ns =
        metadata.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(metadata);
    #[cfg(not(unix))]
    let inode = 0;
    Identity { size: metadata.len(), modified_ns, inode }
}

#[cfg(unix)]
fn read_exact_at(file: &std::fs::File, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buffer, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &std::fs::File, mut buffer: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !buffer.is_empty() {
        match std::os::windows::fs::FileExt::seek_read(file, buffer, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buffer = &mut buffer[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}
