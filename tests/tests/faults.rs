//! Faults injected into every S3 and DynamoDB call the service makes, before the call reaches the emulator and after
//! the emulator acted but before the reply, and calls that never answer: a client that retries always ends with the
//! exact file, and cleanup leaves nothing behind.

use std::time::{Duration, Instant};

use integration_tests::proxy::{Fault, Proxy};
use integration_tests::{Encoding, MIB, Reply, Service, User, data, md5_hex};

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
    Point { s3: true, operation: "ListObjectsV2", after: 0 },
    Point { s3: true, operation: "ListParts", after: 0 },
    // The record's creation: alone, or (where a limit is set) with the owner's counters; and at completion the
    // counters' release.
    Point { s3: false, operation: "PutItem", after: 0 },
    Point { s3: false, operation: "TransactWriteItems", after: 0 },
    Point { s3: false, operation: "TransactWriteItems", after: 1 },
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
    let (svc, s3, dynamodb) = if point.operation == "PutItem" {
        Service::through_proxies(&[]).await
    } else {
        Service::counting_through_proxies().await
    };
    let proxy = if point.s3 { &s3 } else { &dynamodb };
    let file = data(6 * MIB + 3, seed);
    let user = User::named("alice");
    let (done, ()) =
        tokio::join!(svc.upload_retrying(&user, &file, 2 * MIB), arm_later(proxy, point.operation, point.after, fault));
    let what = format!("{:?} at {} after {}", fault, point.operation, point.after);
    assert!(proxy.all_fired(), "{what}: the fault never fired: {:?}", proxy.tallies());
    assert_exact(&svc, &done, &file, &what).await;
}

/// The completed upload is exactly `file`, and nothing of it is left in progress or buffered.
async fn assert_exact(svc: &Service, done: &Reply, file: &[u8], what: &str) {
    assert_eq!(done.body["md5"], md5_hex(file), "{what}");
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
    let (svc, s3, dynamodb) = Service::counting_through_proxies().await;
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
    let proxy = if ["UpdateItem", "TransactWriteItems", "DeleteItem"].contains(&operation) { &dynamodb } else { &s3 };
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
    let calls =
        ["UpdateItem", "AbortMultipartUpload", "ListObjectsV2", "DeleteObjects", "TransactWriteItems", "DeleteItem"];
    for (i, operation) in calls.into_iter().enumerate() {
        abort_survives(operation, Fault::FailBefore, 120 + i as u64).await;
        abort_survives(operation, Fault::CutAfter, 140 + i as u64).await;
    }
}

/// The request timeout of the hang tests. S3 calls get half of it, DynamoDB calls all of it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// What a loaded machine may add to an answer due at the deadline.
const SLACK: Duration = Duration::from_secs(3);

/// Calls that never answer (or whose answer never comes back), met by the request `at`: either the chunk at that
/// offset, or (`None`) a status request.
struct Hang {
    /// `after` counts the calls within the hung request.
    calls: &'static [Point],
    fault: Fault,
    at: Option<usize>,
    /// Whether the answer must say that the chunk may have been accepted.
    ambiguous: bool,
    /// Whether the chunk was in fact accepted.
    landed: bool,
}

