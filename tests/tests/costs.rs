//! What a chunk costs in AWS calls and S3 traffic, counted on the wire by a proxy (not computed on paper).

use integration_tests::{Encoding, MIB, Service, User, data, md5_hex};

#[tokio::test]
async fn a_chunk_costs_two_dynamodb_calls_and_4_mib_chunks_read_back_half() {
    let (svc, s3, dynamodb) = Service::through_proxies(&[]).await;
    let user = User::named("alice");
    let file = data(32 * MIB, 50);
    let id = svc.upload_all(&user, &file, 4 * MIB, Encoding::Raw).await;
    let chunks = 8;
    let ddb = dynamodb.tallies();
    let ddb_calls: u64 = ddb.values().map(|t| t.calls).sum();
    // The first chunk creates the record and commits; every other chunk claims and commits.
    assert_eq!(ddb_calls, 2 * chunks, "{ddb:?}");
    let s3_tally = s3.tallies();
    let read_back = s3_tally.get("GetObject").map_or(0, |t| t.bytes_received);
    assert!(read_back * 2 <= file.len() as u64, "read back {read_back} of {} bytes: {s3_tally:?}", file.len());
    let parts = s3_tally.get("UploadPart").map_or(0, |t| t.calls);
    assert_eq!(parts, 4, "8 MiB parts from pairs of 4 MiB chunks: {s3_tally:?}");
    // Each part's flush lists its one buffered chunk; the record does not.
    assert_eq!(s3_tally.get("ListObjectsV2").map_or(0, |t| t.calls), 4, "{s3_tally:?}");
    svc.complete(&user, &id, &md5_hex(&file)).await.assert_status(200);
    let completes = s3.tallies().get("CompleteMultipartUpload").map_or(0, |t| t.calls);
    assert_eq!(completes, 1);
}
