#![no_main]

//! Each input is tried twice over: as a whole Lambda event's JSON text, and as the body of a valid HTTP API event,
//! base64-flagged and not, where the decoded body must be what the event carried.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chunked_upload_fuzz::{assert_client_error, block_on};
use lambda_http::Body;
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_http::request::LambdaRequest;
use libfuzzer_sys::fuzz_target;

/// An HTTP API event as API Gateway sends it, as in the integration tests.
fn template() -> &'static ApiGatewayV2httpRequest {
    static TEMPLATE: OnceLock<ApiGatewayV2httpRequest> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        serde_json::from_value(serde_json::json!({
            "version": "2.0", "routeKey": "POST /upload", "rawPath": "/upload", "rawQueryString": "",
            "headers": {"content-range": "bytes 0-4/5", "content-type": "application/octet-stream"},
            "requestContext": {"http": {"method": "POST", "path": "/upload", "protocol": "HTTP/1.1",
                                        "sourceIp": "127.0.0.1", "userAgent": "t"},
                               "authorizer": {"jwt": {"claims": {"sub": "alice"}, "scopes": null}},
                               "requestId": "r", "routeKey": "POST /upload", "stage": "$default", "timeEpoch": 0},
        }))
        .expect("template event")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = serde_json::from_slice::<LambdaRequest>(data) {
        match shared::lambda::decode(event) {
            // Whatever the event's headers and query hold, the request decoders must cope.
            Ok(req) => {
                if let Err(e) = block_on(shared::request::chunk(req, "file")) {
                    assert_client_error(&e);
                }
            }
            Err(e) => assert_client_error(&e),
        }
    }

    let body = String::from_utf8_lossy(data);
    for is_base64 in [false, true] {
        let mut event = template().clone();
        event.body = Some(body.to_string());
        event.is_base64_encoded = is_base64;
        let decoded = shared::lambda::decode(LambdaRequest::ApiGatewayV2(event)).map(|req| req.into_body());
        match (decoded, is_base64) {
            (Ok(Body::Text(text)), false) => assert_eq!(text, body),
            // What API Gateway sends (canonical base64) must decode to the same bytes; leniency beyond it is allowed.
            (Ok(Body::Binary(bytes)), true) => {
                if let Ok(expected) = BASE64.decode(body.as_bytes()) {
                    assert_eq!(bytes, expected, "{body:?}");
                }
            }
            (Err(e), true) => {
                assert_client_error(&e);
                assert!(BASE64.decode(body.as_bytes()).is_err(), "valid base64 {body:?} rejected: {e:?}");
            }
            (other, _) => panic!("{body:?} (base64: {is_base64}) decoded to {other:?}"),
        }
    }
});
