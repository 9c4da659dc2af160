//! The completion hook, with a real function process: the example hook (`examples/completion-hook`) runs under the
//! emulated Lambda Runtime API, and the service's own aws-sdk-lambda Invoke reaches it through an emulated Lambda
//! endpoint (`lambda_invoke`). Its answer comes back as `data` and is kept, so a repeated complete repeats it without
//! a call; a hook that fails, times out or answers too much leaves the completion standing, says so, and is called
//! again by the next complete. The local server's command hook goes through the same handler, and the real
//! `complete` binary calls a Lambda hook (and refuses a command one).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use integration_tests::lambda_invoke::InvokeEndpoint;
use integration_tests::lambda_runtime::{FunctionProcess, InvokeError, build_functions};
use integration_tests::{
    Encoding, KIB, Reply, Service, User, api_gateway_event, crc64, data, emitted_metrics, md5_hex, put_presigned, total,
};
use lambda_http::http;
use serde_json::{Value, json};

const HOOK: &str = "completion-hook";
const ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:completion-hook";

/// The debug builds of the example hook and of the complete function, built once for all tests of this file.
fn binaries() -> &'static HashMap<String, PathBuf> {
    static BINARIES: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    BINARIES.get_or_init(|| build_functions(&[HOOK, "complete"], false).expect("build the functions"))
}

/// The example hook as a function process, told by `env` how to misbehave.
async fn hook_process(env: &[(&str, &str)]) -> FunctionProcess {
    let process = FunctionProcess::spawn(&binaries()[HOOK], env.iter().copied()).await.expect("spawn the hook");
    process.ready_after().await.expect("the hook starts");
    process
}

/// An emulated Lambda with the example hook deployed, and the service calling it.
async fn hooked(hook_env: &[(&str, &str)], overrides: &[(&str, &str)]) -> (Service, InvokeEndpoint) {
    let lambda = InvokeEndpoint::start().await;
    lambda.deploy(HOOK, hook_process(hook_env).await);
    let url = lambda.url();
    let mut settings = vec![("CHUNKED_UPLOAD_COMPLETION_HOOK", ARN), ("AWS_ENDPOINT_URL_LAMBDA", url.as_str())];
    settings.extend_from_slice(overrides);
    (Service::new(&settings).await, lambda)
}

/// Uploads `file` in one chunk and completes it.
async fn upload_and_complete(svc: &Service, user: &User, file: &[u8]) -> (String, Reply) {
    let first = svc.chunk(user, None, 0, file, file.len(), Encoding::Raw).await;
    first.assert_status(200);
    let user = user.with_secret(first.secret().or(user.secret.clone()));
    let id = first.upload_id();
    let done = svc.complete(&user, &id, &md5_hex(file)).await;
    (id, done)
}

/// What the example hook answers for an upload.
fn attachment(id: &str, key: &Value, size: usize, by: &str) -> Value {
    json!({"attachment_id": format!("att-{id}"), "key": key, "size": size, "attached_by": by})
}

/// A repeated complete: the upload's result, said again with django-chunked-upload's 400.
async fn completed_again(svc: &Service, user: &User, id: &str, file: &[u8]) -> Reply {
    let again = svc.complete(user, id, &md5_hex(file)).await;
    assert_eq!((again.status, again.detail()), (400, "Upload has already been completed"), "{:?}", again.body);
    again
}

#[tokio::test]
async fn the_hooks_answer_comes_back_and_is_kept() {
    let (svc, lambda) = hooked(&[], &[]).await;
    let user = User::named("hook-alice");
    let file = data(100 * KIB, 90);
    let (id, done) = upload_and_complete(&svc, &user, &file).await;
    done.assert_status(200);
    assert_eq!(done.body["status"], "complete");
    assert_eq!(done.body["data"], attachment(&id, &done.body["key"], file.len(), "hook-alice"), "{:?}", done.body);
    assert!(done.body.get("hook").is_none(), "{:?}", done.body);
    // The hook was told the result (without data of its own) and who completed it.
    let events = lambda.events();
    assert_eq!(events.len(), 1, "{events:?}");
    let mut told = done.body.clone();
    told.as_object_mut().expect("an object").remove("data");
    assert_eq!(
        events[0],
        json!({"upload_id": id, "caller": {"sub": "hook-alice", "anonymous": false}, "result": told})
    );
    // Kept with the record: a repeated complete, and the status, answer the same data without calling the hook.
    let item = svc.raw_item(&id).await.expect("the record");
    let kept: Value = serde_json::from_str(item["hook_data"].as_s().expect("hook_data")).expect("JSON");
    assert_eq!(kept, done.body["data"]);
    let again = completed_again(&svc, &user, &id, &file).await;
    assert_eq!(again.body["data"], done.body["data"]);
    assert_eq!(svc.status(&user, &id).await.body["data"], done.body["data"]);
    assert_eq!(lambda.events().len(), 1);
    assert!(svc.object(done.body["key"].as_str().expect("key")).await == file);
}

