//! Many uploads at once under the strict-AWS layer: fifty in mixed modes (sequential, parallel, direct), half of them
//! one owner's files, the others each of an owner of its own. Every object must arrive byte for byte, the only 5xx
//! are the retryable 503s a client's retry cures, and no owner is left counted.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};
use integration_tests::*;
use serde_json::{Value, json};

const UPLOADS: usize = 50;
/// The uploads of the one owner with many files; each of the others has an owner of its own.
const ONE_OWNERS: usize = 25;
const CHUNK: usize = MIB;
/// Requests for one upload's pieces in flight at once, as the clients send them.
const LANES: usize = 4;
/// How long a client goes on trying one request: the service must have recovered by then.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug)]
enum Mode {
    Sequential,
    Parallel,
    Direct,
}

/// Sends a request until the service takes it: a 409 or a 5xx is the server's reason, and a client tries again (a
/// 503 only: anything else in the 5xx is a defect); a 202 says when to ask again.
async fn until_taken<F, Fut>(what: &str, mut send: F) -> Reply
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let (started, mut last) = (Instant::now(), None);
    for attempt in 0u64.. {
        if started.elapsed() > GIVE_UP_AFTER {
            break;
        }
        let reply = send().await;
        match reply.status {
            409 => {}
            500..=599 => assert_eq!(reply.status, 503, "only a retryable 503: {:?}", reply.body),
            202 => {
                let wait = reply.body["retry_after"].as_u64().expect("a 202 says when to ask again");
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            _ => return reply,
        }
        // As the clients do: a growing pause before the next try.
        tokio::time::sleep(Duration::from_millis(50 * attempt.min(40))).await;
        last = Some(reply);
    }
    panic!("the service does not take {what}: {last:?}")
}

/// A parallel or direct upload's completion: the result, or the same result again if an earlier attempt landed.
async fn complete_lanes(svc: &Service, user: &User, id: &str, file: &[u8]) -> Reply {
    let crc = crc64(file);
    let done = until_taken(&format!("the completion of {id}"), || svc.complete_crc(user, id, &crc)).await;
    if done.status == 400 && done.detail() == "Upload has already been completed" {
        return done;
    }
    done.assert_status(200);
    done
}

async fn parallel(svc: &Service, user: &User, file: &[u8]) -> Reply {
    let body = json!({"mode": "parallel", "size": file.len(), "chunk_size": CHUNK, "filename": "many.bin"});
    let opened = until_taken("a parallel opening", || svc.open(user, body.clone())).await;
    opened.assert_status(200);
    let id = opened.upload_id();
    let chunks = file.chunks(CHUNK).enumerate().map(|(i, chunk)| {
        let id = &id;
        async move {
            until_taken(&format!("chunk {i} of {id}"), || svc.parallel_chunk(user, id, i * CHUNK, chunk, file.len()))
                .await
        }
    });
    for reply in stream::iter(chunks).buffer_unordered(LANES).collect::<Vec<_>>().await {
        reply.assert_status(200);
    }
    complete_lanes(svc, user, &id, file).await
}

async fn direct(svc: &Service, user: &User, file: &[u8]) -> Reply {
    let opened = until_taken("a direct opening", || {
        svc.open(user, json!({"mode": "direct", "size": file.len(), "filename": "many.bin"}))
    });
    let opened = opened.await;
    opened.assert_status(200);
    let id = opened.upload_id();
    let part = opened.body["part_size"].as_u64().expect("part size") as usize;
    let puts = file.chunks(part).enumerate().map(|(i, bytes)| {
        let (id, number) = (&id, i as u32 + 1);
        async move {
            // A URL S3 refuses (its credentials expired, or a fault) is asked for again, as the clients do.
            for _ in 0..10 {
                let wanted = [(number, bytes)];
                let urls =
                    until_taken(&format!("part {number}'s URL of {id}"), || svc.part_urls(user, id, &wanted)).await;
                urls.assert_status(200);
                let url: &Value = &urls.body["parts"][0];
                if put_presigned(url, bytes).await == 200 {
                    return;
                }
            }
            panic!("S3 does not take part {number}");
        }
    });
    stream::iter(puts).buffer_unordered(LANES).collect::<Vec<()>>().await;
    complete_lanes(svc, user, &id, file).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_uploads_at_once_in_mixed_modes_all_arrive_and_leave_no_owner_counted() {
    let mut svc = Service::new(&[
        ("CHUNKED_UPLOAD_MAX_UPLOADS_PER_OWNER", "100"),
        ("CHUNKED_UPLOAD_MAX_BYTES_PER_OWNER", &(4 * 1024 * MIB).to_string()),
    ])
    .await;
    let metrics = svc.collect_metrics();
    let run = shared::protocol::UploadId::new();
    let owner = |i: usize| if i < ONE_OWNERS { format!("many-{run}") } else { format!("many-{run}-{i}") };
    let uploads: Vec<(User, Mode, Vec<u8>)> = (0..UPLOADS)
        .map(|i| {
            let mode = [Mode::Sequential, Mode::Parallel, Mode::Direct][i % 3];
            // From a few KiB to a little over 11 MiB: one chunk, many, and parts of several chunks.
            let size = 3 * KIB + (i * 1_637 * KIB) % (11 * MIB);
            (User::named(&owner(i)), mode, data(size, 500 + i as u64))
        })
        .collect();
    let started = Instant::now();
    let done = join_all(uploads.iter().map(|(user, mode, file)| async {
        match mode {
            Mode::Sequential => svc.upload_retrying(user, file, CHUNK).await,
            Mode::Parallel => parallel(&svc, user, file).await,
            Mode::Direct => direct(&svc, user, file).await,
        }
    }))
    .await;
    let took = started.elapsed();
    for ((_, mode, file), done) in uploads.iter().zip(&done) {
        let key = done.body["key"].as_str().unwrap_or_else(|| panic!("{mode:?}: no key in {:?}", done.body));
        svc.assert_object(key, file).await;
    }
    for i in [0].into_iter().chain(ONE_OWNERS..UPLOADS) {
        let counted = svc.counted(&owner(i)).await;
        if counted != (0, 0) {
            let listed = svc.list(&User::named(&owner(i)), "status=uploading").await;
            panic!("{} is left counted: {counted:?}; in progress: {:?}", owner(i), listed.body);
        }
    }
    let lines = emitted_metrics(&metrics);
    let server_errors = total(&lines, "ServerErrors", &[]);
    assert_eq!(server_errors, total(&lines, "ServerErrors", &[("Status", "503")]), "only retryable 503s");
    let bytes: usize = uploads.iter().map(|(_, _, file)| file.len()).sum();
    eprintln!(
        "{UPLOADS} uploads ({} MiB, {ONE_OWNERS} of one owner) in {:.1} s: {server_errors} 503s and {} 409s, all cured \
         by retries; {} races lost",
        bytes / MIB,
        took.as_secs_f64(),
        total(&lines, "Refusals", &[("Status", "409")]),
        total(&lines, "RacesLost", &[]),
    );
}
