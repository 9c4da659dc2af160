//! `GET /upload` against the emulators: an owner's uploads in every state, newest first, paged by cursors that give
//! each upload exactly once and never lead into another owner's uploads; refused to anonymous callers; the table's
//! other items (owners' counters, tombstones, part items) never listed.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use integration_tests::{Encoding, KIB, Service, User, data, md5_hex, own_table};
use serde_json::{Value, json};
use shared::protocol::UploadId;
use shared::secret::Caller;
use shared::store::quota::counter_key;

/// An owner of its own: the user and its sub.
fn fresh_owner(name: &str) -> (User, String) {
    let sub = format!("{name}-{}", shared::protocol::UploadId::new());
    (User::named(&sub), sub)
}

/// Every upload of the listing, following `next_cursor` from page to page of `limit`; and how many pages it took.
async fn list_all(svc: &Service, user: &User, limit: usize) -> (Vec<Value>, usize) {
    let (mut uploads, mut pages, mut cursor) = (Vec::new(), 0, None::<String>);
    loop {
        let query = match &cursor {
            Some(c) => format!("limit={limit}&cursor={c}"),
            None => format!("limit={limit}"),
        };
        let reply = svc.list(user, &query).await;
        reply.assert_status(200);
        pages += 1;
        let page = reply.body["uploads"].as_array().expect("uploads").clone();
        assert!(page.len() <= limit, "{reply:?}");
        uploads.extend(page);
        match reply.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => {
                assert_eq!(reply.body["next_cursor"], Value::Null, "{reply:?}");
                return (uploads, pages);
            }
        }
    }
}

fn ids(uploads: &[Value]) -> Vec<String> {
    uploads.iter().map(|u| u["upload_id"].as_str().expect("upload_id").to_string()).collect()
}

/// Uploads created one after another get distinct creation times, so "newest first" has one right answer.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(3)).await;
}

