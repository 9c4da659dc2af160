//! The strict-AWS layer as a process of its own, for the suites that drive the real `local-server` binary
//! (browser-tests/run, contract/run): a pair of proxies in front of the emulators that `AWS_ENDPOINT_URL_S3` and
//! `AWS_ENDPOINT_URL_DYNAMODB` name, applying every rule (`integration_tests::strict`). It prints the proxies'
//! endpoints as `export` lines and serves until it is stopped. A test arms a fault on the next call of an operation
//! with `POST {proxy}/__strict/arm?operation=UploadPart&fault=ExpiredToken`.

use integration_tests::strict::Rules;
use integration_tests::strict_proxies;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() {
    let (s3, dynamodb) = strict_proxies(Rules::aws()).await;
    println!("export AWS_ENDPOINT_URL_S3={} AWS_ENDPOINT_URL_DYNAMODB={}", s3.url(), dynamodb.url());
    let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        eprintln!("strict-proxy: cannot install signal handlers");
        std::process::exit(1);
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
}
