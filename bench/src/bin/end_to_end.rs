//! End to end: one file through the local API server (the very handlers the Lambda functions run) into the
//! emulators' S3 in each of the service's modes (sequential chunks; parallel relayed chunks, 4 in flight; direct
//! presigned part PUTs, 4 in flight, parts of the same size as the others'), beside (a) a plain multipart upload of the same file with the AWS SDK, same part size, straight to
//! the same S3, one part after another and 4 parts in flight (the two ceilings), and (b) tus-node-server (`@tus/server` + `@tus/s3-store`, bench/tus) on the same S3,
//! driven by tus-js-client with the same chunk size. The systems take turns within each round, so the machine's
//! noise falls on all of them alike. Every upload is checked byte for byte (MD5 of the stored object), and the
//! lanes' results by their full-object CRC64NVME. The clients compute the CRCs they send within the timed span.
//!
//! Usage: `end_to_end --file PATH [--chunk-kib 1024,4096] [--runs 3] [--systems NAME,...]` (default: every system,
//! see SYSTEMS); the S3/DynamoDB endpoints, bucket and table come from the environment (`eval "$(emulators/up)"`).
//! Prints one JSON object per upload, then the medians.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bench::{CpuMeter, median};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use integration_tests::md5_hex;
use serde_json::{Value, json};
use shared::checksum::Crc64;
use shared::protocol::{MAX_PART_SIZE, MIN_PART_SIZE, plan_part_size};

type Error = Box<dyn std::error::Error + Send + Sync>;
type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// chunked-upload is the service's sequential mode (the django-chunked-upload protocol).
const SYSTEMS: [&str; 6] =
    ["chunked-upload", "chunked-parallel", "chunked-direct", "raw-multipart", "raw-parallel", "tus-node-server"];
/// At most this many part URLs per request, as the parts route takes.
const URLS_PER_REQUEST: usize = 100;
/// Parts (or chunks) a parallel client keeps in flight.
const IN_FLIGHT: usize = 4;

struct Args {
    file: PathBuf,
    chunk_sizes: Vec<usize>,
    runs: usize,
    systems: Vec<&'static str>,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = parse_args()?;
    let file = Bytes::from(std::fs::read(&args.file)?);
    let md5 = md5_hex(&file);
    let bucket = std::env::var("CHUNKED_UPLOAD_BUCKET").map_err(|_| "CHUNKED_UPLOAD_BUCKET is not set")?;
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    let server = LocalServer::start()?;
    let http = Client::builder(TokioExecutor::new()).build_http();

