//! Uppy's S3 plugin's protocol (Companion's S3 endpoints, `/s3/...`) against the emulators: every endpoint as the
//! plugin calls it, parts PUT to the presigned URLs with no header (as the plugin sends them), objects checked byte
//! for byte and by the full-object CRC64NVME S3 computed; and every refusal: strangers and edited ids or keys (404),
//! part numbers and plans outside S3's rules, completions naming other parts than S3 holds, a part changed after it
//! was listed, abort, expiry, limits. A small file's presigned POST is held to its policy by S3, and S3's report of
//! it (EventBridge `Object Created`) completes its upload, through the handler and through the real `complete`
//! binary.

use std::time::Duration;

use bytes::Bytes;
use integration_tests::lambda_runtime::{FunctionProcess, build_functions};
use integration_tests::{
    KIB, MIB, Reply, Service, User, api_gateway_event, crc64, data, multipart_body, removal_of, stream_record, to_s3,
};
use lambda_http::http::{self, Method};
use serde_json::{Value, json};
use shared::cleanup;
use shared::companion;
use shared::events::{Kind, UploadEvent};
use shared::lambda::{CreatedObject, ObjectCreated, ObjectCreatedDetail};
use shared::upload::Posted;

/// What the plugin keeps of an upload it started: the id and key it sends back with every call.
struct Started {
    id: String,
    key: String,
}

impl Started {
    fn key_query(&self) -> String {
        form_urlencoded::Serializer::new(String::new()).append_pair("key", &self.key).finish()
    }
}

/// `POST /s3/multipart`, as the plugin sends it.
async fn create(svc: &Service, user: &User, filename: &str) -> Reply {
    let body = json!({"filename": filename, "type": "application/octet-stream", "metadata": {"name": filename}});
    let request = Service::request(user, Method::POST, "/s3/multipart")
        .header("content-type", "application/json")
        .body(Bytes::from(body.to_string()));
    svc.send(request.expect("request")).await
}

async fn started(svc: &Service, user: &User, filename: &str) -> Started {
    let reply = create(svc, user, filename).await;
    reply.assert_status(200);
    let field = |name: &str| reply.body[name].as_str().unwrap_or_else(|| panic!("no {name}: {reply:?}")).to_string();
    Started { id: field("uploadId"), key: field("key") }
}

async fn get(svc: &Service, user: &User, uri: &str) -> Reply {
    svc.send(Service::request(user, Method::GET, uri).body(Bytes::new()).expect("request")).await
}

/// `GET /s3/multipart/{uploadId}/{partNumber}?key=`
async fn sign(svc: &Service, user: &User, upload: &Started, number: &str) -> Reply {
    get(svc, user, &format!("/s3/multipart/{}/{number}?{}", upload.id, upload.key_query())).await
}

/// A part's URL.
async fn part_url(svc: &Service, user: &User, upload: &Started, number: u32) -> String {
    let reply = sign(svc, user, upload, &number.to_string()).await;
    reply.assert_status(200);
    reply.body["url"].as_str().unwrap_or_else(|| panic!("no url: {reply:?}")).to_string()
}

/// PUTs a part's bytes to its URL with no header, as the plugin does; S3's status and the part's ETag.
async fn put(url: &str, body: &[u8]) -> (u16, String) {
    let request = http::Request::builder().method("PUT").uri(url).body(Bytes::copy_from_slice(body));
    let (status, headers, _) = to_s3(request.expect("request")).await;
    let etag = headers.get("etag").and_then(|e| e.to_str().ok()).unwrap_or_default();
    // The plugin strips the quotes of the ETags it reads.
    (status, etag.trim_matches('"').to_string())
}

/// Signs and PUTs one part; its ETag.
async fn send_part(svc: &Service, user: &User, upload: &Started, number: u32, body: &[u8]) -> String {
    let (status, etag) = put(&part_url(svc, user, upload, number).await, body).await;
    assert_eq!(status, 200, "part {number}");
    etag
}

/// `GET /s3/multipart/{uploadId}?key=`
async fn list(svc: &Service, user: &User, upload: &Started) -> Reply {
    get(svc, user, &format!("/s3/multipart/{}?{}", upload.id, upload.key_query())).await
}

/// `POST /s3/multipart/{uploadId}/complete?key=` naming `(number, etag)` parts.
/// The parts a listing names, as `(PartNumber, ETag)`.
fn listed_parts(listing: &Reply) -> Vec<(u32, String)> {
    let parts = listing.body.as_array().unwrap_or_else(|| panic!("no parts: {listing:?}"));
    parts
        .iter()
        .map(|p| (p["PartNumber"].as_u64().expect("n") as u32, p["ETag"].as_str().expect("etag").into()))
        .collect()
}