#[tokio::test]
async fn an_anonymous_caller_is_named_as_such() {
    let (svc, lambda) = hooked(&[], &[("CHUNKED_UPLOAD_REQUIRE_AUTH", "false")]).await;
    let file = data(10 * KIB, 91);
    let (id, done) = upload_and_complete(&svc, &User::anonymous(), &file).await;
    done.assert_status(200);
    assert_eq!(done.body["data"], attachment(&id, &done.body["key"], file.len(), "anonymous"));
    let event = &lambda.events()[0];
    assert_eq!(event["caller"], json!({"sub": null, "anonymous": true}));
    // The upload's secret is the caller's credential, never the hook's to see.
    let secret = svc.record(&id).await.expect("record").secret_hash;
    assert!(secret.is_some());
    assert!(!event.to_string().contains("secret"), "{event}");
}

/// A hook that misbehaves as `hook_env` says: the completion stands and says the hook failed with `detail`, and
/// once the hook is fixed (a new deployment), a repeated complete calls it again and answers its data. Returns how
/// long the first complete took.
async fn fails_then_is_retried(hook_env: &[(&str, &str)], overrides: &[(&str, &str)], detail: &str) -> Duration {
    let (mut svc, lambda) = hooked(hook_env, overrides).await;
    let metrics = svc.collect_metrics();
    let user = User::named("hook-failing");
    let file = data(50 * KIB, 92);
    let started = Instant::now();
    let (id, done) = upload_and_complete(&svc, &user, &file).await;
    let took = started.elapsed();
    done.assert_status(200);
    assert_eq!(done.body["status"], "complete");
    assert_eq!(done.body["hook"]["status"], "failed", "{:?}", done.body);
    let said = done.body["hook"]["detail"].as_str().expect("a detail");
    assert!(said.contains(detail), "{said:?} does not say {detail:?}");
    assert!(done.body.get("data").is_none(), "{:?}", done.body);
    let key = done.body["key"].as_str().expect("key").to_string();
    assert!(svc.object(&key).await == file, "the object is not the file");
    let item = svc.raw_item(&id).await.expect("the record");
    assert_eq!(item["hook_error"].as_s().map(String::as_str), Ok(said));
    assert!(!item.contains_key("hook_data"));
    // A repeat while it still fails: called again, failed again.
    let again = completed_again(&svc, &user, &id, &file).await;
    assert_eq!(again.body["hook"]["status"], "failed", "{:?}", again.body);
    assert_eq!(lambda.events().len(), 2);
    assert_eq!(total(&emitted_metrics(&metrics), "HookFailures", &[]), 2, "one for each failed call");

    lambda.deploy(HOOK, hook_process(&[]).await);
    let fixed = completed_again(&svc, &user, &id, &file).await;
    assert_eq!(fixed.body["data"], attachment(&id, &json!(key), file.len(), "hook-failing"), "{:?}", fixed.body);
    assert!(fixed.body.get("hook").is_none(), "{:?}", fixed.body);
    let item = svc.raw_item(&id).await.expect("the record");
    assert!(item.contains_key("hook_data") && !item.contains_key("hook_error"), "{item:?}");
    assert_eq!(lambda.events().len(), 3);
    completed_again(&svc, &user, &id, &file).await;
    assert_eq!(lambda.events().len(), 3, "an answered hook is not called again");
    took
}

#[tokio::test]
async fn a_failing_hook_leaves_the_completion_standing_and_is_retried() {
    fails_then_is_retried(&[("EXAMPLE_HOOK_FAIL", "1")], &[], "attaching failed (EXAMPLE_HOOK_FAIL)").await;
}

