//! A function killed between writing a part (or a buffered chunk) and committing the offset: the real `chunk` binary
//! runs under the emulated Lambda Runtime API with its S3 and DynamoDB calls going through the fault proxy. The proxy
//! holds the S3 call's reply after S3 has acted, and the test SIGKILLs the process while it waits for that reply, so
//! it can never reach its commit. A fresh process (a cold start) then serves the client, which resumes from the
//! offset the status route gives, finishes, and completes through the real `complete` binary: the object must be the
//! exact file, and nothing may be left under the buffer prefix. A parallel upload is killed the same way at each step
//! of the chunk that fills a part.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use bytes::Bytes;
use integration_tests::lambda_runtime::{FunctionProcess, InvokeError, build_functions};
use integration_tests::proxy::{Fault, Proxy};
use integration_tests::{
    MIB, Reply, Service, api_gateway_event, chunk_event, crc64, data, md5_hex, parallel_chunk_request,
};
use lambda_http::http;
use serde_json::json;

const USER: &str = "alice";
/// The smallest part size the service allows (S3's), so that a few small chunks make a part.
const PART: &str = "5242880";
const CHUNK: usize = 2 * MIB;
/// With the smallest part size (5 MiB), the chunks at 0 and 2 MiB are buffered, the one at 4 MiB makes part 1 (6 MiB),
/// 6 and 8 MiB are buffered again and the last (1 MiB and 5 bytes, at 10 MiB) makes part 2.
const FILE: usize = 11 * MIB + 5;

/// The debug builds of the functions, built once for all tests of this file.
fn binaries() -> &'static HashMap<String, PathBuf> {
    static BINARIES: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    BINARIES.get_or_init(|| build_functions(&["chunk", "complete"], false).expect("build the functions"))
}

async fn send(function: &FunctionProcess, event: Vec<u8>) -> Reply {
    let response = function.invoke(event).await.unwrap_or_else(|e| panic!("invocation: {e}"));
    Reply::from_lambda(&response)
}

async fn send_chunk(function: &FunctionProcess, upload_id: Option<&str>, file: &[u8], start: usize) -> Reply {
    let end = (start + CHUNK).min(file.len());
    send(function, chunk_event(USER, upload_id, start, &file[start..end], file.len())).await
}

/// The service, and the functions' environment that points at its strict proxies, in which the test injects faults.
struct Proxied {
    svc: Service,
    s3: Proxy,
    dynamodb: Proxy,
    env: Vec<(String, String)>,
}

impl Proxied {
    async fn start() -> Proxied {
        let svc = Service::new(&[("CHUNKED_UPLOAD_MIN_PART_BYTES", PART)]).await;
        let env = svc.env(&[("CHUNKED_UPLOAD_MIN_PART_BYTES", PART)]);
        let (s3, dynamodb) = (svc.s3_proxy.clone(), svc.dynamodb_proxy.clone());
        Proxied { svc, s3, dynamodb, env }
    }
}

/// Sends `event` to `function`, SIGKILLs the process once `proxy` holds the reply to its `operation`, and checks the
/// invocation died with it. The held reply then never reaches anyone.
async fn killed_while_held(function: &FunctionProcess, event: Vec<u8>, proxy: &Proxy, operation: &str, what: &str) {
    proxy.arm(operation, Fault::HoldAfter);
    let mut invocation = std::pin::pin!(function.invoke(event));
    let held = tokio::select! {
        outcome = &mut invocation => panic!("{what}: answered before its {operation} was held: {outcome:?}"),
        held = proxy.held() => held,
    };
    assert_eq!(held.operation, operation, "{what}");
    function.kill();
    match invocation.await {
        Err(InvokeError::Exited(status)) => assert_eq!(status.signal(), Some(libc::SIGKILL), "{what}: {status}"),
        outcome => panic!("{what}: the invocation should have died with the process: {outcome:?}"),
    }
    drop(held);
}

/// The completed object is exactly `file`, and nothing of the upload is left in S3 besides it.
async fn assert_finished(svc: &Service, done: &Reply, id: &str, file: &[u8], what: &str) {
    let key = done.body["key"].as_str().expect("key");
    let object = svc.object(key).await;
    assert!(object == file, "{what}: the object differs ({} bytes, md5 {})", object.len(), md5_hex(&object));
    assert_eq!(svc.multipart_uploads(key).await, 0, "{what}");
    assert_eq!(svc.buffered_keys(id).await, Vec::<String>::new(), "{what}: left under the buffer prefix");
}

