"""Print the size, MD5 and SHA-256 of an S3 object as JSON: s3_object_digest.py BUCKET KEY.

Reads the endpoint (AWS_ENDPOINT_URL_S3), credentials and region from the environment, as the service does.
"""

import hashlib
import json
import sys

import boto3
from botocore.config import Config


def main(bucket, key):
    s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}))
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    md5, sha256, size = hashlib.md5(), hashlib.sha256(), 0
    for chunk in body.iter_chunks(1 << 20):
        md5.update(chunk)
        sha256.update(chunk)
        size += len(chunk)
    json.dump({"size": size, "md5": md5.hexdigest(), "sha256": sha256.hexdigest()}, sys.stdout)


if __name__ == "__main__":
    main(*sys.argv[1:])