async fn complete(svc: &Service, user: &User, upload: &Started, parts: &[(u32, &str)]) -> Reply {
    let parts: Vec<Value> = parts.iter().map(|(n, etag)| json!({"PartNumber": n, "ETag": etag})).collect();
    complete_json(svc, user, upload, json!({ "parts": parts })).await
}

async fn complete_json(svc: &Service, user: &User, upload: &Started, body: Value) -> Reply {
    let uri = format!("/s3/multipart/{}/complete?{}", upload.id, upload.key_query());
    let request = Service::request(user, Method::POST, &uri)
        .header("content-type", "application/json")
        .body(Bytes::from(body.to_string()));
    svc.send(request.expect("request")).await
}

/// `DELETE /s3/multipart/{uploadId}?key=`
async fn abort(svc: &Service, user: &User, upload: &Started) -> Reply {
    let uri = format!("/s3/multipart/{}?{}", upload.id, upload.key_query());
    svc.send(Service::request(user, Method::DELETE, &uri).body(Bytes::new()).expect("request")).await
}

/// The object is the file, and the result says so: its size, and the full-object CRC64NVME S3 computed.
async fn assert_stored(svc: &Service, done: &Reply, file: &[u8]) {
    done.assert_status(200);
    assert_eq!(done.body["size"], json!(file.len()), "{:?}", done.body);
    assert_eq!(done.body["crc64nvme"], json!(crc64(file)), "{:?}", done.body);
    assert_eq!(done.body["mode"], "uppy-s3");
    assert!(svc.object(done.body["key"].as_str().expect("key")).await == file, "the object is not the file");
}

#[tokio::test]
async fn an_upload_goes_through_every_endpoint_as_the_plugin_calls_them() {
    let svc = Service::default().await;
    let user = User::named("uppy-alice");
    let file = data(5 * MIB + 300 * KIB, 700);
    let created = create(&svc, &user, "holiday photos.zip").await;
    created.assert_status(200);
    // Our id, the object's key and the bucket: S3's own multipart upload id stays with the service.
    let upload = Started {
        id: created.body["uploadId"].as_str().expect("uploadId").into(),
        key: created.body["key"].as_str().expect("key").into(),
    };
    assert_eq!(created.body["bucket"], json!(svc.app.config.bucket));
    assert_eq!(upload.key, format!("uploads/{}/holiday photos.zip", upload.id));
    let multipart_id = svc.record(&upload.id).await.expect("record").multipart_id.expect("a multipart upload");
    assert!(!created.body.to_string().contains(&multipart_id));

    // One part's URL, and the batch form: URLs that need no header, living the presign expiry.
    let one = sign(&svc, &user, &upload, "1").await;
    one.assert_status(200);
    assert_eq!(one.body["expires"], json!(900));
    let url = one.body["url"].as_str().expect("url");
    assert!(url.contains("X-Amz-SignedHeaders=host&"), "{url}");
    let uri = format!("/s3/multipart/{}/batch?{}&partNumbers=2,1", upload.id, upload.key_query());
    let batch = get(&svc, &user, &uri).await;
    batch.assert_status(200);
    let urls = batch.body["presignedUrls"].as_object().expect("presignedUrls");
    assert_eq!(urls.keys().collect::<Vec<_>>(), ["1", "2"]);

    let (first, second) = file.split_at(5 * MIB);
    let (status, etag1) = put(urls["1"].as_str().expect("url"), first).await;
    assert_eq!(status, 200);
    // Where the plugin stands after a reload or a cut: S3's parts, as Companion lists them (quoted ETags).
    let listed = list(&svc, &user, &upload).await;
    listed.assert_status(200);
    assert_eq!(listed.body, json!([{"PartNumber": 1, "ETag": format!("\"{etag1}\""), "Size": 5 * MIB}]));
    let status = svc.status(&user, &upload.id).await;
    assert_eq!(status.body["parts_held"], json!([[1, 1]]), "{:?}", status.body);
    assert!(status.body.get("size").is_none(), "the plugin announced no size: {:?}", status.body);
    let (status, etag2) = put(urls["2"].as_str().expect("url"), second).await;
    assert_eq!(status, 200);

    // The plugin names listed parts with their quotes, the ones it sent itself without.
    let done = complete(&svc, &user, &upload, &[(1, &format!("\"{etag1}\"")), (2, &etag2)]).await;
    assert_stored(&svc, &done, &file).await;
    assert_eq!(done.body["key"], json!(upload.key));
    let location = done.body["location"].as_str().expect("location");
    assert!(location.ends_with(&format!("/uploads/{}/holiday%20photos.zip", upload.id)), "{location}");
    assert!(location.starts_with(&svc.s3_proxy.url()), "{location}");

    // A repeated completion (a lost answer) repeats the result; the upload takes nothing more.
    let again = complete(&svc, &user, &upload, &[(1, &etag1), (2, &etag2)]).await;
    assert_eq!(again.assert_status(200).body, done.body);
    assert_eq!(sign(&svc, &user, &upload, "3").await.status, 400);
    assert_eq!(list(&svc, &user, &upload).await.status, 400);
    let listed = svc.list(&user, "limit=1").await;
    assert_eq!(listed.body["uploads"][0]["size"], json!(file.len()), "{:?}", listed.body);
    assert_eq!(svc.status(&user, &upload.id).await.body["crc64nvme"], done.body["crc64nvme"]);
}

