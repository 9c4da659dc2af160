"""Requests schemathesis does not generate, checked against openapi.yaml like its own: the answers of the emulated
API Gateway to bodies over its and Lambda's size limits, to header values that are not UTF-8, and to a bad token.

Each answer must have a status the operation documents, `Content-Type: application/json`, and a body that matches
the documented schema. Usage: probes.py SCHEMA BASE_URL TOKEN. Exit status 1 if any probe fails.
"""

from __future__ import annotations

import sys

import requests
import schemathesis

MIB = 1024 * 1024
UPLOAD_ID = "0123456789abcdef0123456789abcdef"


def off_contract(operation, response) -> list[str]:
    """How an answer departs from what the operation documents: its status, a JSON Content-Type, the schema of its
    body and the headers the status requires."""
    problems = []
    documented = operation.definition.raw["responses"].get(str(response.status_code))
    if documented is None:
        return [f"status {response.status_code} is not documented"]
    content_type = response.headers.get("content-type")
    if content_type is None or content_type.split(";")[0].strip() != "application/json":
        problems.append(f"Content-Type {content_type!r}, documented: 'application/json'")
    for name, header in documented.get("headers", {}).items():
        if header.get("required") and name not in response.headers:
            problems.append(f"header {name} missing")
    try:
        operation.validate_response(response)
    except Exception as exc:  # schemathesis raises a group of failures
        problems.append("body off the schema: " + " ".join(str(exc).split())[:300])
    return problems


def main() -> int:
    schema_path, base_url, token = sys.argv[1:4]
    schema = schemathesis.openapi.from_path(schema_path)
    auth = {"Authorization": f"Bearer {token}"}
    raw = {**auth, "Content-Type": "application/octet-stream"}

    def chunk(size: int) -> dict:
        return {
            "headers": {**raw, "Content-Range": f"bytes 0-{size - 1}/{size}"},
            "data": b"\0" * size,
        }

    probes = [
        # Over API Gateway's 10 MiB body limit, by one byte and by a lot (the local server reads at most 10 MiB + 1).
        ("body of 10 MiB + 1 byte", "POST", "/upload", "/upload", chunk(10 * MIB + 1)),
        ("body of 11 MiB", "POST", "/upload", "/upload", chunk(11 * MIB)),
        # Under API Gateway's limit but over Lambda's 6 MB event once base64-encoded.
        ("body of 5 MiB", "POST", "/upload", "/upload", chunk(5 * MIB)),
        ("complete with a 11 MiB body", "POST", "/upload/complete", "/upload/complete",
         {"headers": {**auth, "Content-Type": "application/json"}, "data": b" " * (11 * MIB)}),
        # requests sends header values as latin-1: "\xe9" is not UTF-8.
        ("header value not UTF-8", "GET", "/upload/{upload_id}", f"/upload/{UPLOAD_ID}",
         {"headers": {**auth, "X-Note": "caf\xe9"}}),
        ("bearer token without a sub claim", "GET", "/upload/{upload_id}", f"/upload/{UPLOAD_ID}",
         {"headers": {"Authorization": "Bearer eyJhbGciOiJub25lIn0.e30."}}),
        ("Authorization that is not a bearer token", "DELETE", "/upload/{upload_id}", f"/upload/{UPLOAD_ID}",
         {"headers": {"Authorization": "Basic dXNlcjpwYXNz"}}),
    ]

    failed = 0
    for name, method, template, path, kwargs in probes:
        response = requests.request(method, base_url + path, timeout=60, **kwargs)
        problems = off_contract(schema[template][method], response)
        answer = f"{response.status_code} {response.text[:200]!r}"
        if problems:
            failed += 1
            print(f"FAIL  {name}: {method} {path} -> {answer}")
            for problem in problems:
                print(f"        {problem}")
        else:
            print(f"ok    {name}: {method} {path} -> {answer}")
    print(f"{len(probes) - failed} of {len(probes)} probes passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
