//! The completion hook (django-chunked-upload's `on_completion` and `get_response_data`): an optional program told
//! of every completed upload, whose JSON answer the client gets in the complete response (`data`) and the record
//! keeps, so a repeated complete answers the same.
//!
//! The contract (docs/hook.md):
//! - In: one JSON event, [`event`]: `{"upload_id": ..., "caller": {"sub": "alice", "anonymous": false}, "result":
//!   {...}}`, `result` being the complete response without `data` and `hook`.
//! - Out: any JSON value, at most [`MAX_ANSWER_BYTES`] as sent and as stored.
//! - Within `CHUNKED_UPLOAD_COMPLETION_HOOK_TIMEOUT_SECS`, and within what the request has left.
//! - A failure (an error, a timeout, an answer that is not JSON or too big) never undoes the completion: the answer
//!   says `"hook": {"status": "failed", "detail": ...}` and a repeated complete calls the hook again. Two completes at
//!   once may both call it: a hook must be idempotent (the upload id is stable).
//!
//! Kinds: a Lambda function ([`lambda`]), everywhere; for the local server only (feature `local`), a command
//! ([`command`]) or a local URL ([`url`]).

#[cfg(feature = "local")]
mod command;
mod lambda;
#[cfg(feature = "local")]
mod url;

use std::time::Duration;

use serde_json::{Value, json};

use crate::secret::Caller;

/// The largest answer kept. The record holds it next to the part ledger (`store::sizing`: about 2 KB at worst) under
/// DynamoDB's 400 KB item limit, and every later read and write of the record is billed on its size: 16 KiB keeps a
/// completed record within 5 read units and 19 write units, and leaves room for what a hook needs to tell a client
/// (ids, a URL, a few fields); a hook with more to say returns a reference to it.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024;
/// The longest failure detail kept and answered: enough for an error message, never a whole payload.
pub const MAX_DETAIL_BYTES: usize = 1024;
/// `CHUNKED_UPLOAD_COMPLETION_HOOK_TIMEOUT_SECS`'s default: a synchronous hook should answer in well under a second;
/// this leaves room for a cold start.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the hook is, as `CHUNKED_UPLOAD_COMPLETION_HOOK` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookSpec {
    /// A Lambda function's name or ARN (with an optional version or alias), invoked synchronously.
    Lambda(String),
    /// `cmd:COMMAND`: run with `sh -c`, the event on stdin, the answer on stdout (local server only).
    #[cfg(feature = "local")]
    Command(String),
    /// `http://...`: the event POSTed as JSON, the answer the 2xx response's body (local server only).
    #[cfg(feature = "local")]
    Url(String),
}

impl HookSpec {
    /// Parses the setting. The local kinds are refused where they are not built in (the Lambda functions).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let local_only = |kind: &str| {
            if cfg!(feature = "local") {
                Ok(())
            } else {
                Err(format!("{kind} hooks are for the local server only; a deployment names a Lambda function (ARN)"))
            }
        };
        if let Some(command) = text.strip_prefix("cmd:") {
            local_only("command (cmd:)")?;
            if command.trim().is_empty() {
                return Err("cmd: names no command".into());
            }
            #[cfg(feature = "local")]
            return Ok(HookSpec::Command(command.to_string()));
        }
        if text.starts_with("https://") {
            return Err("URL hooks must be plain http:// (a local development server)".into());
        }
        if text.starts_with("http://") {
            local_only("URL (http://)")?;
            #[cfg(feature = "local")]
            return url::check(text).map(|()| HookSpec::Url(text.to_string()));
        }
        lambda::check_function(text)?;
        Ok(HookSpec::Lambda(text.to_string()))
    }
}

impl std::fmt::Display for HookSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookSpec::Lambda(function) => write!(f, "Lambda function {function}"),
            #[cfg(feature = "local")]
            HookSpec::Command(command) => write!(f, "command `{command}`"),
            #[cfg(feature = "local")]
            HookSpec::Url(address) => write!(f, "POST {address}"),
        }
    }
}

