//! Per-owner limits against the emulators: uploads and bytes in progress answer 429 past the limit, hold under
//! concurrent creates, and are released exactly once by complete, abort and expiry (TTL removal).

use futures_util::future::join_all;
use integration_tests::{Encoding, KIB, Service, User, batch, data, md5_hex, own_table};
use shared::cleanup;

/// An owner of its own, so counters start at zero whatever other tests did: the user and its owner name.
fn fresh_owner() -> (User, String) {
    let sub = format!("limits-{}", shared::protocol::UploadId::new());
    (User::named(&sub), sub)
}

/// Starts an upload of `file` (its first 10 KiB); returns the reply.
async fn start(svc: &Service, user: &User, file: &[u8]) -> integration_tests::Reply {
    svc.chunk(user, None, 0, &file[..10 * KIB], file.len(), Encoding::Raw).await
}

#[tokio::test]
async fn uploads_in_progress_are_limited_and_released_by_complete_abort_and_expiry() {
    let table = own_table().await;
    let svc = Service::new(&[("CHUNKED_UPLOAD_TABLE", &table), ("CHUNKED_UPLOAD_MAX_UPLOADS_PER_OWNER", "2")]).await;
    let (user, owner) = fresh_owner();
    let file = data(30 * KIB, 90);
    let first = start(&svc, &user, &file).await.upload_id();
    let second = start(&svc, &user, &file).await.upload_id();
    let refused = start(&svc, &user, &file).await;
    refused.assert_status(429);
    assert!(refused.detail().contains("Too many uploads in progress (2 of at most 2)"), "{refused:?}");
    // Another owner is not affected.
    start(&svc, &fresh_owner().0, &file).await.assert_status(200);

    svc.abort(&user, &first).await.assert_status(200);
    let third = start(&svc, &user, &file).await.upload_id();
    start(&svc, &user, &file).await.assert_status(429);

    svc.chunk(&user, Some(&second), 10 * KIB, &file[10 * KIB..], file.len(), Encoding::Raw).await.assert_status(200);
    svc.complete(&user, &second, &md5_hex(&file)).await.assert_status(200);
    let fourth = start(&svc, &user, &file).await.upload_id();
    assert_eq!(svc.counted(&owner).await, (2, 2 * file.len() as u64));

    // Expiry: TTL removes the record and the stream delivers its removal, twice; it is released once.
    let removal = svc.removal(&third, 300, true).await;
    svc.remove_record(&third).await;
    for _ in 0..2 {
        let response = cleanup::handle_stream(&svc.app, batch(vec![removal.clone()])).await;
        assert!(response.batch_item_failures.is_empty(), "{:?}", response.batch_item_failures);
    }
    assert_eq!(svc.counted(&owner).await, (1, file.len() as u64));
    // And the completed upload's eventual removal, or the aborted one's, releases nothing more.
    let completed_removal = svc.removal(&second, 301, true).await;
    cleanup::handle_stream(&svc.app, batch(vec![completed_removal])).await;
    assert_eq!(svc.counted(&owner).await, (1, file.len() as u64));
    svc.abort(&user, &fourth).await.assert_status(200);
    svc.abort(&user, &fourth).await.assert_status(404);
    assert_eq!(svc.counted(&owner).await, (0, 0));
}

#[tokio::test]
async fn bytes_in_progress_are_limited() {
    let (table, max) = (own_table().await, (100 * KIB).to_string());
    let svc = Service::new(&[("CHUNKED_UPLOAD_TABLE", &table), ("CHUNKED_UPLOAD_MAX_BYTES_PER_OWNER", &max)]).await;
    let (user, _) = fresh_owner();
    let (big, small) = (data(60 * KIB, 91), data(30 * KIB, 92));
    let id = start(&svc, &user, &big).await.upload_id();
    let refused = start(&svc, &user, &big).await;
    refused.assert_status(429);
    assert!(refused.detail().contains(&format!("{} bytes", 100 * KIB)), "{refused:?}");
    start(&svc, &user, &small).await.assert_status(200);
    start(&svc, &user, &data(101 * KIB, 93)).await.assert_status(429);
    svc.abort(&user, &id).await.assert_status(200);
    start(&svc, &user, &big).await.assert_status(200);
}

#[tokio::test]
async fn concurrent_creates_never_pass_the_limit() {
    let table = own_table().await;
    let svc = Service::new(&[("CHUNKED_UPLOAD_TABLE", &table), ("CHUNKED_UPLOAD_MAX_UPLOADS_PER_OWNER", "3")]).await;
    let (user, owner) = fresh_owner();
    let file = data(30 * KIB, 94);
    let replies = join_all((0..10).map(|_| start(&svc, &user, &file))).await;
    let accepted = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(accepted, 3, "{replies:?}");
    assert!(replies.iter().all(|r| matches!(r.status, 200 | 429)), "{replies:?}");
    assert_eq!(svc.counted(&owner).await.0, 3);
}
