//! Uploading one file: pick the mode, go on with what an interrupted run left (or start over if the file changed),
//! send what the server does not hold, complete with the whole file's checksum. Each mode has its module; what they
//! share (the run's context, the completion) is here.
//!
//! Every run reads each byte of the file once, and computes every checksum it sends from what it read in this run:
//! pieces the server already holds are read for their CRC (and compared with the CRCs recorded when they were sent),
//! so the whole file's checksum is always the file's as it is now, and the server, which checks it against what it
//! holds, never completes an object of mixed bytes.

mod direct;
mod parallel;
mod sequential;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::api::Api;
use crate::error::{Error, Result};
use crate::source::Source;
use crate::state::{Header, Journal, Mode, StateDir};
use wire::Crc64;

/// Relayed chunks by default: the service's default, well under API Gateway's payload limit.
pub const DEFAULT_CHUNK_SIZE: u64 = 4 * 1024 * 1024;
/// In auto mode, files of at least this size go straight to S3.
pub const DEFAULT_DIRECT_THRESHOLD: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeChoice {
    /// Sequential for a file of one chunk or less (its two requests are the fewest round trips), direct for files
    /// of at least the threshold, parallel between; sequential for a server that speaks only django-chunked-upload's
    /// protocol.
    Auto,
    Sequential,
    Parallel,
    Direct,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub mode: ModeChoice,
    /// Requests in flight in the parallel and direct modes.
    pub parallel: usize,
    pub chunk_size: u64,
    /// A direct upload's part size wanted (default [`direct::DEFAULT_PART_SIZE`]; the server may round it up).
    pub part_size: Option<u64>,
    pub direct_threshold: u64,
    /// The name the server records (default: the file's).
    pub filename: Option<String>,
    pub content_type: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: ModeChoice::Auto,
            parallel: 4,
            chunk_size: DEFAULT_CHUNK_SIZE,
            part_size: None,
            direct_threshold: DEFAULT_DIRECT_THRESHOLD,
            filename: None,
            content_type: None,
        }
    }
}

/// What an upload reports as it goes, for a progress display.
#[derive(Debug, Clone)]
pub enum Event {
    /// Under way: `held` of `total` bytes were already on the server (resumed from an earlier run).
    Started {
        mode: Mode,
        upload_id: String,
        total: u64,
        held: u64,
    },
    /// The server accepted `bytes` more.
    Sent {
        bytes: u64,
    },
    /// Requests carrying bytes in flight now.
    InFlight(usize),
    /// An interrupted upload cannot go on, for this reason; a new one starts.
    StartingOver {
        reason: String,
    },
    Completing,
}

pub type Events<'a> = &'a (dyn Fn(Event) + Send + Sync);

pub struct Uploader<'a> {
    pub api: &'a Api,
    pub states: &'a StateDir,
    pub events: Events<'a>,
}

/// An upload under way: what every mode's loop needs.
struct Run<'a> {
    api: &'a Api,
    source: &'a Source,
    events: Events<'a>,
    header: Header,
    journal: Journal,
    /// CRCs of the pieces an earlier run recorded as accepted.
    recorded: BTreeMap<u64, Crc64>,
    parallel: usize,
    in_flight: AtomicUsize,
}

