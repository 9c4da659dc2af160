//! End to end: one file through the local API server (the very handlers the Lambda functions run) into the
//! emulators' S3 in each of the service's modes, sent by the `chunked-upload` client library as its command-line tool
//! sends it (sequential chunks; parallel relayed chunks, 4 in flight; direct presigned part PUTs, 4 in flight, parts
//! of the same size as the others'), beside (a) a plain multipart upload of the same file with the AWS SDK, same part
//! size, straight to the same S3, one part after another and 4 parts in flight (the two ceilings), and (b)
//! tus-node-server (`@tus/server` + `@tus/s3-store`, bench/tus) on the same S3, driven by tus-js-client with the same
//! chunk size. The systems take turns within each round, so the machine's noise falls on all of them alike. Every
//! upload is checked byte for byte (MD5 of the stored object). The clients read the file and compute the checksums
//! they send (the SDK its CRC32s) within the timed span.
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
use chunked_upload::api::{Api, Retry};
use chunked_upload::state::StateDir;
use chunked_upload::upload::{ModeChoice, Options, Uploader};
use futures_util::{StreamExt, TryStreamExt, stream};
use integration_tests::md5_hex;
use serde_json::{Value, json};
use shared::protocol::{MAX_PART_SIZE, MIN_PART_SIZE, plan_part_size};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// chunked-upload is the service's sequential mode (the django-chunked-upload protocol).
const SYSTEMS: [&str; 6] =
    ["chunked-upload", "chunked-parallel", "chunked-direct", "raw-multipart", "raw-parallel", "tus-node-server"];
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
    let token = shared::local::dev_token("bench");
    let api = Api::new(&server.url, Some(token), Retry::default(), Duration::from_secs(120))?;

    let meter = CpuMeter::new(server.child.id());
    let mut rows: Vec<Value> = Vec::new();
    for round in 1..=args.runs {
        for &chunk in &args.chunk_sizes {
            let part = part_size(file.len(), chunk)?;
            for &system in &args.systems {
                let before = meter.sample();
                let uploaded = match system {
                    "chunked-upload" => cli_upload(&api, &args.file, ModeChoice::Sequential, chunk, part).await?,
                    "chunked-parallel" => cli_upload(&api, &args.file, ModeChoice::Parallel, chunk, part).await?,
                    "chunked-direct" => cli_upload(&api, &args.file, ModeChoice::Direct, chunk, part).await?,
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

/// The file through the local server with the `chunked-upload` client library (what the command-line tool runs), in
/// one of the service's modes: reading the file, the checksums it sends and the requests in flight are the client's,
/// as a user gets them. Timed from the first request to the completion's answer.
async fn cli_upload(api: &Api, file: &Path, mode: ModeChoice, chunk: usize, part: usize) -> Result<Uploaded, Error> {
    let states = StateDir::new(std::env::temp_dir().join(format!("bench-state-{}", std::process::id())));
    let options = Options {
        mode,
        parallel: IN_FLIGHT,
        chunk_size: chunk as u64,
        part_size: Some(part as u64),
        filename: Some("bench.bin".into()),
        ..Options::default()
    };
    let started = Instant::now();
    let result = Uploader { api, states: &states, events: &|_| {} }.put(file, &options).await?;
    Ok(Uploaded::stored(started, &result))
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
