//! An emulated Lambda Invoke API (2015-03-31), for the service's own aws-sdk-lambda calls (the completion hook):
//! `POST /2015-03-31/functions/{name}/invocations` runs the event on the [`FunctionProcess`] deployed under that
//! name, and answers as Lambda's synchronous invoke does: 200 with the function's payload, or 200 with
//! `X-Amz-Function-Error: Unhandled` and an error payload when the function failed, timed out or died; 404
//! `ResourceNotFoundException` for a function nobody deployed. Point `AWS_ENDPOINT_URL_LAMBDA` at [`Self::url`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::lambda_runtime::{FunctionProcess, InvokeError, TIMEOUT, json_reply, lock, serve};

#[derive(Default)]
struct Functions {
    deployed: Mutex<HashMap<String, Arc<FunctionProcess>>>,
    /// Every event invoked, in order, whatever its function answered.
    events: Mutex<Vec<Value>>,
}

/// The emulated Lambda service, on a loopback port. Dropping it stops it, and its functions once their invocations
/// end.
pub struct InvokeEndpoint {
    url: String,
    functions: Arc<Functions>,
    server: JoinHandle<()>,
}

impl Drop for InvokeEndpoint {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl InvokeEndpoint {
    pub async fn start() -> InvokeEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the Lambda endpoint");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        let functions = Arc::new(Functions::default());
        let server = tokio::spawn(serve(listener, functions.clone(), invoke));
        InvokeEndpoint { url, functions, server }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Deploys `function` as `name`, in place of what was deployed as `name` before (which ends with its
    /// invocation in flight, if there is one), as a new version of a function does.
    pub fn deploy(&self, name: &str, function: FunctionProcess) {
        lock(&self.functions.deployed).insert(name.to_string(), Arc::new(function));
    }

    /// The events invoked so far.
    pub fn events(&self) -> Vec<Value> {
        lock(&self.functions.events).clone()
    }
}

/// The function a path's `{name}` names: a name, a partial ARN (`ACCOUNT:function:NAME`) or an ARN, percent-encoded
/// as the SDK sends it, with or without a qualifier.
fn function_name(encoded: &str) -> String {
    let decoded: String =
        form_urlencoded::parse(format!("n={encoded}").as_bytes()).map(|(_, v)| v.into_owned()).collect();
    let fields: Vec<&str> = decoded.split(':').collect();
    let name = match fields.as_slice() {
        ["arn", _, "lambda", _, _, "function", name, ..] | [_, "function", name, ..] | [name, ..] => name,
        [] => "",
    };
    name.to_string()
}

async fn invoke(req: Request<Incoming>, functions: Arc<Functions>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let encoded = match (req.method(), segments.as_slice()) {
        (&Method::POST, ["2015-03-31", "functions", name, "invocations"]) => name.to_string(),
        _ => return Ok(error(StatusCode::NOT_FOUND, "UnknownOperationException", &format!("no route {path}"))),
    };
    let invocation_type = req.headers().get("x-amz-invocation-type").and_then(|v| v.to_str().ok());
    if invocation_type.is_some_and(|t| t != "RequestResponse") {
        let detail = format!("this emulation invokes synchronously only, not {invocation_type:?}");
        return Ok(error(StatusCode::BAD_REQUEST, "InvalidParameterValueException", &detail));
    }
    let name = function_name(&encoded);
    let Some(function) = lock(&functions.deployed).get(&name).cloned() else {
        return Ok(error(StatusCode::NOT_FOUND, "ResourceNotFoundException", &format!("Function not found: {name}")));
    };
    let event = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    lock(&functions.events).push(serde_json::from_slice(&event).unwrap_or(Value::Null));
    let (payload, failed) = match function.invoke_raw(event).await {
        Ok(payload) => (payload, false),
        Err(InvokeError::Function { body, .. }) => (Bytes::from(body), true),
        Err(InvokeError::Timeout) => {
            let message = format!("Task timed out after {:.2} seconds", TIMEOUT.as_secs_f64());
            (Bytes::from(json!({"errorType": "Sandbox.Timedout", "errorMessage": message}).to_string()), true)
        }
        Err(e) => {
            (Bytes::from(json!({"errorType": "Runtime.ExitError", "errorMessage": e.to_string()}).to_string()), true)
        }
    };
    let mut response = Response::new(Full::new(payload));
    let headers = response.headers_mut();
    headers.insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    headers.insert("x-amz-executed-version", hyper::header::HeaderValue::from_static("$LATEST"));
    if failed {
        headers.insert("x-amz-function-error", hyper::header::HeaderValue::from_static("Unhandled"));
    }
    Ok(response)
}

/// An error of the Lambda service itself, in its REST-JSON form.
fn error(status: StatusCode, kind: &'static str, message: &str) -> Response<Full<Bytes>> {
    let mut response = json_reply(status, &json!({"Type": "User", "message": message}));
    response.headers_mut().insert("x-amzn-errortype", hyper::header::HeaderValue::from_static(kind));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_names_and_arns() {
        for path in [
            "completion-hook",
            "completion-hook:live",
            "000000000000%3Afunction%3Acompletion-hook",
            "arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Acompletion-hook",
            "arn:aws:lambda:us-east-1:000000000000:function:completion-hook:7",
        ] {
            assert_eq!(function_name(path), "completion-hook", "{path}");
        }
    }
}
