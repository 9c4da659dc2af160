//! Uploads end to end: the object that lands in S3 must be the file, byte for byte.

use integration_tests::{Encoding, KIB, MIB, Service, User, data, md5_hex};

/// Uploads `file` in chunks, completes it, and checks the object, the answer and what is left behind.
async fn upload_and_check(svc: &Service, file: &[u8], chunk_size: usize, encoding: Encoding) {
    let user = User::named("alice");
    let upload_id = svc.upload_all(&user, file, chunk_size, encoding).await;
    let md5 = md5_hex(file);
    let done = svc.complete(&user, &upload_id, &md5).await;
    done.assert_status(200);
    assert_eq!(done.body["md5"], md5.as_str());
    assert_eq!(done.body["size"], file.len() as u64);
    assert_eq!(done.body["bucket"], svc.app.config.bucket.as_str());
    assert_eq!(done.body["status"], "complete");
    assert!(done.body["etag"].as_str().is_some_and(|e| !e.is_empty()));
    let key = done.body["key"].as_str().expect("key").to_string();
    assert_eq!(key, format!("uploads/{upload_id}/data.bin"));
    let object = svc.object(&key).await;
    assert_eq!(object.len(), file.len());
    assert!(object == file, "the object differs from the file");
    assert!(svc.buffered_keys(&upload_id).await.is_empty(), "buffered chunks left behind");
    assert_eq!(svc.multipart_uploads(&key).await, 0);
    let status = svc.status(&user, &upload_id).await;
    status.assert_status(200);
    assert_eq!(status.body["status"], "complete");
    assert_eq!(status.body["offset"], file.len() as u64);
}

#[tokio::test]
async fn one_chunk_file() {
    let svc = Service::default().await;
    upload_and_check(&svc, &data(1000, 1), 1000, Encoding::Multipart).await;
}

#[tokio::test]
async fn one_byte_file() {
    let svc = Service::default().await;
    upload_and_check(&svc, b"x", 1, Encoding::Raw).await;
}

#[tokio::test]
async fn small_file_in_many_chunks() {
    let svc = Service::default().await;
    upload_and_check(&svc, &data(3 * MIB + 12_345, 2), 100 * KIB, Encoding::Multipart).await;
}

#[tokio::test]
async fn file_of_64_mib_in_1_mib_chunks() {
    let svc = Service::default().await;
    upload_and_check(&svc, &data(64 * MIB, 3), MIB, Encoding::Raw).await;
}

#[tokio::test]
async fn file_of_64_mib_in_4_mib_chunks() {
    let svc = Service::default().await;
    upload_and_check(&svc, &data(64 * MIB, 4), 4 * MIB, Encoding::Multipart).await;
}

#[tokio::test]
async fn chunks_of_64_kib_across_part_boundaries() {
    let svc = Service::default().await;
    // 11 MiB + a bit: two full parts gathered from 64 KiB chunks, then a short last part.
    upload_and_check(&svc, &data(11 * MIB + 777, 5), 64 * KIB, Encoding::Raw).await;
}

#[tokio::test]
async fn chunk_sizes_that_vary() {
    // A 17 KiB chunk is under the default smallest chunk.
    let svc = Service::new(&[("CHUNKED_UPLOAD_MIN_CHUNK_BYTES", "16384")]).await;
    let file = data(13 * MIB + 5, 6);
    let user = User::named("alice");
    let sizes = [MIB + 3, 4 * MIB, 17 * KIB, 3 * MIB, 4 * MIB + 100, 999_999];
    let (mut start, mut upload_id) = (0, None::<String>);
    for size in sizes.iter().cycle() {
        let end = (start + size).min(file.len());
        let reply = svc.chunk(&user, upload_id.as_deref(), start, &file[start..end], file.len(), Encoding::Raw).await;
        reply.assert_status(200);
        upload_id = Some(reply.upload_id());
        start = end;
        if start == file.len() {
            break;
        }
    }
    let upload_id = upload_id.expect("id");
    let done = svc.complete(&user, &upload_id, &md5_hex(&file)).await;
    done.assert_status(200);
    assert!(svc.object(done.body["key"].as_str().expect("key")).await == file);
}

