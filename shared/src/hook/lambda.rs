//! A Lambda function as the hook: invoked synchronously (`RequestResponse`), its payload the answer.

use std::time::Duration;

use aws_sdk_lambda::Client;
use aws_sdk_lambda::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use serde_json::Value;

use super::HookFailure;

/// A TCP and TLS handshake with Lambda's regional endpoint takes milliseconds (as `app::CONNECT_TIMEOUT`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) struct LambdaHook {
    client: Client,
    function: String,
}

/// Checks a function name, partial ARN (`ACCOUNT:function:NAME`) or ARN, with an optional version or alias; Lambda
/// checks the rest (that it exists, and that we may invoke it) at the first completion.
pub(super) fn check_function(text: &str) -> Result<(), String> {
    let fields: Vec<&str> = text.split(':').collect();
    let name_ok = |name: &str| {
        (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let qualifier_ok =
        |q: &str| (1..=128).contains(&q.len()) && q.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_$".contains(&b));
    let ok = match fields.as_slice() {
        [name] => name_ok(name),
        [name, qualifier] => name_ok(name) && qualifier_ok(qualifier),
        [_account, "function", name] => name_ok(name),
        [_account, "function", name, qualifier] => name_ok(name) && qualifier_ok(qualifier),
        ["arn", partition, "lambda", region, account, "function", name, rest @ ..] => {
            partition.starts_with("aws")
                && !region.is_empty()
                && !account.is_empty()
                && name_ok(name)
                && match rest {
                    [] => true,
                    [qualifier] => qualifier_ok(qualifier),
                    _ => false,
                }
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{text:?} is not a Lambda function name or ARN (nor cmd:... or http://... on the local server)"))
    }
}

impl LambdaHook {
    /// `client` with a connect timeout; the whole call, retries included, is bounded by the hook's timeout
    /// (`CompletionHook::call`), as every kind of hook is.
    pub(super) fn new(client: &Client, function: &str) -> Self {
        let timeouts =
            aws_sdk_lambda::config::timeout::TimeoutConfig::builder().connect_timeout(CONNECT_TIMEOUT).build();
        let client = Client::from_conf(client.config().to_builder().timeout_config(timeouts).build());
        LambdaHook { client, function: function.to_string() }
    }

    pub(super) async fn invoke(&self, payload: Vec<u8>) -> Result<Vec<u8>, HookFailure> {
        let out = self
            .client
            .invoke()
            .function_name(&self.function)
            .invocation_type(InvocationType::RequestResponse)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| {
                HookFailure::new(match e.as_service_error() {
                    Some(s) => format!("Invoke: {}: {}", s.code().unwrap_or("error"), s.message().unwrap_or_default()),
                    None => format!("Invoke: {}", DisplayErrorContext(&e)),
                })
            })?;
        let payload = out.payload.map(Blob::into_inner).unwrap_or_default();
        if let Some(kind) = out.function_error {
            // Lambda's error payload: {"errorType": ..., "errorMessage": ...}.
            let error: Value = serde_json::from_slice(&payload).unwrap_or_default();
            let message = error["errorMessage"].as_str().map_or_else(
                || String::from_utf8_lossy(&payload[..payload.len().min(super::MAX_DETAIL_BYTES)]).into_owned(),
                str::to_string,
            );
            return Err(HookFailure::new(format!("the hook function failed ({kind}): {message}")));
        }
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names() {
        for good in [
            "attach",
            "attach:live",
            "attach:7",
            "123456789012:function:attach",
            "arn:aws:lambda:us-east-1:123456789012:function:attach",
            "arn:aws-cn:lambda:cn-north-1:123456789012:function:attach:$LATEST",
        ] {
            assert_eq!(check_function(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "a b",
            &"x".repeat(65),
            "arn:aws:lambda:us-east-1:1:function:",
            "a:b:c",
            "arn:aws:lambda::1:function:f",
        ] {
            assert!(check_function(bad).is_err(), "{bad}");
        }
    }
}
