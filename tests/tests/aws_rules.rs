//! What AWS does and the emulators do not, each met by the service: a test per rule of the strict-AWS layer
//! (`integration_tests::strict`, docs/testing.md) and per finding of issue 18 that the layer made visible.

use std::time::Duration;

use futures_util::future::join_all;
use integration_tests::proxy::Fault;
use integration_tests::strict::{Rule, Rules};
use integration_tests::*;
use lambda_http::http;
use serde_json::json;
use shared::cleanup;

/// An owner of its own, so its counters start at zero.
fn fresh(prefix: &str) -> (User, String) {
    let sub = format!("{prefix}-{}", shared::protocol::UploadId::new());
    (User::named(&sub), sub)
}

/// Sends the first `chunks` MiB of `file` in 1 MiB chunks (buffered: a part is at least 5 MiB); the upload's id.
async fn send_first(svc: &Service, user: &User, file: &[u8], chunks: usize) -> String {
    let id = svc.start_upload(user, file, MIB).await;
    for start in (MIB..chunks * MIB).step_by(MIB) {
        let chunk = &file[start..start + MIB];
        svc.chunk(user, Some(&id), start, chunk, file.len(), Encoding::Raw).await.assert_status(200);
    }
    id
}

/// The scenario of issue 18: a 23 MiB sequential upload in 4 MiB chunks, S3 stores the part the chunk at 4 MiB
/// completes but its reply is lost; status says the offset has not moved, the chunk is sent again, and the rest; then
/// complete must succeed with the exact file (S3 takes only part numbers 1..N: `Rule::PartOrder`).
#[tokio::test]
async fn a_part_whose_reply_was_lost_does_not_make_the_upload_uncompletable() {
    let (svc, s3, _) = Service::through_proxies(&[]).await;
    let user = User::named("lost-part-reply");
    let file = data(23 * MIB, 1801);
    s3.arm("UploadPart", Fault::CutAfter);
    let done = svc.upload_retrying(&user, &file, 4 * MIB).await;
    assert!(s3.all_fired(), "the reply of an UploadPart was lost");
    done.assert_status(200);
    assert_eq!(done.body["md5"], md5_hex(&file));
    assert!(svc.object(done.body["key"].as_str().expect("key")).await == file, "the object is the file");
}

/// S3's SlowDown on UploadPart, which the SDK cannot retry (its body is streamed from S3), reaches the client as a 503;
/// a client that sends the chunk again ends with the exact file.
#[tokio::test]
async fn throttled_part_uploads_are_survived_by_a_retrying_client() {
    let svc = Service::default().await;
    let user = User::named("throttled-parts");
    let file = data(12 * MIB + 7, 1802);
    // A burst: two UploadParts in a row.
    svc.s3_proxy.arm("UploadPart", Fault::SlowDown);
    svc.s3_proxy.arm("UploadPart", Fault::SlowDown);
    let done = svc.upload_retrying(&user, &file, 2 * MIB).await;
    assert!(svc.s3_proxy.all_fired());
    assert_eq!(done.body["md5"], md5_hex(&file));
    assert!(svc.object(done.body["key"].as_str().expect("key")).await == file);
}

/// `Rule::CompletionErrorIn200` at every attempt the SDK may retry: the completion still answers 200.
#[tokio::test]
async fn a_completion_failing_inside_its_200_is_retried() {
    let rules = Rules::aws().every(Rule::CompletionErrorIn200);
    let svc = Service::with(&[], Setup { rules, ..Setup::default() }).await;
    let user = User::named("error-in-200");
    let file = data(6 * MIB + 1, 1803);
    let id = svc.upload_all(&user, &file, 2 * MIB, Encoding::Raw).await;
    let done = svc.complete(&user, &id, &md5_hex(&file)).await;
    done.assert_status(200);
    let completions = svc.s3_proxy.tallies()["CompleteMultipartUpload"].calls;
    assert!(completions >= 2, "the error in the 200 was injected and retried: {completions} calls");
    assert!(svc.object(done.body["key"].as_str().expect("key")).await == file);
}

