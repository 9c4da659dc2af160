//! tus 1.0.0 at /files against the emulators, through the emulated API Gateway: every extension served (creation,
//! creation-with-upload, creation-defer-length, expiration, checksum, termination, concatenation), the core's
//! answers and refusals, the limits, anonymous uploads, and the PATCH too large for API Gateway and Lambda. Every
//! object is checked byte for byte, and by S3's full-object CRC64NVME.

use std::time::Duration;

use bytes::Bytes;
use integration_tests::{KIB, MIB, Service, User, crc64, data, md5_hex, own_table, stream_record};
use lambda_http::http::{self, Method};
use serde_json::json;

const B64: base64_simd::Base64 = base64_simd::STANDARD;

/// A tus client, as simple as the protocol: headers in, headers out.
struct Tus<'a> {
    svc: &'a Service,
    user: User,
}

type Answer = http::Response<Bytes>;

fn header<'r>(answer: &'r Answer, name: &str) -> Option<&'r str> {
    answer.headers().get(name).map(|v| v.to_str().expect("a text header"))
}

fn text(answer: &Answer) -> String {
    String::from_utf8_lossy(answer.body()).into_owned()
}

#[track_caller]
fn expect(answer: &Answer, status: u16) {
    assert_eq!(answer.status().as_u16(), status, "{:?}: {}", answer.headers(), text(answer));
    assert_eq!(header(answer, "tus-resumable"), Some("1.0.0"), "every answer says its version");
}

/// The path of an upload from the creation's `Location` (relative to `/files`).
fn path_of(created: &Answer) -> String {
    let location = header(created, "location").expect("a Location");
    assert!(location.starts_with("files/"), "relative to the request's URL: {location}");
    format!("/{location}")
}

fn id_of(path: &str) -> String {
    path.rsplit('/').next().expect("an id").to_string()
}

fn metadata(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k} {}", B64.encode_to_string(v))).collect::<Vec<_>>().join(",")
}

impl<'a> Tus<'a> {
    fn new(svc: &'a Service, user: User) -> Self {
        Tus { svc, user }
    }

    fn request(&self, method: Method, uri: &str) -> http::request::Builder {
        Service::request(&self.user, method, uri).header("tus-resumable", "1.0.0")
    }

    async fn send(&self, request: http::request::Builder, body: &[u8]) -> Answer {
        self.svc.send_raw(request.body(Bytes::copy_from_slice(body)).expect("a request")).await
    }

    async fn create(&self, length: usize, metadata: &str) -> Answer {
        let request =
            self.request(Method::POST, "/files").header("upload-length", length).header("upload-metadata", metadata);
        self.send(request, &[]).await
    }

    async fn patch(&self, path: &str, offset: usize, data: &[u8]) -> Answer {
        self.send(self.patch_request(path, offset), data).await
    }

    fn patch_request(&self, path: &str, offset: usize) -> http::request::Builder {
        self.request(Method::PATCH, path)
            .header("upload-offset", offset)
            .header("content-type", "application/offset+octet-stream")
    }

    async fn head(&self, path: &str) -> Answer {
        self.send(self.request(Method::HEAD, path), &[]).await
    }

    async fn delete(&self, path: &str) -> Answer {
        self.send(self.request(Method::DELETE, path), &[]).await
    }

    /// Sends `file` from `from` in PATCHes of `chunk` bytes; returns the last answer.
    async fn upload_from(&self, path: &str, file: &[u8], from: usize, chunk: usize) -> Answer {
        let mut offset = from;
        loop {
            let end = (offset + chunk).min(file.len());
            let answer = self.patch(path, offset, &file[offset..end]).await;
            expect(&answer, 204);
            assert_eq!(header(&answer, "upload-offset"), Some(end.to_string().as_str()));
            offset = end;
            if offset == file.len() {
                return answer;
            }
        }
    }

    /// A complete upload's status (the service's own route), which carries its result.
    async fn status(&self, path: &str) -> serde_json::Value {
        let reply = self.svc.status(&self.user, &id_of(path)).await;
        reply.assert_status(200);
        reply.body
    }
}