impl Uploader<'_> {
    /// Uploads `path`; the server's result once complete.
    pub async fn put(&self, path: &Path, options: &Options) -> Result<Value> {
        let source = Source::open(path)?;
        let path = std::fs::canonicalize(path).map_err(|e| Error::local(&path.display().to_string(), e))?;
        if let Some(saved) = self.states.load(self.api.endpoint(), &path) {
            let reason = if saved.header.identity != source.identity {
                "the file changed since the interrupted upload".to_string()
            } else {
                match self.resume(&source, &path, saved.header.clone(), saved.accepted, options).await {
                    Err(Error::FileChanged(reason) | Error::NotFound(reason) | Error::Expired(reason)) => reason,
                    done => return done,
                }
            };
            (self.events)(Event::StartingOver { reason });
            // Best effort: an upload left behind expires on its own.
            let _ = self.api.abort(&saved.header.upload_id, saved.header.secret.as_deref()).await;
            self.states.remove(self.api.endpoint(), &path);
        }
        self.fresh(&source, &path, options).await
    }

    async fn fresh(&self, source: &Source, path: &Path, options: &Options) -> Result<Value> {
        let filename = options.filename.clone().unwrap_or_else(|| file_name(path));
        let mode = match options.mode {
            ModeChoice::Sequential => Mode::Sequential,
            ModeChoice::Parallel => Mode::Parallel,
            ModeChoice::Direct => Mode::Direct,
            ModeChoice::Auto if source.size() <= options.chunk_size => Mode::Sequential,
            ModeChoice::Auto if source.size() >= options.direct_threshold => Mode::Direct,
            ModeChoice::Auto => Mode::Parallel,
        };
        if mode == Mode::Sequential {
            return sequential::start(self, source, path, options, &filename).await;
        }
        let mut opening = json!({"size": source.size(), "mode": mode.as_str(), "filename": filename});
        let part_size = options.part_size.unwrap_or(direct::DEFAULT_PART_SIZE);
        // A direct upload's first parts are read before it opens: their URLs come with the answer.
        let mut first = Vec::new();
        match mode {
            Mode::Parallel => opening["chunk_size"] = json!(options.chunk_size),
            _ => {
                opening["part_size"] = json!(part_size);
                first = direct::read_first(source, part_size, options.parallel.max(1)).await?;
                opening["part_urls"] = direct::declared(&first);
            }
        }
        if let Some(content_type) = &options.content_type {
            opening["content_type"] = json!(content_type);
        }
        let answer = self.api.open(&opening).await?;
        if matches!(answer.status, 404 | 405) && options.mode == ModeChoice::Auto {
            // A plain django-chunked-upload server: it has only the sequential protocol.
            return sequential::start(self, source, path, options, &filename).await;
        }
        if matches!(answer.status, 404 | 405) {
            return Err(Error::Refused {
                status: answer.status,
                detail: format!("this server has no {} mode (it offers no POST /upload/create)", mode.as_str()),
            });
        }
        let opened = answer.ok()?;
        let field = |name: &str| opened[name].as_u64().ok_or_else(|| unexpected(&format!("create's {name}")));
        let unit = if mode == Mode::Parallel { field("chunk_size")? } else { field("part_size")? };
        let header = Header {
            endpoint: self.api.endpoint().to_string(),
            path: path.display().to_string(),
            identity: source.identity.clone(),
            upload_id: opened["upload_id"].as_str().ok_or_else(|| unexpected("create's upload_id"))?.to_string(),
            mode,
            unit,
            secret: opened["upload_secret"].as_str().map(str::to_string),
        };
        let journal = self.states.create(&header, path)?;
        // Parts read for another part size than the grid's are of no use (a server that rounded it up).
        let first = if unit == part_size { direct::signed(first, &opened["part_urls"]) } else { Vec::new() };
        let run = self.run(source, header, journal, BTreeMap::new(), options);
        run.lane(HashSet::new(), first).await
    }

    /// Goes on with an interrupted upload from what the server says it holds.
    async fn resume(
        &self,
        source: &Source,
        path: &Path,
        header: Header,
        recorded: BTreeMap<u64, Crc64>,
        options: &Options,
    ) -> Result<Value> {
        let status = self.api.status(&header.upload_id, header.secret.as_deref()).await?.ok()?;
        if status["status"] == "complete" {
            self.states.remove(self.api.endpoint(), path);
            return Ok(status);
        }
        let journal = self.states.reopen(&header, path)?;
        let mode = header.mode;
        let run = self.run(source, header, journal, recorded, options);
        match mode {
            Mode::Sequential => {
                let offset = status["offset"].as_u64().ok_or_else(|| unexpected("status's offset"))?;
                sequential::go_on(&run, offset).await
            }
            Mode::Parallel => run.lane(held(&status["chunks_held"], 0), Vec::new()).await,
            Mode::Direct => run.lane(held(&status["parts_held"], 1), Vec::new()).await,
            // Only Uppy's S3 plugin opens those; a state file of this tool never names one.
            Mode::UppyS3 => Err(Error::Local("an Uppy S3 upload cannot be resumed by this tool".into())),
        }
    }

    fn run<'a>(
        &'a self,
        source: &'a Source,
        header: Header,
        journal: Journal,
        recorded: BTreeMap<u64, Crc64>,
        options: &Options,
    ) -> Run<'a> {
        Run {
            api: self.api,
            source,
            events: self.events,
            header,
            journal,
            recorded,
            parallel: options.parallel.max(1),
            in_flight: AtomicUsize::new(0),
        }
    }
}