/// The event a hook gets for a completed upload: its result and who completed it.
pub fn event(result: &Value, caller: &Caller) -> Value {
    let caller = match caller {
        Caller::Principal(sub) => json!({"sub": sub, "anonymous": false}),
        Caller::Anonymous(..) => json!({"sub": null, "anonymous": true}),
    };
    json!({"upload_id": result["upload_id"], "caller": caller, "result": result})
}

/// A hook's answer: JSON, at most [`MAX_ANSWER_BYTES`] in its stored (compact) form.
#[derive(Debug, Clone, PartialEq)]
pub struct HookAnswer {
    text: String,
    value: Value,
}

impl HookAnswer {
    /// Checks an answer as the hook sent it, or as the record kept it.
    pub fn parse(bytes: &[u8]) -> Result<Self, HookFailure> {
        if bytes.len() > MAX_ANSWER_BYTES {
            return Err(too_big(bytes.len()));
        }
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| HookFailure::new(format!("the hook's answer is not JSON: {e}")))?;
        let text = value.to_string();
        // Re-encoding can lengthen an answer a little (escapes, numbers): the bound is on what is kept.
        if text.len() > MAX_ANSWER_BYTES {
            return Err(too_big(text.len()));
        }
        Ok(HookAnswer { text, value })
    }

    /// The text the record keeps.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn value(&self) -> &Value {
        &self.value
    }
}

fn too_big(len: usize) -> HookFailure {
    HookFailure::new(format!("the hook's answer is {len} bytes, over the limit of {MAX_ANSWER_BYTES}"))
}

/// Why a hook gave no answer: a detail for the client and the record, at most [`MAX_DETAIL_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookFailure(String);

impl HookFailure {
    pub fn new(detail: impl Into<String>) -> Self {
        let mut detail = detail.into();
        if detail.len() > MAX_DETAIL_BYTES {
            let mut end = MAX_DETAIL_BYTES - 3;
            while !detail.is_char_boundary(end) {
                end -= 1;
            }
            detail.truncate(end);
            detail.push_str("...");
        }
        HookFailure(detail)
    }