#[tokio::test]
async fn options_announce_version_extensions_size_and_checksums() {
    let svc = Service::default().await;
    // No version and no token: discovery needs neither.
    let request = http::Request::builder().method(Method::OPTIONS).uri("/files").body(Bytes::new()).expect("request");
    let answer = svc.send_raw(request).await;
    expect(&answer, 204);
    assert_eq!(header(&answer, "tus-version"), Some("1.0.0"));
    assert_eq!(
        header(&answer, "tus-extension"),
        Some("creation,creation-with-upload,creation-defer-length,expiration,checksum,termination,concatenation")
    );
    assert_eq!(header(&answer, "tus-max-size"), Some(svc.app.config.size_limit().to_string().as_str()));
    assert_eq!(header(&answer, "tus-checksum-algorithm"), Some("sha1,md5,crc32,crc64nvme"));
}

#[tokio::test]
async fn an_upload_is_created_patched_and_completed_by_its_last_byte() {
    let svc = Service::default().await;
    let tus = Tus::new(&svc, User::named("tus-plain"));
    let file = data(11 * MIB + 17, 301);
    let meta = metadata(&[("filename", "holiday.mov"), ("filetype", "video/quicktime"), ("album", "2026 – été")]);
    let created = tus.create(file.len(), &meta).await;
    expect(&created, 201);
    assert_eq!(header(&created, "upload-offset"), Some("0"));
    assert!(header(&created, "upload-expires").is_some_and(|e| e.ends_with(" GMT")), "{created:?}");
    let path = path_of(&created);

    let head = tus.head(&path).await;
    expect(&head, 200);
    assert_eq!(header(&head, "upload-offset"), Some("0"));
    assert_eq!(header(&head, "upload-length"), Some(file.len().to_string().as_str()));
    assert_eq!(header(&head, "upload-metadata"), Some(meta.as_str()), "HEAD repeats the metadata as sent");
    assert_eq!(header(&head, "cache-control"), Some("no-store"));
    assert!(head.body().is_empty());

    // Four chunks: one buffered, one that makes the first part, and the rest; the last completes the upload.
    let before_last = tus.patch(&path, 0, &file[..4 * MIB]).await;
    expect(&before_last, 204);
    assert!(header(&before_last, "upload-expires").is_some());
    let item_before = svc.raw_item(&id_of(&path)).await.expect("the record");
    let last = tus.upload_from(&path, &file, 4 * MIB, 4 * MIB).await;
    assert_eq!(header(&last, "upload-expires"), None, "a complete upload does not expire");

    let result = tus.status(&path).await;
    assert_eq!(result["status"], json!("complete"));
    assert_eq!(result["filename"], json!("holiday.mov"));
    assert_eq!(result["content_type"], json!("video/quicktime"));
    assert_eq!(result["md5"], json!(md5_hex(&file)), "the MD5 computed as the bytes came");
    assert_eq!(result["crc64nvme"], json!(crc64(&file)));
    assert_eq!(
        result["tus"]["metadata"],
        json!({"filename": "holiday.mov", "filetype": "video/quicktime", "album": "2026 – été"})
    );
    svc.assert_object(result["key"].as_str().expect("key"), &file).await;
    assert!(svc.buffered_keys(&id_of(&path)).await.is_empty());

    let head = tus.head(&path).await;
    expect(&head, 200);
    assert_eq!(header(&head, "upload-offset"), Some(file.len().to_string().as_str()));
    assert_eq!(header(&head, "upload-expires"), None);

    // The completion event carries the MD5, the CRC64NVME and the metadata.
    let item_after = svc.raw_item(&id_of(&path)).await.expect("the record");
    let record: aws_lambda_events::event::dynamodb::EventRecord =
        serde_json::from_value(stream_record(1, &item_before, Some(&item_after))).expect("a stream record");
    let event = shared::events::UploadEvent::of(&record).expect("a completion event");
    let detail = event.detail(&svc.app.config.bucket);
    assert_eq!(detail["md5"], json!(md5_hex(&file)));
    assert_eq!(detail["crc64nvme"], json!(crc64(&file)));
    assert_eq!(detail["tus"]["metadata"]["album"], json!("2026 – été"));

    // And the listing shows it, as a sequential upload with its tus side.
    let listed = svc.list(&tus.user, "limit=1").await;
    assert_eq!(listed.body["uploads"][0]["upload_id"], json!(id_of(&path)));
    assert_eq!(listed.body["uploads"][0]["tus"]["metadata"]["filename"], json!("holiday.mov"));
    assert_eq!(listed.body["uploads"][0]["md5"], json!(md5_hex(&file)));
    assert_eq!(listed.body["uploads"][0]["crc64nvme"], json!(crc64(&file)));
}