/// `Rule::DeleteErrors` at every DeleteObjects: completion and abort still leave nothing under the buffer prefix, and
/// an abort answers 200 only once its chunks are gone.
#[tokio::test]
async fn keys_deleteobjects_left_in_place_are_deleted_again() {
    let rules = Rules::aws().every(Rule::DeleteErrors);
    let svc = Service::with(&[], Setup { rules, ..Setup::default() }).await;
    let user = User::named("delete-errors");
    // 1 MiB chunks into 5 MiB parts: buffered chunks to join and delete, and a last part's worth left to sweep.
    let file = data(8 * MIB + 3, 1804);
    let done = svc.upload_retrying(&user, &file, MIB).await;
    done.assert_status(200);
    let id = done.upload_id();
    assert_eq!(svc.buffered_keys(&id).await, Vec::<String>::new(), "the completion removed every buffered chunk");

    let aborted = send_first(&svc, &user, &file, 4).await;
    assert_eq!(svc.buffered_keys(&aborted).await.len(), 4);
    let reply = svc.abort(&user, &aborted).await;
    assert!(matches!(reply.status, 200 | 503), "{reply:?}");
    if reply.status == 503 {
        svc.abort(&user, &aborted).await.assert_status(200);
    }
    assert_eq!(svc.buffered_keys(&aborted).await, Vec::<String>::new(), "an abort that answered 200 removed them");
    assert!(svc.s3_proxy.tallies()["DeleteObjects"].calls > 2, "keys were left in place, and deleted again");
}

/// A buffered chunk gone when its part is gathered is a 409 (another request moved the upload on), whether S3 says
/// NoSuchKey (a role that may list the bucket) or AccessDenied (the chunk function's, `Rule::MissingKeyAccessDenied`).
#[tokio::test]
async fn a_missing_buffered_chunk_is_a_conflict_whatever_s3_calls_it() {
    // Off for the second run, to see S3's other answer: NoSuchKey.
    for rules in [Rules::aws(), Rules::aws().without(Rule::MissingKeyAccessDenied)] {
        let svc = Service::with(&[], Setup { rules, ..Setup::default() }).await;
        let user = User::named("missing-chunk");
        let file = data(6 * MIB, 1805);
        let id = send_first(&svc, &user, &file, 4).await;
        let buffered = svc.buffered_keys(&id).await;
        // The chunk that fills the first part lists the buffered ones, then reads them: one goes in between, so
        // that its read is what misses it.
        svc.s3_proxy.arm("ListObjectsV2", Fault::HoldAfter);
        let remove_after_listing = async {
            let held = svc.s3_proxy.held().await;
            let gone = svc.s3.delete_object().bucket(&svc.app.config.bucket).key(&buffered[1]);
            gone.send().await.expect("delete a buffered chunk");
            held.release();
        };
        let filling = svc.chunk(&user, Some(&id), 4 * MIB, &file[4 * MIB..5 * MIB], file.len(), Encoding::Raw);
        let (reply, ()) = tokio::join!(filling, remove_after_listing);
        reply.assert_status(409);
    }
}

/// Concurrent starts and completes of one owner conflict on its counter (`Rule::TransactionConflict`): none is
/// answered 503 for it, and when they are all done the owner is counted for nothing.
#[tokio::test]
async fn concurrent_starts_and_completes_of_one_owner_leave_it_counted_for_nothing() {
    let table = own_table().await;
    let svc = Service::new(&[("CHUNKED_UPLOAD_TABLE", &table), ("CHUNKED_UPLOAD_MAX_UPLOADS_PER_OWNER", "100")]).await;
    let (user, owner) = fresh("conflicts");
    let uploads = (0..10u64).map(|i| {
        let (svc, user) = (&svc, &user);
        async move {
            let file = data(20 * KIB, 1810 + i);
            let started = svc.chunk(user, None, 0, &file, file.len(), Encoding::Raw).await;
            started.assert_status(200);
            svc.complete(user, &started.upload_id(), &md5_hex(&file)).await.assert_status(200);
        }
    });
    join_all(uploads).await;
    assert_eq!(svc.counted(&owner).await, (0, 0));
}

