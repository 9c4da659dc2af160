//! The cleanup function against the emulators: DynamoDB stream batches as Lambda delivers them, and what is left in
//! S3 afterwards.

use integration_tests::{Encoding, MIB, Service, User, batch, data, md5_hex};
use serde_json::json;
use shared::cleanup::{self, Outcome};

/// An unfinished upload with a committed part, a buffered chunk, and the stray chunk of a request that never
/// committed; returns its id and final key.
async fn unfinished(svc: &Service, seed: u64) -> (String, String) {
    let (user, file) = (User::named("alice"), data(16 * MIB, seed));
    let id = svc.chunk(&user, None, 0, &file[..4 * MIB], file.len(), Encoding::Raw).await.upload_id();
    for start in [4 * MIB, 8 * MIB] {
        let chunk = &file[start..start + 4 * MIB];
        svc.chunk(&user, Some(&id), start, chunk, file.len(), Encoding::Raw).await.assert_status(200);
    }
    let stray = format!("{}{id}/ffffffffffffffff-0000000000000000", svc.app.config.buffer_prefix);
    svc.s3
        .put_object()
        .bucket(&svc.app.config.bucket)
        .key(stray)
        .body(file[..10].to_vec().into())
        .send()
        .await
        .expect("stray");
    let record = svc.record(&id).await.expect("record");
    assert_eq!((record.parts.count, record.buffers.is_empty()), (1, false), "a part and a buffered chunk");
    assert_eq!(svc.buffered_keys(&id).await.len(), 2);
    assert_eq!(svc.multipart_uploads(&record.key).await, 1);
    (id, record.key)
}

#[tokio::test]
async fn ttl_removal_of_an_unfinished_upload_removes_its_bytes() {
    let svc = Service::default().await;
    let (id, key) = unfinished(&svc, 40).await;
    let record = svc.removal(&id, 100, true).await;
    svc.remove_record(&id).await;
    let response = cleanup::handle_stream(&svc.app, batch(vec![record.clone()])).await;
    assert!(response.batch_item_failures.is_empty(), "{:?}", response.batch_item_failures);
    assert_eq!(svc.multipart_uploads(&key).await, 0);
    assert!(svc.buffered_keys(&id).await.is_empty());
    // A duplicate delivery finds nothing left, and succeeds.
    let again = cleanup::handle_stream(&svc.app, batch(vec![record])).await;
    assert!(again.batch_item_failures.is_empty());
}

#[tokio::test]
async fn ttl_removal_of_a_completed_upload_touches_nothing() {
    let svc = Service::default().await;
    let user = User::named("alice");
    let file = data(9 * MIB, 41);
    let id = svc.upload_all(&user, &file, 4 * MIB, Encoding::Raw).await;
    let done = svc.complete(&user, &id, &md5_hex(&file)).await;
    done.assert_status(200);
    let key = done.body["key"].as_str().expect("key").to_string();
    let record = svc.removal(&id, 200, true).await;
    svc.remove_record(&id).await;
    let event = batch(vec![record]);
    assert_eq!(cleanup::cleanup(&svc.app, &event.records[0]).await.expect("cleanup"), Outcome::KeptComplete);
    assert!(cleanup::handle_stream(&svc.app, event).await.batch_item_failures.is_empty());
    assert!(svc.object(&key).await == file, "the completed object changed");
}

#[tokio::test]
async fn a_users_abort_then_its_stream_record_is_harmless() {
    let svc = Service::default().await;
    let (id, key) = unfinished(&svc, 42).await;
    let record = svc.removal(&id, 300, false).await;
    svc.abort(&User::named("alice"), &id).await.assert_status(200);
    let event = batch(vec![record]);
    assert_eq!(cleanup::cleanup(&svc.app, &event.records[0]).await.expect("cleanup"), Outcome::Discarded);
    assert_eq!(svc.multipart_uploads(&key).await, 0);
    assert!(svc.buffered_keys(&id).await.is_empty());
}

#[tokio::test]
async fn other_records_are_ignored() {
    let svc = Service::default().await;
    let (id, key) = unfinished(&svc, 43).await;
    let mut record = svc.removal(&id, 400, false).await;
    for name in ["INSERT", "MODIFY"] {
        record["eventName"] = json!(name);
        let event = batch(vec![record.clone()]);
        assert_eq!(cleanup::cleanup(&svc.app, &event.records[0]).await.expect("cleanup"), Outcome::Ignored);
    }
    assert_eq!(svc.multipart_uploads(&key).await, 1, "an upload in progress is left alone");
    assert_eq!(svc.buffered_keys(&id).await.len(), 2);
}

#[tokio::test]
async fn failures_are_reported_per_record() {
    let svc = Service::default().await;
    let (id, key) = unfinished(&svc, 44).await;
    let good = svc.removal(&id, 500, true).await;
    // The same item pointing at a bucket that does not exist: S3 refuses, and only that record is reported.
    let broken = Service::new(&[("CHUNKED_UPLOAD_BUCKET", "no-such-bucket-for-cleanup")]).await;
    let mut bad = good.clone();
    bad["dynamodb"]["SequenceNumber"] = json!("501");
    let response = cleanup::handle_stream(&broken.app, batch(vec![bad])).await;
    let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    assert_eq!(failed, vec![Some("501".to_string())]);
    let response = cleanup::handle_stream(&svc.app, batch(vec![good])).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(svc.multipart_uploads(&key).await, 0);
}