/// The completion hook gets a tus upload's result, its metadata with it, as every upload's; its answer is kept.
#[tokio::test]
async fn the_completion_hook_gets_the_uploads_metadata() {
    let hook = concat!(
        "cmd:python3 -c 'import json, sys; r = json.load(sys.stdin)[\"result\"]; ",
        "print(json.dumps({\"metadata\": r[\"tus\"][\"metadata\"], \"md5\": r[\"md5\"]}))'"
    );
    let svc = Service::new(&[("CHUNKED_UPLOAD_COMPLETION_HOOK", hook)]).await;
    let tus = Tus::new(&svc, User::named("tus-hook"));
    let file = data(300 * KIB, 312);
    let created = tus.create(file.len(), &metadata(&[("filename", "hooked.bin"), ("album", "tus")])).await;
    expect(&created, 201);
    let path = path_of(&created);
    tus.upload_from(&path, &file, 0, 256 * KIB).await;
    let result = tus.status(&path).await;
    let answered = json!({"metadata": {"filename": "hooked.bin", "album": "tus"}, "md5": md5_hex(&file)});
    assert_eq!(result["data"], answered, "{result}");
}

#[tokio::test]
async fn names_and_types_follow_the_services_rules() {
    let svc = Service::default().await;
    let tus = Tus::new(&svc, User::named("tus-names"));
    let created = tus.create(4, &metadata(&[("filename", "../../evil.html"), ("filetype", "text/html")])).await;
    expect(&created, 201);
    let path = path_of(&created);
    tus.upload_from(&path, b"<b>x", 0, 4).await;
    let result = tus.status(&path).await;
    assert_eq!(result["filename"], json!("evil.html"));
    assert_eq!(result["content_type"], json!("application/octet-stream"), "active types are stored inert");
}