#[tokio::test]
async fn only_the_owner_with_the_uploads_own_key_reaches_it() {
    let svc = Service::new(&[("CHUNKED_UPLOAD_REQUIRE_AUTH", "false")]).await;
    let alice = User::named("uppy-owner");
    let upload = started(&svc, &alice, "a.bin").await;
    let etag = send_part(&svc, &alice, &upload, 1, b"tiny").await;
    let stranger = User::named("uppy-stranger");
    let others_key = Started { id: upload.id.clone(), key: format!("uploads/{}/other.bin", upload.id) };
    let someone_elses = started(&svc, &stranger, "b.bin").await;
    let with_their_key = Started { id: upload.id.clone(), key: someone_elses.key.clone() };
    let unknown = Started { id: "0".repeat(32), key: upload.key.clone() };
    let malformed = Started { id: "../../etc".into(), key: upload.key.clone() };
    for (who, target) in [
        (&stranger, &upload),
        (&alice, &others_key),
        (&alice, &with_their_key),
        (&alice, &unknown),
        (&User::anonymous(), &upload),
    ] {
        let refusals = [
            sign(&svc, who, target, "1").await,
            list(&svc, who, target).await,
            complete(&svc, who, target, &[(1, &etag)]).await,
            abort(&svc, who, target).await,
        ];
        for reply in refusals {
            assert_eq!(reply.status, 404, "{:?}", reply.body);
        }
    }
    assert_eq!(sign(&svc, &alice, &malformed, "1").await.status, 404);
    let without_key = get(&svc, &alice, &format!("/s3/multipart/{}/1", upload.id)).await;
    assert_eq!(without_key.status, 400, "{:?}", without_key.body);
    let twice = format!("/s3/multipart/{}/1?{}&{}", upload.id, upload.key_query(), upload.key_query());
    assert_eq!(get(&svc, &alice, &twice).await.status, 400);

    // Another mode's upload is no Uppy upload, and the other protocols' routes do not serve an Uppy upload.
    let direct = svc.open(&alice, json!({"mode": "direct", "size": 6 * MIB})).await.upload_id();
    let direct_key = svc.record(&direct).await.expect("record").key;
    assert_eq!(sign(&svc, &alice, &Started { id: direct, key: direct_key }, "1").await.status, 404);
    assert_eq!(svc.complete_crc(&alice, &upload.id, &crc64(b"tiny")).await.status, 400);
    assert_eq!(svc.part_urls(&alice, &upload.id, &[(1, b"tiny")]).await.status, 400);
    assert_eq!(svc.chunk(&alice, Some(&upload.id), 0, b"tiny", 4, integration_tests::Encoding::Raw).await.status, 400);

    // Anonymous: bound to the secret the creation handed out (its body and its header), as every anonymous upload.
    let created = create(&svc, &User::anonymous(), "anon.bin").await;
    created.assert_status(200);
    let secret = created.secret().expect("a secret");
    assert_eq!(created.headers["x-upload-secret"], secret.as_str());
    let anon = Started {
        id: created.body["uploadId"].as_str().expect("id").into(),
        key: created.body["key"].as_str().expect("key").into(),
    };
    assert_eq!(sign(&svc, &User::anonymous(), &anon, "1").await.status, 404);
    let wrong = User::anonymous().with_secret(Some("ab".repeat(32)));
    assert_eq!(sign(&svc, &wrong, &anon, "1").await.status, 404);
    let holder = User::anonymous().with_secret(Some(secret));
    let etag = send_part(&svc, &holder, &anon, 1, b"anonymous bytes").await;
    let done = complete(&svc, &holder, &anon, &[(1, &etag)]).await;
    assert_stored(&svc, &done, b"anonymous bytes").await;
}