    let meter = CpuMeter::new(server.child.id());
    let mut rows: Vec<Value> = Vec::new();
    for round in 1..=args.runs {
        for &chunk in &args.chunk_sizes {
            let part = part_size(file.len(), chunk)?;
            let lane = Lane { http: &http, url: &server.url, file: &file, part };
            for &system in &args.systems {
                let before = meter.sample();
                let uploaded = match system {
                    "chunked-upload" => service_upload(&http, &server.url, &file, &md5, chunk).await?,
                    "chunked-parallel" => {
                        let opened = lane.open(json!({"mode": "parallel", "chunk_size": chunk})).await?;
                        lane.parallel(opened, chunk).await?
                    }
                    "chunked-direct" => {
                        lane.direct(lane.open(json!({"mode": "direct", "part_size": part})).await?).await?
                    }
                    "raw-multipart" => raw_multipart(&s3, &bucket, &file, part, 1).await?,
                    "raw-parallel" => raw_multipart(&s3, &bucket, &file, part, IN_FLIGHT).await?,
                    _ => tus_upload(&args.file, chunk, part)?,
                };
                let after = meter.sample();
                if let Some((bucket, key)) = &uploaded.stored {
                    verify_and_delete(&s3, bucket, key, &md5).await?;
                }
                let seconds = uploaded.seconds;
                // tus-node-server's client and server run in processes of their own, not measured here.
                let spent = |i: usize| match (before[i], after[i]) {
                    (Some(b), Some(a)) if system != "tus-node-server" || i >= 2 => json!(a - b),
                    _ => Value::Null,
                };
                let row = json!({
                    "bench": "end_to_end", "system": system, "round": round, "bytes": file.len(), "chunk_bytes": chunk, "part_bytes": part,
                    "seconds": seconds, "mib_per_s": file.len() as f64 / MIB / seconds,
                    "cpu_seconds": {"client": spent(0), "api": spent(1), "s3": spent(2), "dynamodb": spent(3)},
                });
                println!("{row}");
                rows.push(row);
            }
        }
    }
    for &chunk in &args.chunk_sizes {
        let rate = |system: &str| {
            median(
                rows.iter()
                    .filter(|r| r["system"] == system && r["chunk_bytes"] == chunk)
                    .filter_map(|r| r["mib_per_s"].as_f64())
                    .collect(),
            )
        };
        let rates: serde_json::Map<String, Value> =
            args.systems.iter().map(|&s| (s.to_string(), json!(rate(s)))).collect();
        let ratio = |baseline: &str| Some(rates.get(SYSTEMS[0])?.as_f64()? / rates.get(baseline)?.as_f64()?);
        println!(
            "{}",
            json!({
                "bench": "end_to_end", "summary": "median", "chunk_bytes": chunk, "part_bytes": part_size(file.len(), chunk)?,
                "runs": args.runs, "mib_per_s": rates,
                "ratio_to_raw_multipart": ratio("raw-multipart"), "ratio_to_tus_node_server": ratio("tus-node-server"),
            })
        );
    }
    Ok(())
}

const MIB: f64 = 1024.0 * 1024.0;

fn parse_args() -> Result<Args, Error> {
    let mut args =
        Args { file: PathBuf::new(), chunk_sizes: vec![1 << 20, 4 << 20], runs: 3, systems: SYSTEMS.to_vec() };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--file" => args.file = value.into(),
            "--chunk-kib" => {
                args.chunk_sizes =
                    value.split(',').map(|k| k.trim().parse::<usize>().map(|k| k * 1024)).collect::<Result<_, _>>()?
            }
            "--runs" => args.runs = value.parse()?,
            "--systems" => {
                args.systems = value
                    .split(',')
                    .map(|name| SYSTEMS.into_iter().find(|s| *s == name.trim()).ok_or(format!("unknown system {name}")))
                    .collect::<Result<_, _>>()?
            }
            _ => return Err(format!("unknown argument {flag}").into()),
        }
    }
    if args.file.as_os_str().is_empty() {
        return Err("usage: end_to_end --file PATH [--chunk-kib 1024,4096] [--runs 3] [--systems NAME,...]".into());
    }
    Ok(args)
}

/// The size of the parts the service makes from chunks of `chunk` bytes: buffered chunks become a part once they
/// reach the planned part size, so a part is a whole number of chunks.
fn part_size(total: usize, chunk: usize) -> Result<usize, Error> {
    let planned = plan_part_size(total as u64, MIN_PART_SIZE, MAX_PART_SIZE).map_err(|e| format!("{e:?}"))? as usize;
    Ok(planned.div_ceil(chunk) * chunk)
}

/// The release build of local-server, beside this binary, on a free loopback port.
struct LocalServer {
    child: Child,
    url: String,
}

