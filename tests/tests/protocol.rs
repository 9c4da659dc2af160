//! The protocol's answers: resuming, every error of the table, ownership, expiry, abort and races.

use std::time::Duration;

use bytes::Bytes;
use integration_tests::{Encoding, KIB, MIB, Reply, Service, User, data, md5_hex};
use lambda_http::http::Method;
use serde_json::json;

fn alice() -> User {
    User::named("alice")
}

async fn finish(svc: &Service, user: &User, id: &str, file: &[u8], from: usize, chunk: usize) {
    let mut start = from;
    while start < file.len() {
        let end = (start + chunk).min(file.len());
        svc.chunk(user, Some(id), start, &file[start..end], file.len(), Encoding::Raw).await.assert_status(200);
        start = end;
    }
    let done = svc.complete(user, id, &md5_hex(file)).await;
    done.assert_status(200);
    assert!(svc.object(done.body["key"].as_str().expect("key")).await == file, "object differs");
}

#[tokio::test]
async fn chunk_reply_has_id_offset_and_expiry() {
    let svc = Service::default().await;
    let file = data(1000, 20);
    let reply = svc.chunk(&alice(), None, 0, &file[..400], 1000, Encoding::Multipart).await;
    reply.assert_status(200);
    let id = reply.upload_id();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(reply.offset(), 400);
    let expires = reply.body["expires"].as_str().expect("expires");
    assert_eq!(expires.len(), "2026-11-28T17:56:22.186Z".len(), "{expires}");
    assert!(expires.ends_with('Z'));
    let status = svc.status(&alice(), &id).await;
    status.assert_status(200);
    assert_eq!(
        status.body,
        json!({"upload_id": id, "mode": "sequential", "offset": 400, "expires": expires, "status": "uploading",
               "filename": "data.bin", "size": 1000})
    );
}

#[tokio::test]
async fn resume_after_disconnect_using_status() {
    let svc = Service::default().await;
    let file = data(7 * MIB + 3, 21);
    let id = svc.start_upload(&alice(), &file, MIB).await;
    svc.chunk(&alice(), Some(&id), MIB, &file[MIB..3 * MIB], file.len(), Encoding::Raw).await.assert_status(200);
    // The client lost track of what it sent: it asks, then goes on from the server's offset.
    let offset = svc.status(&alice(), &id).await.offset() as usize;
    assert_eq!(offset, 3 * MIB);
    finish(&svc, &alice(), &id, &file, offset, 2 * MIB).await;
}

#[tokio::test]
async fn resume_using_the_offset_in_a_400() {
    let svc = Service::default().await;
    let file = data(6 * MIB, 22);
    let id = svc.start_upload(&alice(), &file, 2 * MIB).await;
    svc.chunk(&alice(), Some(&id), 2 * MIB, &file[2 * MIB..4 * MIB], file.len(), Encoding::Raw).await;
    // The reply to that chunk was lost; the client resends it and learns the offset from the error.
    let resent = svc.chunk(&alice(), Some(&id), 2 * MIB, &file[2 * MIB..4 * MIB], file.len(), Encoding::Raw).await;
    resent.assert_status(400);
    assert_eq!(resent.offset(), 4 * MIB as u64);
    assert_eq!(resent.detail(), "Offsets do not match");
    // A client that jumped ahead is told too.
    let ahead = svc.chunk(&alice(), Some(&id), 5 * MIB, &file[5 * MIB..], file.len(), Encoding::Raw).await;
    ahead.assert_status(400);
    assert_eq!(ahead.offset(), 4 * MIB as u64);
    finish(&svc, &alice(), &id, &file, resent.offset() as usize, MIB).await;
}

#[tokio::test]
async fn first_chunk_must_start_at_zero() {
    let svc = Service::default().await;
    let reply = svc.chunk(&alice(), None, 10, &data(10, 1), 100, Encoding::Raw).await;
    reply.assert_status(400);
    assert_eq!(reply.offset(), 0);
}

