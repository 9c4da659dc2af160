//! The events function against the emulators: the real upload operations change the records, their stream records
//! (made from the items read before and after, as DynamoDB would send them) go to the consumer, and what it
//! publishes reaches moto's EventBridge, whose rule routes it to an SQS queue the test reads. Each test has a bus,
//! rule and queue of its own, and drains the queue at the end: exactly one event per completion, abort or expiry.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::lambda_runtime::{FunctionProcess, build_functions};
use integration_tests::proxy::Fault;
use integration_tests::{Encoding, Item, KIB, Service, User, batch, data, md5_hex, removal_of, stream_record};
use serde_json::{Value, json};
use shared::cleanup;
use shared::clock::{iso8601, now_ms};
use shared::events::{self, Kind, Outcome};

/// A bus of the test's own, with a rule sending every `chunked-upload` event to a queue.
struct Bus {
    name: String,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl Bus {
    async fn new() -> Self {
        let name = format!("uploads-{}", shared::protocol::UploadId::new());
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let (eventbridge, sqs) = (aws_sdk_eventbridge::Client::new(&sdk), aws_sdk_sqs::Client::new(&sdk));
        eventbridge.create_event_bus().name(&name).send().await.expect("CreateEventBus");
        let queue_url = sqs.create_queue().queue_name(&name).send().await.expect("CreateQueue").queue_url.expect("url");
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("GetQueueAttributes");
        let queue_arn = attributes.attributes().and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn));
        eventbridge
            .put_rule()
            .name("uploads-to-queue")
            .event_bus_name(&name)
            .event_pattern(json!({"source": [events::SOURCE]}).to_string())
            .send()
            .await
            .expect("PutRule");
        let target = aws_sdk_eventbridge::types::Target::builder()
            .id("queue")
            .arn(queue_arn.expect("queue ARN"))
            .build()
            .expect("target");
        eventbridge
            .put_targets()
            .rule("uploads-to-queue")
            .event_bus_name(&name)
            .targets(target)
            .send()
            .await
            .expect("PutTargets");
        Bus { name, sqs, queue_url }
    }

    /// The service, publishing to this bus.
    async fn service(&self) -> Service {
        Service::new(&[("CHUNKED_UPLOAD_EVENT_BUS", &self.name)]).await
    }

    /// Every event that reached the queue: received until a long poll finds no more.
    async fn drain(&self) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("ReceiveMessage");
            if out.messages().is_empty() {
                return events;
            }
            for message in out.messages() {
                events.push(serde_json::from_str(message.body().expect("a body")).expect("an event"));
                let receipt = message.receipt_handle().expect("a receipt handle");
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .expect("delete");
            }
        }
    }
}

/// Stream sequence numbers, unique across the tests of this binary.
fn sequence() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1_000);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn modification(old: &Item, new: &Item) -> Value {
    stream_record(sequence(), old, Some(new))
}

/// Delivers one batch to the consumer, as Lambda does; asserts that no record failed.
async fn deliver(svc: &Service, records: &[Value]) {
    let response = events::handle_stream(&svc.app, batch(records.to_vec())).await;
    assert!(response.batch_item_failures.is_empty(), "{:?}", response.batch_item_failures);
}

async fn item(svc: &Service, upload_id: &str) -> Item {
    svc.raw_item(upload_id).await.unwrap_or_else(|| panic!("no item for {upload_id}"))
}

/// The one event of `kind` that reached the queue; fails on any other.
fn only(events: &[Value], kind: Kind, upload_id: &str) -> Value {
    assert_eq!(events.len(), 1, "exactly one event: {events:#?}");
    let event = &events[0];
    assert_eq!(event["source"], events::SOURCE);
    assert_eq!(event["detail-type"], kind.detail_type());
    assert_eq!(event["detail"]["upload_id"], upload_id);
    assert_eq!(event["detail"]["event_id"], format!("{}/{upload_id}", kind.as_str()));
    event["detail"].clone()
}