#[tokio::test]
async fn parts_are_gathered_from_buffered_chunks() {
    let svc = Service::default().await;
    let user = User::named("alice");
    let file = data(12 * MIB, 7);
    let id = svc.chunk(&user, None, 0, &file[..4 * MIB], file.len(), Encoding::Raw).await.upload_id();
    let record = svc.record(&id).await.expect("record");
    assert_eq!((record.parts.count, record.buffers.is_empty()), (0, false), "4 MiB waits for the next chunk");
    assert_eq!(svc.buffered_keys(&id).await.len(), 1);
    svc.chunk(&user, Some(&id), 4 * MIB, &file[4 * MIB..8 * MIB], file.len(), Encoding::Raw).await.assert_status(200);
    let record = svc.record(&id).await.expect("record");
    assert_eq!((record.parts.count, record.buffers.is_empty()), (1, true), "8 MiB make a part");
    assert_eq!((record.part_start, record.flush_at), (8 * MIB as u64, 12 * MIB as u64));
    assert!(svc.buffered_keys(&id).await.is_empty(), "the joined chunk is deleted");
}

#[tokio::test]
async fn complete_accepts_json_and_multipart_bodies() {
    let svc = Service::default().await;
    let user = User::named("alice");
    for (i, kind) in ["json", "multipart"].iter().enumerate() {
        let file = data(5000, 10 + i as u64);
        let id = svc.upload_all(&user, &file, 2000, Encoding::Multipart).await;
        let md5 = md5_hex(&file);
        let (content_type, body) = match *kind {
            "json" => (
                "application/json".to_string(),
                bytes::Bytes::from(serde_json::json!({"upload_id": id, "md5": md5}).to_string()),
            ),
            _ => integration_tests::multipart_body(&[("upload_id", &id), ("md5", &md5)], None),
        };
        let request = Service::request(&user, lambda_http::http::Method::POST, "/upload/complete")
            .header("content-type", content_type)
            .body(body)
            .expect("request");
        svc.send(request).await.assert_status(200);
    }
}

#[tokio::test]
async fn filename_and_content_type_come_from_the_first_chunk() {
    let svc = Service::default().await;
    let user = User::named("alice");
    let file = b"%PDF-1.4 tiny".to_vec();
    let (content_type, body) =
        integration_tests::multipart_body(&[], Some(("file", "../../secret/Report 2026.pdf", &file)));
    let request = Service::request(&user, lambda_http::http::Method::POST, "/upload")
        .header("content-type", content_type)
        .header("content-range", format!("bytes 0-{}/{}", file.len() - 1, file.len()))
        .body(body)
        .expect("request");
    let reply = svc.send(request).await;
    reply.assert_status(200);
    let done = svc.complete(&user, &reply.upload_id(), &md5_hex(&file)).await;
    done.assert_status(200);
    let key = done.body["key"].as_str().expect("key");
    assert_eq!(key, format!("uploads/{}/Report 2026.pdf", reply.upload_id()));
    let head = svc.s3.head_object().bucket(&svc.app.config.bucket).key(key).send().await.expect("head");
    assert_eq!(head.content_type(), Some("application/pdf"));
}

#[tokio::test]
async fn key_template_and_storage_class_are_configurable() {
    let svc = Service::new(&[
        ("CHUNKED_UPLOAD_KEY_TEMPLATE", "by-user/{owner}/{upload_id}-{filename}"),
        ("CHUNKED_UPLOAD_STORAGE_CLASS", "STANDARD_IA"),
    ])
    .await;
    let user = User::named("carol");
    let file = data(300, 12);
    let id = svc.upload_all(&user, &file, 300, Encoding::Raw).await;
    let done = svc.complete(&user, &id, &md5_hex(&file)).await;
    done.assert_status(200);
    let key = done.body["key"].as_str().expect("key");
    assert_eq!(key, format!("by-user/carol/{id}-data.bin"));
    let head = svc.s3.head_object().bucket(&svc.app.config.bucket).key(key).send().await.expect("head");
    assert_eq!(head.storage_class().map(|s| s.as_str()), Some("STANDARD_IA"));
}