#[tokio::test]
async fn the_version_the_body_type_and_the_offset_are_checked() {
    let svc = Service::default().await;
    let tus = Tus::new(&svc, User::named("tus-checks"));
    let file = data(300 * KIB, 302);
    // No Tus-Resumable, or another version: 412 with the version served, and nothing created.
    for version in [None, Some("0.2.2")] {
        let mut request = Service::request(&tus.user, Method::POST, "/files").header("upload-length", 10);
        if let Some(version) = version {
            request = request.header("tus-resumable", version);
        }
        let answer = tus.send(request, &[]).await;
        expect(&answer, 412);
        assert_eq!(header(&answer, "tus-version"), Some("1.0.0"));
    }
    let path = path_of(&tus.create(file.len(), "").await);
    expect(&tus.patch(&path, 0, &file[..100 * KIB]).await, 204);
    // Another content type: 415. A missing or malformed offset: 400. Another offset: 409, nothing changed.
    let octet_stream = tus.request(Method::PATCH, &path).header("upload-offset", 100 * KIB);
    let wrong_type = tus.send(octet_stream.header("content-type", "application/octet-stream"), b"x").await;
    expect(&wrong_type, 415);
    let no_offset = tus.request(Method::PATCH, &path).header("content-type", "application/offset+octet-stream");
    expect(&tus.send(no_offset, b"x").await, 400);
    let conflict = tus.patch(&path, 50 * KIB, &file[50 * KIB..150 * KIB]).await;
    expect(&conflict, 409);
    assert!(text(&conflict).starts_with("ERR_MISMATCHED_OFFSET: "), "{}", text(&conflict));
    // Past the length: 413. A length that differs from the upload's: 400.
    expect(&tus.patch(&path, 100 * KIB, &data(201 * KIB, 1)).await, 413);
    let other_length = tus.patch_request(&path, 100 * KIB).header("upload-length", 5);
    expect(&tus.send(other_length, &file[100 * KIB..200 * KIB]).await, 400);
    assert_eq!(header(&tus.head(&path).await, "upload-offset"), Some((100 * KIB).to_string().as_str()));
    // Unknown uploads, and other methods.
    let unknown = format!("/files/{}", shared::protocol::UploadId::new());
    let head = tus.head(&unknown).await;
    expect(&head, 404);
    assert_eq!(header(&head, "upload-offset"), None);
    expect(&tus.head("/files/not-an-id").await, 404);
    // No route has GET: API Gateway answers itself.
    let get = tus.send(tus.request(Method::GET, &path), &[]).await;
    assert_eq!(get.status(), 404);
    assert_eq!(text(&get), r#"{"message":"Not Found"}"#);
    tus.upload_from(&path, &file, 100 * KIB, 100 * KIB).await;
    // A PATCH to a complete upload at its end changes nothing; anywhere else is a conflict.
    expect(&tus.patch(&path, file.len(), &[]).await, 204);
    expect(&tus.patch(&path, 0, &file[..10]).await, 409);
}

#[tokio::test]
async fn x_http_method_override_stands_for_patch_and_delete() {
    let svc = Service::default().await;
    let tus = Tus::new(&svc, User::named("tus-override"));
    let file = data(1000, 303);
    let path = path_of(&tus.create(file.len(), "").await);
    let patch = tus
        .request(Method::POST, &path)
        .header("x-http-method-override", "PATCH")
        .header("upload-offset", 0)
        .header("content-type", "application/offset+octet-stream");
    expect(&tus.send(patch, &file).await, 204);
    svc.assert_object(tus.status(&path).await["key"].as_str().expect("key"), &file).await;
    let other = path_of(&tus.create(10, "").await);
    let delete = tus.request(Method::POST, &other).header("x-http-method-override", "DELETE");
    expect(&tus.send(delete, &[]).await, 204);
    expect(&tus.head(&other).await, 404);
}

#[tokio::test]
async fn checksums_of_every_algorithm_are_checked_and_a_mismatch_keeps_nothing() {
    let svc = Service::default().await;
    let tus = Tus::new(&svc, User::named("tus-checksum"));
    let file = data(4 * 100 * KIB + 3, 304);
    let path = path_of(&tus.create(file.len(), "").await);
    let id = id_of(&path);
    let digests: [(&str, Vec<u8>); 4] = [
        ("sha1", <sha1::Sha1 as sha1::Digest>::digest(&file[..100 * KIB]).to_vec()),
        ("md5", <md5::Md5 as md5::Digest>::digest(&file[100 * KIB..200 * KIB]).to_vec()),
        (
            "crc32",
            crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32IsoHdlc, &file[200 * KIB..300 * KIB]).to_be_bytes()[4..]
                .to_vec(),
        ),
        ("crc64nvme", shared::checksum::Crc64::of(&file[300 * KIB..]).0.to_be_bytes().to_vec()),
    ];
    for (i, (name, digest)) in digests.iter().enumerate() {
        let start = i * 100 * KIB;
        let end = if i == 3 { file.len() } else { start + 100 * KIB };
        // The same bytes but one: 460, and the upload is where it was, with nothing of the chunk kept.
        let mut wrong = file[start..end].to_vec();
        wrong[7] ^= 1;
        let checksum = format!("{name} {}", B64.encode_to_string(digest));
        let mismatch = tus.send(tus.patch_request(&path, start).header("upload-checksum", &checksum), &wrong).await;
        expect(&mismatch, 460);
        assert!(text(&mismatch).starts_with("ERR_CHECKSUM_MISMATCH: "), "{}", text(&mismatch));
        assert_eq!(header(&tus.head(&path).await, "upload-offset"), Some(start.to_string().as_str()));
        assert_eq!(svc.buffered_keys(&id).await.len(), i, "the refused chunk left nothing in S3");
        let matched =
            tus.send(tus.patch_request(&path, start).header("upload-checksum", &checksum), &file[start..end]).await;
        expect(&matched, 204);
    }
    svc.assert_object(tus.status(&path).await["key"].as_str().expect("key"), &file).await;
    // An algorithm not served: 400, whatever the digest.
    let other = path_of(&tus.create(10, "").await);
    let sha256 = tus.send(tus.patch_request(&other, 0).header("upload-checksum", "sha256 AAAA"), b"0123456789").await;
    expect(&sha256, 400);
    assert!(text(&sha256).starts_with("ERR_UNSUPPORTED_CHECKSUM_ALGORITHM: "), "{}", text(&sha256));
}

