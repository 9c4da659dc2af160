//! An example completion hook (docs/hook.md): a Lambda function the complete function invokes with
//! `{"upload_id", "caller", "result"}`, whose answer the client gets as `data`. A real one would create the model
//! row or move the file (django-chunked-upload's `on_completion`); this one answers what such a hook would, from the
//! event alone, so the same event always gets the same answer, as a hook must (it may be called twice).
//!
//! For the tests, it can be told to misbehave: `EXAMPLE_HOOK_FAIL=1` fails every invocation,
//! `EXAMPLE_HOOK_DELAY_MS` answers that late, and `EXAMPLE_HOOK_PAD_BYTES` adds that many bytes to the answer.

use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

struct Behaviour {
    fail: bool,
    delay: Duration,
    pad: usize,
}

impl Behaviour {
    fn from_env() -> Result<Self, Error> {
        let number = |var: &str| -> Result<u64, Error> {
            match std::env::var(var) {
                Ok(v) => v.parse().map_err(|_| format!("{var}: {v:?} is not a whole number").into()),
                Err(_) => Ok(0),
            }
        };
        Ok(Behaviour {
            fail: std::env::var("EXAMPLE_HOOK_FAIL").is_ok_and(|v| v == "1"),
            delay: Duration::from_millis(number("EXAMPLE_HOOK_DELAY_MS")?),
            pad: usize::try_from(number("EXAMPLE_HOOK_PAD_BYTES")?)?,
        })
    }
}

/// The answer for a completed upload: an attachment named after the upload (so a repeated call names the same one).
fn attach(event: &Value) -> Result<Value, Error> {
    let upload_id = event["upload_id"].as_str().ok_or("the event has no upload_id")?;
    let result = &event["result"];
    Ok(json!({
        "attachment_id": format!("att-{upload_id}"),
        "key": result["key"],
        "size": result["size"],
        "attached_by": event["caller"]["sub"].as_str().unwrap_or("anonymous"),
    }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let behaviour = Behaviour::from_env()?;
    let behaviour = &behaviour;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        tokio::time::sleep(behaviour.delay).await;
        if behaviour.fail {
            return Err(Error::from("attaching failed (EXAMPLE_HOOK_FAIL)"));
        }
        let mut answer = attach(&event.payload)?;
        if behaviour.pad > 0 {
            answer["padding"] = json!("x".repeat(behaviour.pad));
        }
        Ok::<_, Error>(answer)
    }))
    .await
}