#[tokio::test]
async fn malformed_chunks_get_400() {
    let svc = Service::default().await;
    let file = data(10 * KIB, 23);
    let id = svc.start_upload(&alice(), &file, 6 * KIB).await;
    let chunk = &file[6 * KIB..8 * KIB];
    let cases: Vec<(&str, Reply)> = vec![
        ("missing range", {
            let r = Service::request(&alice(), Method::POST, &format!("/upload?upload_id={id}"))
                .header("content-type", "application/octet-stream")
                .body(Bytes::copy_from_slice(chunk));
            svc.send(r.expect("request")).await
        }),
        (
            "malformed range",
            svc.chunk_with_range(&alice(), Some(&id), "bytes=6144-8191/10240", chunk, Encoding::Raw).await,
        ),
        (
            "negative range",
            svc.chunk_with_range(&alice(), Some(&id), "bytes -6144-8191/10240", chunk, Encoding::Raw).await,
        ),
        (
            "overflowing range",
            svc.chunk_with_range(
                &alice(),
                Some(&id),
                "bytes 6144-99999999999999999999/99999999999999999999",
                chunk,
                Encoding::Raw,
            )
            .await,
        ),
        (
            "length differs from range",
            svc.chunk_with_range(&alice(), Some(&id), "bytes 6144-8000/10240", chunk, Encoding::Raw).await,
        ),
        (
            "end >= total",
            svc.chunk_with_range(&alice(), Some(&id), "bytes 6144-10240/10240", chunk, Encoding::Raw).await,
        ),
        ("total differs", svc.chunk(&alice(), Some(&id), 6 * KIB, chunk, 20 * KIB, Encoding::Raw).await),
        ("empty chunk", svc.chunk_with_range(&alice(), Some(&id), "bytes 6144-8191/10240", &[], Encoding::Raw).await),
        ("no file field", {
            let (ct, body) = integration_tests::multipart_body(&[("upload_id", &id)], None);
            let r = Service::request(&alice(), Method::POST, "/upload")
                .header("content-type", ct)
                .header("content-range", "bytes 6144-8191/10240")
                .body(body);
            svc.send(r.expect("request")).await
        }),
        ("duplicate upload_id", {
            let (ct, body) = integration_tests::multipart_body(
                &[("upload_id", &id), ("upload_id", &id)],
                Some(("file", "f", chunk)),
            );
            let r = Service::request(&alice(), Method::POST, "/upload")
                .header("content-type", ct)
                .header("content-range", "bytes 6144-8191/10240")
                .body(body);
            svc.send(r.expect("request")).await
        }),
    ];
    for (case, reply) in cases {
        assert_eq!(reply.status, 400, "{case}: {reply:?}");
        assert!(!reply.detail().is_empty(), "{case}: {reply:?}");
    }
    // Nothing of that was taken, and nothing accepted was lost.
    assert_eq!(svc.status(&alice(), &id).await.offset(), 6 * KIB as u64);
    finish(&svc, &alice(), &id, &file, 6 * KIB, 4 * KIB).await;
}