#[tokio::test]
async fn a_completion_publishes_one_event_with_the_result_even_when_its_batch_comes_twice() {
    let bus = Bus::new().await;
    let svc = bus.service().await;
    let user = User::named("alice");
    let file = data(50 * KIB, 300);
    let id = svc.upload_all(&user, &file, 20 * KIB, Encoding::Raw).await;
    let before = item(&svc, &id).await;
    let done = svc.complete(&user, &id, &md5_hex(&file)).await;
    done.assert_status(200);
    let after = item(&svc, &id).await;
    let records = [modification(&before, &after)];
    deliver(&svc, &records).await;
    // Lambda may deliver a batch again (a retry of a batch with a failure, a replayed shard): the marker stops it.
    deliver(&svc, &records).await;
    let repeat = batch(records.to_vec());
    assert_eq!(
        events::publish(&svc.app, &repeat.records[0]).await.unwrap(),
        Outcome::AlreadyPublished(Kind::Completed)
    );

    let detail = only(&bus.drain().await, Kind::Completed, &id);
    let record = svc.record(&id).await.expect("record");
    let completed_at = detail["completed_at"].as_str().expect("completed_at");
    let expected = json!({
        "event_id": format!("completed/{id}"),
        "upload_id": id,
        "owner": "alice",
        "bucket": svc.app.config.bucket,
        "key": done.body["key"],
        "filename": "data.bin",
        "content_type": done.body["content_type"],
        "size": file.len(),
        "mode": "sequential",
        "created_at": iso8601(record.created_at_ms),
        "completed_at": completed_at,
        "md5": md5_hex(&file),
        "crc64nvme": done.body["crc64nvme"],
        "etag": done.body["etag"],
    });
    assert_eq!(detail, expected);
    // Between the completing request's start and now (ISO 8601 strings of one format sort as their times).
    let claimed = iso8601(record.completing_since_ms.expect("the completion's claim"));
    assert!(claimed.as_str() <= completed_at && completed_at <= iso8601(now_ms()).as_str(), "{detail}");
    assert!(svc.object(done.body["key"].as_str().expect("key")).await == file);

    // The marker is no upload: when TTL removes it, neither the cleanup nor the events function acts on it.
    let marker = item(&svc, &format!("event/completed/{id}")).await;
    assert!(marker["expires_at"].as_n().expect("a TTL").parse::<u64>().unwrap() > now_ms() / 1000 + 86_400);
    let gone = batch(vec![removal_of(&marker, sequence(), true)]);
    assert_eq!(cleanup::cleanup(&svc.app, &gone.records[0]).await.unwrap(), cleanup::Outcome::Ignored);
    assert_eq!(events::publish(&svc.app, &gone.records[0]).await.unwrap(), Outcome::Ignored);
}

#[tokio::test]
async fn a_completion_that_died_after_s3_completed_publishes_once_on_its_retry() {
    let bus = Bus::new().await;
    let (svc, s3, _dynamodb) = Service::through_proxies(&[("CHUNKED_UPLOAD_EVENT_BUS", &bus.name)]).await;
    let user = User::named("alice");
    let file = data(50 * KIB, 301);
    let id = svc.upload_all(&user, &file, 20 * KIB, Encoding::Raw).await;
    let md5 = md5_hex(&file);
    let uploading = item(&svc, &id).await;

    // S3 completes the object, and the function dies before its answer arrives: the record stays `completing`.
    s3.arm("CompleteMultipartUpload", Fault::HoldAfter);
    let held = tokio::select! {
        reply = svc.complete(&user, &id, &md5) => panic!("the completion was to die first: {reply:?}"),
        held = s3.held() => held,
    };
    drop(held);
    let completing = item(&svc, &id).await;
    assert_eq!(completing["status"].as_s().unwrap(), "completing");
    // Time passes: the dead function's lease runs out.
    let stale = (now_ms() - 10 * 60 * 1000).to_string();
    svc.dynamodb
        .update_item()
        .table_name(&svc.app.config.table)
        .key("upload_id", AttributeValue::S(id.clone()))
        .update_expression("SET completing_since_ms = :stale")
        .expression_attribute_values(":stale", AttributeValue::N(stale))
        .send()
        .await
        .expect("UpdateItem");
    let aged = item(&svc, &id).await;
    let done = svc.complete(&user, &id, &md5).await;
    done.assert_status(200);
    let complete = item(&svc, &id).await;
    // A repeated complete changes nothing in the record: no stream record, no event.
    let again = svc.complete(&user, &id, &md5).await;
    again.assert_status(400);
    assert_eq!(again.detail(), "Upload has already been completed");
    assert_eq!(item(&svc, &id).await, complete, "a repeated complete writes nothing");

    deliver(
        &svc,
        &[
            modification(&uploading, &completing),
            modification(&completing, &aged),
            modification(&aged, &complete),
            // A later write to the completed record (a completion hook's answer, say) is no second completion.
            modification(&complete, &complete),
        ],
    )
    .await;
    // Not even looked up as a repeat: it is no change to complete.
    let rewrite = batch(vec![modification(&complete, &complete)]);
    assert_eq!(events::publish(&svc.app, &rewrite.records[0]).await.unwrap(), Outcome::Ignored);
    let detail = only(&bus.drain().await, Kind::Completed, &id);
    assert_eq!(detail["md5"], md5);
    assert_eq!(detail["etag"], done.body["etag"]);
    assert!(svc.object(done.body["key"].as_str().expect("key")).await == file);
}

#[tokio::test]
async fn an_expired_upload_publishes_one_event_and_other_removals_none() {
    let bus = Bus::new().await;
    let svc = bus.service().await;
    let user = User::named("bob");
    let file = data(50 * KIB, 302);
    let id = svc.start_upload(&user, &file, 20 * KIB).await;
    let record = svc.record(&id).await.expect("record");
    // The service's own DeleteItem (of an upload nothing was accepted for) is no expiry.
    deliver(&svc, &[svc.removal(&id, sequence(), false).await]).await;
    let ttl = svc.removal(&id, sequence(), true).await;
    svc.remove_record(&id).await;
    // Delivered twice: one event.
    let ttl = [ttl];
    deliver(&svc, &ttl).await;
    deliver(&svc, &ttl).await;

    let detail = only(&bus.drain().await, Kind::Expired, &id);
    assert_eq!(detail["owner"], "bob");
    assert_eq!(detail["size"], file.len());
    assert_eq!(detail["expired_at"], iso8601(record.expires_at_ms));
    assert!(detail.get("etag").is_none() && detail.get("completed_at").is_none(), "{detail}");
}