/// Kills the chunk function while the reply to its `operation` for the chunk at `start` is held, then checks that a
/// retrying client on a fresh process finishes with the exact file.
async fn killed_after(operation: &str, start: usize, seed: u64) {
    let what = format!("killed after {operation} of the chunk at {start}");
    let binaries = binaries();
    let Proxied { svc, s3, dynamodb, env } = Proxied::start().await;
    let file = data(FILE, seed);

    let function = FunctionProcess::spawn(&binaries["chunk"], env.clone()).await.expect("spawn the chunk function");
    let mut upload_id: Option<String> = None;
    for offset in (0..start).step_by(CHUNK) {
        let reply = send_chunk(&function, upload_id.as_deref(), &file, offset).await;
        reply.assert_status(200);
        upload_id = Some(reply.upload_id());
    }
    let id = upload_id.expect("the kill comes after the first chunk");
    let before = svc.record(&id).await.expect("record");
    let buffered_before = svc.buffered_keys(&id).await.len();
    assert_eq!(before.offset, start as u64, "{what}");

    // The chunk whose S3 write is held: once the proxy has S3's reply in hand, the bytes are in S3, and the function
    // is still waiting for that reply, so it cannot have committed.
    let updates_before = dynamodb.tallies().get("UpdateItem").map_or(0, |t| t.calls);
    let end = start + CHUNK;
    let event = chunk_event(USER, Some(&id), start, &file[start..end], file.len());
    killed_while_held(&function, event, &s3, operation, &what).await;

    // Only the claim reached DynamoDB during that invocation, never the commit, and the record is as before.
    let updates = dynamodb.tallies().get("UpdateItem").map_or(0, |t| t.calls) - updates_before;
    assert_eq!(updates, 1, "{what}: the claim and nothing else: {:?}", dynamodb.tallies());
    let after = svc.record(&id).await.expect("record");
    assert_eq!((after.offset, &after.parts, &after.buffers), (before.offset, &before.parts, &before.buffers), "{what}");
    // And S3 does hold what the killed request wrote, unreferenced.
    match operation {
        "UploadPart" => {
            let parts = svc.s3.list_parts().bucket(&svc.app.config.bucket).key(&after.key);
            let parts = parts.upload_id(after.multipart_id.as_deref().expect("id")).send().await.expect("ListParts");
            let numbers: Vec<i32> = parts.parts().iter().filter_map(|p| p.part_number).collect();
            assert_eq!(numbers, [after.parts.next_number() as i32], "{what}: the orphaned part");
            assert_eq!(after.parts.count, 0, "{what}");
        }
        _ => {
            let buffered = svc.buffered_keys(&id).await;
            assert_eq!(buffered.len(), buffered_before + 1, "{what}: the orphaned chunk: {buffered:?}");
        }
    }

    // A cold start; the client lost its answer, asks where the upload stands, and goes on from there.
    let function = FunctionProcess::spawn(&binaries["chunk"], env.clone()).await.expect("spawn the chunk function");
    function.ready_after().await.unwrap_or_else(|e| panic!("{what}: the fresh process did not start: {e}"));
    let status_request = http::Request::get(format!("/upload/{id}")).body(Bytes::new()).expect("request");
    let status = send(&function, api_gateway_event(USER, &status_request)).await;
    status.assert_status(200);
    assert_eq!(status.offset(), start as u64, "{what}: the offset must be where it was before the killed chunk");
    for offset in (start..file.len()).step_by(CHUNK) {
        let reply = send_chunk(&function, Some(&id), &file, offset).await;
        reply.assert_status(200);
        assert_eq!(reply.offset(), (offset + CHUNK).min(file.len()) as u64, "{what}");
    }

    let complete = FunctionProcess::spawn(&binaries["complete"], env).await.expect("spawn the complete function");
    let form = format!("upload_id={id}&md5={}", md5_hex(&file));
    let complete_request = http::Request::post("/upload/complete")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Bytes::from(form))
        .expect("request");
    let done = send(&complete, api_gateway_event(USER, &complete_request)).await;
    done.assert_status(200);
    assert_eq!(done.body["md5"], md5_hex(&file), "{what}");
    assert_finished(&svc, &done, &id, &file, &what).await;
}

#[tokio::test]
async fn killed_after_uploading_a_part_before_committing() {
    killed_after("UploadPart", 2 * CHUNK, 301).await;
}

#[tokio::test]
async fn killed_after_buffering_a_chunk_before_committing() {
    killed_after("PutObject", CHUNK, 302).await;
}