#[tokio::test]
async fn absurd_header_sizes_get_4xx_and_lose_nothing() {
    let svc = Service::default().await;
    let file = data(10 * KIB, 24);
    let id = svc.start_upload(&alice(), &file, 6 * KIB).await;
    let chunk = &file[6 * KIB..8 * KIB];
    // A raw chunk at the upload's offset with one header set to `value`.
    let raw_chunk = |name: &'static str, value: String| {
        let mut r = Service::request(&alice(), Method::POST, &format!("/upload?upload_id={id}"))
            .header("content-type", "application/octet-stream")
            .header("content-range", "bytes 6144-8191/10240")
            .body(Bytes::copy_from_slice(chunk))
            .expect("request");
        r.headers_mut().insert(name, value.parse().expect("a header value"));
        r
    };
    let long_name = "n".repeat(100 * KIB);
    let (ct, body) = integration_tests::multipart_body(&[("upload_id", &id)], Some(("file", &long_name, chunk)));
    let huge_part_header = Service::request(&alice(), Method::POST, "/upload")
        .header("content-type", ct)
        .header("content-range", "bytes 6144-8191/10240")
        .body(body)
        .expect("request");
    let cases: Vec<(&str, u16, Reply)> = vec![
        // API Gateway refuses a request line and headers over 10 KiB before any function runs.
        ("20 KiB header", 431, svc.send(raw_chunk("x-padding", "a".repeat(20 * KIB))).await),
        (
            "20 KiB range",
            431,
            svc.send(raw_chunk("content-range", format!("bytes 6144-8191/{}", "9".repeat(20 * KIB)))).await,
        ),
        // What passes API Gateway reaches the function, which refuses it clearly.
        (
            "9 KiB range",
            400,
            svc.send(raw_chunk("content-range", format!("bytes 6144-8191/{}", "9".repeat(9 * KIB)))).await,
        ),
        (
            "9 KiB content type",
            415,
            svc.send(raw_chunk("content-type", format!("application/{}", "x".repeat(9 * KIB)))).await,
        ),
    ];
    for (case, status, reply) in cases {
        assert_eq!(reply.status, status, "{case}: {reply:?}");
        let message = reply.body["detail"].as_str().or(reply.body["message"].as_str()).unwrap_or_default();
        assert!(!message.is_empty(), "{case}: no message in {reply:?}");
    }
    assert_eq!(svc.status(&alice(), &id).await.offset(), 6 * KIB as u64);
    // A body's part headers are the body's: a 100 KiB file name inside one is not a header, and an existing
    // upload has its name already, so the chunk is simply taken.
    svc.send(huge_part_header).await.assert_status(200);
    finish(&svc, &alice(), &id, &file, 8 * KIB, 2 * KIB).await;
}

#[tokio::test]
async fn sizes_over_the_limits_get_400() {
    let svc = Service::new(&[("CHUNKED_UPLOAD_MAX_BYTES", "1000")]).await;
    let reply = svc.chunk(&alice(), None, 0, &data(100, 1), 1001, Encoding::Raw).await;
    reply.assert_status(400);
    assert!(reply.detail().contains("exceeds"), "{reply:?}");
    svc.chunk(&alice(), None, 0, &data(100, 1), 1000, Encoding::Raw).await.assert_status(200);
    // With no maximum configured, S3's own limit of 5 TiB still holds.
    let svc = Service::default().await;
    let range = format!("bytes 0-99/{}", 5u64 * 1024 * 1024 * 1024 * 1024 + 1);
    svc.chunk_with_range(&alice(), None, &range, &data(100, 1), Encoding::Raw).await.assert_status(400);
}

#[tokio::test]
async fn chunks_over_the_allowed_size_get_413() {
    let svc = Service::new(&[("CHUNKED_UPLOAD_MAX_CHUNK_BYTES", "1000")]).await;
    svc.chunk(&alice(), None, 0, &data(1001, 1), 5000, Encoding::Raw).await.assert_status(413);
}

#[tokio::test]
async fn chunks_too_small_to_gather_get_400() {
    let svc = Service::default().await;
    // A 1000-chunk part of 5 MiB needs chunks of at least 5243 bytes.
    svc.chunk(&alice(), None, 0, &data(1000, 1), 100 * MIB, Encoding::Raw).await.assert_status(400);
}

#[tokio::test]
async fn wrong_content_types_get_415() {
    let svc = Service::default().await;
    let r = Service::request(&alice(), Method::POST, "/upload")
        .header("content-type", "text/plain")
        .header("content-range", "bytes 0-4/5")
        .body(Bytes::from_static(b"hello"));
    svc.send(r.expect("request")).await.assert_status(415);
}

