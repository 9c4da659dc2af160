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
use crate::routes::{self, Matched};

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
    let event = match event_for(request) {
        Ok(event) => event,
        Err(answer) => return *answer,
    };
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

/// The JSON event API Gateway would send the function for `request`; or, where API Gateway answers by itself (limits,
/// no route, a refused token), that answer.
pub fn event_for(request: http::Request<Bytes>) -> Result<Vec<u8>, Box<http::Response<Bytes>>> {
    // Boxed: a response is large beside the event.
    let refuse = |status, body| Box::new(plain(status, body));
    if request.body().len() > API_GATEWAY_BODY_LIMIT {
        return Err(refuse(413, json!({"message": "Request Entity Too Large"})));
    }
    if request_line_and_header_values(&request) > API_GATEWAY_HEADER_LIMIT {
        return Err(refuse(431, json!({"message": "Request Header Fields Too Large"})));
    }
    // API Gateway passes header values on as JSON strings; bytes that are not UTF-8 never reach a function.
    if request.headers().values().any(|v| std::str::from_utf8(v.as_bytes()).is_err()) {
        return Err(refuse(400, json!({"message": "Bad Request"})));
    }
    // An HTTP API without a $default route answers a request no route matches itself.
    let Some(matched) = routes::select(request.method().as_str(), request.uri().path()) else {
        return Err(refuse(404, json!({"message": "Not Found"})));
    };
    let claims = bearer_claims(request.headers()).map_err(|()| refuse(401, json!({"message": "Unauthorized"})))?;
    let event = serde_json::to_vec(&event(request, matched, claims))
        .map_err(|e| refuse(500, json!({"message": format!("could not encode the event: {e}")})))?;
    if event.len() > LAMBDA_PAYLOAD_LIMIT {
        return Err(refuse(413, json!({"message": "Request too long for a Lambda invocation"})));
    }
    Ok(event)
}

/// What API Gateway counts against its header limit.
fn request_line_and_header_values<B>(request: &http::Request<B>) -> usize {
    let line = request.method().as_str().len() + request.uri().to_string().len() + "HTTP/1.1".len() + 2;
    line + request.headers().values().map(HeaderValue::len).sum::<usize>()
}

/// The HTTP API (payload format 2.0) event for a request its route matched, as the API Gateway Developer Guide
/// ("Create AWS Lambda proxy integrations for HTTP APIs", payload format 2.0) describes it: the route's key and path
/// parameters, duplicate headers and query parameters joined with commas, cookies in `cookies`, a text body as text.
fn event(
    request: http::Request<Bytes>,
    matched: Matched,
    claims: Option<HashMap<String, String>>,
) -> ApiGatewayV2httpRequest {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().unwrap_or_default().to_string();
    let route_key = matched.row.key();
    let mut event = ApiGatewayV2httpRequest::default();
    event.version = Some("2.0".into());
    event.route_key = Some(route_key.clone());
    event.raw_path = Some(path.clone());
    event.query_string_parameters = query_map(&raw_query);
    event.raw_query_string = Some(raw_query);
    event.path_parameters = matched.parameters;
    event.request_context.http.method = parts.method.clone();
    event.request_context.http.path = Some(path);
    event.request_context.http.protocol = Some("HTTP/1.1".into());
    event.request_context.http.source_ip = Some(source_ip(&parts.headers));
    event.request_context.http.user_agent =
        parts.headers.get("user-agent").and_then(|v| v.to_str().ok()).map(str::to_string);
    event.request_context.stage = Some("$default".into());
    event.request_context.request_id = Some(uuid::Uuid::new_v4().to_string());
    event.request_context.time_epoch = now_ms() as i64;
    event.request_context.route_key = Some(route_key);
    if let Some(claims) = claims {
        let mut jwt = ApiGatewayRequestAuthorizerJwtDescription::default();
        jwt.claims = claims;
        let mut authorizer = ApiGatewayRequestAuthorizer::default();
        authorizer.jwt = Some(jwt);
        event.request_context.authorizer = Some(authorizer);
    }
    let cookies: Vec<String> = parts
        .headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    event.cookies = (!cookies.is_empty()).then_some(cookies);
    let text = is_text(&parts.headers);
    event.headers = joined_headers(parts.headers);
    if !body.is_empty() {
        match String::from_utf8(body.to_vec()) {
            Ok(text_body) if text => event.body = Some(text_body),
            // API Gateway base64-encodes every body it does not take for text. SIMD: a chunk of several MiB is
            // encoded for every request.
            _ => {
                event.body = Some(base64_simd::STANDARD.encode_to_string(&body));
                event.is_base64_encoded = true;
            }
        }
    }
    event
}

/// Whether API Gateway passes the body on as text: JSON, XML, JavaScript and `text/*` media types. Form-urlencoded
/// bodies arrive base64-encoded (as reported of Slack's slash commands sent to HTTP APIs), like every other type.
fn is_text(headers: &http::HeaderMap) -> bool {
    let Some(media) = headers.get("content-type").and_then(|v| v.to_str().ok()) else { return false };
    let media = media.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    media.starts_with("text/")
        || ["application/json", "application/xml", "application/javascript"].contains(&media.as_str())
        || media.ends_with("+json")
        || media.ends_with("+xml")
}