/// A release of the owner's share that fails at completion fails the completion, whose repetition gives it back: no
/// completed upload is left counted (before, the completion answered 200 and the owner stayed counted).
#[tokio::test]
async fn a_release_that_fails_at_completion_is_given_back_by_the_repeated_complete() {
    let (svc, _, dynamodb) = Service::counting_through_proxies().await;
    let (user, owner) = fresh("release");
    let file = data(3 * MIB, 1806);
    let id = svc.start_upload(&user, &file, file.len()).await;
    // The creation was the first transaction; the next is the completion's release.
    let creations = dynamodb.tallies()["TransactWriteItems"].calls;
    dynamodb.arm("TransactWriteItems", Fault::FailBefore);
    let first = svc.complete(&user, &id, &md5_hex(&file)).await;
    assert!(dynamodb.all_fired() && dynamodb.tallies()["TransactWriteItems"].calls > creations);
    first.assert_status(503);
    svc.complete(&user, &id, &md5_hex(&file)).await.assert_status(200);
    assert_eq!(svc.counted(&owner).await, (0, 0));
}

/// A start that fails once its owner is counted (S3 refused the multipart upload) and whose release fails too keeps
/// its record, so that TTL's removal brings the cleanup function, which gives the share back (before: the record was
/// deleted all the same, and the owner stayed counted for good for an upload that was gone).
#[tokio::test]
async fn a_failed_start_whose_release_fails_is_given_back_by_the_cleanup() {
    let (svc, s3, dynamodb) = Service::counting_through_proxies().await;
    let (user, owner) = fresh("failed-start");
    s3.arm("CreateMultipartUpload", Fault::HoldBefore);
    let fail_both = async {
        let held = s3.held().await;
        dynamodb.arm("TransactWriteItems", Fault::FailBefore);
        // Dropped unanswered: the multipart upload is refused once the upload is counted.
        drop(held);
    };
    let opening = json!({"mode": "direct", "size": 8 * MIB, "filename": "d.bin"});
    let (reply, ()) = tokio::join!(svc.open(&user, opening), fail_both);
    reply.assert_status(503);
    assert!(s3.all_fired() && dynamodb.all_fired());
    assert_eq!(svc.counted(&owner).await, (1, 8 * MIB as u64));
    let listed = svc.list(&user, "").await;
    let id = listed.body["uploads"][0]["upload_id"].as_str().expect("the record is kept").to_string();
    let removal = svc.removal(&id, 1, true).await;
    svc.remove_record(&id).await;
    assert!(cleanup::handle_stream(&svc.app, batch(vec![removal])).await.batch_item_failures.is_empty());
    assert_eq!(svc.counted(&owner).await, (0, 0));
}

/// A creation whose transaction went through but whose reply was cut off (the SDK's own retries are off here, as
/// when they are spent) is sent again with the same client request token, which DynamoDB answers with the first
/// try's success (`Rule::IdempotentTransactions`): the upload starts, counted once (before: a 503, and the upload
/// the first try created left counted against its owner until it expired).
#[tokio::test]
async fn a_creation_whose_transaction_reply_was_lost_is_counted_once() {
    let (svc, _, dynamodb) = Service::counting_through_proxies().await;
    let (user, owner) = fresh("lost-creation");
    let file = data(MIB, 1811);
    dynamodb.arm("TransactWriteItems", Fault::CutAfter);
    svc.start_upload(&user, &file, MIB).await;
    assert!(dynamodb.all_fired());
    assert_eq!(svc.counted(&owner).await, (1, MIB as u64));
}

/// A creation whose transaction is still in progress when the SDK's attempt times out (no SDK retry here, as when
/// they are spent; an SDK retry, with the same token, would meet the same): the service sends it again
/// with the same token, meets TransactionInProgressException, and asks again until the first try's outcome is
/// known; the upload starts, counted once (before: a 503, and the upload the first try created left counted).
#[tokio::test]
async fn a_creation_retried_while_its_transaction_is_in_progress_waits_for_its_outcome() {
    let (svc, _, dynamodb) = Service::counting_through_proxies().await;
    let (user, owner) = fresh("creation-in-progress");
    let file = data(MIB, 1812);
    dynamodb.arm("TransactWriteItems", Fault::HoldBefore);
    let release_after_retries = async {
        let held = dynamodb.held().await;
        // The service's tries after the SDK's attempt timed out (one that gives up instead fails the asserts below).
        let tried_again = async {
            while dynamodb.tallies()["TransactWriteItems"].calls < 3 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(30), tried_again).await;
        held.release();
    };
    let (reply, ()) = tokio::join!(svc.chunk(&user, None, 0, &file, file.len(), Encoding::Raw), release_after_retries);
    reply.assert_status(200);
    assert_eq!(svc.counted(&owner).await, (1, MIB as u64));
}

