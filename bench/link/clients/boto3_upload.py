"""boto3's upload_file at the AWS CLI's defaults (8 MiB parts above 8 MiB, 10 requests in flight), as a user of
`aws s3 cp` gets it, straight to S3. Runs in the client's network namespace; botocore sends through HTTP_PROXY.

Usage: python boto3_upload.py --file PATH --bucket NAME --key KEY --endpoint URL
Prints one JSON line: {"bucket", "key", "started_monotonic", "seconds"}: when the upload began (CLOCK_MONOTONIC, after
the imports and the client's set-up) and the seconds it took, as the client measured them.
"""

import argparse
import json
import sys
import time

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

MIB = 1024 * 1024
# `aws s3 cp`: multipart_threshold and multipart_chunksize 8 MB, max_concurrent_requests 10.
AWS_CLI_DEFAULTS = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB, max_concurrency=10)


def main() -> int:
    parser = argparse.ArgumentParser()
    for name in ("--file", "--bucket", "--key", "--endpoint"):
        parser.add_argument(name, required=True)
    args = parser.parse_args()
    s3 = boto3.client(
        "s3",
        endpoint_url=args.endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        # Path-style, as every client of the emulator (botocore's pool: 10 connections, the transfer's concurrency).
        config=Config(s3={"addressing_style": "path"}),
    )
    started = time.monotonic()
    s3.upload_file(args.file, args.bucket, args.key, Config=AWS_CLI_DEFAULTS)
    print(json.dumps({"bucket": args.bucket, "key": args.key, "started_monotonic": started,
                      "seconds": time.monotonic() - started}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
