//! What a finished object is in S3: never under the buffer prefix, whatever the names, and never content a browser
//! would run from the bucket's origin.

use bytes::Bytes;
use integration_tests::{MIB, Service, User, data, md5_hex};
use lambda_http::http::{self, Method};

/// The first (and only) chunk of `file`, in a multipart body whose file part declares `content_type`.
fn declared_chunk(user: &User, filename: &str, content_type: &str, file: &[u8]) -> http::Request<Bytes> {
    let mut body = format!(
        "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: \
         {content_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(b"\r\n--b--\r\n");
    Service::request(user, Method::POST, "/upload")
        .header("content-type", "multipart/form-data; boundary=b")
        .header("content-range", format!("bytes 0-{}/{}", file.len() - 1, file.len()))
        .body(Bytes::from(body))
        .expect("request")
}

/// Sends `request` (a whole file's only chunk), completes the upload, and returns the completion's answer and the
/// object's HeadObject.
async fn store(
    svc: &Service,
    user: &User,
    request: http::Request<Bytes>,
    file: &[u8],
) -> (serde_json::Value, aws_sdk_s3::operation::head_object::HeadObjectOutput) {
    let reply = svc.send(request).await;
    reply.assert_status(200);
    let done = svc.complete(user, &reply.upload_id(), &md5_hex(file)).await;
    done.assert_status(200);
    let key = done.body["key"].as_str().expect("key");
    assert!(svc.object(key).await == file, "object differs");
    let head = svc.s3.head_object().bucket(&svc.app.config.bucket).key(key).send().await.expect("HeadObject");
    (done.body, head)
}

/// Uploads `file` named `filename` in 2 MiB chunks (so some wait under the buffer prefix), completes it, and
/// returns its key, checked to be outside the buffer prefix with nothing left in it.
async fn upload_named(svc: &Service, user: &User, filename: &str, file: &[u8]) -> String {
    let chunk = 2 * MIB;
    let mut upload_id: Option<String> = None;
    for (i, piece) in file.chunks(chunk).enumerate() {
        let uri = match &upload_id {
            Some(id) => format!("/upload?upload_id={id}"),
            None => format!("/upload?filename={filename}"),
        };
        let request = Service::request(user, Method::POST, &uri)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("bytes {}-{}/{}", i * chunk, i * chunk + piece.len() - 1, file.len()))
            .body(Bytes::copy_from_slice(piece))
            .expect("request");
        let reply = svc.send(request).await;
        reply.assert_status(200);
        let id = reply.upload_id();
        if i == 0 {
            assert_eq!(svc.buffered_keys(&id).await.len(), 1, "the first chunk waits under the buffer prefix");
        }
        upload_id = Some(id);
    }
    let id = upload_id.expect("an upload");
    let done = svc.complete(user, &id, &md5_hex(file)).await;
    done.assert_status(200);
    let key = done.body["key"].as_str().expect("key").to_string();
    let buffer_prefix = &svc.app.config.buffer_prefix;
    assert!(!key.starts_with(buffer_prefix.as_str()), "{key} is under {buffer_prefix}");
    assert!(svc.object(&key).await == file, "object differs");
    assert!(svc.buffered_keys(&id).await.is_empty(), "buffered chunks left behind");
    assert!(!svc.keys(buffer_prefix).await.contains(&key));
    key
}

#[tokio::test]
async fn a_file_named_buffer_stays_out_of_the_buffer_prefix() {
    let svc = Service::default().await;
    let file = data(6 * MIB + 1, 60);
    let user = User::named("alice");
    // Sanitized to its last segment, "buffer", and under the template's own prefix.
    let key = upload_named(&svc, &user, "..%2Fbuffer%2F..%2Fbuffer", &file).await;
    assert!(key.starts_with("uploads/") && key.ends_with("/buffer"), "{key}");
}

#[tokio::test]
async fn an_owner_named_buffer_stays_out_of_the_buffer_prefix() {
    let svc = Service::new(&[("CHUNKED_UPLOAD_KEY_TEMPLATE", "uploads/{owner}/{upload_id}/{filename}")]).await;
    let file = data(6 * MIB + 1, 61);
    let key = upload_named(&svc, &User::named("buffer"), "buffer", &file).await;
    assert!(key.starts_with("uploads/buffer/") && key.ends_with("/buffer"), "{key}");
}

#[tokio::test]
async fn active_content_is_stored_inert_as_an_attachment() {
    let svc = Service::default().await;
    let user = User::named("alice");
    let page = b"<html><script>alert(document.domain)</script></html>".to_vec();
    let request = declared_chunk(&user, "résumé 日本.html", "text/html; charset=utf-8", &page);
    let (done, head) = store(&svc, &user, request, &page).await;
    assert_eq!(head.content_type(), Some("application/octet-stream"));
    assert_eq!(done["content_type"], "application/octet-stream", "the answer reports what is stored");
    assert_eq!(done["filename"], "résumé 日本.html");
    assert_eq!(
        head.content_disposition(),
        Some("attachment; filename=\"r_sum_ __.html\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%E6%97%A5%E6%9C%AC.html")
    );

    // No declared type: the one guessed from the name gets the same treatment.
    let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>".to_vec();
    let raw = Service::request(&user, Method::POST, "/upload?filename=%22logo%22%20%25.svg")
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("bytes 0-{}/{}", svg.len() - 1, svg.len()))
        .body(Bytes::from(svg.clone()))
        .expect("request");
    let (done, head) = store(&svc, &user, raw, &svg).await;
    assert_eq!(head.content_type(), Some("application/octet-stream"));
    assert_eq!(done["content_type"], "application/octet-stream");
    assert_eq!(
        head.content_disposition(),
        Some("attachment; filename=\"_logo_ _.svg\"; filename*=UTF-8''%22logo%22%20%25.svg")
    );

    // A passive type is kept.
    let png = b"\x89PNG\r\n\x1a\n".to_vec();
    let (done, head) = store(&svc, &user, declared_chunk(&user, "p.png", "image/png", &png), &png).await;
    assert_eq!(head.content_type(), Some("image/png"));
    assert_eq!(done["content_type"], "image/png");
}

#[tokio::test]
async fn trusted_types_are_stored_as_declared() {
    let svc = Service::new(&[("CHUNKED_UPLOAD_TRUSTED_CONTENT_TYPES", "image/svg+xml")]).await;
    let user = User::named("alice");
    let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>".to_vec();
    let (done, head) = store(&svc, &user, declared_chunk(&user, "logo.svg", "image/svg+xml", &svg), &svg).await;
    assert_eq!(head.content_type(), Some("image/svg+xml"));
    assert_eq!(done["content_type"], "image/svg+xml");
    assert_eq!(head.content_disposition(), Some("attachment; filename=\"logo.svg\"; filename*=UTF-8''logo.svg"));
    // Trusting one active type trusts no other.
    let page = b"<p>hi</p>".to_vec();
    let (_, head) = store(&svc, &user, declared_chunk(&user, "a.html", "text/html", &page), &page).await;
    assert_eq!(head.content_type(), Some("application/octet-stream"));
}
