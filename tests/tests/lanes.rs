//! The parallel and direct modes against the emulators: any order, concurrency, resume from status, the CRC64NVME
//! checks at every step, and presigned URLs that only take the declared bytes of their own part.

use futures_util::stream::{self, StreamExt};
use integration_tests::proxy::Fault;
use integration_tests::*;
use serde_json::{Value, json};

const CHUNK: usize = MIB;

/// A parallel upload of `file` in 1 MiB chunks (5 per 5 MiB part).
async fn open_parallel(svc: &Service, user: &User, file: &[u8]) -> String {
    let opened =
        svc.open(user, json!({"mode": "parallel", "size": file.len(), "chunk_size": CHUNK, "filename": "p.bin"})).await;
    opened.assert_status(200);
    assert_eq!(opened.body["part_size"], json!(5 * MIB), "{:?}", opened.body);
    assert_eq!(opened.body["chunks"], json!(file.len().div_ceil(CHUNK)));
    opened.upload_id()
}

async fn send_chunks(svc: &Service, user: &User, id: &str, file: &[u8], indexes: &[usize]) {
    let sends = indexes.iter().map(|&i| {
        let start = i * CHUNK;
        let end = (start + CHUNK).min(file.len());
        async move { svc.parallel_chunk(user, id, start, &file[start..end], file.len()).await }
    });
    let replies: Vec<Reply> = stream::iter(sends).buffer_unordered(4).collect().await;
    for r in replies {
        r.assert_status(200);
    }
}

async fn assert_stored(svc: &Service, done: &Reply, file: &[u8]) {
    done.assert_status(200);
    assert_eq!(done.body["crc64nvme"], json!(crc64(file)), "{:?}", done.body);
    svc.assert_object(done.body["key"].as_str().expect("key"), file).await;
}

#[tokio::test]
async fn a_parallel_upload_takes_chunks_in_any_order_at_once() {
    let svc = Service::default().await;
    let user = User::named("parallel-any-order");
    let file = data(12 * MIB + 5, 31);
    let id = open_parallel(&svc, &user, &file).await;
    // Backwards, four at a time: every part is filled by whichever of its chunks comes last.
    let order: Vec<usize> = (0..file.len().div_ceil(CHUNK)).rev().collect();
    send_chunks(&svc, &user, &id, &file, &order).await;
    let status = svc.status(&user, &id).await;
    status.assert_status(200);
    assert_eq!(status.body["parts_held"], json!([[1, 3]]), "{:?}", status.body);
    assert_eq!(status.body["chunks_held"], json!([[0, 12]]));
    let done = svc.complete_crc(&user, &id, &crc64(&file)).await;
    assert_stored(&svc, &done, &file).await;
    assert_eq!(done.body["mode"], json!("parallel"));
    assert!(svc.buffered_keys(&id).await.is_empty(), "buffered chunks are removed");
    // A repeated complete answers the same.
    let again = svc.complete_crc(&user, &id, &crc64(&file)).await;
    assert_eq!((again.status, &again.body["etag"]), (400, &done.body["etag"]));
}

#[tokio::test]
async fn a_parallel_upload_resumes_from_what_status_says_it_holds() {
    let svc = Service::default().await;
    let user = User::named("parallel-resume");
    let file = data(11 * MIB, 32);
    let id = open_parallel(&svc, &user, &file).await;
    send_chunks(&svc, &user, &id, &file, &[0, 1, 2, 3, 4, 7]).await;
    let status = svc.status(&user, &id).await;
    assert_eq!(status.body["chunks_held"], json!([[0, 4], [7, 7]]), "{:?}", status.body);
    assert_eq!(status.body["parts_held"], json!([[1, 1]]));
    // The same chunk again: the same answer. Other bytes for it: refused, the held ones stay.
    let again = svc.parallel_chunk(&user, &id, 7 * CHUNK, &file[7 * CHUNK..8 * CHUNK], file.len()).await;
    again.assert_status(200);
    let other = vec![9u8; CHUNK];
    svc.parallel_chunk(&user, &id, 7 * CHUNK, &other, file.len()).await.assert_status(409);
    // Bytes that are not what their checksum says, and chunks off the grid, are refused.
    let lying = svc.parallel_chunk_declaring(&user, &id, 5 * CHUNK, &other, file.len(), &crc64(b"x")).await;
    lying.assert_status(400);
    svc.parallel_chunk(&user, &id, CHUNK / 2, &file[..CHUNK], file.len()).await.assert_status(400);
    let early = svc.complete_crc(&user, &id, &crc64(&file)).await;
    early.assert_status(400);
    assert!(early.detail().contains("[[5, 6], [8, 10]]"), "{}", early.detail());
    send_chunks(&svc, &user, &id, &file, &[5, 6, 8, 9, 10]).await;
    // A wrong whole-file CRC is refused and the upload kept.
    let wrong = svc.complete_crc(&user, &id, &crc64(b"another file")).await;
    assert_eq!((wrong.status, wrong.detail()), (400, "crc64nvme checksum does not match"));
    let done = svc.complete_crc(&user, &id, &crc64(&file)).await;
    assert_stored(&svc, &done, &file).await;
}

