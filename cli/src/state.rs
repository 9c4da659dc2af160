//! Resume state: what an interrupted upload needs to go on, one file per (endpoint, file path) in the user's state
//! directory. Its first line says which upload it is and which version of the file it sends; each later line is one
//! piece the server accepted, with its CRC64NVME, appended as it is accepted (so a large file's state costs one short
//! write per piece, and a kill can at worst tear the last line, which is then ignored). Removed on completion.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::source::Identity;
use wire::Crc64;

/// Which upload a state file is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub endpoint: String,
    pub path: String,
    pub identity: Identity,
    pub upload_id: String,
    pub mode: Mode,
    /// The piece size: chunks (sequential, parallel) or parts (direct).
    pub unit: u64,
    /// An anonymous upload's secret: the state file is the user's alone (mode 0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

pub use wire::Mode;

/// A state file read back: its header and the pieces accepted, by index (from 0).
pub struct Saved {
    pub header: Header,
    pub accepted: BTreeMap<u64, Crc64>,
}

/// The directory of state files.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: PathBuf) -> StateDir {
        StateDir { dir }
    }

    /// `CHUNKED_UPLOAD_STATE_DIR`, else `$XDG_STATE_HOME/chunked-upload`, else `~/.local/state/chunked-upload`.
    pub fn from_env() -> Result<StateDir> {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let dir = var("CHUNKED_UPLOAD_STATE_DIR")
            .or_else(|| var("XDG_STATE_HOME").map(|d| d.join("chunked-upload")))
            .or_else(|| var("HOME").map(|h| h.join(".local/state/chunked-upload")))
            .ok_or_else(|| Error::Local("no state directory: set CHUNKED_UPLOAD_STATE_DIR or HOME".into()))?;
        Ok(StateDir { dir })
    }

    fn file(&self, endpoint: &str, path: &Path) -> PathBuf {
        let mut hash = Sha256::new();
        hash.update(endpoint.as_bytes());
        hash.update([0]);
        hash.update(path.as_os_str().as_encoded_bytes());
        let name: String = hash.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{name}.state"))
    }

    /// The state of an upload of `path` to `endpoint`, if one was interrupted.
    pub fn load(&self, endpoint: &str, path: &Path) -> Option<Saved> {
        let text = std::fs::read_to_string(self.file(endpoint, path)).ok()?;
        let mut lines = text.lines();
        let header: Header = serde_json::from_str(lines.next()?).ok()?;
        let accepted = lines
            .filter_map(|line| {
                let (index, crc) = line.split_once(' ')?;
                Some((index.parse().ok()?, Crc64::from_base64(crc)?))
            })
            .collect();
        Some(Saved { header, accepted })
    }

    /// Starts the state of a new upload, replacing any other of the same file.
    pub fn create(&self, header: &Header, path: &Path) -> Result<Journal> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::local(&self.dir.display().to_string(), e))?;
        let file = self.file(&header.endpoint, path);
        let what = file.display().to_string();
        let mut line = serde_json::to_string(header).map_err(|e| Error::local(&what, e))?;
        line.push('\n');
        let partial = file.with_extension("partial");
        write_private(&partial, line.as_bytes()).map_err(|e| Error::local(&what, e))?;
        std::fs::rename(&partial, &file).map_err(|e| Error::local(&what, e))?;
        self.reopen(header, path)
    }

    /// Goes on appending to an upload's state.
    pub fn reopen(&self, header: &Header, path: &Path) -> Result<Journal> {
        let file = self.file(&header.endpoint, path);
        let appending = std::fs::OpenOptions::new().append(true).open(&file);
        let appending = appending.map_err(|e| Error::local(&file.display().to_string(), e))?;
        Ok(Journal { path: file, file: Mutex::new(appending) })
    }

    pub fn remove(&self, endpoint: &str, path: &Path) {
        let _ = std::fs::remove_file(self.file(endpoint, path));
    }
}

/// The open state file of an upload in progress.
pub struct Journal {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl Journal {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records that the server accepted piece `index` with this CRC. A line is one `write`, so concurrent pieces'
    /// lines never interleave.
    pub fn accepted(&self, index: u64, crc: Crc64) -> Result<()> {
        let line = format!("{index} {}\n", crc.to_base64());
        let mut file = self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        file.write_all(line.as_bytes()).map_err(|e| Error::local(&self.path.display().to_string(), e))
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_file_reads_back_what_was_accepted_and_ignores_a_torn_line() {
        let dir = std::env::temp_dir().join(format!("chunked-upload-state-{}", std::process::id()));
        let states = StateDir::new(dir.clone());
        let path = Path::new("/data/file.bin");
        let header = Header {
            endpoint: "http://127.0.0.1:8080".into(),
            path: path.display().to_string(),
            identity: Identity { size: 10, modified_ns: 1, inode: 2 },
            upload_id: "abc".into(),
            mode: Mode::Parallel,
            unit: 4,
            secret: Some("s".into()),
        };
        let journal = states.create(&header, path).expect("create");
        journal.accepted(2, Crc64(7)).expect("append");
        journal.accepted(0, Crc64(9)).expect("append");
        let file = states.file(&header.endpoint, path);
        std::fs::OpenOptions::new().append(true).open(&file).and_then(|mut f| f.write_all(b"1 AAA")).expect("tear");
        let saved = states.load(&header.endpoint, path).expect("load");
        assert_eq!(saved.header, header);
        assert_eq!(saved.accepted, BTreeMap::from([(0, Crc64(9)), (2, Crc64(7))]));
        assert!(states.load("http://elsewhere", path).is_none());
        states.remove(&header.endpoint, path);
        assert!(states.load(&header.endpoint, path).is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