/// Headers as payload format 2.0 carries them: one value a name, a repeated header's values joined with commas;
/// cookies go to `cookies` instead.
fn joined_headers(headers: http::HeaderMap) -> http::HeaderMap {
    let mut joined = http::HeaderMap::new();
    for name in headers.keys().filter(|n| *n != "cookie") {
        let values: Vec<&[u8]> = headers.get_all(name).iter().map(HeaderValue::as_bytes).collect();
        if let Ok(value) = HeaderValue::from_bytes(&values.join(&b","[..])) {
            joined.insert(name.clone(), value);
        }
    }
    joined
}

/// The caller's address: the local server and the tests give it in `X-Forwarded-For` (the tests, to act as many
/// clients); else loopback.
fn source_ip(headers: &http::HeaderMap) -> String {
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
        .unwrap_or("127.0.0.1")
        .to_string()
}

fn query_map(raw: &str) -> QueryMap {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        map.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    QueryMap::from(map)
}

/// Claims of a bearer token, as API Gateway's JWT authorizer passes them to a payload 2.0 integration (`Ok(None)`:
/// no token): every value a string, numbers and booleans as their JSON text, an array as `[a b]` (its items' texts
/// between brackets, separated by spaces), an object as its JSON text, null claims left out (as measured on API
/// Gateway: floci-io/floci#2011). A token without `sub` is valid to the authorizer and reaches the function.
fn bearer_claims(headers: &http::HeaderMap) -> Result<Option<HashMap<String, String>>, ()> {
    let Some(value) = headers.get("authorization") else {
        return Ok(None);
    };
    let token = value.to_str().map_err(|_| ())?.strip_prefix("Bearer ").ok_or(())?.trim();
    let payload = token.split('.').nth(1).ok_or(())?;
    let json: Value =
        serde_json::from_slice(&BASE64URL.decode(payload.trim_end_matches('=')).map_err(|_| ())?).map_err(|_| ())?;
    let claims = json
        .as_object()
        .ok_or(())?
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), claim_text(v)))
        .collect();
    Ok(Some(claims))
}

fn claim_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => format!("[{}]", items.iter().map(claim_text).collect::<Vec<_>>().join(" ")),
        other => other.to_string(),
    }
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

    fn bearer(token: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
        headers
    }

    fn token_of(claims: Value) -> String {
        format!("{}.{}.", BASE64URL.encode(br#"{"alg":"none"}"#), BASE64URL.encode(claims.to_string()))
    }

    #[test]
    fn dev_tokens_decode_to_claims() {
        let claims = bearer_claims(&bearer(&dev_token("alice"))).unwrap().unwrap();
        assert_eq!(claims["sub"], "alice");
        assert!(bearer_claims(&bearer("nonsense")).is_err());
        assert_eq!(bearer_claims(&http::HeaderMap::new()), Ok(None));
    }

    #[test]
    fn claims_arrive_as_the_authorizer_renders_them() {
        let token = token_of(json!({
            "sub": "u1", "iat": 1516239022, "admin": true, "groups": ["user", "editor"],
            "address": {"city": "Seattle"}, "gone": null
        }));
        let claims = bearer_claims(&bearer(&token)).unwrap().unwrap();
        assert_eq!(claims["iat"], "1516239022");
        assert_eq!(claims["admin"], "true");
        assert_eq!(claims["groups"], "[user editor]");
        assert_eq!(claims["address"], r#"{"city":"Seattle"}"#);
        assert!(!claims.contains_key("gone"));
        // Without sub: valid to the authorizer, so the function decides.
        let claims = bearer_claims(&bearer(&token_of(json!({"iss": "x"})))).unwrap().unwrap();
        assert!(!claims.contains_key("sub"));
    }

    fn event_of(request: http::Request<Bytes>) -> Value {
        serde_json::from_slice(&event_for(request).unwrap()).unwrap()
    }

    #[test]
    fn events_carry_route_keys_path_parameters_headers_and_cookies() {
        let event = event_of(
            http::Request::post("/upload/0123/parts")
                .header("content-type", "application/json")
                .header("x-a", "1")
                .header("x-a", "2")
                .header("cookie", "a=1; b=2")
                .header("cookie", "c=3")
                .body(Bytes::from_static(br#"{"parts":[]}"#))
                .unwrap(),
        );
        assert_eq!(event["routeKey"], "POST /upload/{upload_id}/parts");
        assert_eq!(event["requestContext"]["routeKey"], "POST /upload/{upload_id}/parts");
        assert_eq!(event["pathParameters"], json!({"upload_id": "0123"}));
        assert_eq!(event["headers"]["x-a"], "1,2");
        assert_eq!(event["cookies"], json!(["a=1", "b=2", "c=3"]));
        assert!(event["headers"].get("cookie").is_none());
        assert_eq!(event["body"], r#"{"parts":[]}"#);
        assert_eq!(event["isBase64Encoded"], false);
        let event = event_of(http::Request::post("/upload/create").body(Bytes::new()).unwrap());
        assert_eq!(event["routeKey"], "POST /upload/create");
        assert!(event.get("pathParameters").is_none());
        let form = event_of(
            http::Request::post("/upload/complete")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Bytes::from_static(b"upload_id=a"))
                .unwrap(),
        );
        assert_eq!(form["isBase64Encoded"], true);
    }

    #[test]
    fn api_gateway_answers_what_no_route_serves() {
        for (method, path) in [("PUT", "/upload"), ("GET", "/"), ("GET", "/upload/a/b")] {
            let answer = event_for(http::Request::builder().method(method).uri(path).body(Bytes::new()).unwrap());
            assert_eq!(answer.unwrap_err().status(), 404, "{method} {path}");
        }
    }
}
