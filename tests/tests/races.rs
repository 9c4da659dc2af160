//! Races: requests for one offset, completions, and chunks against abort and expiry. Whatever the interleaving,
//! exactly one request wins each offset and the object is exactly the accepted bytes.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use futures_util::future::join_all;
use integration_tests::proxy::Fault;
use integration_tests::{Encoding, KIB, MIB, Reply, Service, User, data, md5_hex};

fn alice() -> User {
    User::named("alice")
}

/// Many requests for one offset at once: exactly one is accepted, and the file still comes out right.
async fn race(same_bytes: bool, chunk: usize) {
    let svc = Service::default().await;
    let file = data(3 * chunk, 35);
    let id = svc.start_upload(&alice(), &file, chunk).await;
    let contenders: Vec<Vec<u8>> = (0..8)
        .map(|i| if same_bytes || i == 0 { file[chunk..2 * chunk].to_vec() } else { data(chunk, 100 + i) })
        .collect();
    let user = alice();
    let replies =
        join_all(contenders.iter().map(|bytes| svc.chunk(&user, Some(&id), chunk, bytes, file.len(), Encoding::Raw)))
            .await;
    let winners: Vec<usize> = replies.iter().enumerate().filter(|(_, r)| r.status == 200).map(|(i, _)| i).collect();
    assert_eq!(winners.len(), 1, "{replies:?}");
    for (i, reply) in replies.iter().enumerate().filter(|(_, r)| r.status != 200) {
        // A chunk that fills a part while another chunk's request uploads it is told to retry (409); retried, or
        // at once, losers learn where the upload stands, to go on from there.
        let reply = if reply.status == 409 && !same_bytes {
            &svc.chunk(&user, Some(&id), chunk, &contenders[i], file.len(), Encoding::Raw).await
        } else {
            reply
        };
        assert!(reply.status == 400 && reply.offset() == 2 * chunk as u64, "{reply:?}");
    }
    let mut expected = file.clone();
    expected[chunk..2 * chunk].copy_from_slice(&contenders[winners[0]]);
    svc.chunk(&alice(), Some(&id), 2 * chunk, &file[2 * chunk..], file.len(), Encoding::Raw).await.assert_status(200);
    let done = svc.complete(&alice(), &id, &md5_hex(&expected)).await;
    done.assert_status(200);
    assert!(svc.object(done.body["key"].as_str().expect("key")).await == expected);
    assert!(svc.buffered_keys(&id).await.is_empty());
}

#[tokio::test]
async fn race_for_one_offset_with_the_same_bytes() {
    race(true, 3 * MIB).await;
}

#[tokio::test]
async fn race_for_one_offset_with_different_bytes() {
    race(false, 3 * MIB).await;
}

#[tokio::test]
async fn race_with_small_buffered_chunks() {
    race(false, 64 * KIB).await;
}

/// Sets the upload's flush lease to have run out, as if its holder's request had ended long ago.
async fn lease_run_out(svc: &Service, upload_id: &str) {
    svc.dynamodb
        .update_item()
        .table_name(&svc.app.config.table)
        .key("upload_id", AttributeValue::S(upload_id.into()))
        .update_expression("SET flush_until_ms = :past")
        .condition_expression("attribute_exists(flush_holder)")
        .expression_attribute_values(":past", AttributeValue::N("1".into()))
        .send()
        .await
        .expect("a flush lease is held");
}

/// A chunk that fills a part uploads it as the next part number, under a lease: its own retries (same bytes) go on
/// at once, another chunk for that offset waits until the lease has run out, and then the part it uploads under the
/// same number is the one completed. S3 is never asked to complete anything but parts 1..N.
#[tokio::test]
async fn a_part_lost_in_flight_is_sent_again_under_its_number_and_the_lease_keeps_other_bytes_out() {
    let (svc, s3, _dynamodb) = Service::through_proxies(&[]).await;
    let file = data(23 * MIB, 37);
    let chunk = 4 * MIB;
    let id = svc.start_upload(&alice(), &file, chunk).await;
    assert_eq!(svc.record(&id).await.expect("record").part_size, 5 * MIB as u64);
    // The chunk at 4 MiB fills part 1; S3 stores it and the answer is lost.
    s3.arm("UploadPart", Fault::CutAfter);
    let lost = svc.chunk(&alice(), Some(&id), chunk, &file[chunk..2 * chunk], file.len(), Encoding::Raw).await;
    lost.assert_status(503);
    assert!(s3.all_fired());
    assert_eq!(svc.status(&alice(), &id).await.offset(), chunk as u64, "nothing was accepted");
    // Other bytes for that chunk wait while the lease may still have an upload in flight.
    let other = data(chunk, 38);
    let waiting = svc.chunk(&alice(), Some(&id), chunk, &other, file.len(), Encoding::Raw).await;
    waiting.assert_status(409);
    assert!(waiting.detail().contains("retry"), "{waiting:?}");
    // Once it has run out, they are taken, uploaded as part 1 over the lost upload's bytes.
    lease_run_out(&svc, &id).await;
    svc.chunk(&alice(), Some(&id), chunk, &other, file.len(), Encoding::Raw).await.assert_status(200);
    let mut expected = file.clone();
    expected[chunk..2 * chunk].copy_from_slice(&other);
    // The next part's upload (the chunk at 12 MiB fills part 2) is lost as well, and the same chunk sent again goes
    // on at once.
    let user = alice();
    let mut start = 2 * chunk;
    while start < file.len() {
        let end = (start + chunk).min(file.len());
        let send = || svc.chunk(&user, Some(&id), start, &expected[start..end], file.len(), Encoding::Raw);
        if start == 3 * chunk {
            s3.arm("UploadPart", Fault::CutAfter);
            send().await.assert_status(503);
            assert!(s3.all_fired());
        }
        send().await.assert_status(200);
        start = end;
    }
    let parts = svc.record(&id).await.expect("record").parts.count;
    let done = svc.complete(&alice(), &id, &md5_hex(&expected)).await;
    done.assert_status(200);
    assert!(done.body["etag"].as_str().expect("etag").ends_with(&format!("-{parts}\"")), "{done:?}");
    assert!(svc.object(done.body["key"].as_str().expect("key")).await == expected);
    assert!(svc.buffered_keys(&id).await.is_empty());
}