impl LocalServer {
    fn start() -> Result<LocalServer, Error> {
        let binary = std::env::current_exe()?.with_file_name("local-server");
        if !binary.exists() {
            return Err(format!("{} is missing: cargo build --release -p local-server", binary.display()).into());
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(binary).env("PORT", port.to_string()).stdout(Stdio::null()).spawn()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("local-server did not start listening within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(LocalServer { child, url: format!("http://127.0.0.1:{port}") })
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sequential raw chunks, then completion with the MD5, as the browser client does; timed from the first chunk to
/// the completion's answer.
async fn service_upload(
    http: &HttpClient,
    url: &str,
    file: &Bytes,
    md5: &str,
    chunk: usize,
) -> Result<Uploaded, Error> {
    let token = bench_token();
    let started = Instant::now();
    let mut upload_id = String::new();
    for start in (0..file.len()).step_by(chunk) {
        let end = (start + chunk).min(file.len());
        let uri = if upload_id.is_empty() {
            format!("{url}/upload?filename=bench.bin")
        } else {
            format!("{url}/upload?upload_id={upload_id}")
        };
        let request = hyper::Request::post(uri)
            .header("authorization", &token)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("bytes {start}-{}/{}", end - 1, file.len()))
            .body(Full::new(file.slice(start..end)))?;
        let reply = send(http, request).await?;
        upload_id = reply["upload_id"].as_str().ok_or("no upload_id in the chunk's answer")?.to_string();
    }
    let request = hyper::Request::post(format!("{url}/upload/complete"))
        .header("authorization", &token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(format!("upload_id={upload_id}&md5={md5}"))))?;
    let result = send(http, request).await?;
    Ok(Uploaded::stored(started, &result))
}

async fn send(http: &HttpClient, request: hyper::Request<Full<Bytes>>) -> Result<Value, Error> {
    Ok(serde_json::from_slice(&exchange(http, request).await?)?)
}

/// The body of a successful answer; any other status is an error with the body in it.
async fn exchange(http: &HttpClient, request: hyper::Request<Full<Bytes>>) -> Result<Bytes, Error> {
    let response = http.request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)).into());
    }
    Ok(body)
}

fn bench_token() -> String {
    format!("Bearer {}", shared::local::dev_token("bench"))
}

/// One upload of the file in a parallel or direct mode, through the local server, in parts of `part` bytes.
struct Lane<'a> {
    http: &'a HttpClient,
    url: &'a str,
    file: &'a Bytes,
    part: usize,
}

/// An upload the service opened, and when the client started it.
struct Opened {
    started: Instant,
    token: String,
    upload_id: String,
}

