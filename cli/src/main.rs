//! `chunked-upload`: upload files to a chunked-upload service, resumably, with a progress bar.

mod progress;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chunked_upload::api::{Api, Retry};
use chunked_upload::state::StateDir;
use chunked_upload::upload::{DEFAULT_CHUNK_SIZE, DEFAULT_DIRECT_THRESHOLD, ModeChoice, Options, Uploader};
use chunked_upload::{Error, Result};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(name = "chunked-upload", version, about = "Upload files to a chunked-upload service, resumably")]
struct Cli {
    /// The API's base URL.
    #[arg(long, env = "CHUNKED_UPLOAD_ENDPOINT", global = true)]
    endpoint: Option<String>,
    /// A bearer token (prefer the environment variable or --token-command: a flag's value is visible to other users
    /// of the machine).
    #[arg(long, env = "CHUNKED_UPLOAD_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// A command that prints the bearer token (run with `sh -c`, once).
    #[arg(long, env = "CHUNKED_UPLOAD_TOKEN_COMMAND", global = true)]
    token_command: Option<String>,
    /// Retries of a failed request (network errors, timeouts, 429, 5xx), with backoff and jitter.
    #[arg(long, default_value_t = 8, global = true)]
    retries: u32,
    /// Seconds a request may take before it counts as failed.
    #[arg(long, default_value_t = 120, global = true)]
    timeout: u64,
    /// Print one JSON object per file (or per command) on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Upload files, one after another; an interrupted upload of the same file goes on where it stopped.
    Put {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// auto: a file of one chunk or less sequentially (two requests, the fewest round trips), from
        /// --direct-threshold straight to S3, relayed parallel chunks between.
        #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
        mode: ModeArg,
        /// Chunks or parts in flight (parallel and direct modes).
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        /// Chunk size of the relayed modes (bytes, or with KiB, MiB, K, M...).
        #[arg(long, value_parser = parse_size, default_value_t = DEFAULT_CHUNK_SIZE)]
        chunk_size: u64,
        /// Part size wanted for the direct mode (default 5 MiB; the server may round it up).
        #[arg(long, value_parser = parse_size)]
        part_size: Option<u64>,
        /// In auto mode, files of at least this size go straight to S3.
        #[arg(long, value_parser = parse_size, default_value_t = DEFAULT_DIRECT_THRESHOLD)]
        direct_threshold: u64,
        /// The content type the server records.
        #[arg(long)]
        content_type: Option<String>,
        /// No progress display.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Where an upload stands (the server's answer).
    Status {
        upload_id: String,
        /// An anonymous upload's secret.
        #[arg(long, env = "CHUNKED_UPLOAD_SECRET", hide_env_values = true)]
        secret: Option<String>,
    },
    /// List your uploads, newest first: in progress, complete, and expired or aborted ones the server still holds.
    Ls {
        /// At most this many uploads (default: all, page after page).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
    },
    /// Abort an upload: the server drops what it holds.
    Abort {
        upload_id: String,
        #[arg(long, env = "CHUNKED_UPLOAD_SECRET", hide_env_values = true)]
        secret: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Auto,
    Sequential,
    Parallel,
    Direct,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let outcome = tokio::select! {
        outcome = run(cli) => outcome,
        _ = tokio::signal::ctrl_c() => Err(Error::Interrupted),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report_error(None, &e, json);
            ExitCode::from(e.exit_code())
        }
    }
}

/// The exit code: 0, or that of a failure already reported.
async fn run(cli: Cli) -> Result<u8> {
    let endpoint = cli
        .endpoint
        .clone()
        .ok_or_else(|| Error::Local("no endpoint: give --endpoint or set CHUNKED_UPLOAD_ENDPOINT".into()))?;
    let token = token(&cli)?;
    let retry = Retry { retries: cli.retries, ..Retry::default() };
    let api = Api::new(&endpoint, token, retry, Duration::from_secs(cli.timeout.max(1)))?;
    match cli.command {
        Command::Put { files, mode, parallel, chunk_size, part_size, direct_threshold, content_type, quiet } => {
            let mode = match mode {
                ModeArg::Auto => ModeChoice::Auto,
                ModeArg::Sequential => ModeChoice::Sequential,
                ModeArg::Parallel => ModeChoice::Parallel,
                ModeArg::Direct => ModeChoice::Direct,
            };
            let options =
                Options { mode, parallel, chunk_size, part_size, direct_threshold, filename: None, content_type };
            put(&api, &files, &options, quiet, cli.json).await
        }
        Command::Status { upload_id, secret } => {
            let status = api.status(&upload_id, secret.as_deref()).await?.ok()?;
            print_value(&status, cli.json);
            Ok(0)
        }
        Command::Ls { limit } => ls(&api, limit, cli.json).await,
        Command::Abort { upload_id, secret } => {
            let answer = api.abort(&upload_id, secret.as_deref()).await?.ok()?;
            print_value(&answer, cli.json);
            Ok(0)
        }
    }
}

/// Uploads each file; a failed one does not stop the others, and the exit code is the last failure's.
async fn put(api: &Api, files: &[PathBuf], options: &Options, quiet: bool, json: bool) -> Result<u8> {
    let states = StateDir::from_env()?;
    let mut exit_code = 0;
    for file in files {
        let display = progress::Display::new(file, quiet);
        let events = |event| display.event(event);
        let uploader = Uploader { api, states: &states, events: &events };
        let started = std::time::Instant::now();
        match uploader.put(file, options).await {
            Ok(result) => {
                display.finish();
                report_result(file, &result, started.elapsed(), json);
            }
            Err(e) => {
                display.abandon();
                if matches!(e, Error::Interrupted) {
                    return Err(e);
                }
                report_error(Some(file), &e, json);
                exit_code = e.exit_code();
            }
        }
    }
    Ok(exit_code)
}

/// The server's largest page.
const MAX_PAGE: usize = 100;

/// Lists the caller's uploads, following the server's cursors until `limit` or the last page: a table, or one JSON
/// object per upload (`--json`).
async fn ls(api: &Api, limit: Option<u64>, json: bool) -> Result<u8> {
    let mut left = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let mut cursor: Option<String> = None;
    let mut rows = Vec::new();
    while left > 0 {
        let page = api.list(left.min(MAX_PAGE), cursor.as_deref()).await?.ok()?;
        let uploads = page["uploads"].as_array().cloned().unwrap_or_default();
        left = left.saturating_sub(uploads.len());
        for upload in uploads {
            if json {
                println!("{upload}");
            } else {
                rows.push(upload);
            }
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    if !json {
        print!("{}", upload_table(&rows));
    }
    Ok(0)
}

/// The uploads as an aligned table: id, status, mode, bytes received of the size, creation time, file name.
fn upload_table(uploads: &[Value]) -> String {
    let text = |u: &Value, name: &str| u[name].as_str().unwrap_or("-").to_string();
    let received = |u: &Value| match (u["offset"].as_u64(), u["size"].as_u64()) {
        (Some(offset), Some(size)) => format!("{offset}/{size}"),
        // The lanes' progress is in their status (the parts held).
        (None, Some(size)) => format!("?/{size}"),
        _ => "-".to_string(),
    };
    let mut rows = vec![["UPLOAD ID", "STATUS", "MODE", "RECEIVED", "CREATED", "FILENAME"].map(String::from)];
    rows.extend(uploads.iter().map(|u| {
        [text(u, "upload_id"), text(u, "status"), text(u, "mode"), received(u), text(u, "created"), text(u, "filename")]
    }));
    let widths: Vec<usize> = (0..6).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, &w)| format!("{cell:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn token(cli: &Cli) -> Result<Option<String>> {
    if let Some(token) = &cli.token {
        return Ok(Some(token.trim().to_string()));
    }
    let Some(command) = &cli.token_command else { return Ok(None) };
    let output = std::process::Command::new("sh")
        .args(["-c", command])
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| Error::local("the token command", e))?;
    if !output.status.success() {
        return Err(Error::Local(format!("the token command failed ({})", output.status)));
    }
    let token =
        String::from_utf8(output.stdout).map_err(|_| Error::Local("the token command printed no text".into()))?;
    Ok(Some(token.trim().to_string()).filter(|t| !t.is_empty()))
}

fn report_result(file: &std::path::Path, result: &Value, took: Duration, json: bool) {
    if json {
        let mut line = result.clone();
        line["file"] = json!(file.display().to_string());
        println!("{line}");
        return;
    }
    let size = result["size"].as_u64().unwrap_or_default();
    let text = |name: &str| result[name].as_str().unwrap_or_default().to_string();
    let checksum = match text("md5").as_str() {
        "" => format!("crc64nvme {}", text("crc64nvme")),
        md5 => format!("md5 {md5}"),
    };
    println!(
        "{}: uploaded to s3://{}/{} ({} bytes, {} mode, {checksum}, in {:.1} s)",
        file.display(),
        text("bucket"),
        text("key"),
        size,
        text("mode"),
        took.as_secs_f64(),
    );
}

fn report_error(file: Option<&std::path::Path>, e: &Error, json: bool) {
    let hint = match e {
        Error::Interrupted => ": run the same command again to go on where it stopped",
        Error::Unreachable { .. } => ": run the same command again later to go on where it stopped",
        _ => "",
    };
    let prefix = file.map(|f| format!("{}: ", f.display())).unwrap_or_default();
    if json {
        let mut line = json!({"error": {"kind": e.kind(), "message": e.to_string()}});
        if let Some(file) = file {
            line["file"] = json!(file.display().to_string());
        }
        println!("{line}");
    }
    eprintln!("chunked-upload: {prefix}{e}{hint}");
}

fn print_value(value: &Value, json: bool) {
    if json {
        println!("{value}");
    } else {
        println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
    }
}

/// A size: bytes, or with a unit (K, M, G in 1000s; KiB, MiB, GiB in 1024s; case does not matter).
fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().map_err(|_| format!("{text:?} is not a size"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1000 * 1000,
        "g" | "gb" => 1000 * 1000 * 1000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?}")),
    };
    number.checked_mul(factor).filter(|&n| n > 0).ok_or_else(|| format!("{text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_size("4194304"), Ok(4 << 20));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("5 M"), Ok(5_000_000));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("4 furlongs").is_err());
        assert!(parse_size("-1").is_err());
    }
}