/// A raw chunk request as API Gateway's HTTP API event, answered as the Lambda function answers it.
async fn through_lambda(svc: &Service, raw_query: &str, host: &str, body: &str, base64: bool) -> serde_json::Value {
    let event = json!({
        "version": "2.0", "routeKey": "POST /upload", "rawPath": "/upload", "rawQueryString": raw_query,
        "headers": {"content-range": "bytes 0-4/5", "content-type": "application/octet-stream", "host": host},
        "requestContext": {"http": {"method": "POST", "path": "/upload", "protocol": "HTTP/1.1",
                                    "sourceIp": "127.0.0.1", "userAgent": "t"},
                           "authorizer": {"jwt": {"claims": {"sub": "alice"}, "scopes": null}},
                           "requestId": "r", "routeKey": "POST /upload", "stage": "$default", "timeEpoch": 0},
        "body": body, "isBase64Encoded": base64
    });
    let event = serde_json::from_value(event).expect("event");
    let response = shared::lambda::serve(&|r| shared::handlers::chunk_function(&svc.app, r), event).await;
    serde_json::to_value(&response).expect("response")
}

#[tokio::test]
async fn invalid_base64_from_api_gateway_gets_400() {
    let svc = Service::default().await;
    let response = through_lambda(&svc, "", "api.example.com", "%%%not base64%%%", true).await;
    assert_eq!(response["statusCode"], 400);
    let body: serde_json::Value = serde_json::from_str(response["body"].as_str().expect("body")).expect("json");
    assert_eq!(body["detail"], "The request body is not valid base64");
    let valid = through_lambda(&svc, "", "api.example.com", "aGVsbG8=", true).await;
    assert_eq!(valid["statusCode"], 200, "{valid}");
}

#[tokio::test]
async fn odd_uris_from_api_gateway_are_served() {
    // Found by fuzzing: lambda_http panicked building the URI of such events (a 502 for the client). The handlers do
    // not need the Host header or the raw query string, so these requests are served.
    let svc = Service::default().await;
    for (raw_query, host) in [("filename=a b\"<>.txt", "api.example.com"), ("", "a b"), ("", "a`b")] {
        let response = through_lambda(&svc, raw_query, host, "hello", false).await;
        assert_eq!(response["statusCode"], 200, "{raw_query:?} {host:?}: {response}");
    }
}

#[tokio::test]
async fn anonymous_requests_get_403_when_auth_is_required() {
    let svc = Service::default().await;
    let file = data(100, 30);
    let anon = User::anonymous();
    svc.chunk(&anon, None, 0, &file, 100, Encoding::Raw).await.assert_status(403);
    let id = svc.start_upload(&alice(), &file, 50).await;
    svc.status(&anon, &id).await.assert_status(403);
    svc.complete(&anon, &id, &md5_hex(&file)).await.assert_status(403);
    svc.abort(&anon, &id).await.assert_status(403);
    // Without auth required, anonymous uploads work, with the secret their first answer gives (tests/secret.rs).
    let open = Service::new(&[("CHUNKED_UPLOAD_REQUIRE_AUTH", "false")]).await;
    let first = open.chunk(&anon, None, 0, &file[..60], 100, Encoding::Multipart).await;
    let (id, anon) = (first.assert_status(200).upload_id(), anon.with_secret(first.secret()));
    open.chunk(&anon, Some(&id), 60, &file[60..], 100, Encoding::Multipart).await.assert_status(200);
    open.complete(&anon, &id, &md5_hex(&file)).await.assert_status(200);
}

