//! Handler cost per byte, in process: the CPU the chunk function spends per MiB (parsing the event, base64, the MD5
//! update, building and sending the S3 and DynamoDB requests) against the emulators, beside the MD5 of the same
//! bytes alone (the floor) and their CRC64NVME alone (what checking a parallel chunk or a part costs; budget: at most
//! 0.1x MD5's). Prints one JSON line per chunk size (median of the runs).
//! Chunk sizes in KiB may be given as arguments (default 256 1024 4096), for example to profile one of them.

use std::time::Duration;

use bench::{chunk_event, cpu_time, cpu_times, median};
use bytes::Bytes;
use integration_tests::strict::Rules;
use integration_tests::{Service, Setup, data};
use md5::{Digest, Md5};
use shared::checksum::Crc64;
use shared::{handlers, lambda};

const FILE: usize = 32 * 1024 * 1024;
const RUNS: usize = 5;
/// The CRC runs over the file this many times per measurement: once takes a few milliseconds, too close to the
/// resolution of the CPU clock and to a scheduler tick.
const CRC_PASSES: usize = 16;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // As the function's process does before its first request.
    lambda::reuse_large_allocations();
    // The emulators as they are, without the tests' proxies, whose work in this process would count as the handler's.
    let svc = Service::with(&[], Setup { rules: Rules::none(), proxied: false, ..Setup::default() }).await;
    let file = data(FILE, 7);
    let mut sizes: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a chunk size in KiB")).collect();
    if sizes.is_empty() {
        sizes = vec![256, 1024, 4096];
    }
    for chunk in sizes.into_iter().map(|kib| kib * 1024) {
        let (mut handler, mut kernel, mut floor, mut crc) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..RUNS {
            let (user, system) = upload(&svc, &file, chunk).await;
            handler.push(per_mib(user + system));
            kernel.push(per_mib(system));
            floor.push(per_mib(md5_alone(&file, chunk)));
            crc.push(per_mib(crc64_alone(&file, chunk)) / CRC_PASSES as f64);
        }
        let (handler, kernel, floor, crc) = (median(handler), median(kernel), median(floor), median(crc));
        let line = serde_json::json!({
            "bench": "handler_cost", "chunk_bytes": chunk, "cpu_ms_per_mib": handler, "kernel_ms_per_mib": kernel, "md5_ms_per_mib": floor,
            "ratio": handler / floor, "crc64_ms_per_mib": crc, "crc64_to_md5": crc / floor, "runs": RUNS,
        });
        println!("{line}");
    }
}

fn per_mib(cpu: Duration) -> f64 {
    cpu.as_secs_f64() * 1000.0 / (FILE as f64 / (1024.0 * 1024.0))
}

/// CPU spent in the function for a whole upload in `chunk`-sized chunks, in user space and in the kernel; building
/// the events is not counted.
async fn upload(svc: &Service, file: &[u8], chunk: usize) -> (Duration, Duration) {
    let handler = |req| handlers::chunk_function(&svc.app, req);
    let mut upload_id: Option<String> = None;
    let (mut user, mut system) = (Duration::ZERO, Duration::ZERO);
    for (i, piece) in file.chunks(chunk).enumerate() {
        let event = Bytes::from(chunk_event("bench", upload_id.as_deref(), i * chunk, piece, file.len()));
        let before = cpu_times();
        let response = lambda::serve_json(&handler, event).await.expect("event");
        let after = cpu_times();
        (user, system) = (user + after.0 - before.0, system + after.1 - before.1);
        let response = serde_json::to_value(&response).expect("response");
        assert_eq!(response["statusCode"], 200, "{response}");
        let body: serde_json::Value = serde_json::from_str(response["body"].as_str().unwrap_or("{}")).expect("json");
        upload_id = body["upload_id"].as_str().map(str::to_string);
    }
    (user, system)
}

fn md5_alone(file: &[u8], chunk: usize) -> Duration {
    let before = cpu_time();
    let mut hasher = Md5::new();
    for piece in file.chunks(chunk) {
        hasher.update(piece);
    }
    std::hint::black_box(hasher.finalize());
    cpu_time() - before
}

/// CPU of `CRC_PASSES` CRC64NVMEs of the file, chunk by chunk, as the function checks a chunk's declared CRC.
fn crc64_alone(file: &[u8], chunk: usize) -> Duration {
    let before = cpu_time();
    for _ in 0..CRC_PASSES {
        for piece in file.chunks(chunk) {
            std::hint::black_box(Crc64::of(std::hint::black_box(piece)));
        }
    }
    cpu_time() - before
}