#[tokio::test]
async fn part_numbers_and_plans_outside_s3s_rules_are_refused() {
    let svc = Service::new(&[("CHUNKED_UPLOAD_MAX_BYTES", &(6 * MIB).to_string())]).await;
    let user = User::named("uppy-rules");
    let upload = started(&svc, &user, "r.bin").await;
    for bad in ["0", "10001", "-1", "1.5", "x", "99999999999"] {
        assert_eq!(sign(&svc, &user, &upload, bad).await.status, 400, "{bad}");
    }
    assert_eq!(sign(&svc, &user, &upload, "10000").await.status, 200);
    let batch =
        |numbers: String| format!("/s3/multipart/{}/batch?{}&partNumbers={numbers}", upload.id, upload.key_query());
    let too_many = (1..=101).map(|n| n.to_string()).collect::<Vec<_>>().join(",");
    for bad in [batch("".into()), batch("1,,2".into()), batch("0".into()), batch(too_many)] {
        assert_eq!(get(&svc, &user, &bad).await.status, 400, "{bad}");
    }
    let no_list = format!("/s3/multipart/{}/batch?{}", upload.id, upload.key_query());
    assert_eq!(get(&svc, &user, &no_list).await.status, 400);

    // Plans S3 would refuse, or that are not 1..N in order, never reach S3.
    let small = send_part(&svc, &user, &upload, 1, &data(MIB, 701)).await;
    let last = send_part(&svc, &user, &upload, 2, &data(KIB, 702)).await;
    for plan in [
        vec![],
        vec![(2, last.as_str())],
        vec![(1, small.as_str()), (3, last.as_str())],
        vec![(2, last.as_str()), (1, small.as_str())],
        vec![(1, small.as_str()), (1, small.as_str())],
    ] {
        let reply = complete(&svc, &user, &upload, &plan).await;
        assert_eq!(reply.status, 400, "{plan:?}: {:?}", reply.body);
    }
    let reply = complete(&svc, &user, &upload, &[(1, &small), (2, &last)]).await;
    assert_eq!(reply.status, 400, "{:?}", reply.body);
    assert!(reply.detail().contains("all but the last at least 5242880"), "{:?}", reply.body);
    for body in [json!({}), json!({"parts": "1"}), json!({"parts": [{"PartNumber": "1", "ETag": small}]})] {
        assert_eq!(complete_json(&svc, &user, &upload, body.clone()).await.status, 400, "{body}");
    }
    let as_form =
        Service::request(&user, Method::POST, &format!("/s3/multipart/{}/complete?{}", upload.id, upload.key_query()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Bytes::from_static(b"parts=1"));
    assert_eq!(svc.send(as_form.expect("request")).await.status, 415);
    assert_eq!(svc.record(&upload.id).await.expect("record").status.as_str(), "uploading");

    // A file over the deployment's limit, in parts S3 would take.
    let over = started(&svc, &user, "over.bin").await;
    let (one, two) = (data(5 * MIB, 703), data(2 * MIB, 704));
    let (e1, e2) = (send_part(&svc, &user, &over, 1, &one).await, send_part(&svc, &user, &over, 2, &two).await);
    let reply = complete(&svc, &user, &over, &[(1, &e1), (2, &e2)]).await;
    assert_eq!((reply.status, reply.detail()), (400, "Size of file exceeds the limit (6291456 bytes)"));
    for (method, path) in
        [(Method::PUT, "/s3/multipart"), (Method::POST, "/s3/params"), (Method::PUT, "/s3/multipart/x")]
    {
        let reply = svc.send(Service::request(&user, method.clone(), path).body(Bytes::new()).expect("request")).await;
        // No route: API Gateway's own answer.
        assert_eq!((reply.status, &reply.body), (404, &json!({"message": "Not Found"})), "{method} {path}");
    }
    assert_eq!(create(&svc, &user, "").await.status, 400);
    let odd_metadata = Service::request(&user, Method::POST, "/s3/multipart")
        .header("content-type", "application/json")
        .body(Bytes::from(json!({"filename": "m.bin", "metadata": [1]}).to_string()));
    assert_eq!(svc.send(odd_metadata.expect("request")).await.status, 400);
    let long_name = "n".repeat(4097);
    assert_eq!(get(&svc, &user, &format!("/s3/params?filename={long_name}")).await.status, 400);
}

#[tokio::test]
async fn a_completion_must_name_exactly_the_parts_s3_holds() {
    let svc = Service::default().await;
    let user = User::named("uppy-exact");
    let file = data(10 * MIB + 10, 710);
    let parts: Vec<&[u8]> = vec![&file[..5 * MIB], &file[5 * MIB..10 * MIB], &file[10 * MIB..]];
    let upload = started(&svc, &user, "exact.bin").await;
    let mut etags = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        etags.push(send_part(&svc, &user, &upload, i as u32 + 1, part).await);
    }
    let named = |numbers: &[u32]| -> Vec<(u32, &str)> {
        numbers.iter().map(|&n| (n, etags[n as usize - 1].as_str())).collect()
    };
    // A part left out (S3 would complete without it), one S3 does not hold, an ETag S3 does not hold.
    let left_out = complete(&svc, &user, &upload, &named(&[1, 2])).await;
    assert_eq!(left_out.status, 400);
    assert!(
        left_out.detail().contains("S3 holds parts [[3, 3]] that the completion leaves out"),
        "{:?}",
        left_out.body
    );
    let mut missing = named(&[1, 2, 3]);
    missing.push((4, "0123456789abcdef0123456789abcdef"));
    assert!(complete(&svc, &user, &upload, &missing).await.detail().contains("Parts [[4, 4]] are not in S3"));
    let mut wrong = named(&[1, 2, 3]);
    wrong[1].1 = "0123456789abcdef0123456789abcdef";
    assert!(complete(&svc, &user, &upload, &wrong).await.detail().starts_with("Part 2 in S3 is not the one named"));

    // Part 2 sent again, with other bytes, after the client listed the parts: its listing no longer holds.
    let listed = listed_parts(&list(&svc, &user, &upload).await);
    let mut changed = parts[1].to_vec();
    changed[0] ^= 0xff;
    send_part(&svc, &user, &upload, 2, &changed).await;
    let stale: Vec<(u32, &str)> = listed.iter().map(|(n, e)| (*n, e.as_str())).collect();
    let reply = complete(&svc, &user, &upload, &stale).await;
    assert!(reply.detail().starts_with("Part 2 in S3 is not the one named"), "{:?}", reply.body);
    // Listed again, the parts S3 holds complete the object they make.
    let fresh = listed_parts(&list(&svc, &user, &upload).await);
    let done = complete(&svc, &user, &upload, &fresh.iter().map(|(n, e)| (*n, e.as_str())).collect::<Vec<_>>()).await;
    let expected = [parts[0], &changed, parts[2]].concat();
    assert_stored(&svc, &done, &expected).await;
}