impl Lane<'_> {
    /// `POST /upload/create` with `opening`'s mode and grid; the timed span starts here. The service must plan the
    /// part size the ceilings use, or the comparison would not be like for like.
    async fn open(&self, mut opening: Value) -> Result<Opened, Error> {
        let token = bench_token();
        let started = Instant::now();
        opening["size"] = json!(self.file.len());
        opening["filename"] = json!("bench.bin");
        let request = hyper::Request::post(format!("{}/upload/create", self.url))
            .header("authorization", &token)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(opening.to_string())))?;
        let opened = send(self.http, request).await?;
        if opened["part_size"] != json!(self.part) {
            return Err(format!("the service planned parts of {} bytes, not {}", opened["part_size"], self.part).into());
        }
        let upload_id = opened["upload_id"].as_str().ok_or("no upload_id in create's answer")?.to_string();
        Ok(Opened { started, token, upload_id })
    }

    /// Relayed chunks on the grid, `IN_FLIGHT` at a time, each with its CRC64NVME; then complete.
    async fn parallel(&self, opened: Opened, chunk: usize) -> Result<Uploaded, Error> {
        let sends = self.pieces(chunk).map(|body| {
            let (http, token) = (self.http.clone(), opened.token.clone());
            let uri = format!("{}/upload?upload_id={}", self.url, opened.upload_id);
            let range = format!("bytes {}-{}/{}", body.start, body.end - 1, self.file.len());
            async move {
                let crc = Crc64::of(&body.bytes);
                let request = hyper::Request::post(uri)
                    .header("authorization", token)
                    .header("content-type", "application/octet-stream")
                    .header("content-range", range)
                    .header("x-checksum-crc64nvme", crc.to_base64())
                    .body(Full::new(body.bytes.clone()))?;
                send(&http, request).await?;
                Ok((crc, body.bytes.len() as u64))
            }
        });
        let crcs = in_parallel(sends, IN_FLIGHT).await?;
        self.complete(opened, crcs).await
    }

    /// Part URLs bound to each part's CRC64NVME, then the parts PUT straight to S3, `IN_FLIGHT` at a time, with
    /// the headers the service gave; then complete.
    async fn direct(&self, opened: Opened) -> Result<Uploaded, Error> {
        let hashes = self.pieces(self.part).map(|part| async move { Ok((Crc64::of(&part.bytes), part)) });
        let parts = in_parallel(hashes, IN_FLIGHT).await?;
        let mut signed = Vec::with_capacity(parts.len());
        for batch in parts.chunks(URLS_PER_REQUEST) {
            let wanted: Vec<Value> = batch
                .iter()
                .map(|(crc, part)| json!({"number": part.start / self.part + 1, "crc64nvme": crc.to_base64()}))
                .collect();
            let request = hyper::Request::post(format!("{}/upload/{}/parts", self.url, opened.upload_id))
                .header("authorization", &opened.token)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(json!({ "parts": wanted }).to_string())))?;
            let answer = send(self.http, request).await?;
            signed.extend(answer["parts"].as_array().ok_or("no parts in the parts route's answer")?.iter().cloned());
        }
        if signed.len() != parts.len() {
            return Err(format!("asked for {} part URLs, got {}", parts.len(), signed.len()).into());
        }
        let puts = signed.into_iter().map(|url| {
            let (http, file, part) = (self.http.clone(), self.file.clone(), self.part);
            async move {
                let number = url["number"].as_u64().ok_or("a part URL without its number")? as usize;
                let start = (number - 1) * part;
                let bytes = file.slice(start..(start + part).min(file.len()));
                let mut request = hyper::Request::put(url["url"].as_str().ok_or("a part without its url")?);
                for (name, value) in url["headers"].as_object().ok_or("a part without its headers")? {
                    request = request.header(name.as_str(), value.as_str().ok_or("a header that is not text")?);
                }
                exchange(&http, request.body(Full::new(bytes))?).await?;
                Ok(())
            }
        });
        in_parallel(puts, IN_FLIGHT).await?;
        let crcs = parts.iter().map(|(crc, part)| (*crc, part.bytes.len() as u64)).collect();
        self.complete(opened, crcs).await
    }

    /// The file in consecutive pieces of `size` bytes (the last one shorter).
    fn pieces(&self, size: usize) -> impl Iterator<Item = Piece> + '_ {
        (0..self.file.len()).step_by(size).map(move |start| {
            let end = (start + size).min(self.file.len());
            Piece { start, end, bytes: self.file.slice(start..end) }
        })
    }

    /// `POST /upload/complete` with the whole file's CRC64NVME, combined from the pieces' without re-reading the
    /// file; the timed span ends with its answer. The result must carry that CRC and the object the file's bytes.
    async fn complete(&self, opened: Opened, crcs: Vec<(Crc64, u64)>) -> Result<Uploaded, Error> {
        let whole = Crc64::concat(crcs).ok_or("an empty file")?.to_base64();
        let request = hyper::Request::post(format!("{}/upload/complete", self.url))
            .header("authorization", &opened.token)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(json!({"upload_id": opened.upload_id, "crc64nvme": whole}).to_string())))?;
        let result = send(self.http, request).await?;
        let uploaded = Uploaded::stored(opened.started, &result);
        if result["crc64nvme"] != json!(whole) {
            return Err(format!("the result's crc64nvme is {}, the file's {whole}", result["crc64nvme"]).into());
        }
        Ok(uploaded)
    }
}

/// An upload's time, and where its object is (checked and deleted once the CPU meter has been read).
struct Uploaded {
    seconds: f64,
    stored: Option<(String, String)>,
}