/// Anonymous uploads count against the caller's network: one client at its limit does not lock out another.
#[tokio::test]
async fn one_anonymous_client_cannot_use_up_the_limit_of_all() {
    let table = own_table().await;
    let settings = [
        ("CHUNKED_UPLOAD_TABLE", table.as_str()),
        ("CHUNKED_UPLOAD_MAX_UPLOADS_PER_OWNER", "2"),
        ("CHUNKED_UPLOAD_REQUIRE_AUTH", "false"),
    ];
    let svc = Service::new(&settings).await;
    let file = data(10 * KIB, 1820);
    let start = |from: &'static str| {
        let request = Service::request(&User::anonymous(), http::Method::POST, "/upload?filename=a.bin")
            .header("x-forwarded-for", from)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("bytes 0-{}/{}", file.len() - 1, file.len()))
            .body(bytes::Bytes::copy_from_slice(&file))
            .expect("request");
        svc.send(request)
    };
    let first = start("203.0.113.7").await;
    first.assert_status(200);
    start("203.0.113.7").await.assert_status(200);
    start("203.0.113.7").await.assert_status(429);
    // Another address of the same IPv6 /64 is the same client; another network is not.
    start("2001:db8:5:6::1").await.assert_status(200);
    start("2001:db8:5:6::2").await.assert_status(200);
    start("2001:db8:5:6:ffff::3").await.assert_status(429);
    start("198.51.100.9").await.assert_status(200);
    // A completion gives the share back to the network that was counted.
    let holder = User::anonymous().with_secret(first.secret());
    svc.complete(&holder, &first.upload_id(), &md5_hex(&file)).await.assert_status(200);
    assert_eq!(svc.app.table.in_progress("client/203.0.113.7").await.expect("counters"), (1, file.len() as u64));
    start("203.0.113.7").await.assert_status(200);
}

/// A part URL never outlives the credentials it is signed with (`Rule::ExpiredToken`): signed with a session of 30 s,
/// it says so; used after its session ended, S3 refuses it with 400 ExpiredToken; a new URL then works.
#[tokio::test]
async fn part_urls_live_no_longer_than_their_credentials() {
    let svc = Service::with(&[], Setup { session: Duration::from_secs(30), ..Setup::default() }).await;
    let user = User::named("url-lifetime");
    let file = data(5 * MIB, 1830);
    let opened = svc.open(&user, json!({"mode": "direct", "size": file.len(), "filename": "d.bin"})).await;
    let id = opened.upload_id();
    let urls = svc.part_urls(&user, &id, &[(1, &file)]).await;
    urls.assert_status(200);
    let url = urls.body["parts"][0]["url"].as_str().expect("url");
    let expires: u64 =
        url.split("X-Amz-Expires=").nth(1).and_then(|s| s.split('&').next()?.parse().ok()).expect("expiry");
    assert!(expires <= 30, "a URL signed with credentials of 30 s lives {expires} s");
    // The URL used once its session has ended: 31 s on, as far as S3 (the layer) can tell, without waiting for them.
    svc.s3_proxy.judge_tokens_ahead(Duration::from_secs(31));
    assert_eq!(put_presigned(&urls.body["parts"][0], &file).await, 400, "ExpiredToken");
    svc.s3_proxy.judge_tokens_ahead(Duration::ZERO);
    let again = svc.part_urls(&user, &id, &[(1, &file)]).await;
    assert_eq!(put_presigned(&again.body["parts"][0], &file).await, 200);
    svc.complete_crc(&user, &id, &crc64(&file)).await.assert_status(200);
}

/// A token without `sub` is valid to API Gateway's JWT authorizer, which passes it on: the function answers.
#[tokio::test]
async fn a_token_without_sub_reaches_the_function() {
    use base64::Engine;
    let svc = Service::default().await;
    let encode = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    let token = format!("{}.{}.", encode(r#"{"alg":"none"}"#), encode(r#"{"iss":"local-dev","scope":"upload"}"#));
    let user = User { token: Some(token), secret: None };
    let reply = svc.list(&user, "").await;
    reply.assert_status(403);
    assert!(reply.detail().contains("sub"), "the function says what is missing: {reply:?}");
}