const HANGS: &[Hang] = &[
    // S3's time limit ends the call within the request, which then knows that nothing was committed: a plain 503.
    Hang {
        calls: &[Point { s3: true, operation: "PutObject", after: 0 }],
        fault: Fault::Hang,
        at: Some(2 * MIB),
        ambiguous: false,
        landed: false,
    },
    Hang {
        calls: &[Point { s3: true, operation: "UploadPart", after: 0 }],
        fault: Fault::Hang,
        at: Some(4 * MIB),
        ambiguous: false,
        landed: false,
    },
    // A DynamoDB write that never answers, whether or not it reached DynamoDB, cannot tell: the claim, and the
    // commit (which DynamoDB applied).
    Hang {
        calls: &[Point { s3: false, operation: "UpdateItem", after: 0 }],
        fault: Fault::Hang,
        at: Some(2 * MIB),
        ambiguous: true,
        landed: false,
    },
    Hang {
        calls: &[Point { s3: false, operation: "UpdateItem", after: 1 }],
        fault: Fault::HoldAfter,
        at: Some(2 * MIB),
        ambiguous: true,
        landed: true,
    },
    // After S3's limit, the read that would tell what became of the chunk hangs too: the request's deadline answers.
    Hang {
        calls: &[
            Point { s3: true, operation: "PutObject", after: 0 },
            Point { s3: false, operation: "GetItem", after: 0 },
        ],
        fault: Fault::Hang,
        at: Some(2 * MIB),
        ambiguous: true,
        landed: false,
    },
    Hang {
        calls: &[Point { s3: false, operation: "GetItem", after: 0 }],
        fault: Fault::Hang,
        at: None,
        ambiguous: false,
        landed: false,
    },
];

/// The hung request is answered 503 within the request timeout, saying whether it may have been accepted; a client
/// that asks for the status and goes on from its offset ends with the exact file.
async fn hang_is_answered_in_time(hang: &Hang, seed: u64) {
    let timeout = REQUEST_TIMEOUT.as_secs().to_string();
    let (svc, s3, dynamodb) = Service::through_proxies(&[("CHUNKED_UPLOAD_REQUEST_TIMEOUT_SECS", &timeout)]).await;
    let proxy = |point: &Point| if point.s3 { &s3 } else { &dynamodb };
    let (user, chunk) = (User::named("alice"), 2 * MIB);
    let file = data(8 * MIB + 5, seed);
    let id = svc.start_upload(&user, &file, chunk).await;
    let names: Vec<_> = hang.calls.iter().map(|c| format!("{} after {}", c.operation, c.after)).collect();
    let what = format!("{:?} at {names:?}, request {:?}", hang.fault, hang.at);
    for start in (chunk..hang.at.unwrap_or(chunk)).step_by(chunk) {
        svc.chunk(&user, Some(&id), start, &file[start..start + chunk], file.len(), Encoding::Raw)
            .await
            .assert_status(200);
    }
    let arming = hang.calls.iter().map(|c| {
        let passed = proxy(c).tallies().get(c.operation).map_or(0, |t| t.calls as usize);
        arm_later(proxy(c), c.operation, passed + c.after, hang.fault)
    });
    let request = async {
        match hang.at {
            Some(start) => {
                svc.chunk(&user, Some(&id), start, &file[start..start + chunk], file.len(), Encoding::Raw).await
            }
            None => svc.status(&user, &id).await,
        }
    };
    let began = Instant::now();
    let (reply, _) = tokio::join!(request, futures_util::future::join_all(arming));
    let elapsed = began.elapsed();
    assert!(s3.all_fired() && dynamodb.all_fired(), "{what}: a fault never fired");
    reply.assert_status(503);
    assert!(elapsed < REQUEST_TIMEOUT + SLACK, "{what}: answered after {elapsed:?}");
    assert_eq!(reply.may_have_been_accepted(), hang.ambiguous, "{what}: {reply:?}");
    if !hang.ambiguous {
        assert_eq!(reply.detail(), "Storage is unavailable, retry later", "{what}");
    }
    if let Some(start) = hang.at {
        let offset = if hang.landed { start + chunk } else { start };
        assert_eq!(svc.status(&user, &id).await.assert_status(200).offset(), offset as u64, "{what}");
    }
    let done = svc.go_on_retrying(&user, &file, chunk, Some(id)).await;
    assert_exact(&svc, &done, &file, &what).await;
}

#[tokio::test]
async fn a_call_that_never_answers_gets_a_503_within_the_request_timeout() {
    for (i, hang) in HANGS.iter().enumerate() {
        hang_is_answered_in_time(hang, 160 + i as u64).await;
    }
}