#[tokio::test]
async fn uploads_are_bound_to_their_creator() {
    let svc = Service::default().await;
    let (alice, bob) = (alice(), User::named("bob"));
    let file = data(20 * KIB, 31);
    let id = svc.start_upload(&alice, &file, 10 * KIB).await;
    svc.status(&bob, &id).await.assert_status(404);
    svc.chunk(&bob, Some(&id), 10 * KIB, &file[10 * KIB..], file.len(), Encoding::Raw).await.assert_status(404);
    svc.complete(&bob, &id, &md5_hex(&file)).await.assert_status(404);
    svc.abort(&bob, &id).await.assert_status(404);
    // Bob's attempts changed nothing: Alice finishes her file.
    assert_eq!(svc.status(&alice, &id).await.offset(), 10 * KIB as u64);
    finish(&svc, &alice, &id, &file, 10 * KIB, 10 * KIB).await;
    svc.status(&bob, &id).await.assert_status(404);
    // Bob's own upload is his alone.
    let bobs = svc.upload_all(&bob, &file[..KIB], KIB, Encoding::Raw).await;
    svc.status(&alice, &bobs).await.assert_status(404);
}

#[tokio::test]
async fn unknown_and_malformed_ids_get_404() {
    let svc = Service::default().await;
    let unknown = "0123456789abcdef0123456789abcdef";
    svc.status(&alice(), unknown).await.assert_status(404);
    svc.abort(&alice(), unknown).await.assert_status(404);
    svc.complete(&alice(), unknown, &md5_hex(b"")).await.assert_status(404);
    svc.chunk(&alice(), Some(unknown), 10, &data(10, 1), 100, Encoding::Raw).await.assert_status(404);
    for bad in ["..%2F..%2Fetc", "ZZZ", "0123456789ABCDEF0123456789ABCDEF"] {
        svc.status(&alice(), bad).await.assert_status(404);
    }
    svc.chunk(&alice(), Some("nope"), 10, &data(10, 1), 100, Encoding::Raw).await.assert_status(404);
}

#[tokio::test]
async fn complete_checks_size_and_md5_and_loses_nothing() {
    let svc = Service::default().await;
    let file = data(9 * MIB + 1, 32);
    let id = svc.start_upload(&alice(), &file, 4 * MIB).await;
    let early = svc.complete(&alice(), &id, &md5_hex(&file)).await;
    early.assert_status(400);
    assert!(early.detail().contains("incomplete"), "{early:?}");
    svc.chunk(&alice(), Some(&id), 4 * MIB, &file[4 * MIB..8 * MIB], file.len(), Encoding::Raw)
        .await
        .assert_status(200);
    svc.chunk(&alice(), Some(&id), 8 * MIB, &file[8 * MIB..], file.len(), Encoding::Raw).await.assert_status(200);
    let wrong = svc.complete(&alice(), &id, &md5_hex(b"something else")).await;
    wrong.assert_status(400);
    assert_eq!(wrong.detail(), "md5 checksum does not match");
    svc.complete(&alice(), &id, "not-an-md5").await.assert_status(400);
    let status = svc.status(&alice(), &id).await;
    assert_eq!((status.body["status"].as_str(), status.offset()), (Some("uploading"), file.len() as u64));
    let done = svc.complete(&alice(), &id, &md5_hex(&file).to_uppercase()).await;
    done.assert_status(200);
    assert!(svc.object(done.body["key"].as_str().expect("key")).await == file);
    // A repeated complete gets the 400 of a completed upload, with the same result.
    let again = svc.complete(&alice(), &id, &md5_hex(&file)).await;
    again.assert_status(400);
    assert_eq!(again.detail(), "Upload has already been completed");
    for field in ["key", "etag", "md5", "size", "bucket", "upload_id"] {
        assert_eq!(again.body[field], done.body[field], "{field}");
    }
    // So does a chunk, and an abort leaves the object alone.
    let chunk = svc.chunk(&alice(), Some(&id), 0, &file[..MIB], file.len(), Encoding::Raw).await;
    chunk.assert_status(400);
    assert_eq!((chunk.detail(), &chunk.body["etag"]), ("Upload has already been completed", &done.body["etag"]));
    svc.abort(&alice(), &id).await.assert_status(400);
    assert!(svc.object(done.body["key"].as_str().expect("key")).await == file);
}