#[tokio::test]
async fn an_abort_publishes_one_event_and_its_removal_nothing_more() {
    let bus = Bus::new().await;
    let (svc, s3, _dynamodb) = Service::through_proxies(&[("CHUNKED_UPLOAD_EVENT_BUS", &bus.name)]).await;
    let user = User::named("carol");
    let file = data(50 * KIB, 303);
    let id = svc.start_upload(&user, &file, 20 * KIB).await;
    let uploading = item(&svc, &id).await;
    // The record as the abort marked it, read while its bytes are being removed (it is deleted afterwards).
    s3.arm("AbortMultipartUpload", Fault::HoldAfter);
    let (reply, aborted) = tokio::join!(svc.abort(&user, &id), async {
        let held = s3.held().await;
        let aborted = item(&svc, &id).await;
        held.release();
        aborted
    });
    reply.assert_status(200);
    assert_eq!(aborted["status"].as_s().unwrap(), "aborted");
    assert!(svc.raw_item(&id).await.is_none(), "the abort deleted the record");

    // The abort's DeleteItem, and a TTL removal of an aborted record (an abort that died before deleting it).
    let records = [
        modification(&uploading, &aborted),
        removal_of(&aborted, sequence(), false),
        removal_of(&aborted, sequence(), true),
    ];
    deliver(&svc, &records).await;
    deliver(&svc, &records[..1]).await;
    let detail = only(&bus.drain().await, Kind::Aborted, &id);
    assert_eq!(detail["owner"], "carol");
    assert!(detail["aborted_at"].as_str() >= detail["created_at"].as_str(), "{detail}");
    assert!(detail.get("md5").is_none() && detail.get("etag").is_none(), "{detail}");
}

#[tokio::test]
async fn a_failed_publication_is_reported_marks_nothing_and_is_published_on_the_retry() {
    let bus = Bus::new().await;
    let svc = bus.service().await;
    let user = User::named("dave");
    let file = data(50 * KIB, 304);
    let id = svc.upload_all(&user, &file, 20 * KIB, Encoding::Raw).await;
    let before = item(&svc, &id).await;
    svc.complete(&user, &id, &md5_hex(&file)).await.assert_status(200);
    let record = modification(&before, &item(&svc, &id).await);

    // A bus that does not exist: EventBridge refuses, the record is reported, and no marker says it was published.
    let broken = Service::new(&[("CHUNKED_UPLOAD_EVENT_BUS", "no-such-bus-for-events")]).await;
    let response = events::handle_stream(&broken.app, batch(vec![record.clone()])).await;
    let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    assert_eq!(failed, vec![record["dynamodb"]["SequenceNumber"].as_str().map(str::to_string)]);
    assert!(svc.raw_item(&format!("event/completed/{id}")).await.is_none(), "nothing marked");

    // Lambda's retry, once the bus is there.
    deliver(&svc, &[record]).await;
    only(&bus.drain().await, Kind::Completed, &id);
}

#[tokio::test]
async fn the_function_binary_answers_lambda_with_its_failures() {
    let bus = Bus::new().await;
    let svc = bus.service().await;
    let user = User::named("erin");
    let file = data(50 * KIB, 305);
    let id = svc.start_upload(&user, &file, 20 * KIB).await;
    let ttl = svc.removal(&id, sequence(), true).await;
    let event = json!({"Records": [ttl]}).to_string();
    let binaries = tokio::task::spawn_blocking(|| build_functions(&["events"], false))
        .await
        .expect("build")
        .expect("build the events function");

    // Its bus missing: the record comes back as the batch item Lambda retries from.
    let env = svc.env(&[("CHUNKED_UPLOAD_EVENT_BUS", "no-such-bus-for-events")]);
    let broken = FunctionProcess::spawn(&binaries["events"], env).await.expect("spawn the events function");
    let response = broken.invoke(event.clone()).await.expect("an answer");
    let sequence_number = &ttl["dynamodb"]["SequenceNumber"];
    assert_eq!(response, json!({"batchItemFailures": [{"itemIdentifier": sequence_number}]}));

    let function = FunctionProcess::spawn(&binaries["events"], svc.env(&[("CHUNKED_UPLOAD_EVENT_BUS", &bus.name)]))
        .await
        .expect("spawn the events function");
    assert_eq!(function.invoke(event.clone()).await.expect("an answer"), json!({"batchItemFailures": []}));
    assert_eq!(function.invoke(event).await.expect("an answer"), json!({"batchItemFailures": []}));
    only(&bus.drain().await, Kind::Expired, &id);
}
