"""Schemathesis hooks for contract/run (loaded through SCHEMATHESIS_HOOKS).

What the schema cannot say, so that the run reaches the service's core logic and not only its input checks, and
two false alarms of schemathesis' checks:

1. A chunk is accepted only when `Content-Range` matches the body's length and the upload's offset, and a complete
   only with the MD5 of the bytes sent. Random data almost never manages that, so every upload would stay "not
   found". `before_call` therefore adjusts *positive* (schema-valid) POST /upload and POST /upload/complete cases,
   and only those; negative cases go out exactly as generated:
     - a chunk without `upload_id` gets `bytes 0-(n-1)/n` (the whole file in one chunk) or, for about one in
       eight, `bytes 0-(n-1)/(n+1)` (an upload left one byte short);
     - a chunk for an upload this run created (an id from a link) becomes the missing rest of it when it is short,
       and a resend from offset 0 otherwise (an offset mismatch, or a chunk for a completed/aborted upload);
     - a complete for an upload this run created gets the right MD5, also when a link left it out, except when
       the generated MD5 starts with `0` or `1` (kept: the mismatch path); a `crc64nvme` it carries (optional for a
       sequential upload, checked if given) becomes the bytes' CRC64NVME likewise.
   Uploads the run did not create (random ids) are left alone: they are 404s.
   The parallel and direct modes are driven to completion the same way:
     - an open (POST /upload/create) gets a file of at most 512 KiB (parallel: in 256 KiB chunks), so that its
       bytes and CRC64NVMEs are cheap to make here; the file's bytes follow from its upload id;
     - a chunk for a parallel upload this run opened becomes its first chunk not yet accepted (or, once all are,
       the first chunk again: the same bytes, answered 200), with its range and `X-Checksum-CRC64NVME`; so does a
       chunk carrying that header for an upload that is not one of them, sent to the last one still missing chunks
       (the run seldom follows the open's link to the chunk route);
     - a parts request for a direct upload this run opened asks for its parts with their CRCs, and the hook PUTs
       each part's bytes to the URL it gets, with the headers it names, as a client does;
     - a complete for either gets the whole file's CRC64NVME and no `md5` (which those modes refuse), except when
       the generated MD5 starts with `0` or `1` (kept as generated: the refusal and mismatch paths).
   Uppy S3 uploads (Companion's /s3/ routes) this run created (POST /s3/multipart, whose links give the upload's id
   and key) are completed the way the plugin completes them: a positive completion is sent to the last of them not
   yet completed or aborted (when it names none of them: the run seldom follows the link), without an upload secret
   (optional, and the run's token makes it moot), and gets part 1 sent to S3 through a URL the API signs, named with
   S3's ETag; except for one in four, chosen by the generated first ETag, kept as generated (the refusal of parts S3
   does not hold).
   Every decision depends only on the generated data and earlier answers, so a fixed seed gives the same run.
   The listing (GET /upload) lists the run's user's uploads: before its first call, if the run has made none yet
   (the examples phase reaches it first), the hook starts one upload and completes another through the API
   (CONTRACT_BASE_URL and CONTRACT_TOKEN, set by contract/run), so the answers carry both shapes.

   tus (`/files`) likewise: a positive creation gets valid metadata, a length of at most 256 KiB, and first bytes
   (if it has a body) that fit it, with their right checksum; a positive PATCH or HEAD of an upload the run did not
   create goes to one it created and has not finished, a PATCH with the rest of that upload's bytes at its offset
   (so it completes), with their right checksum. The bytes of such an upload follow from its id, past the first ones.
   tus's `application/offset+octet-stream` bodies are sent as raw bytes, as `application/octet-stream` ones are.

2. `filter_failure` drops two kinds of false alarm, narrowly:
     - the service answers a request without credentials with 403 (django-chunked-upload's status, docs/protocol.md,
       "Errors"), while `missing_required_header` insists on 401 for a missing Authorization header: dropped only
       when the answer is exactly the documented 403 body (tus's line of text for `/files`);
     - `ensure_resource_availability` blames any 404 of POST /upload/complete after a POST /upload on the upload
       just created, even when the complete named another (random) upload or one aborted meanwhile: kept only
       when the 404 is for an upload this run created and did not abort.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import threading
import urllib.parse
import urllib.request
import zlib

import schemathesis
from schemathesis.transport.serialization import Binary

_LOCK = threading.Lock()
# upload_id -> {"data": bytes received so far, "total": int, "state": "uploading" | "complete" | "aborted"}
_UPLOADS: dict[str, dict] = {}
# id(case) -> (upload_id, or None for a new upload; the bytes the chunk adds; total) for a chunk this hook shaped
_PENDING: dict[int, tuple[str | None, bytes, int]] = {}
# upload_id -> {"mode": "parallel" | "direct", "data": the file, "unit": chunk or part size, "done": set of indexes
# (parallel: chunks from 0; direct: parts from 1) accepted, "state"} for the lanes' uploads this run opened
_LANES: dict[str, dict] = {}
# id(case) -> (upload_id, chunk index) for a parallel chunk this hook shaped
_PENDING_CHUNK: dict[int, tuple[str, int]] = {}
# id(case) of the positive POSTs this hook may have shaped
_SHAPED: set[int] = set()
# uploadId -> {"key", "state": "uploading" | "complete" | "aborted"} of the Uppy S3 uploads this run created
_UPPY: dict[str, dict] = {}
# tus uploads this run created: upload id -> {"data": the file, "offset": bytes the server has}
_TUS: dict[str, dict] = {}
# id(case) -> (the file's length, its first bytes sent with the creation) for a tus creation this hook shaped
_TUS_PENDING: dict[int, tuple[int, bytes]] = {}
TUS_FILE_MAX = 256 * 1024

schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
MIB = 1024 * 1024
PARALLEL_CHUNK = 256 * 1024
# Half of the lanes' files fit one chunk, so that even a short sequence of steps (open, chunk, complete) completes one.
LANE_FILE_MAX = 2 * PARALLEL_CHUNK


def _crc64nvme_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x9A6C9329AC4BC9B5 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC64_TABLE = _crc64nvme_table()


def crc64nvme(data: bytes) -> str:
    """S3's CRC64NVME of `data`, as the API takes it: base64 of the 8 big-endian bytes."""
    crc = 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc = _CRC64_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return base64.b64encode((crc ^ 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")).decode()


assert crc64nvme(b"123456789") == base64.b64encode(bytes.fromhex("ae8b14860a799888")).decode()


def _is_positive(case) -> bool:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return False
    return all(not component.mode.is_negative for component in meta.components.values())


def _chunk_bytes(case) -> bytes | None:
    value = case.body.get("file") if isinstance(case.body, dict) else case.body
    if isinstance(value, Binary):
        return value.data
    if isinstance(value, bytes):
        return value
    return None


def _set_chunk_bytes(case, data: bytes) -> None:
    if isinstance(case.body, dict):
        case.body["file"] = Binary(data)
    else:
        case.body = Binary(data)


def _upload_id_of(case) -> tuple[str | None, int]:
    """The chunk's upload id and in how many places it is given (query string, form)."""
    ids = []
    if isinstance(case.query, dict) and "upload_id" in case.query:
        ids.append(case.query["upload_id"])
    if isinstance(case.body, dict) and "upload_id" in case.body:
        ids.append(case.body["upload_id"])
    given = [i for i in ids if isinstance(i, str)]
    return (given[0] if given else None), len(ids)


def _shape_chunk(case) -> None:
    data = _chunk_bytes(case)
    upload_id, places = _upload_id_of(case)
    if data is None or not data or places > 1:
        return
    headers = case.headers if case.headers is not None else {}
    if not upload_id:
        total = len(data) + 1 if zlib.crc32(data) % 8 == 0 else len(data)
        headers["Content-Range"] = f"bytes 0-{len(data) - 1}/{total}"
        case.headers = headers
        _PENDING[id(case)] = (None, data, total)
        return
    with _LOCK:
        upload = _UPLOADS.get(upload_id)
        if upload is None:
            return
        received, total, state = len(upload["data"]), upload["total"], upload["state"]
    if state == "uploading" and received < total:
        rest = (data * (total - received))[: total - received]
        _set_chunk_bytes(case, rest)
        headers["Content-Range"] = f"bytes {received}-{total - 1}/{total}"
        _PENDING[id(case)] = (upload_id, rest, total)
    else:
        resend = data[:total]
        _set_chunk_bytes(case, resend)
        headers["Content-Range"] = f"bytes 0-{len(resend) - 1}/{total}"
    case.headers = headers


def _shape_complete(case) -> None:
    if not isinstance(case.body, dict):
        return
    upload_id, md5 = case.body.get("upload_id"), case.body.get("md5", "")
    if not isinstance(upload_id, str) or not isinstance(md5, str):
        return
    with _LOCK:
        upload = _UPLOADS.get(upload_id)
        data = bytes(upload["data"]) if upload is not None else None
    if data is None or md5.startswith(("0", "1")):
        return
    case.body["md5"] = hashlib.md5(data).hexdigest()
    if isinstance(case.body.get("crc64nvme"), str):
        case.body["crc64nvme"] = crc64nvme(data)


def _header(case, name: str) -> str | None:
    for key, value in (case.headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


def _lane(upload_id) -> dict | None:
    with _LOCK:
        return _LANES.get(upload_id) if isinstance(upload_id, str) else None


def _retargetable(case, upload_id) -> bool:
    """A chunk whose id and CRC64NVME header are well-formed, so that sending it to another upload with another CRC
    changes which upload it is for and not whether it is valid (schemathesis may count a case as positive whose
    header or query it generated invalid)."""
    crc = _header(case, "x-checksum-crc64nvme")
    try:
        crc_ok = crc is not None and len(base64.b64decode(crc, validate=True)) == 8
    except ValueError:
        crc_ok = False
    id_ok = isinstance(upload_id, str) and len(upload_id) == 32 and all(c in "0123456789abcdef" for c in upload_id)
    # Nothing else that could be the invalid part: no file name, no secret, no other form field.
    plain_query = set(case.query or {}) <= {"upload_id"}
    plain_body = not isinstance(case.body, dict) or set(case.body) <= {"file", "upload_id"}
    no_secret = "x-upload-secret" not in {name.lower() for name in (case.headers or {})}
    return crc_ok and id_ok and plain_query and plain_body and no_secret


def _unfinished_parallel() -> tuple[str | None, dict | None]:
    """The parallel upload this run opened last that still misses chunks, if any."""
    with _LOCK:
        for upload_id, lane in reversed(_LANES.items()):
            chunks = (len(lane["data"]) + lane["unit"] - 1) // lane["unit"]
            if lane["mode"] == "parallel" and len(lane["done"]) < chunks and _UPLOADS[upload_id]["state"] == "uploading":
                return upload_id, lane
    return None, None


def _shape_open(case) -> None:
    if not isinstance(case.body, dict) or not isinstance(case.body.get("size"), int):
        return
    case.body["size"] = 1 + case.body["size"] % LANE_FILE_MAX
    case.body["chunk_size"] = PARALLEL_CHUNK if case.body.get("mode") == "parallel" else None
    case.body.pop("part_size", None)


def _shape_parallel_chunk(case, upload_id: str, lane: dict) -> None:
    data, unit = lane["data"], lane["unit"]
    chunks = (len(data) + unit - 1) // unit
    with _LOCK:
        index = next((i for i in range(chunks) if i not in lane["done"]), 0)
    chunk = data[index * unit:(index + 1) * unit]
    _set_chunk_bytes(case, chunk)
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() not in ("content-range", "x-checksum-crc64nvme")}
    headers["Content-Range"] = f"bytes {index * unit}-{index * unit + len(chunk) - 1}/{len(data)}"
    headers["X-Checksum-CRC64NVME"] = crc64nvme(chunk)
    case.headers = headers
    _PENDING_CHUNK[id(case)] = (upload_id, index)


def _shape_parts(case) -> None:
    lane = _lane((case.path_parameters or {}).get("upload_id"))
    if lane is None or lane["mode"] != "direct" or not isinstance(case.body, dict):
        return
    data, unit = lane["data"], lane["unit"]
    numbers = range(1, (len(data) + unit - 1) // unit + 1)
    case.body["parts"] = [{"number": n, "crc64nvme": crc64nvme(data[(n - 1) * unit:n * unit])} for n in numbers]


def _put_parts(lane: dict, body: dict) -> None:
    """PUTs each part to the URL the service gave, as a client does; a part S3 takes is done."""
    data, unit = lane["data"], lane["unit"]
    for part in body.get("parts", []):
        number = part["number"]
        request = urllib.request.Request(part["url"], data=data[(number - 1) * unit:number * unit], method="PUT")
        for name, value in part.get("headers", {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                accepted = response.status == 200
        except OSError:  # urllib's HTTPError included: S3 refused it, the completion will say what is missing
            accepted = False
        if accepted:
            with _LOCK:
                lane["done"].add(number)


def _shape_lane_complete(case, lane: dict) -> None:
    md5 = case.body.get("md5")
    if isinstance(md5, str) and md5.startswith(("0", "1")):
        return
    case.body.pop("md5", None)
    case.body["crc64nvme"] = lane["crc64nvme"]


def _shape_uppy_complete(case) -> None:
    """Sends part 1 of an Uppy S3 upload this run created to S3, as the plugin does, and names it in the completion."""
    parts = case.body.get("parts") if isinstance(case.body, dict) else None
    if not isinstance(parts, list) or not parts or not isinstance(parts[0], dict):
        return
    if zlib.crc32(str(parts[0].get("ETag", "")).encode()) % 4 == 0:
        return
    upload_id = (case.path_parameters or {}).get("uploadId")
    with _LOCK:
        known = _UPPY.get(upload_id) if isinstance(upload_id, str) else None
        if known is None:
            unfinished = [i for i, u in _UPPY.items() if u["state"] == "uploading"]
            if not unfinished:
                return
            upload_id, known = unfinished[-1], _UPPY[unfinished[-1]]
    key = known["key"]
    case.path_parameters = {**(case.path_parameters or {}), "uploadId": upload_id}
    case.query = {**(case.query or {}), "key": key}
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "x-upload-secret"}
    query = urllib.parse.urlencode({"key": key})
    try:
        url = _api("GET", f"/s3/multipart/{upload_id}/1?{query}")["url"]
        request = urllib.request.Request(url, data=random.Random(upload_id).randbytes(1000), method="PUT")
        with urllib.request.urlopen(request, timeout=30) as response:
            etag = response.headers["ETag"]
    except OSError:  # aborted or completed already: the completion answers what it is then
        return
    case.body = {"parts": [{"PartNumber": 1, "ETag": etag.strip('"')}]}


def _api(method: str, path: str, data: bytes = b"", headers: dict | None = None) -> dict:
    request = urllib.request.Request(os.environ["CONTRACT_BASE_URL"] + path, data=data or None, method=method)
    request.add_header("Authorization", f"Bearer {os.environ['CONTRACT_TOKEN']}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _ensure_uploads_to_list() -> None:
    """One upload in progress and one complete, made through the API, unless the run already has uploads."""
    with _LOCK:
        if _UPLOADS:
            return
    raw = {"Content-Type": "application/octet-stream"}
    for data, total in ((b"listed, unfinished", 19), (b"listed, complete", 16)):
        answer = _api("POST", "/upload?filename=listed.txt", data,
                      {**raw, "Content-Range": f"bytes 0-{len(data) - 1}/{total}"})
        state = "uploading"
        if total == len(data):
            _api("POST", "/upload/complete", json.dumps({"upload_id": answer["upload_id"],
                                                         "md5": hashlib.md5(data).hexdigest()}).encode(),
                 {"Content-Type": "application/json"})
            state = "complete"
        with _LOCK:
            _UPLOADS[answer["upload_id"]] = {"data": data, "total": total, "state": state}


def _set_header(case, name: str, value: str | None) -> None:
    """Replaces the header (any case of its name), or removes it for None."""
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != name.lower()}
    if value is not None:
        headers[name] = value
    case.headers = headers


def _sha1_checksum(data: bytes) -> str:
    return "sha1 " + base64.b64encode(hashlib.sha1(data).digest()).decode()


def _shape_tus_creation(case) -> None:
    seed = random.Random(repr(sorted((case.headers or {}).items())))
    length = seed.randint(0, TUS_FILE_MAX)
    name = (_header(case, "upload-metadata") or "contract.bin")[:40]
    _set_header(case, "Upload-Metadata", "filename " + base64.b64encode(name.encode()).decode())
    _set_header(case, "Upload-Length", str(length))
    _set_header(case, "Upload-Defer-Length", None)
    if _header(case, "upload-concat") != "partial":
        _set_header(case, "Upload-Concat", None)
    first = b""
    data = _chunk_bytes(case)
    if data:
        first = data[:length]
        _set_chunk_bytes(case, first)
        if _header(case, "upload-checksum") is not None:
            _set_header(case, "Upload-Checksum", _sha1_checksum(first))
    _TUS_PENDING[id(case)] = (length, first)


def _shape_tus_upload(case) -> dict | None:
    """Retargets a case for an upload the run did not create to one it created and has not finished."""
    upload_id = (case.path_parameters or {}).get("upload_id")
    with _LOCK:
        upload = _TUS.get(upload_id)
        if upload is None:
            unfinished = [(k, u) for k, u in _TUS.items() if u["offset"] < len(u["data"])]
            if not unfinished:
                return None
            upload_id, upload = unfinished[0]
    case.path_parameters = {**(case.path_parameters or {}), "upload_id": upload_id}
    return upload


def _tus_method(case) -> str:
    """The method a tus request stands for: a POST's `X-HTTP-Method-Override`, else its own."""
    method = case.method.upper()
    override = _header(case, "x-http-method-override")
    return override.strip().upper() if method == "POST" and override else method


def _shape_tus_patch(case) -> None:
    upload = _shape_tus_upload(case)
    if upload is None or not _chunk_bytes(case):
        return
    rest = upload["data"][upload["offset"]:]
    _set_header(case, "Upload-Offset", str(upload["offset"]))
    _set_header(case, "Upload-Length", None)
    _set_chunk_bytes(case, rest)
    if _header(case, "upload-checksum") is not None:
        _set_header(case, "Upload-Checksum", _sha1_checksum(rest))


@schemathesis.hook
def before_call(context, case, kwargs):
    _PENDING.pop(id(case), None)  # left by a request that never got an answer
    _PENDING_CHUNK.pop(id(case), None)
    _TUS_PENDING.pop(id(case), None)
    _SHAPED.discard(id(case))
    if case.method.upper() == "GET" and case.path == "/upload":
        _ensure_uploads_to_list()
    if _is_positive(case) and case.path == "/files/{upload_id}":
        _SHAPED.add(id(case))
        if _tus_method(case) == "PATCH":
            _shape_tus_patch(case)
        elif case.method.upper() == "HEAD":
            _shape_tus_upload(case)
        return
    if not _is_positive(case) or case.method.upper() != "POST":
        return
    if case.path == "/files":
        _SHAPED.add(id(case))
        _shape_tus_creation(case)
        return
    _SHAPED.add(id(case))
    if case.path == "/upload":
        upload_id, places = _upload_id_of(case)
        lane = _lane(upload_id)
        if lane is None and _retargetable(case, upload_id):
            # A parallel chunk for no parallel upload of this run (the run seldom follows the open's link to the
            # chunk route): it goes to one that is missing chunks, so that parallel uploads reach completion.
            upload_id, lane = _unfinished_parallel()
        if lane is not None:
            # The header is optional in the schema (sequential chunks go without it): a parallel chunk gets it.
            if lane["mode"] == "parallel" and _chunk_bytes(case):
                case.query = {**(case.query or {}), "upload_id": upload_id}
                if isinstance(case.body, dict):
                    case.body.pop("upload_id", None)  # the query string's stays
                _shape_parallel_chunk(case, upload_id, lane)
        else:
            _shape_chunk(case)
            if _header(case, "x-checksum-crc64nvme") is not None and (shaped := _chunk_bytes(case)):
                # A sequential chunk may carry its CRC64NVME, which the service checks.
                case.headers = {k: v for k, v in case.headers.items() if k.lower() != "x-checksum-crc64nvme"}
                case.headers["X-Checksum-CRC64NVME"] = crc64nvme(shaped)
    elif case.path == "/upload/complete":
        lane = _lane(case.body.get("upload_id") if isinstance(case.body, dict) else None)
        if lane is not None:
            _shape_lane_complete(case, lane)
        else:
            _shape_complete(case)
    elif case.path == "/upload/create":
        _shape_open(case)
    elif case.path == "/upload/{upload_id}/parts":
        _shape_parts(case)
    elif case.path == "/s3/multipart/{uploadId}/complete":
        _shape_uppy_complete(case)


def _opened(body: dict) -> None:
    """Records a lane's upload this run opened, with its file: bytes that follow from its id."""
    mode, size = body.get("mode"), body.get("size")
    if mode not in ("parallel", "direct") or not isinstance(size, int) or size > LANE_FILE_MAX:
        return
    data = random.Random(body["upload_id"]).randbytes(size)
    unit = body.get("chunk_size") if mode == "parallel" else body.get("part_size")
    lane = {"mode": mode, "data": data, "unit": unit, "done": set(), "crc64nvme": crc64nvme(data)}
    with _LOCK:
        _LANES[body["upload_id"]] = lane
        _UPLOADS[body["upload_id"]] = {"data": b"", "total": size, "state": "uploading", "lane": True}


def _tus_answered(case, response) -> None:
    """Follows the tus uploads the run created: their offsets, as the answers give them."""
    created = _TUS_PENDING.pop(id(case), None)
    offset = response.headers.get("upload-offset")
    offset = offset[0] if isinstance(offset, list) else offset
    if created is not None and response.status_code == 201:
        location = response.headers.get("location")
        location = location[0] if isinstance(location, list) else location
        upload_id = (location or "").rsplit("/", 1)[-1]
        length, first = created
        data = first + random.Random(upload_id).randbytes(length - len(first))
        with _LOCK:
            _TUS[upload_id] = {"data": data, "offset": int(offset or 0)}
    elif _tus_method(case) == "PATCH" and response.status_code == 204 and offset is not None:
        with _LOCK:
            upload = _TUS.get((case.path_parameters or {}).get("upload_id"))
            if upload is not None:
                upload["offset"] = int(offset)


@schemathesis.hook
def after_call(context, case, response):
    pending = _PENDING.pop(id(case), None)
    pending_chunk = _PENDING_CHUNK.pop(id(case), None)
    if case.path.startswith("/files"):
        _tus_answered(case, response)
        return
    if response.status_code != 200:
        return
    try:
        body = response.json()
    except Exception:  # the checks report a body that is not JSON
        return
    if case.method.upper() == "POST" and case.path == "/upload/{upload_id}/parts" and isinstance(body, dict):
        lane = _lane((case.path_parameters or {}).get("upload_id"))
        if lane is not None and lane["mode"] == "direct":
            _put_parts(lane, body)
        return
    if case.path.startswith("/s3/multipart") and isinstance(body, dict):
        with _LOCK:
            if case.method.upper() == "POST" and case.path == "/s3/multipart":
                _UPPY[body["uploadId"]] = {"key": body["key"], "state": "uploading"}
            elif (upload := _UPPY.get((case.path_parameters or {}).get("uploadId"))) is not None:
                if case.path.endswith("/complete"):
                    upload["state"] = "complete"
                elif case.method.upper() == "DELETE":
                    upload["state"] = "aborted"
        return
    if not isinstance(body, dict) or not isinstance(body.get("upload_id"), str):
        return
    upload_id = body["upload_id"]
    if case.method.upper() == "POST" and case.path == "/upload/create":
        _opened(body)
        return
    with _LOCK:
        if pending_chunk is not None and pending_chunk[0] in _LANES:
            _LANES[pending_chunk[0]]["done"].add(pending_chunk[1])
        if case.method.upper() == "POST" and case.path == "/upload" and pending is not None:
            known, data, total = pending
            if known is None:
                _UPLOADS[upload_id] = {"data": data, "total": total, "state": "uploading"}
            elif upload_id in _UPLOADS:
                _UPLOADS[upload_id]["data"] += data
        elif case.path == "/upload/complete" and upload_id in _UPLOADS:
            _UPLOADS[upload_id]["state"] = "complete"
        elif case.method.upper() == "DELETE" and upload_id in _UPLOADS:
            _UPLOADS[upload_id]["state"] = "aborted"


def _sent_upload_id(case) -> str | None:
    for container in (case.path_parameters, case.query, case.body):
        if isinstance(container, dict) and isinstance(container.get("upload_id"), str):
            return container["upload_id"]
    return None


@schemathesis.hook
def filter_failure(context, failure, case, response):
    kind = type(failure).__name__
    if kind == "EnsureResourceAvailability":
        # The check assumes every parameter of the step after a POST came from the link; the complete operation has
        # none (its upload_id is in the body), so a random upload_id's 404 is blamed on the upload just created, and
        # it misses aborts made through another link. Keep the failure only when the 404 is for an upload this run
        # created and did not abort.
        with _LOCK:
            upload = _UPLOADS.get(_sent_upload_id(case))
            return upload is not None and upload["state"] != "aborted"
    if kind == "AcceptedNegativeData" and id(case) in _SHAPED:
        # Seen here as positive and shaped into a valid request (a chunk retargeted to a parallel upload, say),
        # yet judged by its generation's negative mark: what was sent was not what the check judges.
        return False
    if kind == "MissingHeaderNotRejected" and failure.header_name.lower() == "authorization":
        if case.path.startswith("/files"):
            # A HEAD's answer has no body.
            tus = "" if case.method.upper() == "HEAD" else "ERR_UNAUTHENTICATED: Authentication credentials were not provided\n"
            return not (response.status_code == 403 and response.text == tus)
        try:
            body = response.json()
        except Exception:
            return True
        documented = {"detail": "Authentication credentials were not provided"}
        return not (response.status_code == 403 and body == documented)
    return True