    pub fn detail(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for HookFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the hook said for an upload, as its record keeps it.
#[derive(Debug, Clone, PartialEq)]
pub enum HookOutcome {
    Answered(HookAnswer),
    /// A later complete calls it again.
    Failed(HookFailure),
}

impl HookOutcome {
    /// Adds the outcome to a completed upload's result: the answer as `data`, or the failure as `hook`.
    pub fn add_to(&self, result: &mut Value) {
        match self {
            HookOutcome::Answered(answer) => result["data"] = answer.value.clone(),
            HookOutcome::Failed(failure) => result["hook"] = json!({"status": "failed", "detail": failure.detail()}),
        }
    }
}

/// A configured hook, ready to call.
pub struct CompletionHook {
    target: Target,
    timeout: Duration,
}

enum Target {
    Lambda(lambda::LambdaHook),
    #[cfg(feature = "local")]
    Command(String),
    /// Boxed: the HTTP client is large, and only the local server has one.
    #[cfg(feature = "local")]
    Url(Box<url::UrlHook>),
}

impl CompletionHook {
    /// The hook `spec` names, called within `timeout`; a Lambda function through `client`.
    pub fn new(spec: &HookSpec, timeout: Duration, client: &aws_sdk_lambda::Client) -> Self {
        let target = match spec {
            HookSpec::Lambda(function) => Target::Lambda(lambda::LambdaHook::new(client, function)),
            #[cfg(feature = "local")]
            HookSpec::Command(command) => Target::Command(command.clone()),
            #[cfg(feature = "local")]
            HookSpec::Url(address) => Target::Url(Box::new(url::UrlHook::new(address))),
        };
        CompletionHook { target, timeout }
    }

    /// Calls the hook with `event`, within its timeout and `left` (what the request can give it), whichever is
    /// shorter.
    pub async fn call(&self, event: &Value, left: Duration) -> Result<HookAnswer, HookFailure> {
        let budget = self.timeout.min(left);
        if budget.is_zero() {
            return Err(HookFailure::new("the request had no time left to call the hook"));
        }
        let payload = event.to_string().into_bytes();
        let called = async {
            match &self.target {
                Target::Lambda(hook) => hook.invoke(payload).await,
                #[cfg(feature = "local")]
                Target::Command(command) => command::run(command, payload).await,
                #[cfg(feature = "local")]
                Target::Url(hook) => hook.post(payload).await,
            }
        };
        // Dropping the call on time-out cancels it (a command is killed: `command`).
        match tokio::time::timeout(budget, called).await {
            Ok(answer) => HookAnswer::parse(&answer?),
            Err(_) => Err(HookFailure::new(format!("the hook did not answer within {} ms", budget.as_millis()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::UploadSecret;

    #[test]
    fn settings_parse_into_kinds() {
        let arn = "arn:aws:lambda:eu-west-1:123456789012:function:attach-upload";
        assert_eq!(HookSpec::parse(arn), Ok(HookSpec::Lambda(arn.into())));
        assert_eq!(HookSpec::parse(&format!("{arn}:live")), Ok(HookSpec::Lambda(format!("{arn}:live"))));
        assert_eq!(HookSpec::parse(" attach-upload "), Ok(HookSpec::Lambda("attach-upload".into())));
        for bad in ["attach upload", "arn:aws:s3:::bucket", "arn:aws:lambda:eu-west-1:1:layer:x", "https://x/", "cmd:"]
        {
            assert!(HookSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[cfg(not(feature = "local"))]
    #[test]
    fn a_function_refuses_the_local_kinds() {
        for local in ["cmd:./hook.sh", "http://127.0.0.1:9000/hook"] {
            let err = HookSpec::parse(local).unwrap_err();
            assert!(err.contains("local server only"), "{local}: {err}");
        }
    }

    #[cfg(feature = "local")]
    #[test]
    fn the_local_server_takes_commands_and_urls() {
        assert_eq!(HookSpec::parse("cmd:./hook.sh --x"), Ok(HookSpec::Command("./hook.sh --x".into())));
        let url = "http://127.0.0.1:9000/hook";
        assert_eq!(HookSpec::parse(url), Ok(HookSpec::Url(url.into())));
        assert!(HookSpec::parse("http://").is_err());
    }

    #[test]
    fn answers_are_json_and_bounded() {
        let answer = HookAnswer::parse(br#" {"attachment_id": 7} "#).unwrap();
        assert_eq!(answer.text(), r#"{"attachment_id":7}"#);
        assert_eq!(answer.value(), &json!({"attachment_id": 7}));
        assert!(HookAnswer::parse(b"attached").unwrap_err().detail().contains("not JSON"));
        let largest = format!("\"{}\"", "x".repeat(MAX_ANSWER_BYTES - 2));
        assert!(HookAnswer::parse(largest.as_bytes()).is_ok());
        let over = format!("\"{}\"", "x".repeat(MAX_ANSWER_BYTES - 1));
        assert!(HookAnswer::parse(over.as_bytes()).unwrap_err().detail().contains("over the limit"));
    }

    #[test]
    fn details_are_cut_at_a_character() {
        let detail = HookFailure::new("é".repeat(MAX_DETAIL_BYTES));
        assert!(detail.detail().len() <= MAX_DETAIL_BYTES);
        assert!(detail.detail().ends_with("..."));
    }

    #[test]
    fn the_event_names_the_caller() {
        let result = json!({"upload_id": "abc", "key": "k"});
        let event = event(&result, &Caller::Principal("alice".into()));
        assert_eq!(
            event,
            json!({"upload_id": "abc", "caller": {"sub": "alice", "anonymous": false}, "result": result})
        );
        let anonymous = super::event(&result, &Caller::Anonymous(UploadSecret::generate(), None));
        assert_eq!(anonymous["caller"], json!({"sub": null, "anonymous": true}));
        assert!(!anonymous.to_string().contains("secret"));
    }
}
