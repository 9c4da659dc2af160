//! Faults injected into every S3 and DynamoDB call the service makes, before the call reaches the emulator and after
//! the emulator acted but before the reply: a client that retries always ends with the exact file, and cleanup
//! leaves nothing behind.

use integration_tests::proxy::{Fault, Proxy};
use integration_tests::{MIB, Service, User, data, md5_hex};

/// Where a fault strikes: the proxy, the call, and how many calls of it pass first.
struct Point {
    s3: bool,
    operation: &'static str,
    after: usize,
}

const POINTS: &[Point] = &[
    Point { s3: true, operation: "CreateMultipartUpload", after: 0 },
    Point { s3: true, operation: "PutObject", after: 1 },
    Point { s3: true, operation: "GetObject", after: 0 },
    Point { s3: true, operation: "UploadPart", after: 1 },
    Point { s3: true, operation: "DeleteObjects", after: 0 },
    Point { s3: true, operation: "CompleteMultipartUpload", after: 0 },
    Point { s3: false, operation: "PutItem", after: 0 },
    Point { s3: false, operation: "UpdateItem", after: 1 },
    Point { s3: false, operation: "UpdateItem", after: 2 },
    Point { s3: false, operation: "GetItem", after: 0 },
];

/// Arms the fault once `after` calls of the operation have passed.
async fn arm_later(proxy: &Proxy, operation: &'static str, after: usize, fault: Fault) {
    loop {
        let passed = proxy.tallies().get(operation).map_or(0, |t| t.calls as usize);
        if passed >= after {
            proxy.arm(operation, fault);
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

async fn survive(point: &Point, fault: Fault, seed: u64) {
    let (svc, s3, dynamodb) = Service::through_proxies(&[]).await;
    let proxy = if point.s3 { &s3 } else { &dynamodb };
    let file = data(6 * MIB + 3, seed);
    let user = User::named("alice");
    let (done, ()) =
        tokio::join!(svc.upload_retrying(&user, &file, 2 * MIB), arm_later(proxy, point.operation, point.after, fault));
    let what = format!("{:?} at {} after {}", fault, point.operation, point.after);
    assert!(proxy.all_fired(), "{what}: the fault never fired: {:?}", proxy.tallies());
    assert_eq!(done.body["md5"], md5_hex(&file), "{what}");
    let key = done.body["key"].as_str().expect("key");
    assert!(svc.object(key).await == file, "{what}: the object differs");
    assert_eq!(svc.multipart_uploads(key).await, 0, "{what}");
    let id = done.body["upload_id"].as_str().expect("id");
    assert_eq!(svc.buffered_keys(id).await, Vec::<String>::new(), "{what}: left behind");
}

#[tokio::test]
async fn a_failure_before_any_call_is_survived() {
    for (i, point) in POINTS.iter().enumerate() {
        survive(point, Fault::FailBefore, 60 + i as u64).await;
    }
}

#[tokio::test]
async fn a_cut_after_any_call_acted_is_survived() {
    for (i, point) in POINTS.iter().enumerate() {
        survive(point, Fault::CutAfter, 80 + i as u64).await;
    }
}

/// An abort that meets a fault at any of its calls, retried by the client, still removes everything.
async fn abort_survives(operation: &'static str, fault: Fault, seed: u64) {
    let (svc, s3, dynamodb) = Service::through_proxies(&[]).await;
    let user = User::named("alice");
    let file = data(8 * MIB, seed);
    let id = svc.start_upload(&user, &file, 2 * MIB).await;
    for start in [2 * MIB] {
        let chunk = &file[start..start + 2 * MIB];
        svc.chunk(&user, Some(&id), start, chunk, file.len(), integration_tests::Encoding::Raw)
            .await
            .assert_status(200);
    }
    let key = svc.record(&id).await.expect("record").key;
    let proxy = if ["UpdateItem", "DeleteItem"].contains(&operation) { &dynamodb } else { &s3 };
    proxy.arm(operation, fault);
    let what = format!("{fault:?} at {operation} during an abort");
    let mut answered = None;
    for _ in 0..10 {
        let reply = svc.abort(&user, &id).await;
        match reply.status {
            // 404: an earlier attempt finished the abort but its answer was cut.
            200 | 404 => {
                answered = Some(reply.status);
                break;
            }
            409 | 500..=599 => {}
            _ => panic!("{what}: {reply:?}"),
        }
    }
    assert!(answered.is_some(), "{what}: the abort never finished");
    assert!(proxy.all_fired(), "{what}: the fault never fired");
    svc.status(&user, &id).await.assert_status(404);
    assert_eq!(svc.multipart_uploads(&key).await, 0, "{what}");
    assert_eq!(svc.buffered_keys(&id).await, Vec::<String>::new(), "{what}");
}

#[tokio::test]
async fn an_abort_survives_a_fault_at_any_of_its_calls() {
    let calls = ["UpdateItem", "AbortMultipartUpload", "ListObjectsV2", "DeleteObjects", "DeleteItem"];
    for (i, operation) in calls.into_iter().enumerate() {
        abort_survives(operation, Fault::FailBefore, 120 + i as u64).await;
        abort_survives(operation, Fault::CutAfter, 140 + i as u64).await;
    }
}