#[tokio::test]
async fn a_completion_that_s3_finished_before_its_record_is_recognised() {
    let svc = Service::default().await;
    let user = User::named("uppy-finished-in-s3");
    let file = data(5 * MIB + 1, 715);
    let upload = started(&svc, &user, "f.bin").await;
    let e1 = send_part(&svc, &user, &upload, 1, &file[..5 * MIB]).await;
    let e2 = send_part(&svc, &user, &upload, 2, &file[5 * MIB..]).await;
    // A completion that died after S3 completed the object: the multipart upload is gone, the record not updated.
    let record = svc.record(&upload.id).await.expect("record");
    let completed = aws_sdk_s3::types::CompletedMultipartUpload::builder()
        .parts(aws_sdk_s3::types::CompletedPart::builder().part_number(1).e_tag(&e1).build())
        .parts(aws_sdk_s3::types::CompletedPart::builder().part_number(2).e_tag(&e2).build())
        .build();
    svc.s3
        .complete_multipart_upload()
        .bucket(&svc.app.config.bucket)
        .key(&record.key)
        .upload_id(record.multipart_id.expect("id"))
        .multipart_upload(completed)
        .send()
        .await
        .expect("CompleteMultipartUpload");
    let done = complete(&svc, &user, &upload, &[(1, &e1), (2, &e2)]).await;
    assert_stored(&svc, &done, &file).await;
    // Other parts than those S3 completed: the bytes named are gone.
    let other = started(&svc, &user, "g.bin").await;
    let e = send_part(&svc, &user, &other, 1, b"one").await;
    let record = svc.record(&other.id).await.expect("record");
    svc.s3
        .abort_multipart_upload()
        .bucket(&svc.app.config.bucket)
        .key(&record.key)
        .upload_id(record.multipart_id.expect("id"))
        .send()
        .await
        .expect("AbortMultipartUpload");
    assert_eq!(complete(&svc, &user, &other, &[(1, &e)]).await.status, 410);
    assert_eq!(list(&svc, &user, &other).await.status, 410);
}