#[tokio::test]
async fn a_part_whose_upload_died_is_uploaded_by_a_retried_chunk_or_by_complete() {
    let (svc, s3, _dynamodb) = Service::through_proxies(&[]).await;
    let user = User::named("parallel-dead-flusher");
    let file = data(10 * MIB, 33);
    let id = open_parallel(&svc, &user, &file).await;
    send_chunks(&svc, &user, &id, &file, &[0, 1, 2, 3]).await;
    // The chunk that fills part 1 is recorded, then its part's upload fails: the part is full but not in S3.
    s3.arm("UploadPart", Fault::FailBefore);
    let failed = svc.parallel_chunk(&user, &id, 4 * CHUNK, &file[4 * CHUNK..5 * CHUNK], file.len()).await;
    assert_eq!(failed.status, 503, "{:?}", failed.body);
    let status = svc.status(&user, &id).await;
    assert_eq!((&status.body["chunks_held"], &status.body["parts_held"]), (&json!([[0, 4]]), &json!([])));
    // Its retry finds the part full and uploads it.
    let retried = svc.parallel_chunk(&user, &id, 4 * CHUNK, &file[4 * CHUNK..5 * CHUNK], file.len()).await;
    assert_eq!((retried.status, &retried.body["part_complete"]), (200, &json!(true)));
    // Part 2 dies the same way, and nobody retries: complete uploads it.
    send_chunks(&svc, &user, &id, &file, &[5, 6, 7, 8]).await;
    s3.arm("UploadPart", Fault::FailBefore);
    let failed = svc.parallel_chunk(&user, &id, 9 * CHUNK, &file[9 * CHUNK..], file.len()).await;
    assert_eq!(failed.status, 503);
    let done = svc.complete_crc(&user, &id, &crc64(&file)).await;
    assert_stored(&svc, &done, &file).await;
}

/// Eight requests at once for the chunk that fills part 1, all with its bytes or each with bytes of its own: the
/// requests with the held bytes are answered 200 (and see the part complete), the others 409, the object holds the
/// held bytes, and no buffered chunk outlives the completion.
async fn race_for_one_chunk(same_bytes: bool, seed: u64) {
    let svc = Service::default().await;
    let user = User::named("parallel-race");
    let file = data(6 * MIB, seed);
    let id = open_parallel(&svc, &user, &file).await;
    send_chunks(&svc, &user, &id, &file, &[0, 1, 2, 3]).await;
    let raced = 4 * CHUNK..5 * CHUNK;
    let contenders: Vec<Vec<u8>> = (0..8)
        .map(|i| if same_bytes || i == 0 { file[raced.clone()].to_vec() } else { data(CHUNK, seed * 100 + i) })
        .collect();
    let sends = contenders.iter().map(|bytes| svc.parallel_chunk(&user, &id, raced.start, bytes, file.len()));
    let replies = futures_util::future::join_all(sends).await;
    let status = svc.status(&user, &id).await;
    assert_eq!((&status.body["chunks_held"], &status.body["parts_held"]), (&json!([[0, 4]]), &json!([[1, 1]])));
    let record = svc.record(&id).await.expect("record");
    let parts = svc.s3.list_parts().bucket(&svc.app.config.bucket).key(&record.key);
    let parts = parts.upload_id(record.multipart_id.as_deref().expect("id")).send().await.expect("ListParts");
    let held_crc = parts.parts()[0].checksum_crc64_nvme().expect("the part's CRC").to_string();
    let mut expected = file.clone();
    let winner = contenders.iter().position(|c| {
        expected[raced.clone()].copy_from_slice(c);
        crc64(&expected[..5 * MIB]) == held_crc
    });
    let winner = winner.expect("part 1 holds one contender's bytes");
    for (reply, bytes) in replies.iter().zip(&contenders) {
        if *bytes == contenders[winner] {
            assert_eq!((reply.status, &reply.body["part_complete"]), (200, &json!(true)), "{:?}", reply.body);
        } else {
            assert_eq!(reply.status, 409, "{:?}", reply.body);
        }
    }
    send_chunks(&svc, &user, &id, &file, &[5]).await;
    let done = svc.complete_crc(&user, &id, &crc64(&expected)).await;
    assert_stored(&svc, &done, &expected).await;
    assert_eq!(svc.buffered_keys(&id).await, Vec::<String>::new());
}

