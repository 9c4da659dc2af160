"""Create (idempotently) the bucket and table the service needs, in the emulators.

The bucket gets the CORS rule of emulators/bucket-cors.json (template.yaml's rule for browser PUTs of presigned
parts and POSTs of presigned forms, with the local server's origins on any port), replaced whenever it differs, so running this again applies
an edited rule to a running LocalStack.

Reads AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_DYNAMODB, CHUNKED_UPLOAD_BUCKET,
CHUNKED_UPLOAD_TABLE and AWS_REGION from the environment. Progress goes to
stderr. Run it with the emulators' venv python (it needs boto3).
"""

import json
import os
import sys
from pathlib import Path
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

TTL_ATTRIBUTE = "expires_at"
STREAM_SPEC = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
# The listing's index (GET /upload): an owner's uploads, newest first. Keys only: the listing reads the records
# themselves, so a chunk's commit (which changes no key) writes nothing to the index. Counters and tombstones
# have neither attribute, so they are not in it.
OWNER_INDEX = {
    "IndexName": "by_owner",
    "KeySchema": [
        {"AttributeName": "owner", "KeyType": "HASH"},
        {"AttributeName": "created_at_ms", "KeyType": "RANGE"},
    ],
    "Projection": {"ProjectionType": "KEYS_ONLY"},
}
ATTRIBUTES = [
    {"AttributeName": "upload_id", "AttributeType": "S"},
    {"AttributeName": "owner", "AttributeType": "S"},
    {"AttributeName": "created_at_ms", "AttributeType": "N"},
]
# Also read by the Docker init hook (localstack-init/ready.d/create-resources.sh).
BUCKET_CORS = Path(__file__).resolve().parent / "bucket-cors.json"


def log(msg):
    print(f"create_resources: {msg}", file=sys.stderr, flush=True)


def error_code(err):
    return err.response.get("Error", {}).get("Code", "")


def client(service, endpoint, region, **config):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 5, "mode": "standard"}, **config),
    )


def ensure_bucket(s3, bucket, region):
    try:
        s3.head_bucket(Bucket=bucket)
        log(f"bucket {bucket!r} already exists")
        return
    except ClientError as err:
        if error_code(err) not in ("404", "NoSuchBucket", "NotFound"):
            raise
    kwargs = {"Bucket": bucket}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**kwargs)
        log(f"bucket {bucket!r} created")
    except ClientError as err:
        if error_code(err) != "BucketAlreadyOwnedByYou":
            raise
        log(f"bucket {bucket!r} already exists")


def ensure_bucket_cors(s3, bucket):
    wanted = json.loads(BUCKET_CORS.read_text())
    try:
        current = {"CORSRules": s3.get_bucket_cors(Bucket=bucket)["CORSRules"]}
    except ClientError as err:
        if error_code(err) != "NoSuchCORSConfiguration":
            raise
        current = None
    if current == wanted:
        log(f"bucket {bucket!r}: CORS rule already set")
        return
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=wanted)
    log(f"bucket {bucket!r}: CORS rule {'replaced' if current else 'set'} ({BUCKET_CORS.name})")


def create_table(ddb, table, with_stream):
    kwargs = {
        "TableName": table,
        "AttributeDefinitions": ATTRIBUTES,
        "KeySchema": [{"AttributeName": "upload_id", "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [OWNER_INDEX],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if with_stream:
        kwargs["StreamSpecification"] = STREAM_SPEC
    ddb.create_table(**kwargs)


def ensure_table(ddb, table):
    try:
        desc = ddb.describe_table(TableName=table)["Table"]
        log(f"table {table!r} already exists")
    except ClientError as err:
        if error_code(err) != "ResourceNotFoundException":
            raise
        try:
            create_table(ddb, table, with_stream=True)
            log(f"table {table!r} created (stream: NEW_AND_OLD_IMAGES)")
        except ClientError as err:
            if error_code(err) == "ResourceInUseException":
                log(f"table {table!r} already exists")
            elif error_code(err) in ("ValidationException", "UnknownOperationException"):
                log(f"streams not accepted ({err}); creating {table!r} without a stream")
                create_table(ddb, table, with_stream=False)
                log(f"table {table!r} created (no stream)")
            else:
                raise
        desc = wait_active(ddb, table)

    if desc.get("TableStatus") != "ACTIVE":
        desc = wait_active(ddb, table)

    stream = desc.get("StreamSpecification", {})
    if stream.get("StreamEnabled") and stream.get("StreamViewType") != STREAM_SPEC["StreamViewType"]:
        # A table of an emulator started before the events function (OLD_IMAGE). moto cannot enable a stream on a
        # table that had one, and nothing local reads the stream (the tests hand records to the consumers), so it
        # is only reported.
        log(f"table {table!r}: stream is {stream.get('StreamViewType')}, not {STREAM_SPEC['StreamViewType']}; "
            "emulators/down and emulators/up make it anew")
    if not stream.get("StreamEnabled"):
        try:
            ddb.update_table(TableName=table, StreamSpecification=STREAM_SPEC)
            log(f"table {table!r}: stream (NEW_AND_OLD_IMAGES) enabled")
            wait_active(ddb, table)
        except ClientError as err:
            log(f"table {table!r}: could not enable a stream ({err}); continuing")

    ensure_owner_index(ddb, table, desc)

    ttl = ddb.describe_time_to_live(TableName=table).get("TimeToLiveDescription", {})
    if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") and ttl.get("AttributeName") == TTL_ATTRIBUTE:
        log(f"table {table!r}: TTL on {TTL_ATTRIBUTE!r} already enabled")
    else:
        ddb.update_time_to_live(
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        )
        log(f"table {table!r}: TTL enabled on {TTL_ATTRIBUTE!r}")


def ensure_owner_index(ddb, table, desc):
    """Adds the listing's index to a table made before it existed, and waits until it can be queried."""
    name = OWNER_INDEX["IndexName"]
    if any(i.get("IndexName") == name for i in desc.get("GlobalSecondaryIndexes", [])):
        log(f"table {table!r}: index {name!r} already exists")
    else:
        ddb.update_table(
            TableName=table,
            AttributeDefinitions=ATTRIBUTES,
            GlobalSecondaryIndexUpdates=[{"Create": OWNER_INDEX}],
        )
        log(f"table {table!r}: index {name!r} created")
    wait_active(ddb, table)


def wait_active(ddb, table, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        desc = ddb.describe_table(TableName=table)["Table"]
        indexes = desc.get("GlobalSecondaryIndexes", [])
        if desc.get("TableStatus") == "ACTIVE" and all(i.get("IndexStatus", "ACTIVE") == "ACTIVE" for i in indexes):
            return desc
        if time.monotonic() > deadline:
            raise TimeoutError(f"table {table!r} still {desc.get('TableStatus')} after {timeout}s")
        time.sleep(0.2)


def main():
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    s3_endpoint = os.environ["AWS_ENDPOINT_URL_S3"]
    ddb_endpoint = os.environ["AWS_ENDPOINT_URL_DYNAMODB"]
    bucket = os.environ.get("CHUNKED_UPLOAD_BUCKET") or "chunked-uploads"
    table = os.environ.get("CHUNKED_UPLOAD_TABLE") or "chunked-uploads"

    s3 = client("s3", s3_endpoint, region, s3={"addressing_style": "path"})
    ddb = client("dynamodb", ddb_endpoint, region)
    ensure_bucket(s3, bucket, region)
    ensure_bucket_cors(s3, bucket)
    ensure_table(ddb, table)


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # one clear line instead of a boto traceback
        log(f"FAILED: {type(exc).__name__}: {exc}")
        sys.exit(1)