#[tokio::test]
async fn an_abort_removes_the_multipart_upload_and_its_urls_die_with_it() {
    let svc = Service::default().await;
    let user = User::named("uppy-abort");
    let upload = started(&svc, &user, "abort.bin").await;
    send_part(&svc, &user, &upload, 1, &data(KIB, 720)).await;
    let url = part_url(&svc, &user, &upload, 2).await;
    let aborted = abort(&svc, &user, &upload).await;
    assert_eq!(aborted.assert_status(200).body["status"], "aborted");
    assert_eq!(svc.multipart_uploads(&upload.key).await, 0);
    assert!(svc.record(&upload.id).await.is_none());
    assert_ne!(put(&url, b"late").await.0, 200);
    assert_eq!(sign(&svc, &user, &upload, "2").await.status, 404);
    assert_eq!(complete(&svc, &user, &upload, &[(1, "x")]).await.status, 404);
    assert_eq!(abort(&svc, &user, &upload).await.status, 404);
}

#[tokio::test]
async fn an_expired_upload_takes_nothing_more_and_its_urls_die_with_it() {
    let svc = Service::new(&[("CHUNKED_UPLOAD_EXPIRATION_DELTA", "2")]).await;
    let user = User::named("uppy-expired");
    let upload = started(&svc, &user, "late.bin").await;
    let etag = send_part(&svc, &user, &upload, 1, b"early").await;
    let url = part_url(&svc, &user, &upload, 2).await;
    let lifetime = url.split(['?', '&']).find_map(|p| p.strip_prefix("X-Amz-Expires=")).expect("X-Amz-Expires");
    assert!(lifetime.parse::<u64>().expect("seconds") <= 2, "{url}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(put(&url, b"late").await.0, 403);
    assert_eq!(sign(&svc, &user, &upload, "2").await.status, 410);
    assert_eq!(list(&svc, &user, &upload).await.status, 410);
    assert_eq!(complete(&svc, &user, &upload, &[(1, &etag)]).await.status, 410);
    // TTL's removal: the cleanup function aborts what S3 holds.
    let item = svc.raw_item(&upload.id).await.expect("item");
    svc.remove_record(&upload.id).await;
    let removal = integration_tests::batch(vec![removal_of(&item, 1, true)]);
    assert_eq!(cleanup::cleanup(&svc.app, &removal.records[0]).await.expect("cleanup"), cleanup::Outcome::Discarded);
    assert_eq!(svc.multipart_uploads(&upload.key).await, 0);
}

#[tokio::test]
async fn uploads_count_against_their_owners_limits_and_are_given_back_once() {
    let svc = Service::new(&[
        ("CHUNKED_UPLOAD_MAX_UPLOADS_PER_OWNER", "1"),
        ("CHUNKED_UPLOAD_MAX_BYTES_PER_OWNER", &(100 * MIB).to_string()),
    ])
    .await;
    // An owner of its own, whose counters start at nothing.
    let user = User::named(&format!("uppy-limits-{}", shared::protocol::UploadId::new()));
    let first = started(&svc, &user, "one.bin").await;
    assert_eq!(create(&svc, &user, "two.bin").await.status, 429);
    let params = get(&svc, &user, "/s3/params?filename=small.txt").await;
    assert_eq!(params.status, 429, "{:?}", params.body);
    let etag = send_part(&svc, &user, &first, 1, &data(2 * MIB, 730)).await;
    complete(&svc, &user, &first, &[(1, &etag)]).await.assert_status(200);
    // The plugin announced no size: the upload counted no bytes, and the completion gave back none.
    let record = svc.record(&first.id).await.expect("record");
    assert_eq!(svc.app.table.in_progress(&record.owner).await.expect("counters"), (0, 0));
    // A TTL removal of the completed record gives nothing back twice.
    let item = svc.raw_item(&first.id).await.expect("item");
    let removal = integration_tests::batch(vec![removal_of(&item, 2, true)]);
    cleanup::cleanup(&svc.app, &removal.records[0]).await.expect("cleanup");
    assert_eq!(svc.app.table.in_progress(&record.owner).await.expect("counters"), (0, 0));
    let second = started(&svc, &user, "two.bin").await;
    abort(&svc, &user, &second).await.assert_status(200);
    started(&svc, &user, "three.bin").await;
}

/// A small file's form: `GET /s3/params?filename=&type=`, as the plugin asks.
async fn params(svc: &Service, user: &User, filename: &str, content_type: &str) -> Reply {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("filename", filename)
        .append_pair("type", content_type)
        .append_pair("metadata[name]", filename)
        .finish();
    get(svc, user, &format!("/s3/params?{query}")).await
}

/// POSTs `form`'s fields with `edits` (a field set or replaced), then `file`, to its URL, as the plugin does; S3's
/// status and body.
async fn post(form: &Value, edits: &[(&str, &str)], file: &[u8]) -> (u16, String) {
    let mut fields: Vec<(String, String)> = form["fields"]
        .as_object()
        .expect("fields")
        .iter()
        .map(|(name, value)| (name.clone(), value.as_str().expect("a text field").to_string()))
        .collect();
    for (name, value) in edits {
        fields.retain(|(n, _)| n != name);
        fields.push((name.to_string(), value.to_string()));
    }
    let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let (content_type, body) = multipart_body(&fields, Some(("file", "small.txt", file)));
    let request = http::Request::builder()
        .method("POST")
        .uri(form["url"].as_str().expect("url"))
        .header("content-type", content_type)
        .body(body);
    let (status, _, body) = to_s3(request.expect("request")).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// S3's report of an object created, as EventBridge hands it to the complete function.
fn report(key: &str) -> ObjectCreated {
    ObjectCreated {
        detail_type: "Object Created".into(),
        source: "aws.s3".into(),
        detail: ObjectCreatedDetail { object: CreatedObject { key: key.into() } },
    }
}

#[tokio::test]
async fn a_small_files_post_is_held_to_its_policy_and_s3s_report_completes_its_upload() {
    // A completion hook, which the report's completion calls as any other.
    let hook = concat!(
        "cmd:python3 -c 'import json, sys; e = json.load(sys.stdin); r = e[\"result\"]; ",
        "print(json.dumps({\"attached\": e[\"upload_id\"], \"by\": e[\"caller\"][\"sub\"], \"size\": r[\"size\"]}))'"
    );
    let svc = Service::new(&[("CHUNKED_UPLOAD_MAX_BYTES", "1000"), ("CHUNKED_UPLOAD_COMPLETION_HOOK", hook)]).await;
    let user = User::named("uppy-post");
    let form = params(&svc, &user, "notes small.txt", "text/plain").await;
    form.assert_status(200);
    let form = form.body;
    assert_eq!((&form["method"], &form["expires"]), (&json!("POST"), &json!(900)));
    assert!(form["url"].as_str().expect("url").ends_with('/'), "{form}");
    let (id, key) =
        (form["upload_id"].as_str().expect("id").to_string(), form["key"].as_str().expect("key").to_string());
    assert_eq!(form["fields"]["key"], json!(key));
    assert_eq!(form["fields"]["Content-Type"], "text/plain");
    let file = b"a small file, sent in one POST";

    // S3 holds the form to its policy: another key, type or upload, or a file over the limit, is refused.
    for edit in [("key", "uploads/elsewhere.txt"), ("Content-Type", "text/html"), ("x-amz-meta-upload-id", "0")] {
        let (status, body) = post(&form, &[edit], file).await;
        assert_eq!(status, 403, "{edit:?}: {body}");
    }
    let (status, body) = post(&form, &[], &[b'x'; 1001]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("EntityTooLarge"), "{body}");
    let (status, body) = post(&form, &[], file).await;
    assert_eq!(status, 201, "{body}");

    // Until S3 reports the object, the upload is in progress.
    assert_eq!(svc.status(&user, &id).await.body["status"], "uploading");
    assert_eq!(
        companion::object_created(&svc.complete, report("uploads/not-ours.txt")).await.unwrap(),
        Posted::Ignored
    );
    // EventBridge may give the key URL-encoded, as S3's other notifications do.
    let encoded: String = form_urlencoded::byte_serialize(key.as_bytes()).collect::<String>().replace("%2F", "/");
    assert_ne!(encoded, key);
    assert_eq!(companion::object_created(&svc.complete, report(&encoded)).await.unwrap(), Posted::Completed);
    assert_eq!(companion::object_created(&svc.complete, report(&key)).await.unwrap(), Posted::AlreadyComplete);
    let status = svc.status(&user, &id).await;
    assert_eq!(status.body["status"], "complete", "{:?}", status.body);
    assert_eq!((&status.body["size"], &status.body["crc64nvme"]), (&json!(file.len()), &json!(crc64(file))));
    assert_eq!(status.body["content_type"], "text/plain");
    assert_eq!(status.body["data"], json!({"attached": id, "by": "uppy-post", "size": file.len()}));
    assert!(svc.object(&key).await == file);
    let stored = svc.s3.head_object().bucket(&svc.app.config.bucket).key(&key).send().await.expect("HeadObject");
    assert_eq!(
        stored.content_disposition(),
        Some("attachment; filename=\"notes small.txt\"; filename*=UTF-8''notes%20small.txt")
    );

    // An active type is stored inert, as in every mode.
    let html = params(&svc, &user, "page.html", "text/html").await.body;
    assert_eq!(html["fields"]["Content-Type"], "application/octet-stream");
    assert_eq!(get(&svc, &user, "/s3/params?type=text/plain").await.status, 400);
}

#[tokio::test]
async fn the_completion_event_carries_the_size_and_s3s_crc() {
    let svc = Service::default().await;
    let user = User::named("uppy-event");
    let file = data(300 * KIB, 740);
    let upload = started(&svc, &user, "e.bin").await;
    let etag = send_part(&svc, &user, &upload, 1, &file).await;
    let before = svc.raw_item(&upload.id).await.expect("item");
    let done = complete(&svc, &user, &upload, &[(1, &etag)]).await;
    assert_stored(&svc, &done, &file).await;
    let after = svc.raw_item(&upload.id).await.expect("item");
    let records = integration_tests::batch(vec![stream_record(1, &before, Some(&after))]);
    let event = UploadEvent::of(&records.records[0]).expect("an event");
    assert_eq!(event.kind, Kind::Completed);
    let detail = event.detail(&svc.app.config.bucket);
    assert_eq!(
        (&detail["mode"], &detail["size"], &detail["crc64nvme"], &detail["etag"]),
        (&json!("uppy-s3"), &json!(file.len()), &json!(crc64(&file)), &done.body["etag"])
    );
    assert!(detail.get("md5").is_none(), "{detail}");
}

#[tokio::test]
async fn the_complete_function_binary_takes_s3s_reports_and_http_requests() {
    let svc = Service::default().await;
    let user = User::named("uppy-binary");
    let binaries = tokio::task::spawn_blocking(|| build_functions(&["complete"], false))
        .await
        .expect("build")
        .expect("build the complete function");
    let function = FunctionProcess::spawn(&binaries["complete"], svc.env(&[])).await.expect("spawn");
    let form = params(&svc, &user, "binary.txt", "text/plain").await.body;
    let key = form["key"].as_str().expect("key").to_string();
    assert_eq!(post(&form, &[], b"posted").await.0, 201);
    // As EventBridge delivers S3's report (the rule passes on `Object Created` of POSTs to the bucket).
    let event = json!({
        "version": "0", "id": "6f1c0c1e-2d0b-4c57-9a39-5c4f4a9e2b7d", "detail-type": "Object Created",
        "source": "aws.s3", "account": "123456789012", "time": "2026-12-03T13:44:19Z", "region": "us-east-1",
        "resources": [format!("arn:aws:s3:::{}", svc.app.config.bucket)],
        "detail": {"version": "0", "bucket": {"name": svc.app.config.bucket},
                   "object": {"key": key, "size": 6, "etag": "x", "sequencer": "1"},
                   "request-id": "R", "requester": "123456789012", "reason": "POST Object"}
    });
    assert_eq!(function.invoke(event.to_string()).await.expect("an answer"), json!("Completed"));
    let id = form["upload_id"].as_str().expect("id");
    assert_eq!(svc.status(&user, id).await.body["crc64nvme"], json!(crc64(b"posted")));
    // And its HTTP route: an Uppy completion.
    let upload = started(&svc, &user, "b.bin").await;
    let etag = send_part(&svc, &user, &upload, 1, b"multipart").await;
    let body = json!({"parts": [{"PartNumber": 1, "ETag": etag}]}).to_string();
    let uri = format!("/s3/multipart/{}/complete?{}", upload.id, upload.key_query());
    let request = http::Request::builder().method("POST").uri(uri).header("content-type", "application/json");
    let event = api_gateway_event("uppy-binary", &request.body(Bytes::from(body)).expect("request"));
    let reply = Reply::from_lambda(&function.invoke(event).await.expect("an answer"));
    assert_eq!(reply.assert_status(200).body["crc64nvme"], json!(crc64(b"multipart")));
    // Nobody hashed the file in order: there is no MD5 to say.
    assert_eq!(reply.body["md5"], Value::Null);
}
