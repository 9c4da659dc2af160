//! Metrics: the embedded-metric-format lines the operations emit, read from the service's own sink while real
//! uploads run against the emulators.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use integration_tests::{
    Encoding, KIB, MIB, Service, User, crc64, data, emitted_metrics, md5_hex, put_presigned, total,
};
use lambda_http::http::Method;
use serde_json::json;
use shared::clock::now_ms;

/// The service with its metric lines collected.
async fn watched() -> (Service, Arc<Mutex<Vec<String>>>) {
    let mut svc = Service::default().await;
    let lines = svc.collect_metrics();
    (svc, lines)
}

#[tokio::test]
async fn a_sequential_upload_counts_its_chunks_parts_refusals_and_completion() {
    let (svc, lines) = watched().await;
    let user = User::named("metrics-sequential");
    let file = data(12 * MIB, 90);
    let id = svc.chunk(&user, None, 0, &file[..4 * MIB], file.len(), Encoding::Raw).await.upload_id();
    let part_end = svc.record(&id).await.expect("record").part_size as usize;
    assert!(part_end > 4 * MIB + 64 * KIB, "the part ends past the next chunk");
    // Buffered up to just before the part's end; then a chunk that takes the part's flush lease and is refused as
    // too small (not the last): it gives the lease up, so the next chunk is taken at once.
    let before = part_end - 500;
    svc.chunk(&user, Some(&id), 4 * MIB, &file[4 * MIB..before], file.len(), Encoding::Raw).await.assert_status(200);
    let small = svc.chunk(&user, Some(&id), before, &file[before..before + 1000], file.len(), Encoding::Raw).await;
    small.assert_status(400);
    // At the wrong offset: refused with the offset.
    svc.chunk(&user, Some(&id), 0, &file[..MIB], file.len(), Encoding::Raw).await.assert_status(400);
    let mut start = before;
    while start < file.len() {
        let end = (start + 4 * MIB).min(file.len());
        svc.chunk(&user, Some(&id), start, &file[start..end], file.len(), Encoding::Raw).await.assert_status(200);
        start = end;
    }
    svc.complete(&user, &id, &md5_hex(b"not the file")).await.assert_status(400);
    svc.complete(&user, &id, &md5_hex(&file)).await.assert_status(200);
    // No route serves it: API Gateway answers it, and no function counts it.
    let unrouted =
        svc.send(Service::request(&user, Method::GET, "/nowhere").body(Bytes::new()).expect("request")).await;
    unrouted.assert_status(404);

    let lines = emitted_metrics(&lines);
    let sequential = [("Mode", "sequential")];
    let record = svc.record(&id).await.expect("record");
    assert_eq!(total(&lines, "ChunksAccepted", &sequential), 4, "4 MiB, up to the part's end, then two more");
    assert_eq!(total(&lines, "BytesAccepted", &sequential), file.len() as u64);
    assert_eq!(total(&lines, "PartsFlushed", &sequential), u64::from(record.parts.count));
    assert!(lines.iter().any(|l| l["FlushLatency"].is_u64()));
    assert_eq!(total(&lines, "UploadsCompleted", &sequential), 1);
    assert_eq!(total(&lines, "BytesCompleted", &sequential), file.len() as u64);
    assert_eq!(lines.iter().filter(|l| l["CompletionLatency"].is_u64()).count(), 1);
    assert_eq!(total(&lines, "Refusals", &[("Route", "chunk"), ("Status", "400")]), 2);
    assert_eq!(total(&lines, "Refusals", &[("Route", "complete"), ("Status", "400")]), 1);
    assert_eq!(total(&lines, "Refusals", &[("Route", "none")]), 0);
    assert_eq!(total(&lines, "ServerErrors", &[]), 0);
}

#[tokio::test]
async fn lost_races_and_the_lanes_are_counted() {
    let (svc, lines) = watched().await;
    let user = User::named("metrics-lanes");
    let file = data(6 * MIB, 91);
    let chunk = MIB;
    let opened = svc
        .open(&user, json!({"mode": "parallel", "size": file.len(), "chunk_size": chunk, "filename": "p.bin"}))
        .await;
    let id = opened.upload_id();
    for start in (0..file.len()).step_by(chunk) {
        let piece = &file[start..start + chunk];
        svc.parallel_chunk(&user, &id, start, piece, file.len()).await.assert_status(200);
    }
    // The same chunk again: its slot is held (by the same bytes), a lost race that still answers 200.
    svc.parallel_chunk(&user, &id, 0, &file[..chunk], file.len()).await.assert_status(200);
    // Another request holds the completion lease: this one loses the race for it.
    let record = svc.record(&id).await.expect("record");
    let caller = shared::secret::Caller::Principal("metrics-lanes".into());
    let now = now_ms();
    let upload = &record.upload_id;
    svc.app.table.claim_completion(upload, &caller, now, 0, now / 1000 + 3600).await.expect("claim");
    svc.complete_crc(&user, &id, &crc64(&file)).await.assert_status(202);
    svc.app.table.release_completion(upload, now).await.expect("release");
    svc.complete_crc(&user, &id, &crc64(&file)).await.assert_status(200);

    let direct = svc.open(&user, json!({"mode": "direct", "size": 12 * MIB, "filename": "d.bin"})).await;
    let direct_id = direct.upload_id();
    let part_size = direct.body["part_size"].as_u64().expect("part_size") as usize;
    let whole = data(12 * MIB, 92);
    let parts: Vec<(u32, &[u8])> = whole.chunks(part_size).zip(1..).map(|(bytes, n)| (n, bytes)).collect();
    let urls = svc.part_urls(&user, &direct_id, &parts).await;
    urls.assert_status(200);
    for (part, (_, bytes)) in urls.body["parts"].as_array().expect("parts").iter().zip(&parts) {
        assert_eq!(put_presigned(part, bytes).await, 200);
    }
    svc.complete_crc(&user, &direct_id, &crc64(&whole)).await.assert_status(200);

    let lines = emitted_metrics(&lines);
    let parallel = [("Mode", "parallel")];
    assert_eq!(total(&lines, "ChunksAccepted", &parallel), 7);
    assert_eq!(total(&lines, "BytesAccepted", &parallel), (file.len() + chunk) as u64);
    assert_eq!(total(&lines, "PartsFlushed", &parallel), u64::from(record.grid().parts()));
    assert_eq!(total(&lines, "RacesLost", &[("Race", "parallel-slot")]), 1);
    assert_eq!(total(&lines, "RacesLost", &[("Race", "completion")]), 1);
    // Being completed is an answer to come back later, not a refusal.
    assert_eq!(total(&lines, "Refusals", &[("Route", "complete")]), 0);
    assert_eq!(total(&lines, "UploadsCompleted", &parallel), 1);
    assert_eq!(total(&lines, "PartUrlsIssued", &[("Mode", "direct")]), parts.len() as u64);
    assert_eq!(total(&lines, "BytesCompleted", &[("Mode", "direct")]), whole.len() as u64);
    assert_eq!(total(&lines, "RacesLost", &[("Race", "flush-lease")]), 0);
}
