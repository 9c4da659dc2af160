//! Completion's lease and the record's TTL against the emulators: a dead completer's lease is taken over, a live one
//! is not, TTL cannot remove a record while it completes, and the completed record keeps a TTL of its own.

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::proxy::Fault;
use integration_tests::{Encoding, KIB, Service, User, batch, data, md5_hex};
use shared::cleanup;
use shared::clock::now_ms;

/// Makes the record look as a completer left it that took the lease `age_ms` ago and died.
async fn lease_taken(svc: &Service, upload_id: &str, age_ms: u64) {
    svc.dynamodb
        .update_item()
        .table_name(&svc.app.config.table)
        .key("upload_id", AttributeValue::S(upload_id.into()))
        .update_expression("SET #s = :completing, completing_since_ms = :since")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(":completing", AttributeValue::S("completing".into()))
        .expression_attribute_values(":since", AttributeValue::N((now_ms() - age_ms).to_string()))
        .send()
        .await
        .expect("UpdateItem");
}

fn ttl_of(item: &std::collections::HashMap<String, AttributeValue>) -> u64 {
    item["expires_at"].as_n().expect("TTL").parse().expect("a number")
}

#[tokio::test]
async fn a_dead_completers_lease_is_taken_over_and_a_live_one_is_not() {
    let svc = Service::default().await;
    let user = User::named("alice");
    let file = data(50 * KIB, 95);
    let id = svc.upload_all(&user, &file, 20 * KIB, Encoding::Raw).await;
    lease_taken(&svc, &id, 1_000).await;
    let busy = svc.complete(&user, &id, &md5_hex(&file)).await;
    busy.assert_status(202);
    assert_eq!(busy.body["status"], "completing", "{busy:?}");
    // The lease has most of its time left: the client is told to come back once it may have run out.
    let retry_after = busy.headers["retry-after"].to_str().expect("text").parse::<u64>().expect("seconds");
    assert!((20..=60).contains(&retry_after), "{busy:?}");
    assert_eq!(busy.body["retry_after"], retry_after);
    // Older than the longest a request can run: its holder is gone.
    lease_taken(&svc, &id, 10 * 60 * 1000).await;
    let done = svc.complete(&user, &id, &md5_hex(&file)).await;
    done.assert_status(200);
    assert!(svc.object(done.body["key"].as_str().expect("key")).await == file);
}

#[tokio::test]
async fn the_record_outlives_its_completion_and_keeps_a_ttl_of_its_own() {
    let (svc, s3, _dynamodb) = Service::through_proxies(&[("CHUNKED_UPLOAD_EXPIRATION_DELTA", "60")]).await;
    let user = User::named("alice");
    let file = data(50 * KIB, 96);
    let id = svc.upload_all(&user, &file, 20 * KIB, Encoding::Raw).await;
    let created_ttl = ttl_of(&svc.raw_item(&id).await.expect("item"));
    // The completion is held after S3 completed the object: the record is `completing`, its TTL moved on.
    s3.arm("CompleteMultipartUpload", Fault::HoldAfter);
    let md5 = md5_hex(&file);
    let (reply, ()) = tokio::join!(svc.complete(&user, &id, &md5), async {
        let held = s3.held().await;
        let item = svc.raw_item(&id).await.expect("item");
        assert_eq!(item["status"].as_s().expect("status"), "completing");
        assert!(ttl_of(&item) > created_ttl, "TTL moved past the lease: {} vs {created_ttl}", ttl_of(&item));
        held.release();
    });
    reply.assert_status(200);
    let done = svc.raw_item(&id).await.expect("the completed record stays");
    assert!(ttl_of(&done) >= now_ms() / 1000 + 50, "a TTL of its own from completion");
}

/// S3 may take longer than a request to complete a multipart upload of thousands of parts. The client is told the
/// upload is being completed and when to ask again, never a 503; the object S3 finishes is then the result.
#[tokio::test]
async fn a_completion_longer_than_the_request_is_answered_202_then_finished_by_a_later_complete() {
    let (svc, s3, _dynamodb) = Service::through_proxies(&[("CHUNKED_UPLOAD_REQUEST_TIMEOUT_SECS", "6")]).await;
    let user = User::named("alice");
    let file = data(50 * KIB, 98);
    let id = svc.upload_all(&user, &file, 20 * KIB, Encoding::Raw).await;
    let md5 = md5_hex(&file);
    // S3 completes the object, and its answer does not come back within the request.
    s3.arm("CompleteMultipartUpload", Fault::HoldAfter);
    let (reply, held) = tokio::join!(svc.complete(&user, &id, &md5), s3.held());
    reply.assert_status(202);
    assert_eq!(reply.body["status"], "completing", "{reply:?}");
    assert!(reply.headers.contains_key("retry-after"), "{reply:?}");
    drop(held);
    // Meanwhile the status says so, and another complete is told the same, without a second completion in S3.
    let status = svc.status(&user, &id).await;
    assert_eq!(status.body["status"], "completing", "{status:?}");
    svc.complete(&user, &id, &md5).await.assert_status(202);
    assert_eq!(s3.tallies()["CompleteMultipartUpload"].calls, 1);
    // Once the lease has run out, a complete finds the object S3 finished, with the accepted bytes: the result.
    lease_taken(&svc, &id, 10 * 60 * 1000).await;
    let done = svc.complete(&user, &id, &md5).await;
    done.assert_status(200);
    assert_eq!((done.body["status"].as_str(), done.body["md5"].as_str()), (Some("complete"), Some(md5.as_str())));
    assert!(svc.object(done.body["key"].as_str().expect("key")).await == file);
    svc.status(&user, &id).await.assert_status(200);
}

#[tokio::test]
async fn a_crash_right_after_creating_the_multipart_upload_leaves_nothing_for_the_lifecycle_rule_alone() {
    let (svc, s3, _dynamodb) = Service::through_proxies(&[]).await;
    let user = User::named("alice");
    let file = data(30 * KIB, 97);
    let name = format!("crash-{}.bin", shared::protocol::UploadId::new());
    s3.arm("CreateMultipartUpload", Fault::HoldAfter);
    let uri = format!("/upload?filename={name}");
    let request = Service::request(&user, lambda_http::http::Method::POST, &uri)
        .header("content-range", format!("bytes 0-{}/{}", 10 * KIB - 1, file.len()))
        .header("content-type", "application/octet-stream")
        .body(bytes::Bytes::copy_from_slice(&file[..10 * KIB]))
        .expect("request");
    // The function dies while S3's answer is on its way: no line of it runs after S3 created the upload.
    let held = tokio::select! {
        reply = svc.send(request) => panic!("the request finished: {reply:?}"),
        held = s3.held() => held,
    };
    drop(held);
    let uploads = svc.s3.list_multipart_uploads().bucket(&svc.app.config.bucket).send().await.expect("list");
    let key = uploads.uploads().iter().filter_map(|u| u.key()).find(|k| k.ends_with(&name)).expect("the orphan");
    let id = key.split('/').nth(1).expect("uploads/{id}/{name}").to_string();
    let record = svc.record(&id).await.expect("the record was written first");
    assert_eq!((record.offset, record.multipart_id.as_deref()), (0, None));
    // TTL removes the record; the cleanup function finds the multipart upload by its key.
    let removal = svc.removal(&id, 400, true).await;
    svc.remove_record(&id).await;
    let response = cleanup::handle_stream(&svc.app, batch(vec![removal])).await;
    assert!(response.batch_item_failures.is_empty(), "{:?}", response.batch_item_failures);
    assert_eq!(svc.multipart_uploads(key).await, 0);
}
