//! AWS Lambda glue: API Gateway events in, API Gateway responses out.
//!
//! `lambda_http`'s own adapter panics on a body that claims to be base64 but is not (a 502 for the client), so events
//! are decoded here: the body once, in place, with a clear 400 for bad base64, and the rest by `lambda_http`.

use std::future::Future;

use lambda_http::aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayV2httpResponse};
use lambda_http::aws_lambda_events::encodings::Body as EventBody;
use lambda_http::http::HeaderMap;
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, LambdaEvent, Request, Response, service_fn};
use serde::Serialize;

use crate::error::ApiError;

pub use lambda_http::Error;

/// The response shape of the API Gateway flavour the event came from.
#[derive(Serialize)]
#[serde(untagged)]
pub enum ApiResponse {
    V1(ApiGatewayProxyResponse),
    V2(ApiGatewayV2httpResponse),
}

/// Runs a Lambda function whose every request goes to `handler`.
pub async fn run<H, F>(handler: H) -> Result<(), Error>
where
    H: Fn(Request) -> F,
    F: Future<Output = Response<Body>>,
{
    init_logging();
    lambda_runtime::run(service_fn(|event: LambdaEvent<LambdaRequest>| {
        let response = serve(&handler, event.payload);
        async move { Ok::<_, std::convert::Infallible>(response.await) }
    }))
    .await
}

/// Runs a Lambda function for events other than HTTP requests (the cleanup function's stream batches).
pub async fn run_events<E, R, H, F>(handler: H) -> Result<(), Error>
where
    E: serde::de::DeserializeOwned + Send,
    R: Serialize,
    H: Fn(E) -> F,
    F: Future<Output = R>,
{
    init_logging();
    lambda_runtime::run(service_fn(|event: LambdaEvent<E>| {
        let response = handler(event.payload);
        async move { Ok::<_, std::convert::Infallible>(response.await) }
    }))
    .await
}

/// JSON logs, one line an event; `RUST_LOG` picks the level (default info).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().json().with_env_filter(filter).with_current_span(false).try_init();
}

/// Answers one API Gateway event (HTTP API or REST API) with `handler`.
pub async fn serve<H, F>(handler: &H, event: LambdaRequest) -> ApiResponse
where
    H: Fn(Request) -> F,
    F: Future<Output = Response<Body>>,
{
    let rest_api = matches!(event, LambdaRequest::ApiGatewayV1(_));
    let response = match decode(event) {
        Ok(request) => handler(request).await,
        Err(e) => e.to_response(),
    };
    encode(rest_api, response)
}

/// Turns an event into a request, decoding a base64 body exactly once.
pub fn decode(mut event: LambdaRequest) -> Result<Request, ApiError> {
    let (body, is_base64) = match &mut event {
        LambdaRequest::ApiGatewayV1(e) => (e.body.take(), std::mem::take(&mut e.is_base64_encoded)),
        LambdaRequest::ApiGatewayV2(e) => (e.body.take(), std::mem::take(&mut e.is_base64_encoded)),
        _ => return Err(ApiError::BadRequest("Unsupported event source".into())),
    };
    let body = match body {
        None => Body::Empty,
        Some(text) if is_base64 => {
            // Decoded in place (SIMD): no second buffer of a chunk's size, and a fraction of the CPU.
            let mut bytes = text.into_bytes();
            let decoded = base64_simd::STANDARD
                .decode_inplace(&mut bytes)
                .map_err(|_| ApiError::BadRequest("The request body is not valid base64".into()))?
                .len();
            bytes.truncate(decoded);
            Body::Binary(bytes)
        }
        Some(text) => Body::Text(text),
    };
    // lambda_http also panics when the path, query string or Host do not make a valid URI (a raw `{` or space in the
    // query, say); that request is malformed, not a server failure.
    let mut request = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Request::from(event)))
        .map_err(|_| ApiError::BadRequest("The request's path, query string or Host header is malformed".into()))?;
    *request.body_mut() = body;
    Ok(request)
}

fn encode(rest_api: bool, response: Response<Body>) -> ApiResponse {
    let (parts, body) = response.into_parts();
    let (body, is_base64_encoded) = match body {
        Body::Text(text) => (Some(EventBody::Text(text)), false),
        Body::Binary(bytes) => (Some(EventBody::Binary(bytes)), true),
        _ => (None, false),
    };
    let status_code = i64::from(parts.status.as_u16());
    if rest_api {
        let mut r = ApiGatewayProxyResponse::default();
        r.status_code = status_code;
        r.multi_value_headers = parts.headers;
        r.body = body;
        r.is_base64_encoded = is_base64_encoded;
        ApiResponse::V1(r)
    } else {
        let mut r = ApiGatewayV2httpResponse::default();
        r.status_code = status_code;
        r.headers = parts.headers;
        r.multi_value_headers = HeaderMap::new();
        r.body = body;
        r.is_base64_encoded = is_base64_encoded;
        ApiResponse::V2(r)
    }
}
