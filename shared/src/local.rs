//! API Gateway (HTTP API) emulation, for the local API server and the tests: a plain HTTP request becomes the JSON
//! event API Gateway would send, goes through the same [`lambda::serve_json`] as in Lambda, and the function's response
//! becomes a plain HTTP response again. Limits are API Gateway's and Lambda's, so what works here fits there.
//!
//! DEVELOPMENT ONLY: the JWT authorizer is emulated by decoding, without verifying, the payload of an
//! `Authorization: Bearer <JWT>` header. Anyone can forge such a token; a deployment relies on API Gateway's real
//! authorizer instead.

use std::collections::HashMap;
use std::future::Future;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64URL};
use bytes::Bytes;
use lambda_http::aws_lambda_events::apigw::{
    ApiGatewayRequestAuthorizer, ApiGatewayRequestAuthorizerJwtDescription, ApiGatewayV2httpRequest,
    ApiGatewayV2httpResponse,
};
use lambda_http::aws_lambda_events::encodings::Body as EventBody;
use lambda_http::aws_lambda_events::query_map::QueryMap;
use lambda_http::http::{self, HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

use crate::clock::now_ms;
use crate::lambda;

/// Lambda's limit on a synchronous invocation's request payload.
pub const LAMBDA_PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;
/// API Gateway HTTP API's limit on a request body.
pub const API_GATEWAY_BODY_LIMIT: usize = 10 * 1024 * 1024;
/// API Gateway HTTP API's limit on the request line and header values together.
pub const API_GATEWAY_HEADER_LIMIT: usize = 10 * 1024;

/// Sends one HTTP request through the emulated API Gateway to `handler`.
pub async fn invoke<H, F>(handler: &H, request: http::Request<Bytes>) -> http::Response<Bytes>
where
    H: Fn(Request) -> F,
    F: Future<Output = Response<Body>>,
{
    if request.body().len() > API_GATEWAY_BODY_LIMIT {
        return plain(413, json!({"message": "Request Entity Too Large"}));
    }
    if request_line_and_header_values(&request) > API_GATEWAY_HEADER_LIMIT {
        return plain(431, json!({"message": "Request Header Fields Too Large"}));
    }
    // API Gateway passes header values on as JSON strings; bytes that are not UTF-8 never reach a function.
    if request.headers().values().any(|v| std::str::from_utf8(v.as_bytes()).is_err()) {
        return plain(400, json!({"message": "Bad Request"}));
    }
    let claims = match bearer_claims(request.headers()) {
        Ok(claims) => claims,
        Err(()) => return plain(401, json!({"message": "Unauthorized"})),
    };
    let event = match serde_json::to_vec(&event(request, claims)) {
        Ok(event) => event,
        Err(e) => {
            return plain(500, json!({"message": format!("could not encode the event: {e}")}));
        }
    };
    if event.len() > LAMBDA_PAYLOAD_LIMIT {
        return plain(413, json!({"message": "Request too long for a Lambda invocation"}));
    }
    // Lambda hands the function JSON; parse it the same way, so the emulation cannot accept what Lambda would not.
    let response = match lambda::serve_json(handler, Bytes::from(event)).await {
        Ok(response) => response,
        Err(e) => {
            return plain(500, json!({"message": format!("could not decode the event: {e}")}));
        }
    };
    match serde_json::to_value(&response).and_then(serde_json::from_value::<ApiGatewayV2httpResponse>) {
        Ok(r) => into_http(r),
        Err(e) => plain(502, json!({"message": format!("malformed Lambda response: {e}")})),
    }
}

/// What API Gateway counts against its header limit.
fn request_line_and_header_values<B>(request: &http::Request<B>) -> usize {
    let line = request.method().as_str().len() + request.uri().to_string().len() + "HTTP/1.1".len() + 2;
    line + request.headers().values().map(HeaderValue::len).sum::<usize>()
}

/// The HTTP API (payload format 2.0) event for a request.
fn event(request: http::Request<Bytes>, claims: Option<HashMap<String, String>>) -> ApiGatewayV2httpRequest {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().unwrap_or_default().to_string();
    let mut event = ApiGatewayV2httpRequest::default();
    event.version = Some("2.0".into());
    event.route_key = Some(route_key(parts.method.as_str(), &path));
    event.raw_path = Some(path.clone());
    event.query_string_parameters = query_map(&raw_query);
    event.raw_query_string = Some(raw_query);
    if let Some(id) = path.strip_prefix("/upload/").filter(|id| !id.contains('/') && *id != "complete") {
        event.path_parameters = HashMap::from([("upload_id".to_string(), id.to_string())]);
    }
    event.request_context.http.method = parts.method.clone();
    event.request_context.http.path = Some(path);
    event.request_context.http.protocol = Some("HTTP/1.1".into());
    event.request_context.http.source_ip = Some("127.0.0.1".into());
    event.request_context.http.user_agent =
        parts.headers.get("user-agent").and_then(|v| v.to_str().ok()).map(str::to_string);
    event.request_context.stage = Some("$default".into());
    event.request_context.request_id = Some(uuid::Uuid::new_v4().to_string());
    event.request_context.time_epoch = now_ms() as i64;
    event.request_context.route_key = event.route_key.clone();
    if let Some(claims) = claims {
        let mut jwt = ApiGatewayRequestAuthorizerJwtDescription::default();
        jwt.claims = claims;
        let mut authorizer = ApiGatewayRequestAuthorizer::default();
        authorizer.jwt = Some(jwt);
        event.request_context.authorizer = Some(authorizer);
    }
    event.headers = parts.headers;
    if !body.is_empty() {
        // API Gateway base64-encodes every body it does not know to be text; doing it always is the harder case.
        // SIMD: a chunk of several MiB is encoded for every request.
        event.body = Some(base64_simd::STANDARD.encode_to_string(&body));
        event.is_base64_encoded = true;
    }
    event
}

fn route_key(method: &str, path: &str) -> String {
    let route = match path {
        "/upload" | "/upload/complete" => path,
        p if p.starts_with("/upload/") => "/upload/{upload_id}",
        _ => "$default",
    };
    format!("{method} {route}")
}

fn query_map(raw: &str) -> QueryMap {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        map.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    QueryMap::from(map)
}

/// Claims of a bearer token, as API Gateway's JWT authorizer would pass them (`Ok(None)`: no token).
fn bearer_claims(headers: &http::HeaderMap) -> Result<Option<HashMap<String, String>>, ()> {
    let Some(value) = headers.get("authorization") else {
        return Ok(None);
    };
    let token = value.to_str().map_err(|_| ())?.strip_prefix("Bearer ").ok_or(())?.trim();
    let payload = token.split('.').nth(1).ok_or(())?;
    let json: Value =
        serde_json::from_slice(&BASE64URL.decode(payload.trim_end_matches('=')).map_err(|_| ())?).map_err(|_| ())?;
    let claims: HashMap<String, String> = json
        .as_object()
        .ok_or(())?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
        .collect();
    if claims.get("sub").is_none_or(String::is_empty) {
        return Err(());
    }
    Ok(Some(claims))
}

/// An unsigned token for `sub`, accepted by the emulated authorizer (and by nothing else).
pub fn dev_token(sub: &str) -> String {
    let header = BASE64URL.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = BASE64URL.encode(json!({"sub": sub, "iss": "local-dev"}).to_string());
    format!("{header}.{payload}.")
}

fn into_http(r: ApiGatewayV2httpResponse) -> http::Response<Bytes> {
    let body = match r.body {
        Some(EventBody::Text(text)) if r.is_base64_encoded => BASE64.decode(text).unwrap_or_default().into(),
        Some(EventBody::Text(text)) => Bytes::from(text.into_bytes()),
        Some(EventBody::Binary(bytes)) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    let mut response = http::Response::new(body);
    *response.status_mut() =
        u16::try_from(r.status_code).ok().and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::BAD_GATEWAY);
    *response.headers_mut() = r.headers;
    response
}

/// A response from API Gateway itself rather than the function.
fn plain(status: u16, body: Value) -> http::Response<Bytes> {
    let mut response = http::Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_tokens_decode_to_claims() {
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", format!("Bearer {}", dev_token("alice")).parse().unwrap());
        let claims = bearer_claims(&headers).unwrap().unwrap();
        assert_eq!(claims["sub"], "alice");
        headers.insert("authorization", "Bearer nonsense".parse().unwrap());
        assert!(bearer_claims(&headers).is_err());
        assert_eq!(bearer_claims(&http::HeaderMap::new()), Ok(None));
    }

    #[test]
    fn route_keys() {
        assert_eq!(route_key("POST", "/upload"), "POST /upload");
        assert_eq!(route_key("GET", "/upload/abc"), "GET /upload/{upload_id}");
        assert_eq!(route_key("GET", "/"), "GET $default");
    }
}