#[tokio::test]
async fn requests_racing_for_one_parallel_chunk_with_the_same_bytes_all_succeed() {
    race_for_one_chunk(true, 38).await;
}

#[tokio::test]
async fn requests_racing_for_one_parallel_chunk_with_different_bytes_keep_one() {
    race_for_one_chunk(false, 39).await;
}

/// A direct upload's URLs for `numbers`, by number.
async fn urls(svc: &Service, user: &User, id: &str, file: &[u8], part: usize, numbers: &[u32]) -> Vec<Value> {
    let parts: Vec<(u32, &[u8])> = numbers
        .iter()
        .map(|&n| {
            let start = (n as usize - 1) * part;
            (n, &file[start..(start + part).min(file.len())])
        })
        .collect();
    let reply = svc.part_urls(user, id, &parts).await;
    reply.assert_status(200);
    reply.body["parts"].as_array().expect("parts").clone()
}

fn part_bytes(file: &[u8], part: usize, number: u32) -> &[u8] {
    let start = (number as usize - 1) * part;
    &file[start..(start + part).min(file.len())]
}

#[tokio::test]
async fn a_direct_upload_puts_parts_straight_to_s3_in_any_order() {
    let svc = Service::default().await;
    let user = User::named("direct-upload");
    let file = data(16 * MIB + 3, 34);
    let opened = svc.open(&user, json!({"mode": "direct", "size": file.len(), "filename": "d.bin"})).await;
    opened.assert_status(200);
    let id = opened.upload_id();
    let part = opened.body["part_size"].as_u64().expect("part size") as usize;
    assert_eq!((part, opened.body["parts"].clone()), (5 * MIB, json!(4)));
    let signed = urls(&svc, &user, &id, &file, part, &[4, 2, 3, 1]).await;
    let puts = signed.iter().map(|p| {
        let number = p["number"].as_u64().expect("number") as u32;
        let file = &file;
        async move { put_presigned(p, part_bytes(file, part, number)).await }
    });
    let statuses: Vec<u16> = stream::iter(puts).buffer_unordered(4).collect().await;
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let status = svc.status(&user, &id).await;
    assert_eq!(status.body["parts_held"], json!([[1, 4]]), "{:?}", status.body);
    let wrong = svc.complete_crc(&user, &id, &crc64(b"no")).await;
    assert_eq!((wrong.status, wrong.detail()), (400, "crc64nvme checksum does not match"));
    // An MD5 the service cannot check is refused, not passed on unchecked into the result.
    let with_md5 = svc.complete_json(&user, json!({"upload_id": id, "crc64nvme": crc64(&file), "md5": md5_hex(&file)}));
    let with_md5 = with_md5.await;
    assert_eq!(with_md5.status, 400, "{:?}", with_md5.body);
    assert!(with_md5.detail().contains("checked by its crc64nvme"), "{:?}", with_md5.body);
    // And alone, the same answer: the MD5 is not what is missing.
    let only_md5 = svc.complete(&user, &id, &md5_hex(&file)).await;
    assert_eq!((only_md5.status, only_md5.detail()), (400, with_md5.detail()));
    let done = svc.complete_crc(&user, &id, &crc64(&file)).await;
    assert_stored(&svc, &done, &file).await;
    // No MD5 was checked: the result says null, never a value a client would compare with its own.
    assert_eq!((&done.body["mode"], &done.body["md5"]), (&json!("direct"), &json!(null)));
}

