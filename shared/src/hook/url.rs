//! A local URL as the hook (local server only): the event POSTed as JSON, a 2xx response's body the answer.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lambda_http::http::{self, Uri};

use super::{HookFailure, MAX_ANSWER_BYTES};

pub(super) struct UrlHook {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
}

/// Checks that `text` is an http URL with a host.
pub(super) fn check(text: &str) -> Result<(), String> {
    let uri: Uri = text.parse().map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    match uri.host() {
        Some(host) if !host.is_empty() => Ok(()),
        _ => Err(format!("{text:?} names no host")),
    }
}

impl UrlHook {
    /// The hook at `address`, which [`check`] accepted.
    pub(super) fn new(address: &str) -> Self {
        UrlHook { client: Client::builder(TokioExecutor::new()).build_http(), uri: address.parse().unwrap_or_default() }
    }

    pub(super) async fn post(&self, event: Vec<u8>) -> Result<Vec<u8>, HookFailure> {
        let request = http::Request::post(self.uri.clone())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(event)))
            .map_err(|e| HookFailure::new(format!("could not make the hook's request: {e}")))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| HookFailure::new(format!("the hook at {} did not answer: {e}", self.uri)))?;
        let status = response.status();
        // One byte over the bound is enough to know the answer is too big.
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES + 1).collect().await.map_err(|e| {
            HookFailure::new(format!("could not read the hook's answer (over {MAX_ANSWER_BYTES} bytes?): {e}"))
        })?;
        if !status.is_success() {
            return Err(HookFailure::new(format!("the hook at {} answered HTTP {status}", self.uri)));
        }
        Ok(body.to_bytes().to_vec())
    }
}
