//! Anonymous uploads (`CHUNKED_UPLOAD_REQUIRE_AUTH=false`): each is bound to the secret its first answer hands out,
//! and its id alone grants nothing.

use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use integration_tests::{Encoding, KIB, Service, User, data, md5_hex, multipart_body};
use lambda_http::http::Method;
use sha2::{Digest, Sha256};

async fn open() -> Service {
    Service::new(&[("CHUNKED_UPLOAD_REQUIRE_AUTH", "false")]).await
}

/// A secret of the right form that belongs to no upload.
fn someone_elses_secret() -> String {
    shared::secret::UploadSecret::generate().reveal()
}

/// Starts an anonymous upload of `file` with its first `first` bytes: its id, and the user holding its secret.
async fn start(svc: &Service, file: &[u8], first: usize) -> (String, User) {
    let reply = svc.chunk(&User::anonymous(), None, 0, &file[..first], file.len(), Encoding::Raw).await;
    reply.assert_status(200);
    let secret = reply.secret().unwrap_or_else(|| panic!("no upload_secret in {reply:?}"));
    let header = reply.headers.get("x-upload-secret").and_then(|v| v.to_str().ok());
    assert_eq!(header, Some(secret.as_str()), "the header repeats the body's secret");
    (reply.upload_id(), User::anonymous().with_secret(Some(secret)))
}

/// Everything a stranger could try on an upload whose rest, from `from`, is `file[from..]`: each gets 404.
async fn strangers_get_404(svc: &Service, id: &str, file: &[u8], from: usize) {
    let strangers = [
        ("the id alone", User::anonymous()),
        ("a wrong secret", User::anonymous().with_secret(Some(someone_elses_secret()))),
        ("a token whose sub is `anonymous`", User::named("anonymous")),
    ];
    for (who, stranger) in &strangers {
        if from < file.len() {
            // The whole rest: were the secret not in the claim's condition, this would reserve a part number.
            for encoding in [Encoding::Raw, Encoding::Multipart] {
                let reply = svc.chunk(stranger, Some(id), from, &file[from..], file.len(), encoding).await;
                assert_eq!(reply.status, 404, "chunk with {who} ({encoding:?}): {reply:?}");
            }
        }
        let reply = svc.complete(stranger, id, &md5_hex(file)).await;
        assert_eq!(reply.status, 404, "complete with {who}: {reply:?}");
        let reply = svc.status(stranger, id).await;
        assert_eq!(reply.status, 404, "status with {who}: {reply:?}");
        let reply = svc.abort(stranger, id).await;
        assert_eq!(reply.status, 404, "abort with {who}: {reply:?}");
    }
}

#[tokio::test]
async fn an_anonymous_upload_is_untouchable_without_its_secret() {
    let svc = open().await;
    let file = data(30 * KIB, 70);
    let (id, owner) = start(&svc, &file, 10 * KIB).await;
    let key = svc.record(&id).await.expect("the record").key;
    let before = svc.raw_item(&id).await;
    strangers_get_404(&svc, &id, &file, 10 * KIB).await;
    assert_eq!(svc.raw_item(&id).await, before, "the strangers changed the item");
    assert_eq!(svc.multipart_uploads(&key).await, 1, "the strangers aborted the multipart upload");
    // The secret's holder goes on; once every byte is in, strangers still cannot complete or abort it.
    assert_eq!(svc.status(&owner, &id).await.assert_status(200).offset(), 10 * KIB as u64);
    svc.chunk(&owner, Some(&id), 10 * KIB, &file[10 * KIB..], file.len(), Encoding::Raw).await.assert_status(200);
    let before = svc.raw_item(&id).await;
    strangers_get_404(&svc, &id, &file, file.len()).await;
    assert_eq!(svc.raw_item(&id).await, before, "the strangers changed the item");
    let done = svc.complete(&owner, &id, &md5_hex(&file)).await;
    done.assert_status(200);
    assert!(svc.object(done.body["key"].as_str().expect("key")).await == file, "object differs");
    // A completed upload's result is not theirs to read either (abort would repeat it).
    strangers_get_404(&svc, &id, &file, file.len()).await;
    assert_eq!(svc.status(&owner, &id).await.assert_status(200).body["status"], "complete");
}

#[tokio::test]
async fn the_item_holds_the_secrets_hash_and_not_the_secret() {
    let svc = open().await;
    let file = data(5 * KIB, 71);
    let (id, owner) = start(&svc, &file, 2 * KIB).await;
    let secret = owner.secret.clone().expect("a secret");
    assert_eq!(secret.len(), 64);
    let bytes: Vec<u8> =
        (0..32).map(|i| u8::from_str_radix(&secret[2 * i..2 * i + 2], 16).expect("hex digits")).collect();
    let item = svc.raw_item(&id).await.expect("the item");
    let Some(AttributeValue::B(hash)) = item.get("secret_hash") else { panic!("no binary secret_hash in {item:?}") };
    assert_eq!(hash.as_ref(), Sha256::digest(&bytes).as_slice());
    for (name, value) in &item {
        let stored: &[u8] = match value {
            AttributeValue::S(s) => s.as_bytes(),
            AttributeValue::B(b) => b.as_ref(),
            _ => continue,
        };
        let holds = |needle: &[u8]| stored.windows(needle.len()).any(|w| w == needle);
        assert!(!holds(secret.as_bytes()) && !holds(&bytes), "attribute {name} holds the secret");
    }
}