#[tokio::test]
async fn presigned_urls_take_only_their_own_parts_declared_bytes_while_the_upload_lives() {
    let svc = Service::default().await;
    let user = User::named("direct-refusals");
    let file = data(10 * MIB, 35);
    let part = 5 * MIB;
    let open = || svc.open(&user, json!({"mode": "direct", "size": file.len()}));
    let (first, second) = (open().await.upload_id(), open().await.upload_id());
    let signed = urls(&svc, &user, &first, &file, part, &[1, 2]).await;
    // Other bytes, or another part's, at a part's URL: S3 refuses them (the checksum is signed).
    let mut other = part_bytes(&file, part, 1).to_vec();
    other[0] ^= 1;
    assert_ne!(put_presigned(&signed[0], &other).await, 200);
    assert_ne!(put_presigned(&signed[0], part_bytes(&file, part, 2)).await, 200);
    // A URL replayed for another upload: its signature covers the upload and part, so S3 refuses it.
    let mut replayed = signed[0].clone();
    let url = replayed["url"].as_str().expect("url").to_string();
    let second_mp = svc.record(&second).await.expect("record").multipart_id.expect("multipart id");
    let first_mp = svc.record(&first).await.expect("record").multipart_id.expect("multipart id");
    replayed["url"] = json!(url.replace(&urlencode(&first_mp), &urlencode(&second_mp)));
    assert_ne!(replayed["url"], signed[0]["url"]);
    assert_ne!(put_presigned(&replayed, part_bytes(&file, part, 1)).await, 200);
    // Or for another part of its own upload, with bytes that match its checksum: the signature covers the number.
    let mut renumbered = signed[0].clone();
    renumbered["url"] = json!(url.replace("partNumber=1", "partNumber=2"));
    assert_ne!(renumbered["url"], signed[0]["url"]);
    assert_eq!(put_presigned(&renumbered, part_bytes(&file, part, 1)).await, 403);
    // A part declared once keeps its bytes: no URL for others.
    svc.part_urls(&user, &first, &[(1, &other)]).await.assert_status(409);
    svc.part_urls(&user, &first, &[(3, &other)]).await.assert_status(400);
    svc.part_urls(&User::named("someone-else"), &first, &[(1, &other)]).await.assert_status(404);
    assert_eq!(put_presigned(&signed[0], part_bytes(&file, part, 1)).await, 200);
    assert_eq!(svc.status(&user, &first).await.body["parts_held"], json!([[1, 1]]));
    // After an abort, a URL handed out before is useless.
    svc.abort(&user, &first).await.assert_status(200);
    assert_ne!(put_presigned(&signed[1], part_bytes(&file, part, 2)).await, 200);
    svc.part_urls(&user, &first, &[(2, part_bytes(&file, part, 2))]).await.assert_status(404);
    // Chunks through the API are not how a direct upload takes bytes.
    svc.parallel_chunk(&user, &second, 0, &file[..MIB], file.len()).await.assert_status(400);
}

#[tokio::test]
async fn a_presigned_url_dies_with_its_upload_and_the_api_hands_out_no_more() {
    let svc = Service::new(&[("CHUNKED_UPLOAD_EXPIRATION_DELTA", "2")]).await;
    let user = User::named("direct-url-expired");
    let file = data(6 * MIB, 40);
    let id = svc.open(&user, json!({"mode": "direct", "size": file.len()})).await.upload_id();
    let signed = urls(&svc, &user, &id, &file, 5 * MIB, &[1]).await;
    let url = signed[0]["url"].as_str().expect("url");
    let lifetime = url.split(['?', '&']).find_map(|p| p.strip_prefix("X-Amz-Expires=")).expect("X-Amz-Expires");
    assert!(lifetime.parse::<u64>().expect("seconds") <= 2, "{url}");
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    // The multipart upload still exists (nothing has cleaned it up yet), but S3 refuses the URL.
    assert_eq!(put_presigned(&signed[0], part_bytes(&file, 5 * MIB, 1)).await, 403);
    let record = svc.record(&id).await.expect("record");
    let parts = svc.s3.list_parts().bucket(&svc.app.config.bucket).key(&record.key);
    let parts = parts.upload_id(record.multipart_id.as_deref().expect("id")).send().await.expect("ListParts");
    assert!(parts.parts().is_empty(), "{parts:?}");
    // And the API hands out no more of them.
    svc.part_urls(&user, &id, &[(1, &file[..5 * MIB])]).await.assert_status(410);
    svc.complete_crc(&user, &id, &crc64(&file)).await.assert_status(410);
}