impl Run<'_> {
    /// A parallel or direct upload, holding the pieces in `held` (indexes from 0); a direct one's `first` parts are
    /// read already.
    async fn lane(&self, held: HashSet<u64>, first: Vec<direct::Part>) -> Result<Value> {
        let held_bytes = held.iter().map(|&i| self.span(i).1).sum();
        self.started(held_bytes);
        let crcs = match self.header.mode {
            Mode::Direct => direct::send(self, &held, first).await?,
            _ => parallel::send(self, &held).await?,
        };
        let whole = Crc64::concat(crcs.into_iter().map(|(i, crc)| (crc, self.span(i).1)))
            .ok_or_else(|| unexpected("a file of no pieces"))?;
        self.complete(("crc64nvme", &whole.to_base64())).await
    }

    fn started(&self, held: u64) {
        (self.events)(Event::Started {
            mode: self.header.mode,
            upload_id: self.header.upload_id.clone(),
            total: self.source.size(),
            held,
        });
    }

    /// Where piece `index` (from 0) starts, and its length.
    fn span(&self, index: u64) -> (u64, u64) {
        let start = index * self.header.unit;
        (start, self.header.unit.min(self.source.size() - start))
    }

    fn pieces(&self) -> u64 {
        self.source.size().div_ceil(self.header.unit)
    }

    /// Piece `index` as the file has it now: bytes and CRC. A piece recorded as sent with another CRC means the file
    /// changed since.
    async fn read(&self, index: u64) -> Result<(bytes::Bytes, Crc64)> {
        let (start, len) = self.span(index);
        let (bytes, crc) = self.source.read(start, len).await?;
        match self.recorded.get(&index) {
            Some(sent) if *sent != crc => Err(Error::FileChanged(format!(
                "bytes {start}-{} of the file changed since they were sent",
                start + len - 1
            ))),
            _ => Ok((bytes, crc)),
        }
    }

    /// Counts a request carrying bytes while it runs.
    async fn carrying<T>(&self, request: impl Future<Output = T>) -> T {
        (self.events)(Event::InFlight(self.in_flight.fetch_add(1, Ordering::SeqCst) + 1));
        let outcome = request.await;
        (self.events)(Event::InFlight(self.in_flight.fetch_sub(1, Ordering::SeqCst) - 1));
        outcome
    }

    fn accepted(&self, index: u64, crc: Crc64) -> Result<()> {
        self.journal.accepted(index, crc)?;
        (self.events)(Event::Sent { bytes: self.span(index).1 });
        Ok(())
    }

    /// Completes with the whole file's checksum. A file that changed while it was read is not completed.
    async fn complete(&self, checksum: (&str, &str)) -> Result<Value> {
        if !self.source.unchanged() {
            return Err(Error::FileChanged("the file changed while it was being uploaded".into()));
        }
        (self.events)(Event::Completing);
        let mut answer = self.api.complete(&self.header.upload_id, checksum, self.header.secret.as_deref()).await?;
        // 202: S3 is still assembling the object (a multipart completion can outlast a request); ask again when the
        // server says.
        while answer.status == 202 {
            let wait = answer.body["retry_after"].as_u64().unwrap_or(5);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            answer = self.api.complete(&self.header.upload_id, checksum, self.header.secret.as_deref()).await?;
        }
        // A completion whose answer was lost, repeated: the server answers 400 with the same result.
        let result = match answer.status {
            400 if answer.body["status"] == "complete" => Ok(answer.body),
            _ => answer.ok(),
        };
        match result {
            Ok(mut result) => {
                self.forget();
                if let Value::Object(fields) = &mut result {
                    fields.remove("detail");
                }
                Ok(result)
            }
            Err(e @ Error::ChecksumMismatch(_)) => {
                // The server holds other bytes than the file's: no run can complete this upload.
                let _ = self.api.abort(&self.header.upload_id, self.header.secret.as_deref()).await;
                self.forget();
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    fn forget(&self) {
        let _ = std::fs::remove_file(self.journal.path());
    }
}

/// The indexes (from 0) in a status's inclusive ranges of pieces numbered from `first`.
fn held(ranges: &Value, first: u64) -> HashSet<u64> {
    let pairs = ranges.as_array().into_iter().flatten().filter_map(|r| Some((r[0].as_u64()?, r[1].as_u64()?)));
    pairs.flat_map(|(from, to)| (from..=to).map(move |n| n - first)).collect()
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned())
}

fn unexpected(what: &str) -> Error {
    Error::Refused { status: 200, detail: format!("the server's answer lacks {what}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_ranges_become_indexes_from_zero() {
        assert_eq!(held(&json!([[0, 2], [5, 5]]), 0), HashSet::from([0, 1, 2, 5]));
        assert_eq!(held(&json!([[1, 2]]), 1), HashSet::from([0, 1]));
        assert_eq!(held(&Value::Null, 0), HashSet::new());
    }
}