impl Uploaded {
    /// Timed up to now, with the object the completion's `result` names.
    fn stored(started: Instant, result: &Value) -> Uploaded {
        let field = |name: &str| result[name].as_str().unwrap_or_default().to_string();
        Uploaded { seconds: started.elapsed().as_secs_f64(), stored: Some((field("bucket"), field("key"))) }
    }
}

/// Bytes `[start, end)` of the file.
struct Piece {
    start: usize,
    end: usize,
    bytes: Bytes,
}

/// The ceilings: the same bytes in parts of the same size, `in_flight` at a time, with the same S3 client settings as
/// the service (unsigned payloads, path-style).
async fn raw_multipart(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    file: &Bytes,
    part: usize,
    in_flight: usize,
) -> Result<Uploaded, Error> {
    let key = format!("bench/raw-multipart-{}-{in_flight}.bin", std::process::id());
    let started = Instant::now();
    let created = s3.create_multipart_upload().bucket(bucket).key(&key).send().await?;
    let upload_id = created.upload_id().ok_or("CreateMultipartUpload returned no id")?.to_string();
    let uploads = (0..file.len()).step_by(part).enumerate().map(|(i, start)| {
        let number = i as i32 + 1;
        let body = file.slice(start..(start + part).min(file.len()));
        let request = s3.upload_part().bucket(bucket).key(&key).upload_id(&upload_id).part_number(number);
        async move {
            let out = request.body(body.into()).customize().disable_payload_signing().send().await?;
            Ok(CompletedPart::builder().part_number(number).set_e_tag(out.e_tag).build())
        }
    });
    let parts = in_parallel(uploads, in_flight).await?;
    s3.complete_multipart_upload()
        .bucket(bucket)
        .key(&key)
        .upload_id(&upload_id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await?;
    Ok(Uploaded { seconds: started.elapsed().as_secs_f64(), stored: Some((bucket.to_string(), key)) })
}

/// Runs `jobs` with at most `in_flight` of them at a time, each in a task of its own (so a client's hashing can use
/// every core), and gives their results in the jobs' order.
async fn in_parallel<T, F>(jobs: impl Iterator<Item = F>, in_flight: usize) -> Result<Vec<T>, Error>
where
    F: Future<Output = Result<T, Error>> + Send + 'static,
    T: Send + 'static,
{
    stream::iter(jobs.map(tokio::spawn)).buffered(in_flight).map(|joined| joined?).try_collect().await
}

/// bench/tus/upload.mjs runs tus-node-server in a child process and reports one JSON line; it checks the stored
/// object's MD5 itself.
fn tus_upload(file: &Path, chunk: usize, part: usize) -> Result<Uploaded, Error> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tus/upload.mjs");
    let output = Command::new("node")
        .arg(script)
        .args(["--file", &file.display().to_string()])
        .args(["--chunk-bytes", &chunk.to_string(), "--part-bytes", &part.to_string()])
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        return Err(format!("bench/tus/upload.mjs failed ({})", output.status).into());
    }
    let line: Value = serde_json::from_slice(&output.stdout)?;
    if line["verified"] != true {
        return Err(format!("tus-node-server's upload did not verify: {line}").into());
    }
    let seconds = line["seconds"].as_f64().ok_or_else(|| format!("no seconds in {line}"))?;
    Ok(Uploaded { seconds, stored: None })
}

async fn verify_and_delete(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, md5: &str) -> Result<(), Error> {
    let object = s3.get_object().bucket(bucket).key(key).send().await?;
    let bytes = object.body.collect().await?.into_bytes();
    s3.delete_object().bucket(bucket).key(key).send().await?;
    let stored = md5_hex(&bytes);
    if stored != md5 {
        return Err(format!("s3://{bucket}/{key} has MD5 {stored}, the file {md5}").into());
    }
    Ok(())
}
