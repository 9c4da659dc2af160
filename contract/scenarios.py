"""Flows schemathesis does not follow to the facts the docs state (docs/protocol.md, docs/modes.md), each answer
checked against openapi.yaml like the probes' (status documented, JSON, schema, required headers), and the fact
itself asserted:

- the status's shape by mode: a sequential upload in progress has `offset`, a parallel or direct one has the pieces
  held and no `offset`, a completed one answers its result;
- each mode's result: `md5` the checked MD5 (sequential) or null (parallel, direct, also in the listing),
  `crc64nvme` the file's in every mode;
- a parallel chunk without `X-Checksum-CRC64NVME` is a 400; an `md5` for a parallel or direct upload is refused, with
  or without a `crc64nvme`;
- the part URLs' answer: `upload_id`, `expires` the URLs' (not the upload's), the signed `content-length` and
  checksum headers; S3 answers other bytes of the part's length with 400 BadDigest;
- abort's answer, and the 404 (not 410) for every request after it;
- a complete while another request holds the completion lease: 202 with Retry-After, then the result;
- the grid is planned for S3's 10,000 parts: a file of 10,000 smallest parts gets exactly those.

Usage: scenarios.py SCHEMA BASE_URL TOKEN, with the emulators' variables (emulators/env.sh) set: the last scenario
makes a record look as a live completer leaves it, through DynamoDB. Exit status 1 if any scenario fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import traceback
from datetime import datetime

import requests
import schemathesis

from hooks import crc64nvme
from probes import off_contract

KIB = 1024
PRESIGN_EXPIRY_SECS = 900  # contract/run's server keeps the default of CHUNKED_UPLOAD_PRESIGN_EXPIRY_SECS


class Api:
    """Requests to the service, each answer checked against the operation openapi.yaml documents for it."""

    def __init__(self, schema, base_url: str, token: str) -> None:
        self.schema, self.base_url = schema, base_url
        self.auth = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, template: str, path: str, **kwargs) -> requests.Response:
        headers = {**self.auth, **kwargs.pop("headers", {})}
        response = requests.request(method, self.base_url + path, headers=headers, timeout=60, **kwargs)
        problems = off_contract(self.schema[template][method], response)
        assert not problems, f"{method} {path} -> {response.status_code} {response.text[:300]!r}: {problems}"
        return response

    def chunk(self, upload_id: str | None, start: int, data: bytes, total: int, crc: bool = True):
        headers = {"Content-Type": "application/octet-stream", "Content-Range": f"bytes {start}-{start + len(data) - 1}/{total}"}
        if crc:
            headers["X-Checksum-CRC64NVME"] = crc64nvme(data)
        query = f"?upload_id={upload_id}" if upload_id else "?filename=scenario.bin"
        return self.call("POST", "/upload", "/upload" + query, data=data, headers=headers)

    def open(self, body: dict):
        return self.call("POST", "/upload/create", "/upload/create", json=body)

    def complete(self, fields: dict):
        return self.call("POST", "/upload/complete", "/upload/complete", json=fields)

    def status(self, upload_id: str):
        return self.call("GET", "/upload/{upload_id}", f"/upload/{upload_id}")

    def abort(self, upload_id: str):
        return self.call("DELETE", "/upload/{upload_id}", f"/upload/{upload_id}")

    def listing(self, limit: int):
        return self.call("GET", "/upload", f"/upload?limit={limit}")


def expect(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, f"expected {status}, got {response.status_code} {response.text[:300]!r}"
    return response.json()


def file_of(size: int, seed: int) -> bytes:
    return b"".join(hashlib.sha256(f"{seed}.{i}".encode()).digest() for i in range(size // 32 + 1))[:size]


def at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


COMMON = {"upload_id", "status", "mode", "filename", "size"}
RESULT = COMMON | {"bucket", "key", "content_type", "offset", "md5", "etag", "crc64nvme"}


def sequential(api: Api) -> None:
    data = file_of(300 * KIB, 1)
    first = expect(api.chunk(None, 0, data[: 200 * KIB], len(data), crc=False), 200)
    upload_id = first["upload_id"]
    status = expect(api.status(upload_id), 200)
    assert set(status) == COMMON | {"offset", "expires"}, status
    assert (status["mode"], status["offset"]) == ("sequential", 200 * KIB), status
    expect(api.chunk(upload_id, 200 * KIB, data[200 * KIB :], len(data), crc=False), 200)
    result = expect(api.complete({"upload_id": upload_id, "md5": hashlib.md5(data).hexdigest()}), 200)
    assert set(result) == RESULT, result
    assert result["md5"] == hashlib.md5(data).hexdigest() and result["crc64nvme"] == crc64nvme(data), result
    done = expect(api.status(upload_id), 200)
    assert done == result and done["offset"] == len(data), (done, result)


def parallel(api: Api) -> None:
    data = file_of(300 * KIB, 2)
    chunk = 256 * KIB
    upload_id = expect(api.open({"mode": "parallel", "size": len(data), "chunk_size": chunk}), 200)["upload_id"]
    refused = expect(api.chunk(upload_id, chunk, data[chunk:], len(data), crc=False), 400)
    assert refused["detail"] == "This upload is in parallel mode: send each chunk with its X-Checksum-CRC64NVME", refused
    taken = expect(api.chunk(upload_id, chunk, data[chunk:], len(data)), 200)
    assert (taken["chunk"], taken["part"], taken["part_complete"]) == (1, 1, False), taken
    status = expect(api.status(upload_id), 200)
    assert set(status) == COMMON | {"part_size", "chunk_size", "chunks_held", "parts_held", "expires"}, status
    assert "offset" not in status and (status["chunks_held"], status["parts_held"]) == ([[1, 1]], []), status
    assert expect(api.chunk(upload_id, 0, data[:chunk], len(data)), 200)["part_complete"] is True
    lanes_refuse_md5(api, upload_id, data)
    result = expect(api.complete({"upload_id": upload_id, "crc64nvme": crc64nvme(data)}), 200)
    assert set(result) == RESULT and result["mode"] == "parallel", result
    assert result["md5"] is None and result["crc64nvme"] == crc64nvme(data), result
    listed = expect(api.listing(1), 200)["uploads"][0]
    assert (listed["upload_id"], listed["md5"], listed["crc64nvme"]) == (upload_id, None, crc64nvme(data)), listed


def lanes_refuse_md5(api: Api, upload_id: str, data: bytes) -> None:
    """An MD5 for a parallel or direct upload is refused, alone or beside its CRC64NVME, and says why."""
    md5 = hashlib.md5(data).hexdigest()
    for fields in ({"md5": md5}, {"md5": md5, "crc64nvme": crc64nvme(data)}):
        refused = expect(api.complete({"upload_id": upload_id, **fields}), 400)
        assert refused == {
            "detail": "A parallel or direct upload is checked by its crc64nvme; md5 is for sequential uploads"
        }, refused


def direct(api: Api) -> None:
    data = file_of(300 * KIB, 3)
    opened = expect(api.open({"mode": "direct", "size": len(data)}), 200)
    upload_id = opened["upload_id"]
    crc = crc64nvme(data)
    asked = time.time()
    body = {"parts": [{"number": 1, "crc64nvme": crc}]}
    urls = expect(api.call("POST", "/upload/{upload_id}/parts", f"/upload/{upload_id}/parts", json=body), 200)
    assert set(urls) == {"upload_id", "parts", "expires"} and urls["upload_id"] == upload_id, urls
    # The URLs' expiry, not the upload's (a day away).
    assert abs(at(urls["expires"]) - (asked + PRESIGN_EXPIRY_SECS)) < 60, (urls["expires"], asked)
    assert at(urls["expires"]) < at(opened["expires"]) - 3600, (urls["expires"], opened["expires"])
    part = urls["parts"][0]
    assert part["headers"] == {"content-length": str(len(data)), "x-amz-checksum-crc64nvme": crc}, part
    other = bytes(len(data))
    refused = requests.put(part["url"], data=other, headers=part["headers"], timeout=60)
    assert refused.status_code == 400 and "<Code>BadDigest</Code>" in refused.text, (refused.status_code, refused.text)
    stored = requests.put(part["url"], data=data, headers=part["headers"], timeout=60)
    assert stored.status_code == 200, (stored.status_code, stored.text)
    status = expect(api.status(upload_id), 200)
    assert set(status) == COMMON | {"part_size", "parts_held", "expires"}, status
    assert "offset" not in status and status["parts_held"] == [[1, 1]], status
    lanes_refuse_md5(api, upload_id, data)
    result = expect(api.complete({"upload_id": upload_id, "crc64nvme": crc}), 200)
    assert set(result) == RESULT and result["mode"] == "direct", result
    assert result["md5"] is None and result["crc64nvme"] == crc, result


def abort(api: Api) -> None:
    data = file_of(100 * KIB, 4)
    upload_id = expect(api.chunk(None, 0, data[: 64 * KIB], len(data)), 200)["upload_id"]
    assert expect(api.abort(upload_id), 200) == {"upload_id": upload_id, "status": "aborted"}
    not_found = {"detail": "Upload not found"}
    assert expect(api.status(upload_id), 404) == not_found
    assert expect(api.abort(upload_id), 404) == not_found
    assert expect(api.chunk(upload_id, 64 * KIB, data[64 * KIB :], len(data)), 404) == not_found
    assert expect(api.complete({"upload_id": upload_id, "md5": hashlib.md5(data).hexdigest()}), 404) == not_found


def lease_taken(upload_id: str, since_ms: int) -> None:
    """Makes the record look as a completer leaves it that took the completion lease at `since_ms` (DynamoDB's
    UpdateItem, through the emulator)."""
    endpoint = os.environ["AWS_ENDPOINT_URL_DYNAMODB"]
    region = os.environ.get("AWS_REGION", "us-east-1")
    scope = f"{os.environ.get('AWS_ACCESS_KEY_ID', 'test')}/20260101/{region}/dynamodb/aws4_request"
    request = {
        "TableName": os.environ["CHUNKED_UPLOAD_TABLE"],
        "Key": {"upload_id": {"S": upload_id}},
        "UpdateExpression": "SET #s = :completing, completing_since_ms = :since",
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {":completing": {"S": "completing"}, ":since": {"N": str(since_ms)}},
    }
    headers = {
        # The emulator reads the service from the credential scope; it does not check the signature.
        "Authorization": f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature=0",
        "X-Amz-Target": "DynamoDB_20120810.UpdateItem",
        "Content-Type": "application/x-amz-json-1.0",
    }
    response = requests.post(endpoint, data=json.dumps(request), headers=headers, timeout=30)
    assert response.status_code == 200, (response.status_code, response.text)


def still_completing(api: Api) -> None:
    data = file_of(50 * KIB, 5)
    upload_id = expect(api.chunk(None, 0, data, len(data)), 200)["upload_id"]
    fields = {"upload_id": upload_id, "md5": hashlib.md5(data).hexdigest()}
    lease_taken(upload_id, int(time.time() * 1000))
    busy = api.complete(fields)
    body = expect(busy, 202)
    assert body["status"] == "completing" and body["retry_after"] == int(busy.headers["Retry-After"]), (body, busy.headers)
    # Once the lease is older than any request can run, its holder is gone: a complete takes it over.
    lease_taken(upload_id, int(time.time() * 1000) - 10 * 60 * 1000)
    result = expect(api.complete(fields), 200)
    assert result["status"] == "complete" and result["md5"] == fields["md5"], result


def part_plan(api: Api) -> None:
    smallest = 5 * KIB * KIB
    size = 10_000 * smallest
    opened = expect(api.open({"mode": "direct", "size": size}), 200)
    assert (opened["part_size"], opened["parts"]) == (smallest, 10_000), opened
    expect(api.abort(opened["upload_id"]), 200)


SCENARIOS = [sequential, parallel, direct, abort, still_completing, part_plan]


def main() -> int:
    schema_path, base_url, token = sys.argv[1:4]
    api = Api(schemathesis.openapi.from_path(schema_path), base_url, token)
    failed = 0
    for scenario in SCENARIOS:
        try:
            scenario(api)
            print(f"ok    {scenario.__name__}")
        except Exception:  # an assertion, or the service not answering: report it and go on with the others
            failed += 1
            print(f"FAIL  {scenario.__name__}")
            print("        " + traceback.format_exc().strip().replace("\n", "\n        "))
    print(f"{len(SCENARIOS) - failed} of {len(SCENARIOS)} scenarios passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