#[tokio::test]
async fn a_slow_hook_times_out_and_is_retried() {
    let slow = [("EXAMPLE_HOOK_DELAY_MS", "4000")];
    let took =
        fails_then_is_retried(&slow, &[("CHUNKED_UPLOAD_COMPLETION_HOOK_TIMEOUT_SECS", "1")], "within 1000 ms").await;
    // The answer came at the hook's timeout, not when the hook would have answered.
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn an_answer_over_the_bound_is_a_failure_and_is_retried() {
    let padded = (shared::hook::MAX_ANSWER_BYTES + 1).to_string();
    fails_then_is_retried(&[("EXAMPLE_HOOK_PAD_BYTES", &padded)], &[], "over the limit of 16384").await;
}

#[tokio::test]
async fn parallel_and_direct_completions_call_the_hook() {
    let (svc, lambda) = hooked(&[], &[]).await;
    let user = User::named("hook-modes");
    let file = data(300 * KIB, 93);

    let opened = svc.open(&user, json!({"mode": "parallel", "size": file.len(), "filename": "p.bin"})).await;
    let parallel = opened.assert_status(200).upload_id();
    svc.parallel_chunk(&user, &parallel, 0, &file, file.len()).await.assert_status(200);
    let done = svc.complete_crc(&user, &parallel, &crc64(&file)).await;
    done.assert_status(200);
    assert_eq!(done.body["data"], attachment(&parallel, &done.body["key"], file.len(), "hook-modes"));

    let opened = svc.open(&user, json!({"mode": "direct", "size": file.len(), "filename": "d.bin"})).await;
    let direct = opened.assert_status(200).upload_id();
    let urls = svc.part_urls(&user, &direct, &[(1, &file)]).await;
    assert_eq!(put_presigned(&urls.assert_status(200).body["parts"][0], &file).await, 200);
    let done = svc.complete_crc(&user, &direct, &crc64(&file)).await;
    done.assert_status(200);
    assert_eq!(done.body["data"], attachment(&direct, &done.body["key"], file.len(), "hook-modes"));
    let modes: Vec<Value> = lambda.events().iter().map(|e| e["result"]["mode"].clone()).collect();
    assert_eq!(modes, [json!("parallel"), json!("direct")]);
}

#[tokio::test]
async fn the_local_servers_command_hook_goes_through_the_same_handler() {
    let dir = std::env::temp_dir().join(format!("hook-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let script = dir.join("attach.py");
    std::fs::write(
        &script,
        "import json, sys\n\
         event = json.load(sys.stdin)\n\
         print(json.dumps({'attached': event['upload_id'], 'by': event['caller']['sub'],\n\
                           'bytes': event['result']['size']}))\n",
    )
    .expect("the hook script");
    let command = format!("cmd:python3 {}", script.display());
    let user = User::named("hook-cmd");
    let file = data(20 * KIB, 94);

    let svc = Service::new(&[("CHUNKED_UPLOAD_COMPLETION_HOOK", &command)]).await;
    let (id, done) = upload_and_complete(&svc, &user, &file).await;
    assert_eq!(done.assert_status(200).body["data"], json!({"attached": id, "by": "hook-cmd", "bytes": file.len()}));
    assert_eq!(completed_again(&svc, &user, &id, &file).await.body["data"], done.body["data"]);

    // A command that fails, or answers what is not JSON: the completion stands, and says why.
    for (command, detail) in [("cmd:exit 3", "exit status: 3"), ("cmd:echo attached", "not JSON")] {
        let svc = Service::new(&[("CHUNKED_UPLOAD_COMPLETION_HOOK", command)]).await;
        let (_, done) = upload_and_complete(&svc, &user, &file).await;
        assert_eq!(done.assert_status(200).body["status"], "complete");
        let said = done.body["hook"]["detail"].as_str().unwrap_or_default();
        assert!(said.contains(detail), "{command}: {:?}", done.body);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A development hook server on a loopback port: `POST /attach` answers who it attached, any other path 500.
async fn url_hook() -> String {
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                let path = req.uri().path().to_string();
                let event: Value =
                    serde_json::from_slice(&req.into_body().collect().await?.to_bytes()).unwrap_or_default();
                let mut response = hyper::Response::new(Full::new(Bytes::from(
                    json!({"posted": event["upload_id"], "by": event["caller"]["sub"]}).to_string(),
                )));
                if path != "/attach" {
                    *response.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                }
                Ok::<_, hyper::Error>(response)
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    format!("http://{address}")
}

#[tokio::test]
async fn the_local_servers_url_hook_goes_through_the_same_handler() {
    let server = url_hook().await;
    let user = User::named("hook-url");
    let file = data(20 * KIB, 96);
    let svc = Service::new(&[("CHUNKED_UPLOAD_COMPLETION_HOOK", &format!("{server}/attach"))]).await;
    let (id, done) = upload_and_complete(&svc, &user, &file).await;
    assert_eq!(done.assert_status(200).body["data"], json!({"posted": id, "by": "hook-url"}));

    let svc = Service::new(&[("CHUNKED_UPLOAD_COMPLETION_HOOK", &format!("{server}/broken"))]).await;
    let (_, done) = upload_and_complete(&svc, &user, &file).await;
    assert_eq!(done.assert_status(200).body["status"], "complete");
    let said = done.body["hook"]["detail"].as_str().unwrap_or_default();
    assert!(said.contains("answered HTTP 500"), "{:?}", done.body);
}

/// The complete request of `user` for an upload, as API Gateway hands it to the complete function.
fn complete_event(sub: &str, id: &str, file: &[u8]) -> Vec<u8> {
    let request = http::Request::post("/upload/complete")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Bytes::from(format!("upload_id={id}&md5={}", md5_hex(file))))
        .expect("a complete request");
    api_gateway_event(sub, &request)
}

#[tokio::test]
async fn the_complete_function_invokes_its_hook_and_refuses_local_ones() {
    let lambda = InvokeEndpoint::start().await;
    lambda.deploy(HOOK, hook_process(&[]).await);
    let url = lambda.url();
    let svc = Service::default().await;
    let env = svc.env(&[("CHUNKED_UPLOAD_COMPLETION_HOOK", ARN), ("AWS_ENDPOINT_URL_LAMBDA", &url)]);
    let complete = FunctionProcess::spawn(&binaries()["complete"], env).await.expect("spawn complete");
    let user = User::named("hook-function");
    let file = data(30 * KIB, 95);
    let id = svc.start_upload(&user, &file, file.len()).await;
    let response = complete.invoke(complete_event("hook-function", &id, &file)).await.expect("an answer");
    let done = Reply::from_lambda(&response);
    done.assert_status(200);
    assert_eq!(done.body["data"], attachment(&id, &done.body["key"], file.len(), "hook-function"));
    assert_eq!(lambda.events().len(), 1);

    // A function is never built with the local kinds: it does not start, and says why.
    for local in ["cmd:./attach.sh", "http://127.0.0.1:9/hook"] {
        let env = svc.env(&[("CHUNKED_UPLOAD_COMPLETION_HOOK", local)]);
        let refused = FunctionProcess::spawn(&binaries()["complete"], env).await.expect("spawn complete");
        match refused.ready_after().await {
            Err(InvokeError::Exited(status)) => assert!(!status.success(), "{local}: {status}"),
            other => panic!("{local}: the function started: {other:?}"),
        }
    }
}

#[tokio::test]
async fn concurrent_repeated_completes_answer_the_same_data() {
    let (svc, lambda) = hooked(&[("EXAMPLE_HOOK_FAIL", "1")], &[]).await;
    let user = User::named("hook-concurrent");
    let file = data(10 * KIB, 97);
    let (id, done) = upload_and_complete(&svc, &user, &file).await;
    assert_eq!(done.assert_status(200).body["hook"]["status"], "failed");
    lambda.deploy(HOOK, hook_process(&[]).await);
    // Both may call the hook (it is idempotent); whichever stores its answer first, both answer what is kept.
    let (a, b) = tokio::join!(completed_again(&svc, &user, &id, &file), completed_again(&svc, &user, &id, &file));
    let expected = attachment(&id, &done.body["key"], file.len(), "hook-concurrent");
    assert_eq!((&a.body["data"], &b.body["data"]), (&expected, &expected), "{:?} {:?}", a.body, b.body);
    let calls = lambda.events().len();
    assert!((2..=3).contains(&calls), "{calls} calls");
    let kept = svc.record(&id).await.expect("record").hook;
    assert!(matches!(kept, Some(shared::hook::HookOutcome::Answered(_))), "{kept:?}");
}