#[tokio::test]
async fn opening_refuses_what_it_cannot_plan() {
    let svc = Service::default().await;
    let user = User::named("open-refusals");
    for body in [
        json!({"mode": "parallel"}),
        json!({"mode": "sideways", "size": 10}),
        json!({"mode": "sequential", "size": 10}),
        json!({"mode": "parallel", "size": 0}),
        json!({"mode": "parallel", "size": 10 * MIB, "chunk_size": 64 * MIB}),
        json!({"mode": "parallel", "size": 10 * MIB, "chunk_size": 10}),
        json!({"mode": "direct", "size": -1}),
    ] {
        let reply = svc.open(&user, body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {:?}", reply.body);
    }
    // An anonymous upload is bound to its secret, in every mode.
    let anonymous = Service::new(&[("CHUNKED_UPLOAD_REQUIRE_AUTH", "false")]).await;
    let opened = anonymous.open(&User::anonymous(), json!({"mode": "direct", "size": 6 * MIB})).await;
    opened.assert_status(200);
    let secret = opened.secret().expect("a secret");
    let id = opened.upload_id();
    let file = data(6 * MIB, 37);
    anonymous.part_urls(&User::anonymous(), &id, &[(1, &file[..5 * MIB])]).await.assert_status(404);
    let holder = User::anonymous().with_secret(Some(secret));
    anonymous.part_urls(&holder, &id, &[(1, &file[..5 * MIB])]).await.assert_status(200);
}

#[tokio::test]
async fn opening_a_direct_upload_signs_its_first_parts_urls() {
    let svc = Service::default().await;
    let user = User::named("direct-first-urls");
    let part = 6 * MIB;
    let file = data(3 * part + 5, 41);
    let declared = |numbers: &[u32]| -> Vec<Value> {
        numbers.iter().map(|&n| json!({"number": n, "crc64nvme": crc64(part_bytes(&file, part, n))})).collect()
    };
    let body = json!({"mode": "direct", "size": file.len(), "part_size": part, "part_urls": declared(&[1, 2])});
    let opened = svc.open(&user, body).await;
    opened.assert_status(200);
    let id = opened.upload_id();
    let mut signed = opened.body["part_urls"]["parts"].as_array().expect("the first parts' URLs").clone();
    assert_eq!(signed.len(), 2, "{:?}", opened.body);
    signed.extend(urls(&svc, &user, &id, &file, part, &[3, 4]).await);
    for p in &signed {
        let number = p["number"].as_u64().expect("number") as u32;
        assert_eq!(put_presigned(p, part_bytes(&file, part, number)).await, 200);
    }
    // Part 1's CRC was declared when it was signed: its bytes cannot change.
    svc.part_urls(&user, &id, &[(1, b"other bytes")]).await.assert_status(409);
    assert_stored(&svc, &svc.complete_crc(&user, &id, &crc64(&file)).await, &file).await;
    // CRCs of parts of another size than the grid's (1 MiB asked, 5 MiB planned) get no URLs: the client asks later.
    let rounded = json!({"mode": "direct", "size": file.len(), "part_size": MIB, "part_urls": declared(&[1])});
    let rounded = svc.open(&user, rounded).await;
    rounded.assert_status(200);
    assert_eq!((&rounded.body["part_size"], rounded.body.get("part_urls")), (&json!(5 * MIB), None));
    // Refused before anything is created: a parallel upload, a part off the grid, a malformed list.
    for body in [
        json!({"mode": "parallel", "size": file.len(), "part_urls": declared(&[1])}),
        json!({"mode": "direct", "size": file.len(), "part_size": part, "part_urls": [{"number": 5, "crc64nvme": crc64(b"x")}]}),
        json!({"mode": "direct", "size": file.len(), "part_urls": [{"number": 1}]}),
    ] {
        assert_eq!(svc.open(&user, body.clone()).await.status, 400, "{body}");
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