/// Where a parallel chunk's request dies: the operation whose reply the proxy holds, on S3 or on DynamoDB.
enum HeldOn {
    S3(&'static str),
    DynamoDb(&'static str),
}

/// A parallel upload (2 MiB chunks, 6 MiB parts): the function is killed while the chunk that fills part 1 waits on
/// the reply to `held`. A fresh process serves the client, which asks the status, sends only the chunks it does not
/// list, and completes with the whole file's CRC64NVME through the real `complete` binary. `held_after` says whether
/// the status lists the killed chunk (its slot was written before the kill).
async fn parallel_killed_after(held: HeldOn, held_after: bool, seed: u64) {
    let binaries = binaries();
    let Proxied { svc, s3, dynamodb, env } = Proxied::start().await;
    let file = data(FILE, seed);
    let chunk_event = |id: &str, index: usize| {
        let (start, end) = (index * CHUNK, ((index + 1) * CHUNK).min(file.len()));
        let chunk = &file[start..end];
        let request = parallel_chunk_request(http::Request::builder(), id, start, chunk, file.len(), &crc64(chunk));
        api_gateway_event(USER, &request)
    };

    let function = FunctionProcess::spawn(&binaries["chunk"], env.clone()).await.expect("spawn the chunk function");
    let open = json!({"mode": "parallel", "size": FILE, "chunk_size": CHUNK, "filename": "p.bin"}).to_string();
    let open = http::Request::post("/upload/create").header("content-type", "application/json").body(Bytes::from(open));
    let opened = send(&function, api_gateway_event(USER, &open.expect("request"))).await;
    opened.assert_status(200);
    assert_eq!((opened.body["part_size"].as_u64(), opened.body["chunks"].as_u64()), (Some(3 * CHUNK as u64), Some(6)));
    let id = opened.upload_id();
    let what = match &held {
        HeldOn::S3(op) | HeldOn::DynamoDb(op) => format!("parallel, killed after {op} of the chunk that fills part 1"),
    };
    for index in [1, 0] {
        let reply = send(&function, chunk_event(&id, index)).await;
        assert_eq!((reply.status, &reply.body["part_complete"]), (200, &json!(false)), "{what}: {:?}", reply.body);
    }

    let (proxy, operation) = match held {
        HeldOn::S3(op) => (&s3, op),
        HeldOn::DynamoDb(op) => (&dynamodb, op),
    };
    killed_while_held(&function, chunk_event(&id, 2), proxy, operation, &what).await;

    // A cold start; the client lost its answer and sends what the status does not list.
    let function = FunctionProcess::spawn(&binaries["chunk"], env.clone()).await.expect("spawn the chunk function");
    let status_request = http::Request::get(format!("/upload/{id}")).body(Bytes::new()).expect("request");
    let status = send(&function, api_gateway_event(USER, &status_request)).await;
    status.assert_status(200);
    let held_chunks = if held_after { json!([[0, 2]]) } else { json!([[0, 1]]) };
    assert_eq!((&status.body["chunks_held"], &status.body["parts_held"]), (&held_chunks, &json!([])), "{what}");
    let missing = if held_after { vec![3, 4, 5] } else { vec![2, 3, 4, 5] };
    for index in missing {
        send(&function, chunk_event(&id, index)).await.assert_status(200);
    }

    let complete = FunctionProcess::spawn(&binaries["complete"], env).await.expect("spawn the complete function");
    let body = json!({"upload_id": id, "crc64nvme": crc64(&file)}).to_string();
    let request = http::Request::post("/upload/complete").header("content-type", "application/json").body(body.into());
    let done = send(&complete, api_gateway_event(USER, &request.expect("request"))).await;
    done.assert_status(200);
    assert_eq!(done.body["crc64nvme"], json!(crc64(&file)), "{what}");
    assert_finished(&svc, &done, &id, &file, &what).await;
}

#[tokio::test]
async fn parallel_killed_after_buffering_the_chunk_that_fills_a_part() {
    parallel_killed_after(HeldOn::S3("PutObject"), false, 303).await;
}

#[tokio::test]
async fn parallel_killed_after_recording_the_slot_that_fills_a_part() {
    parallel_killed_after(HeldOn::DynamoDb("UpdateItem"), true, 304).await;
}

#[tokio::test]
async fn parallel_killed_after_uploading_a_full_part_before_recording_it() {
    parallel_killed_after(HeldOn::S3("UploadPart"), true, 305).await;
}