#[tokio::test]
async fn creation_with_upload_takes_the_first_bytes() {
    let svc = Service::default().await;
    let tus = Tus::new(&svc, User::named("tus-creation-with-upload"));
    let file = data(6 * MIB, 305);
    let request = tus
        .request(Method::POST, "/files")
        .header("upload-length", file.len())
        .header("content-type", "application/offset+octet-stream");
    let created = tus.send(request, &file[..3 * MIB]).await;
    expect(&created, 201);
    assert_eq!(header(&created, "upload-offset"), Some((3 * MIB).to_string().as_str()));
    let path = path_of(&created);
    tus.upload_from(&path, &file, 3 * MIB, 3 * MIB).await;
    svc.assert_object(tus.status(&path).await["key"].as_str().expect("key"), &file).await;
}

#[tokio::test]
async fn a_deferred_length_is_declared_with_the_last_bytes_or_after_them() {
    let svc = Service::default().await;
    let tus = Tus::new(&svc, User::named("tus-deferred"));
    for (seed, declared_after) in [(306, false), (307, true)] {
        let file = data(9 * MIB + 1, seed);
        let created = tus.send(tus.request(Method::POST, "/files").header("upload-defer-length", 1), &[]).await;
        expect(&created, 201);
        let path = path_of(&created);
        let head = tus.head(&path).await;
        assert_eq!(header(&head, "upload-defer-length"), Some("1"));
        assert_eq!(header(&head, "upload-length"), None);
        // Chunks while the length is unknown: they are buffered, as the part size is planned for the largest file.
        expect(&tus.patch(&path, 0, &file[..4 * MIB]).await, 204);
        expect(&tus.patch(&path, 4 * MIB, &file[4 * MIB..8 * MIB]).await, 204);
        let last = if declared_after {
            expect(&tus.patch(&path, 8 * MIB, &file[8 * MIB..]).await, 204);
            // A stream's end, found after its last bytes: an empty PATCH declares the length, and what was buffered
            // becomes the last part.
            tus.send(tus.patch_request(&path, file.len()).header("upload-length", file.len()), &[]).await
        } else {
            tus.send(tus.patch_request(&path, 8 * MIB).header("upload-length", file.len()), &file[8 * MIB..]).await
        };
        expect(&last, 204);
        assert_eq!(header(&last, "upload-offset"), Some(file.len().to_string().as_str()));
        let result = tus.status(&path).await;
        assert_eq!(result["status"], json!("complete"), "{result}");
        assert_eq!(result["size"], json!(file.len()));
        svc.assert_object(result["key"].as_str().expect("key"), &file).await;
        let head = tus.head(&path).await;
        assert_eq!(header(&head, "upload-length"), Some(file.len().to_string().as_str()));
    }
}

#[tokio::test]
async fn an_empty_upload_is_complete_at_its_creation() {
    let svc = Service::default().await;
    let tus = Tus::new(&svc, User::named("tus-empty"));
    let created = tus.create(0, &metadata(&[("filename", "empty.txt")])).await;
    expect(&created, 201);
    let path = path_of(&created);
    let head = tus.head(&path).await;
    assert_eq!((header(&head, "upload-offset"), header(&head, "upload-length")), (Some("0"), Some("0")));
    let result = tus.status(&path).await;
    assert_eq!(result["status"], json!("complete"));
    svc.assert_object(result["key"].as_str().expect("key"), &[]).await;
}

/// Uploads `piece` as a partial upload; returns its path.
async fn partial(tus: &Tus<'_>, piece: &[u8]) -> String {
    let request =
        tus.request(Method::POST, "/files").header("upload-length", piece.len()).header("upload-concat", "partial");
    let created = tus.send(request, &[]).await;
    expect(&created, 201);
    let path = path_of(&created);
    if !piece.is_empty() {
        tus.upload_from(&path, piece, 0, 4 * MIB).await;
    }
    assert_eq!(header(&tus.head(&path).await, "upload-concat"), Some("partial"));
    path
}

async fn concatenate(tus: &Tus<'_>, pieces: &[String], meta: &str) -> Answer {
    let urls: Vec<String> = pieces.iter().map(|p| format!("https://api.example.com/prod{p}")).collect();
    let request = tus
        .request(Method::POST, "/files")
        .header("upload-concat", format!("final;{}", urls.join(" ")))
        .header("upload-metadata", meta);
    tus.send(request, &[]).await
}

