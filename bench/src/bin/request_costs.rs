//! Cost per chunk, counted on the wire: the service runs in process with its S3 and DynamoDB clients going through
//! the counting proxy of the tests (tests/src/proxy.rs), uploads a file in raw chunks and completes it. Prints one
//! JSON line per chunk size: requests per chunk by service and operation, and S3 bytes written and read back per
//! byte uploaded. Completion's own calls are listed apart (`completion_*`): they are paid once per upload.

use std::collections::{BTreeMap, HashMap};

use integration_tests::proxy::Tally;
use integration_tests::strict::Rules;
use integration_tests::{Encoding, Service, Setup, User, data, md5_hex};
use serde_json::json;

const FILE: usize = 64 * 1024 * 1024;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // The emulators as they are: the strict layer's injected errors would add calls to the counts.
    let svc = Service::with(&[], Setup { rules: Rules::none(), sdk_retries: false, ..Setup::default() }).await;
    let (s3, dynamodb) = (&svc.s3_proxy, &svc.dynamodb_proxy);
    let user = User::named("bench");
    let file = data(FILE, 11);
    for chunk in [256 * 1024, 1024 * 1024, 4 * 1024 * 1024] {
        s3.reset();
        dynamodb.reset();
        let id = svc.upload_all(&user, &file, chunk, Encoding::Raw).await;
        let (s3_chunks, ddb_chunks) = (s3.tallies(), dynamodb.tallies());
        s3.reset();
        dynamodb.reset();
        svc.complete(&user, &id, &md5_hex(&file)).await.assert_status(200);
        let chunks = FILE.div_ceil(chunk) as f64;
        let line = json!({
            "bench": "request_costs", "chunk_bytes": chunk, "bytes": FILE, "chunks": chunks,
            "s3_requests_per_chunk": calls(&s3_chunks) as f64 / chunks,
            "dynamodb_requests_per_chunk": calls(&ddb_chunks) as f64 / chunks,
            "s3_requests_by_operation": by_operation(&s3_chunks),
            "dynamodb_requests_by_operation": by_operation(&ddb_chunks),
            "s3_bytes_written_per_byte": s3_chunks.values().map(|t| t.bytes_sent).sum::<u64>() as f64 / FILE as f64,
            "s3_bytes_read_per_byte": s3_chunks.get("GetObject").map_or(0, |t| t.bytes_received) as f64 / FILE as f64,
            "completion_s3_requests": by_operation(&s3.tallies()),
            "completion_dynamodb_requests": by_operation(&dynamodb.tallies()),
        });
        println!("{line}");
    }
}

fn calls(tallies: &HashMap<String, Tally>) -> u64 {
    tallies.values().map(|t| t.calls).sum()
}

fn by_operation(tallies: &HashMap<String, Tally>) -> BTreeMap<&str, u64> {
    tallies.iter().map(|(op, t)| (op.as_str(), t.calls)).collect()
}