#[tokio::test]
async fn every_state_is_listed_newest_first_and_pages_give_each_upload_once() {
    let table = own_table().await;
    // A limit: every upload is counted, so the table also holds the owner's counter and released uploads' tombstones.
    let overrides = [("CHUNKED_UPLOAD_TABLE", table.as_str()), ("CHUNKED_UPLOAD_MAX_UPLOADS_PER_OWNER", "100")];
    let svc = Service::new(&overrides).await;
    let short_lived = Service::new(&[overrides[0], overrides[1], ("CHUNKED_UPLOAD_EXPIRATION_DELTA", "1")]).await;
    let (user, sub) = fresh_owner("lister");
    let caller = Caller::Principal(sub.clone());
    let file = data(30 * KIB, 70);

    // Oldest first; `expected` is what each one's listing must say.
    let mut expected: Vec<(String, &str)> = Vec::new();
    let expired = short_lived.start_upload(&user, &file, 10 * KIB).await;
    expected.push((expired, "expired"));
    tick().await;
    let uploading = svc.start_upload(&user, &file, 10 * KIB).await;
    expected.push((uploading.clone(), "uploading"));
    tick().await;
    let complete = svc.upload_all(&user, &file, 10 * KIB, Encoding::Raw).await;
    svc.complete(&user, &complete, &md5_hex(&file)).await.assert_status(200);
    expected.push((complete.clone(), "complete"));
    tick().await;
    let parallel = svc
        .open(&user, json!({"mode": "parallel", "size": 12 << 20, "chunk_size": 4 << 20, "filename": "p.bin"}))
        .await;
    parallel.assert_status(200);
    // A parallel chunk writes a part item beside the record: it must not be listed.
    let parallel = parallel.upload_id();
    let chunk = data(4 << 20, 71);
    svc.parallel_chunk(&user, &parallel, 0, &chunk, 12 << 20).await.assert_status(200);
    expected.push((parallel.clone(), "uploading"));
    tick().await;
    let direct = svc.open(&user, json!({"mode": "direct", "size": 6 << 20, "filename": "d.bin"})).await.upload_id();
    expected.push((direct.clone(), "uploading"));
    tick().await;
    // A completion in progress, and an abort that stopped after marking the record.
    let completing = svc.upload_all(&user, &file, 10 * KIB, Encoding::Raw).await;
    let now = shared::clock::now_ms();
    svc.app
        .table
        .claim_completion(&UploadId::parse(&completing).expect("id"), &caller, now, now, now / 1000 + 60)
        .await
        .expect("claim");
    expected.push((completing, "completing"));
    tick().await;
    let aborting = svc.start_upload(&user, &file, 10 * KIB).await;
    svc.app.table.mark_aborted(&UploadId::parse(&aborting).expect("id"), &caller).await.expect("mark aborted");
    expected.push((aborting, "aborted"));
    tick().await;
    // Aborted to the end: its record is gone, its tombstone stays; neither is listed.
    let aborted = svc.start_upload(&user, &file, 10 * KIB).await;
    svc.abort(&user, &aborted).await.assert_status(200);
    tokio::time::sleep(Duration::from_millis(1100)).await; // the short-lived upload expires

    expected.reverse();
    let reply = svc.list(&user, "").await;
    reply.assert_status(200);
    assert_eq!(reply.body["next_cursor"], Value::Null, "{reply:?}");
    let uploads = reply.body["uploads"].as_array().expect("uploads").clone();
    let listed: Vec<(String, &str)> =
        uploads.iter().map(|u| (u["upload_id"].as_str().unwrap().to_string(), u["status"].as_str().unwrap())).collect();
    assert_eq!(listed, expected, "{reply:?}");
    assert!(!ids(&uploads).contains(&aborted));
    let times: Vec<&str> = uploads.iter().map(|u| u["created"].as_str().expect("created")).collect();
    assert!(times.windows(2).all(|w| w[0] > w[1]), "newest first: {times:?}");

    // The same shapes as the status and the completion, with the creation time, content type and key.
    let by_id = |id: &str| uploads.iter().find(|u| u["upload_id"] == id).expect("listed").clone();
    let done = by_id(&complete);
    let result = svc.complete(&user, &complete, &md5_hex(&file)).await; // repeated: the result again
    for field in ["bucket", "key", "filename", "content_type", "size", "md5", "etag", "crc64nvme", "mode"] {
        assert_eq!(done[field], result.body[field], "{field}: {done} vs {result:?}");
    }
    assert_eq!(done["md5"], md5_hex(&file));
    let in_progress = by_id(&uploading);
    let status = svc.status(&user, &uploading).await;
    for field in ["offset", "expires", "filename", "size", "mode", "status"] {
        assert_eq!(in_progress[field], status.body[field], "{field}: {in_progress} vs {status:?}");
    }
    assert_eq!(in_progress["offset"], 10 * KIB);
    assert!(in_progress["key"].as_str().is_some_and(|k| k.contains(&uploading)), "{in_progress}");
    assert!(in_progress["content_type"].is_string(), "{in_progress}");
    // The lanes' progress is the status's to tell (it reads the parts held): no offset here.
    let (lane, status) = (by_id(&parallel), svc.status(&user, &parallel).await);
    for field in ["mode", "part_size", "chunk_size", "expires", "size"] {
        assert_eq!(lane[field], status.body[field], "{field}: {lane} vs {status:?}");
    }
    assert!(lane.get("offset").is_none() && lane.get("chunks_held").is_none(), "{lane}");
    let (lane, status) = (by_id(&direct), svc.status(&user, &direct).await);
    assert_eq!((&lane["mode"], &lane["part_size"]), (&status.body["mode"], &status.body["part_size"]), "{lane}");

    // Pages of 2 follow each other without a gap or a repeat, and the last one says it is.
    let (paged, pages) = list_all(&svc, &user, 2).await;
    assert_eq!(ids(&paged), ids(&uploads));
    assert_eq!(pages, uploads.len().div_ceil(2));
    let (single, pages) = list_all(&svc, &user, 1).await;
    assert_eq!(ids(&single), ids(&uploads));
    assert_eq!(pages, uploads.len());

    // The counter and the tombstones are in the table, and not in the listing.
    assert!(svc.raw_item(&counter_key(&sub)).await.is_some());
    assert!(svc.raw_item(&format!("released/{aborted}")).await.is_some());
    assert!(svc.raw_item(&format!("released/{complete}")).await.is_some());
    assert!(ids(&uploads).iter().all(|id| id.len() == 32 && !id.contains('/')), "{uploads:?}");
}