#[tokio::test]
async fn concatenation_copies_large_pieces_in_s3_and_joins_a_small_one() {
    let svc = Service::default().await;
    let tus = Tus::new(&svc, User::named("tus-concat"));
    // A piece over 5 MiB (copied by S3), one under it that is not last (joined with the start of the next), the last.
    let pieces = [data(6 * MIB + 1, 308), data(MIB, 309), data(3 * MIB + 5, 310)];
    let file: Vec<u8> = pieces.concat();
    let mut paths = Vec::new();
    for piece in &pieces {
        paths.push(partial(&tus, piece).await);
    }
    let meta = metadata(&[("filename", "joined.bin")]);
    svc.s3_proxy.reset();
    let created = concatenate(&tus, &paths, &meta).await;
    expect(&created, 201);
    // S3 copies the large piece (UploadPartCopy): only the small ones pass through the service again.
    let s3_calls = svc.s3_proxy.tallies();
    assert!(s3_calls.get("UploadPartCopy").is_some_and(|t| t.calls == 1), "{s3_calls:?}");
    let relayed = s3_calls.get("UploadPart").map_or(0, |t| t.bytes_sent);
    let small = (pieces[1].len() + pieces[2].len()) as u64;
    assert!((small..pieces[0].len() as u64).contains(&relayed), "{relayed} bytes sent in UploadPart calls");
    let path = path_of(&created);
    assert_eq!(header(&created, "upload-offset"), Some(file.len().to_string().as_str()));
    let result = tus.status(&path).await;
    assert_eq!(result["status"], json!("complete"));
    assert_eq!(result["crc64nvme"], json!(crc64(&file)));
    assert_eq!(result["md5"], json!(null), "the bytes never passed through the service");
    assert_eq!(result["filename"], json!("joined.bin"));
    svc.assert_object(result["key"].as_str().expect("key"), &file).await;

    let head = tus.head(&path).await;
    expect(&head, 200);
    assert_eq!(header(&head, "upload-offset"), header(&head, "upload-length"));
    let ids: Vec<String> = paths.iter().map(|p| id_of(p)).collect();
    assert_eq!(header(&head, "upload-concat"), Some(format!("final;{}", ids.join(" ")).as_str()));
    // A final upload takes no PATCH.
    let refused = tus.patch(&path, file.len(), b"x").await;
    expect(&refused, 403);
    // The pieces are consumed: no record, no object, no multipart upload left.
    for id in &ids {
        assert!(svc.record(id).await.is_none(), "piece {id} is removed");
        assert!(svc.buffered_keys(id).await.is_empty(), "piece {id}'s object is removed");
        assert_eq!(svc.multipart_uploads(&format!("{}{id}/", svc.app.config.buffer_prefix)).await, 0);
    }
    // The same request again (its answer lost) names the same upload.
    let again = concatenate(&tus, &paths, &meta).await;
    expect(&again, 201);
    assert_eq!(path_of(&again), path);
}

#[tokio::test]
async fn pieces_all_under_the_smallest_part_are_joined_as_parallel_uploads_make_them() {
    let svc = Service::default().await;
    let tus = Tus::new(&svc, User::named("tus-concat-small"));
    // tus-js-client's parallelUploads: 4 on a 301 KiB file, the last one longer; an empty piece too.
    let file = data(301 * KIB, 311);
    let cuts = [0, 75 * KIB, 150 * KIB, 225 * KIB, 225 * KIB, file.len()];
    let mut paths = Vec::new();
    for window in cuts.windows(2) {
        paths.push(partial(&tus, &file[window[0]..window[1]]).await);
    }
    let created = concatenate(&tus, &paths, "").await;
    expect(&created, 201);
    let result = tus.status(&path_of(&created)).await;
    svc.assert_object(result["key"].as_str().expect("key"), &file).await;
}