#[tokio::test]
async fn concurrent_completes_agree() {
    let svc = Service::default().await;
    let file = data(6 * MIB, 36);
    let id = svc.upload_all(&alice(), &file, 2 * MIB, Encoding::Raw).await;
    let md5 = md5_hex(&file);
    let user = alice();
    let replies = join_all((0..5).map(|_| svc.complete(&user, &id, &md5))).await;
    // One completion; the others are told it is under way (202, retry) or done (400 with the same result).
    let ok: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(ok.len(), 1, "{replies:?}");
    for reply in &replies {
        assert!(matches!(reply.status, 200 | 202 | 400), "{reply:?}");
        if reply.status == 400 {
            assert_eq!(reply.body["etag"], ok[0].body["etag"], "{reply:?}");
        }
    }
    let again = svc.complete(&user, &id, &md5).await;
    again.assert_status(400);
    assert_eq!(again.body["etag"], ok[0].body["etag"]);
    assert!(svc.object(ok[0].body["key"].as_str().expect("key")).await == file);
}

#[tokio::test]
async fn repeated_races_with_different_bytes_keep_the_winners_bytes() {
    let svc = Service::default().await;
    let user = alice();
    let chunk = 256 * KIB;
    let rounds = 24;
    let file = data(chunk * (rounds + 1), 36);
    let id = svc.start_upload(&user, &file, chunk).await;
    let mut expected = file[..chunk].to_vec();
    for round in 1..=rounds {
        let start = round * chunk;
        let contenders: Vec<Vec<u8>> = (0..6).map(|i| data(chunk, 1000 * round as u64 + i)).collect();
        let replies =
            join_all(contenders.iter().map(|b| svc.chunk(&user, Some(&id), start, b, file.len(), Encoding::Raw))).await;
        let winners: Vec<usize> = (0..replies.len()).filter(|&i| replies[i].status == 200).collect();
        assert_eq!(winners.len(), 1, "round {round}: {replies:?}");
        expected.extend_from_slice(&contenders[winners[0]]);
    }
    let done = svc.complete(&user, &id, &md5_hex(&expected)).await;
    done.assert_status(200);
    assert!(svc.object(done.body["key"].as_str().expect("key")).await == expected);
}

#[tokio::test]
async fn a_chunk_racing_an_abort_leaves_nothing_behind() {
    let svc = Service::default().await;
    let user = alice();
    for (round, chunk) in [(0, 2 * MIB), (1, 3 * MIB), (2, 64 * KIB)] {
        let file = data(4 * chunk, 40 + round);
        let id = svc.start_upload(&user, &file, chunk).await;
        svc.chunk(&user, Some(&id), chunk, &file[chunk..2 * chunk], file.len(), Encoding::Raw).await.assert_status(200);
        let key = svc.record(&id).await.expect("record").key;
        let (chunk_reply, abort_reply) = tokio::join!(
            svc.chunk(&user, Some(&id), 2 * chunk, &file[2 * chunk..3 * chunk], file.len(), Encoding::Raw),
            svc.abort(&user, &id),
        );
        assert!(matches!(chunk_reply.status, 200 | 404 | 410), "{chunk_reply:?}");
        if abort_reply.status != 200 {
            // The abort met the chunk's commit half-way; repeating it finishes the job.
            svc.abort(&user, &id).await.assert_status(200);
        }
        svc.status(&user, &id).await.assert_status(404);
        assert_eq!(svc.multipart_uploads(&key).await, 0, "round {round}");
        assert_eq!(svc.buffered_keys(&id).await, Vec::<String>::new(), "round {round}");
    }
}

#[tokio::test]
async fn chunks_racing_expiry_are_either_accepted_or_gone() {
    let svc = Service::new(&[("CHUNKED_UPLOAD_EXPIRATION_DELTA", "2")]).await;
    let user = alice();
    let chunk = 64 * KIB;
    let file = data(400 * chunk, 45);
    let id = svc.start_upload(&user, &file, chunk).await;
    let (mut offset, mut expired) = (chunk, false);
    while offset < file.len() {
        let reply = svc.chunk(&user, Some(&id), offset, &file[offset..offset + chunk], file.len(), Encoding::Raw).await;
        match reply.status {
            200 if !expired => offset = reply.offset() as usize,
            410 => {
                expired = true;
                break;
            }
            _ => panic!("{reply:?}"),
        }
    }
    assert!(expired, "the upload should expire before 400 small chunks are through");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let record = svc.record(&id).await.expect("record");
    assert_eq!(record.offset as usize, offset, "the record holds exactly the accepted chunks");
    svc.status(&user, &id).await.assert_status(410);
    svc.abort(&user, &id).await.assert_status(200);
    assert_eq!(svc.buffered_keys(&id).await, Vec::<String>::new());
}