#[tokio::test]
async fn complete_requires_its_fields() {
    let svc = Service::default().await;
    for body in ["", "upload_id=0123456789abcdef0123456789abcdef", "md5=d41d8cd98f00b204e9800998ecf8427e"] {
        let r = Service::request(&alice(), Method::POST, "/upload/complete")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Bytes::from(body));
        svc.send(r.expect("request")).await.assert_status(400);
    }
    let r = Service::request(&alice(), Method::POST, "/upload/complete")
        .header("content-type", "application/json")
        .body(Bytes::from_static(b"{not json"));
    svc.send(r.expect("request")).await.assert_status(400);
    let r = Service::request(&alice(), Method::POST, "/upload/complete")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Bytes::from_static(b"upload_id=a&upload_id=b&md5=c"));
    svc.send(r.expect("request")).await.assert_status(400);
}

/// What no route of the HTTP API serves never reaches a function: API Gateway answers 404 itself. A path variable
/// takes what a literal route does not serve with that method (`GET /upload/complete` is a status request).
#[tokio::test]
async fn unknown_routes_and_methods() {
    let svc = Service::default().await;
    let get = |path: &str, method: Method| Service::request(&alice(), method, path).body(Bytes::new()).expect("req");
    for (path, method) in [
        ("/nothing", Method::GET),
        ("/upload", Method::PUT),
        ("/upload/0123456789abcdef0123456789abcdef", Method::PUT),
        ("/upload/0123456789abcdef0123456789abcdef/parts/1", Method::POST),
    ] {
        let reply = svc.send(get(path, method.clone())).await;
        reply.assert_status(404);
        assert_eq!(reply.body, serde_json::json!({"message": "Not Found"}), "{method} {path}");
    }
    let status_of_complete = svc.send(get("/upload/complete", Method::GET)).await;
    status_of_complete.assert_status(404);
    assert_eq!(status_of_complete.detail(), "Upload not found");
}

#[tokio::test]
async fn expired_uploads_get_410() {
    let svc = Service::new(&[("CHUNKED_UPLOAD_EXPIRATION_DELTA", "1")]).await;
    let file = data(10 * KIB, 33);
    let id = svc.start_upload(&alice(), &file, 6 * KIB).await;
    let record = svc.record(&id).await.expect("record");
    assert_eq!(record.expires_at_ms - record.created_at_ms, 1000);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The record is still there (TTL has not run), but the upload is over.
    assert!(svc.record(&id).await.is_some());
    svc.chunk(&alice(), Some(&id), 6 * KIB, &file[6 * KIB..], file.len(), Encoding::Raw).await.assert_status(410);
    svc.status(&alice(), &id).await.assert_status(410);
    svc.complete(&alice(), &id, &md5_hex(&file)).await.assert_status(410);
    // It can still be aborted, which removes its bytes.
    svc.abort(&alice(), &id).await.assert_status(200);
    assert!(svc.buffered_keys(&id).await.is_empty());
}

#[tokio::test]
async fn abort_removes_everything() {
    let svc = Service::default().await;
    let file = data(14 * MIB, 34);
    let id = svc.start_upload(&alice(), &file, 4 * MIB).await;
    for i in 1..3 {
        svc.chunk(&alice(), Some(&id), i * 4 * MIB, &file[i * 4 * MIB..(i + 1) * 4 * MIB], file.len(), Encoding::Raw)
            .await
            .assert_status(200);
    }
    let record = svc.record(&id).await.expect("record");
    assert_eq!((record.parts.count, record.buffers.is_empty()), (1, false), "a part and a buffered chunk");
    assert_eq!(svc.multipart_uploads(&record.key).await, 1);
    let reply = svc.abort(&alice(), &id).await;
    reply.assert_status(200);
    assert_eq!(reply.body, json!({"upload_id": id, "status": "aborted"}));
    assert_eq!(svc.multipart_uploads(&record.key).await, 0);
    assert!(svc.buffered_keys(&id).await.is_empty());
    assert!(svc.record(&id).await.is_none());
    svc.status(&alice(), &id).await.assert_status(404);
    svc.chunk(&alice(), Some(&id), 12 * MIB, &file[12 * MIB..], file.len(), Encoding::Raw).await.assert_status(404);
    svc.abort(&alice(), &id).await.assert_status(404);
}