#[tokio::test]
async fn a_final_upload_needs_finished_pieces_of_its_own_caller() {
    let svc = Service::default().await;
    let tus = Tus::new(&svc, User::named("tus-concat-refusals"));
    let finished = partial(&tus, &data(1000, 312)).await;
    let request = tus.request(Method::POST, "/files").header("upload-length", 1000).header("upload-concat", "partial");
    let unfinished = path_of(&tus.send(request, &[]).await);
    tus.patch(&unfinished, 0, &data(400, 313)).await;
    let refused = concatenate(&tus, &[finished.clone(), unfinished.clone()], "").await;
    expect(&refused, 400);
    assert!(text(&refused).contains("is not finished"), "{}", text(&refused));
    // A piece that is not partial, or someone else's: not found.
    let whole = path_of(&tus.create(10, "").await);
    expect(&concatenate(&tus, &[finished.clone(), whole], "").await, 400);
    let bob = Tus::new(&svc, User::named("tus-concat-bob"));
    expect(&concatenate(&bob, std::slice::from_ref(&finished), "").await, 404);
    // A final upload's length is its pieces'.
    let with_length = tus
        .request(Method::POST, "/files")
        .header("upload-concat", format!("final;{finished}"))
        .header("upload-length", 1000);
    expect(&tus.send(with_length, &[]).await, 400);
    // None of that consumed the pieces.
    assert_eq!(header(&tus.head(&finished).await, "upload-offset"), Some("1000"));
}

#[tokio::test]
async fn a_partial_upload_abandoned_leaves_nothing_when_aborted_or_expired() {
    let svc = Service::default().await;
    let tus = Tus::new(&svc, User::named("tus-partial-cleanup"));
    let path = partial(&tus, &data(6 * MIB, 314)).await;
    let id = id_of(&path);
    // Its object exists only under its buffer prefix, where the lifecycle rule expires what nothing takes.
    let record = svc.record(&id).await.expect("record");
    assert!(record.key.starts_with(&format!("{}{id}/", svc.app.config.buffer_prefix)), "{}", record.key);
    // The cleanup function, on TTL's removal of its record, removes its bytes.
    let removal = svc.removal(&id, 1, true).await;
    svc.remove_record(&id).await;
    let outcome = shared::cleanup::handle_stream(&svc.app, integration_tests::batch(vec![removal])).await;
    assert!(outcome.batch_item_failures.is_empty());
    assert!(svc.buffered_keys(&id).await.is_empty());
    assert_eq!(svc.multipart_uploads(&record.key).await, 0);
}

#[tokio::test]
async fn an_expired_upload_is_gone() {
    let svc = Service::new(&[("CHUNKED_UPLOAD_EXPIRATION_DELTA", "1")]).await;
    let tus = Tus::new(&svc, User::named("tus-expiry"));
    let path = path_of(&tus.create(1000, "").await);
    expect(&tus.patch(&path, 0, &data(500, 315)).await, 204);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    expect(&tus.head(&path).await, 410);
    let gone = tus.patch(&path, 500, &data(500, 316)).await;
    expect(&gone, 410);
    assert!(text(&gone).starts_with("ERR_UPLOAD_GONE: "), "{}", text(&gone));
}

#[tokio::test]
async fn termination_removes_what_the_upload_wrote() {
    let svc = Service::default().await;
    let tus = Tus::new(&svc, User::named("tus-termination"));
    let file = data(7 * MIB, 317);
    let path = path_of(&tus.create(file.len(), "").await);
    let id = id_of(&path);
    tus.patch(&path, 0, &file[..4 * MIB]).await;
    let key = svc.record(&id).await.expect("record").key;
    assert!(!svc.buffered_keys(&id).await.is_empty());
    let deleted = tus.delete(&path).await;
    expect(&deleted, 204);
    assert!(deleted.body().is_empty());
    expect(&tus.head(&path).await, 404);
    assert!(svc.buffered_keys(&id).await.is_empty());
    assert_eq!(svc.multipart_uploads(&key).await, 0);
    assert!(svc.record(&id).await.is_none());
    // A complete upload: its object and record go.
    let done = path_of(&tus.create(100, "").await);
    tus.upload_from(&done, &data(100, 318), 0, 100).await;
    let key = tus.status(&done).await["key"].as_str().expect("key").to_string();
    expect(&tus.delete(&done).await, 204);
    assert!(svc.keys(&key).await.is_empty(), "the object is deleted");
    expect(&tus.head(&done).await, 404);
}