#[tokio::test]
async fn the_secret_travels_in_a_header_or_a_body_field_and_never_in_the_query() {
    let svc = open().await;
    let file = data(6 * KIB, 72);
    let (id, owner) = start(&svc, &file, 2 * KIB).await;
    let secret = owner.secret.clone().expect("a secret");
    // As jQuery-File-Upload's formData sends it: a multipart field beside upload_id.
    let (content_type, body) = multipart_body(
        &[("upload_id", &id), ("upload_secret", &secret)],
        Some(("file", "f.bin", &file[2 * KIB..4 * KIB])),
    );
    let form = Service::request(&User::anonymous(), Method::POST, "/upload")
        .header("content-type", &content_type)
        .header("content-range", format!("bytes {}-{}/{}", 2 * KIB, 4 * KIB - 1, file.len()))
        .body(body.clone())
        .expect("request");
    assert_eq!(svc.send(form).await.assert_status(200).offset(), 4 * KIB as u64);
    // The answers after the first never repeat it.
    let reply = svc.chunk(&owner, Some(&id), 4 * KIB, &file[4 * KIB..5 * KIB], file.len(), Encoding::Raw).await;
    assert!(reply.assert_status(200).secret().is_none() && !reply.headers.contains_key("x-upload-secret"));
    // In the header and a field at once: a duplicate, as any field given twice.
    let both = Service::request(&owner, Method::POST, "/upload")
        .header("content-type", &content_type)
        .header("content-range", format!("bytes {}-{}/{}", 2 * KIB, 4 * KIB - 1, file.len()))
        .body(body)
        .expect("request");
    let reply = svc.send(both).await;
    assert!(reply.assert_status(400).detail().contains("more than once"), "{reply:?}");
    // A query string reaches access logs: refused, whether the secret is right or not.
    let uri = format!("/upload?upload_id={id}&upload_secret={secret}");
    let query = Service::request(&User::anonymous(), Method::POST, &uri)
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("bytes {}-{}/{}", 5 * KIB, 6 * KIB - 1, file.len()))
        .body(Bytes::copy_from_slice(&file[5 * KIB..]))
        .expect("request");
    let reply = svc.send(query).await;
    assert!(reply.assert_status(400).detail().contains("X-Upload-Secret"), "{reply:?}");
    let malformed = User::anonymous().with_secret(Some("not-a-secret".into()));
    svc.status(&malformed, &id).await.assert_status(400);
    svc.chunk(&owner, Some(&id), 5 * KIB, &file[5 * KIB..], file.len(), Encoding::Raw).await.assert_status(200);
    // Complete takes it as a JSON field.
    let json = serde_json::json!({"upload_id": id, "md5": md5_hex(&file), "upload_secret": secret}).to_string();
    let complete = Service::request(&User::anonymous(), Method::POST, "/upload/complete")
        .header("content-type", "application/json")
        .body(Bytes::from(json))
        .expect("request");
    svc.send(complete).await.assert_status(200);
}

#[tokio::test]
async fn authenticated_uploads_need_no_secret() {
    let svc = open().await;
    let alice = User::named("alice");
    let file = data(3 * KIB, 73);
    let first = svc.chunk(&alice, None, 0, &file[..KIB], file.len(), Encoding::Raw).await;
    first.assert_status(200);
    assert!(first.secret().is_none() && !first.headers.contains_key("x-upload-secret"), "{first:?}");
    let id = first.upload_id();
    assert!(!svc.raw_item(&id).await.expect("the item").contains_key("secret_hash"));
    // Her token binds the upload: a secret she sends as well is not looked at.
    let with_stray_secret = alice.with_secret(Some(someone_elses_secret()));
    svc.chunk(&with_stray_secret, Some(&id), KIB, &file[KIB..2 * KIB], file.len(), Encoding::Raw)
        .await
        .assert_status(200);
    svc.chunk(&alice, Some(&id), 2 * KIB, &file[2 * KIB..], file.len(), Encoding::Raw).await.assert_status(200);
    svc.complete(&alice, &id, &md5_hex(&file)).await.assert_status(200);
    // Nor can an anonymous caller, with or without a secret, reach it.
    svc.status(&User::anonymous(), &id).await.assert_status(404);
    svc.status(&User::anonymous().with_secret(Some(someone_elses_secret())), &id).await.assert_status(404);
}
