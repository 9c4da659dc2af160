//! The functions as Lambda runs them: the stripped size of each release binary, and for the `chunk` binary under the
//! emulated Lambda Runtime API (`integration_tests::lambda_runtime`), against the emulators, over five cold starts:
//! the time from spawning the process to its first poll for an event (ready to serve), and its peak resident memory
//! over a 64 MiB upload in 4 MiB chunks (events as API Gateway's HTTP API sends them, base64 bodies), as medians.
//! Builds the functions first (`cargo build --release`), which takes minutes when they are not fresh.
//!
//! `cargo run --release -p bench --bin function_process [-- --json]`: prints `name value` lines, or one JSON object.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use bench::{chunk_event, median};
use integration_tests::lambda_runtime::{FunctionProcess, build_functions};
use integration_tests::{MIB, Reply, api_gateway_event, data, service_env};
use lambda_http::http;
use serde_json::json;

const FUNCTIONS: [&str; 4] = ["chunk", "complete", "cleanup", "events"];
const RUNS: usize = 5;
const FILE: usize = 64 * MIB;
const CHUNK: usize = 4 * MIB;

#[tokio::main]
async fn main() {
    let as_json = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--json") => true,
        Some(other) => {
            eprintln!("function_process: unknown argument {other:?}; usage: function_process [--json]");
            std::process::exit(2);
        }
    };
    let binaries = build_functions(&FUNCTIONS, true).unwrap_or_else(|e| panic!("building the functions: {e}"));
    let sizes: BTreeMap<&str, u64> = FUNCTIONS.iter().map(|name| (*name, stripped_size(&binaries[*name]))).collect();

    let env = service_env(&[]);
    let file = data(FILE, 23);
    let (mut startup_ms, mut peak_rss_mib, mut upload_s, mut ok) = (vec![], vec![], vec![], 0);
    for _ in 0..RUNS {
        let function = FunctionProcess::spawn(&binaries["chunk"], env.clone()).await.expect("spawn the chunk function");
        let ready = function.ready_after().await.unwrap_or_else(|e| panic!("the chunk function did not start: {e}"));
        startup_ms.push(ready.as_secs_f64() * 1000.0);
        let began = Instant::now();
        let mut upload_id: Option<String> = None;
        for (i, piece) in file.chunks(CHUNK).enumerate() {
            let event = chunk_event("bench", upload_id.as_deref(), i * CHUNK, piece, FILE);
            let response = function.invoke(event).await.unwrap_or_else(|e| panic!("chunk {i}: {e}"));
            let reply = Reply::from_lambda(&response);
            reply.assert_status(200);
            ok += 1;
            upload_id = Some(reply.upload_id());
        }
        upload_s.push(began.elapsed().as_secs_f64());
        let peak = function.peak_rss_bytes().expect("the function's VmHWM");
        peak_rss_mib.push(peak as f64 / MIB as f64);
        // The upload is not needed any more: abort it, so the emulators do not keep 64 MiB a run.
        let id = upload_id.expect("an upload");
        let abort = http::Request::delete(format!("/upload/{id}")).body(Default::default()).expect("request");
        let response = function.invoke(api_gateway_event("bench", &abort)).await.expect("abort");
        Reply::from_lambda(&response).assert_status(200);
        function.kill();
        function.wait().await;
    }

    let chunks = RUNS * FILE.div_ceil(CHUNK);
    let (startup, peak, upload) = (median(startup_ms.clone()), median(peak_rss_mib.clone()), median(upload_s.clone()));
    if as_json {
        let report = json!({
            "bench": "function_process",
            "binary_bytes": sizes,
            "runs": RUNS,
            "file_mib": FILE / MIB,
            "chunk_bytes": CHUNK,
            "startup_ms_median": startup,
            "startup_ms": startup_ms,
            "peak_rss_mib_median": peak,
            "peak_rss_mib": peak_rss_mib,
            "upload_s_median": upload,
            "chunks_200": ok,
            "chunks": chunks,
        });
        println!("{report}");
    } else {
        for (name, bytes) in &sizes {
            println!("binary_bytes {name} {bytes}");
        }
        println!("startup_ms_median {startup:.1}");
        println!("peak_rss_mib_median {peak:.1}");
        println!("upload_s_median {upload:.2}");
        println!("chunks_200 {ok}/{chunks}");
    }
}

/// The size of `binary` without symbols: the release profile strips them already, so that is its size on disk; were
/// it not stripped (a symbol table in it), the size of a copy `strip` made.
fn stripped_size(binary: &Path) -> u64 {
    let bytes = std::fs::read(binary).unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    if !has_symbol_table(&bytes) {
        return bytes.len() as u64;
    }
    let name = binary.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let copy = std::env::temp_dir().join(format!("function_process-{}-{name}", std::process::id()));
    let stripped = Command::new("strip").arg("-o").arg(&copy).arg(binary).status();
    let size = match stripped {
        Ok(status) if status.success() => std::fs::metadata(&copy).map(|m| m.len()).ok(),
        _ => None,
    };
    let _ = std::fs::remove_file(&copy);
    size.unwrap_or_else(|| panic!("{name} is not stripped, and `strip` could not make a stripped copy"))
}

/// Whether a 64-bit little-endian ELF file has a section of type `SHT_SYMTAB` (what stripping removes).
fn has_symbol_table(elf: &[u8]) -> bool {
    let number = |at: usize, len: usize| -> Option<u64> {
        let field = elf.get(at..at + len)?;
        Some(field.iter().rev().fold(0, |n, b| n << 8 | u64::from(*b)))
    };
    let header = || -> Option<(usize, usize, usize)> {
        // e_shoff, e_shentsize, e_shnum
        Some((number(0x28, 8)? as usize, number(0x3a, 2)? as usize, number(0x3c, 2)? as usize))
    };
    const SHT_SYMTAB: u64 = 2;
    let Some((offset, size, count)) = header().filter(|_| elf.starts_with(b"\x7fELF\x02\x01")) else {
        panic!("not a 64-bit little-endian ELF file");
    };
    (0..count).any(|i| number(offset + i * size + 4, 4) == Some(SHT_SYMTAB))
}