#[tokio::test]
async fn only_the_callers_own_uploads_are_listed_whatever_the_cursor() {
    let svc = Service::default().await;
    let ((alice, _), (bob, _)) = (fresh_owner("alice"), fresh_owner("bob"));
    let file = data(20 * KIB, 72);
    let mut alices = Vec::new();
    let mut bobs = Vec::new();
    for _ in 0..3 {
        alices.push(svc.start_upload(&alice, &file, 10 * KIB).await);
        tick().await;
        bobs.push(svc.start_upload(&bob, &file, 10 * KIB).await);
        tick().await;
    }
    alices.reverse();
    bobs.reverse();
    assert_eq!(ids(&list_all(&svc, &alice, 100).await.0), alices);
    assert_eq!(ids(&list_all(&svc, &bob, 2).await.0), bobs);
    assert!(ids(&list_all(&svc, &fresh_owner("carol").0, 10).await.0).is_empty());

    // A cursor made by hand to point at bob's uploads (his ids, his times, later than anything): alice still sees
    // only her own, those older than the time it names.
    let bobs_record = svc.record(&bobs[0]).await.expect("bob's record");
    for created in [bobs_record.created_at_ms + 1, bobs_record.created_at_ms, u64::MAX / 2] {
        let cursor = URL_SAFE_NO_PAD.encode(format!("{created}.{}", bobs[0]));
        let reply = svc.list(&alice, &format!("cursor={cursor}")).await;
        reply.assert_status(200);
        let listed = ids(reply.body["uploads"].as_array().expect("uploads"));
        assert!(listed.iter().all(|id| alices.contains(id)), "{created}: {reply:?}");
        assert_eq!(listed, alices, "{created}: alice's are all older than bob's newest");
    }
    // Pointing at bob's oldest: only alice's older than it.
    let oldest = svc.record(&bobs[2]).await.expect("bob's record");
    let cursor = URL_SAFE_NO_PAD.encode(format!("{}.{}", oldest.created_at_ms, bobs[2]));
    let reply = svc.list(&alice, &format!("cursor={cursor}")).await;
    assert_eq!(ids(reply.body["uploads"].as_array().expect("uploads")), alices[2..].to_vec(), "{reply:?}");
}

#[tokio::test]
async fn anonymous_callers_have_no_listing() {
    let svc = Service::default().await;
    let refused = svc.list(&User::anonymous(), "").await;
    refused.assert_status(403);
    assert_eq!(refused.detail(), "Authentication credentials were not provided");

    let open = Service::new(&[("CHUNKED_UPLOAD_REQUIRE_AUTH", "false")]).await;
    let file = data(20 * KIB, 73);
    let first = open.chunk(&User::anonymous(), None, 0, &file[..10 * KIB], file.len(), Encoding::Raw).await;
    first.assert_status(200);
    let anonymous = User::anonymous().with_secret(first.secret());
    // Not even with the secret of an upload: a secret names one upload, not a listing.
    for user in [User::anonymous(), anonymous] {
        let refused = open.list(&user, "").await;
        refused.assert_status(403);
        assert!(refused.detail().contains("needs an authenticated caller"), "{refused:?}");
    }
    // A token whose sub is `anonymous` does not own the anonymous uploads (each is bound to its secret).
    let (listed, _) = list_all(&open, &User::named(shared::secret::ANONYMOUS_OWNER), 100).await;
    assert!(!ids(&listed).contains(&first.upload_id()), "{listed:?}");
}

#[tokio::test]
async fn malformed_limits_and_cursors_are_refused() {
    let svc = Service::default().await;
    let (user, _) = fresh_owner("refused");
    let hand_made = |text: &str| URL_SAFE_NO_PAD.encode(text);
    for (query, says) in [
        ("limit=0".to_string(), "limit must be"),
        ("limit=101".into(), "limit must be"),
        ("limit=ten".into(), "limit must be"),
        ("limit=-1".into(), "limit must be"),
        ("limit=".into(), "limit must be"),
        ("limit=1&limit=2".into(), "more than once"),
        ("cursor=not-a-cursor!".into(), "cursor is not one"),
        ("cursor=".into(), "cursor is not one"),
        (format!("cursor={}", hand_made("12.owner/someone")), "cursor is not one"),
        (format!("cursor={}", hand_made("x.0123456789abcdef0123456789abcdef")), "cursor is not one"),
        (format!("cursor={}", hand_made("0123456789abcdef0123456789abcdef")), "cursor is not one"),
    ] {
        let reply = svc.list(&user, &query).await;
        reply.assert_status(400);
        assert!(reply.detail().contains(says), "{query}: {reply:?}");
    }
    let wrong = svc
        .send(
            Service::request(&user, lambda_http::http::Method::PUT, "/upload")
                .body(bytes::Bytes::new())
                .expect("request"),
        )
        .await;
    // No route: API Gateway's own 404.
    wrong.assert_status(404);
    assert_eq!(wrong.body["message"], "Not Found");
}