#[tokio::test]
async fn uploads_count_against_the_owners_limits_and_a_deferred_one_counts_its_most() {
    let table = own_table().await;
    let svc = Service::new(&[
        ("CHUNKED_UPLOAD_TABLE", &table),
        ("CHUNKED_UPLOAD_MAX_UPLOADS_PER_OWNER", "1"),
        ("CHUNKED_UPLOAD_MAX_BYTES_PER_OWNER", &(10 * MIB).to_string()),
    ])
    .await;
    let owner = format!("tus-limits-{}", shared::protocol::UploadId::new());
    let tus = Tus::new(&svc, User::named(&owner));
    let created = tus.send(tus.request(Method::POST, "/files").header("upload-defer-length", 1), &[]).await;
    expect(&created, 201);
    let path = path_of(&created);
    // Until its length is known, it counts as the largest it may be: the owner's byte limit.
    assert_eq!(svc.counted(&owner).await, (1, 10 * MIB as u64));
    let refused = tus.create(10, "").await;
    expect(&refused, 429);
    assert!(text(&refused).starts_with("ERR_OVER_LIMIT: "), "{}", text(&refused));
    let file = data(100 * KIB, 319);
    expect(&tus.patch(&path, 0, &file[..64 * KIB]).await, 204);
    let declared =
        tus.send(tus.patch_request(&path, 64 * KIB).header("upload-length", 200 * KIB), &file[64 * KIB..]).await;
    expect(&declared, 204);
    assert_eq!(svc.counted(&owner).await, (1, 200 * KIB as u64));
    // A length over what was counted is refused.
    let other = Tus::new(&svc, User::named(&format!("{owner}-2")));
    let deferred =
        path_of(&other.send(other.request(Method::POST, "/files").header("upload-defer-length", 1), &[]).await);
    let too_long = other.send(other.patch_request(&deferred, 0).header("upload-length", 11 * MIB), b"x").await;
    expect(&too_long, 413);
    expect(&tus.delete(&path).await, 204);
    assert_eq!(svc.counted(&owner).await, (0, 0));
}

#[tokio::test]
async fn anonymous_uploads_are_bound_to_their_secret() {
    let svc = Service::new(&[("CHUNKED_UPLOAD_REQUIRE_AUTH", "false")]).await;
    let anonymous = Tus::new(&svc, User::anonymous());
    // No secret sent: one is drawn and answered once.
    let created = anonymous.create(1000, "").await;
    expect(&created, 201);
    let secret = header(&created, "x-upload-secret").expect("a secret").to_string();
    let path = path_of(&created);
    expect(&anonymous.head(&path).await, 404);
    let other = Tus::new(&svc, User::anonymous().with_secret(Some("ab".repeat(32))));
    expect(&other.head(&path).await, 404);
    let holder = Tus::new(&svc, User::anonymous().with_secret(Some(secret)));
    expect(&holder.head(&path).await, 200);
    holder.upload_from(&path, &data(1000, 320), 0, 1000).await;
    // A client that chose its secret sends it from the start, to every request, a concatenation's included.
    let chosen = Tus::new(&svc, User::anonymous().with_secret(Some("cd".repeat(32))));
    let pieces = [data(70 * KIB, 321), data(30 * KIB, 322)];
    let mut paths = Vec::new();
    for piece in &pieces {
        paths.push(partial(&chosen, piece).await);
    }
    expect(&other.head(&paths[0]).await, 404);
    let created = concatenate(&chosen, &paths, "").await;
    expect(&created, 201);
    assert_eq!(header(&created, "x-upload-secret"), None, "a secret sent is not answered back");
    expect(&chosen.head(&path_of(&created)).await, 200);
}

#[tokio::test]
async fn a_patch_over_the_payload_limit_says_the_chunk_size_to_set() {
    let svc = Service::default().await;
    let tus = Tus::new(&svc, User::named("tus-too-large"));
    let path = path_of(&tus.create(20 * MIB, "").await);
    // Over the service's limit but within Lambda's payload: the function answers, naming the setting.
    let max = svc.app.config.max_chunk_bytes as usize;
    let over = tus.patch(&path, 0, &data(max + 1, 323)).await;
    expect(&over, 413);
    assert!(text(&over).contains("set the tus client's chunkSize to 4 MiB (4194304) or less"), "{}", text(&over));
    // Over Lambda's 6 MB payload once base64-encoded: API Gateway refuses it before the function runs, in its own
    // words and without tus's headers.
    let refused = tus.patch(&path, 0, &data(5 * MIB, 324)).await;
    assert_eq!(refused.status().as_u16(), 413);
    assert_eq!(header(&refused, "tus-resumable"), None);
    assert_eq!(header(&tus.head(&path).await, "upload-offset"), Some("0"));
}