/// A chunk of `file` whose multipart part header says `filename="<filename>"`, bytes as they are.
fn multipart_named(filename: &[u8], file: &[u8]) -> lambda_http::http::Request<Bytes> {
    let mut body = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"".to_vec();
    body.extend_from_slice(filename);
    body.extend_from_slice(b"\"\r\n\r\n");
    body.extend_from_slice(file);
    body.extend_from_slice(b"\r\n--b--\r\n");
    Service::request(&alice(), Method::POST, "/upload")
        .header("content-type", "multipart/form-data; boundary=b")
        .header("content-range", format!("bytes 0-{}/{}", file.len() - 1, file.len()))
        .body(Bytes::from(body))
        .expect("request")
}

/// A raw chunk of `file` with `query` (percent-encoded as a client would send it) in the query string.
fn raw_with_query(query: &str, file: &[u8]) -> lambda_http::http::Request<Bytes> {
    Service::request(&alice(), Method::POST, &format!("/upload?{query}"))
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("bytes 0-{}/{}", file.len() - 1, file.len()))
        .body(Bytes::copy_from_slice(file))
        .expect("request")
}

#[tokio::test]
async fn hostile_names_are_sanitized_or_refused() {
    let svc = Service::default().await;
    let file = b"payload".to_vec();
    // Each name and the object name it must become.
    for (request, stored) in [
        // A file name that is not UTF-8 is no name: the default one.
        (multipart_named(b"a\xff\xfe/../b.txt", &file), "upload"),
        (multipart_named("..\\..\\x\u{202e}gpj.exe".as_bytes(), &file), "xgpj.exe"),
        (multipart_named("a\tb\u{200b}.txt".as_bytes(), &file), "ab.txt"),
        (raw_with_query("filename=%FF%2E%2E%2F%2E%2E%2Fetc%00passwd", &file), "etcpasswd"),
        (raw_with_query("filename=%2E%2E", &file), "_"),
        (raw_with_query("filename=dir%2F", &file), "upload"),
        (raw_with_query("filename=%E2%80%8B%20%0A", &file), "upload"),
    ] {
        let reply = svc.send(request).await;
        reply.assert_status(200);
        let id = reply.upload_id();
        let done = svc.complete(&alice(), &id, &md5_hex(&file)).await;
        done.assert_status(200);
        assert_eq!(done.body["filename"], stored, "{done:?}");
        let key = format!("uploads/{id}/{stored}");
        assert_eq!(done.body["key"], key.as_str(), "{done:?}");
        assert!(svc.object(&key).await == file, "object differs");
    }
    // A control character in a multipart part's header breaks the part itself.
    let reply = svc.send(multipart_named(b"a\x01b.txt", &file)).await;
    reply.assert_status(400);
    assert!(reply.detail().starts_with("Malformed multipart body"), "{reply:?}");
    // A header that is not UTF-8 never reaches the function: API Gateway (here emulated) refuses it.
    let request = Service::request(&alice(), Method::POST, "/upload")
        .header("content-type", "application/octet-stream")
        .header("content-range", lambda_http::http::HeaderValue::from_bytes(b"bytes 0-6/7\xff").expect("value"))
        .body(Bytes::from(file))
        .expect("request");
    let reply = svc.send(request).await;
    reply.assert_status(400);
    assert_eq!(reply.body, json!({"message": "Bad Request"}));
}
