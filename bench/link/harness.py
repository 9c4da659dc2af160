"""The link benchmark's machinery: the client's network namespace and its shaped uplink, the link proxy, the servers
under test, and the checks of what landed in S3. See README.md beside this file."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# The binaries under test; BENCH_LINK_BINARIES points elsewhere (target/debug) while developing the harness.
RELEASE = Path(os.environ.get("BENCH_LINK_BINARIES", ROOT / "target" / "release"))
# The uplink's queue, at most this long when the link is full (a modem's buffer): TCP fills it, and every request
# queued behind a transfer waits for it.
QUEUE_MS = 25
# The in-region round trip between the service (or a competitor's server) and S3 or DynamoDB.
REGION_RTT_MS = 2.0


def log(message: str) -> None:
    print(f"bench/link: {message}", file=sys.stderr, flush=True)


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# The client's network namespace


class Namespace:
    """A network namespace joined to this one by a veth pair. The client's processes run in it; every byte they send
    leaves through the veth, whose egress (the uplink) the kernel shapes with a token bucket."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.name = f"culink-{tag}"
        self.host_veth, self.client_veth = f"cul{tag}h", f"cul{tag}c"
        self.host_ip, self.client_ip = free_subnet()
        self.closed = False
        run(["ip", "netns", "add", self.name])
        try:
            run(["ip", "link", "add", self.host_veth, "type", "veth", "peer", "name", self.client_veth])
            run(["ip", "link", "set", self.client_veth, "netns", self.name])
            run(["ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_veth])
            run(["ip", "link", "set", self.host_veth, "up"])
            self.exec(["ip", "addr", "add", f"{self.client_ip}/30", "dev", self.client_veth])
            self.exec(["ip", "link", "set", self.client_veth, "up"])
            self.exec(["ip", "link", "set", "lo", "up"])
        except BaseException:
            self.close()
            raise

    def exec(self, argv: list[str]) -> subprocess.CompletedProcess:
        return run(self.wrap(argv))

    def wrap(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def shape(self, bits_per_second: int) -> None:
        """The uplink: a token bucket at this rate, its bucket a couple of milliseconds' worth (at least 16 KiB), its
        queue QUEUE_MS long."""
        burst = max(16 * 1024, bits_per_second // 8 * 2 // 1000)
        self.exec(["tc", "qdisc", "replace", "dev", self.client_veth, "root", "tbf", "rate", f"{bits_per_second}bit",
                   "burst", str(burst), "latency", f"{QUEUE_MS}ms"])

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        # Deleting the namespace deletes the veth pair with it.
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        subprocess.run(["ip", "link", "del", self.host_veth], capture_output=True)


def free_subnet() -> tuple[str, str]:
    """A /30 of 10.231.0.0/16 no interface uses: the host's and the client's addresses."""
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    taken = {ipaddress.ip_interface(word).network for word in used.split() if "/" in word and word[0].isdigit()}
    for net in ipaddress.ip_network("10.231.0.0/16").subnets(new_prefix=30):
        if not any(net.overlaps(t) for t in taken):
            hosts = list(net.hosts())
            return str(hosts[0]), str(hosts[1])
    raise RuntimeError("no free /30 in 10.231.0.0/16 for the client's veth pair")


def require_root_tools() -> None:
    if os.geteuid() != 0:
        raise SystemExit("bench/link: network namespaces and the kernel's shaper need root (or set BENCH_LINK=off)")
    for tool in ("ip", "tc"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode != 0:
            raise SystemExit(f"bench/link: `{tool}` is missing (Debian package iproute2)")


# ---------------------------------------------------------------------------------------------------------------
# Processes


class Process:
    """A server started for the run: its stdout is read until it says where it listens; stopped at the end."""

    def __init__(self, name: str, argv: list[str], env: dict | None = None, ready=None, cwd: Path = ROOT):
        self.name = name
        self.log_path = Path(os.environ.get("BENCH_LINK_LOGS", "/tmp")) / f"bench-link-{name}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, start_new_session=True)
        self.first_line: str | None = None
        deadline = time.monotonic() + 60
        while ready is not None:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{name} exited before it was ready; see {self.log_path}")
            if ready(line):
                self.first_line = line.strip()
                break
            self.log.write(line)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready within 60 s; see {self.log_path}")
        # The rest of stdout goes to the log, so the process never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.log.write(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def wait_for_port(host: str, port: int, seconds: float = 60) -> None:
    import socket

    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {host}:{port}")
            time.sleep(0.05)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------------------------
# The link proxy


@dataclass
class Profile:
    name: str
    uplink_mbit: float
    rtt_ms: float
    slow_start: bool = False
    tls: bool = False

    def variant(self, slow_start: bool, tls: bool) -> Profile:
        return Profile(self.name, self.uplink_mbit, self.rtt_ms, slow_start, tls)

    @property
    def variant_name(self) -> str:
        return "slow start + TLS" if self.slow_start or self.tls else "plain"

    def to_json(self) -> dict:
        return {"uplink_mbit": self.uplink_mbit, "rtt_ms": self.rtt_ms, "slow_start": self.slow_start,
                "tls": self.tls}


class LinkProxy:
    """target/release/link_proxy with the client's link (a forward proxy on the host's end of the veth pair), the
    service's in-region links to S3 and DynamoDB (reverse proxies), and a sink for the model's verification."""

    def __init__(self, ns: Namespace, s3: str, dynamodb: str, scratch: Path):
        config = {
            "control": "127.0.0.1:0",
            "links": [
                {"name": "client", "listen": f"{ns.host_ip}:0", "profile": {"uplink_mbit": 50, "rtt_ms": 30},
                 "s3": [s3], "dynamodb": [dynamodb], "aliases": {}},
                {"name": "region-s3", "listen": "127.0.0.1:0", "upstream": s3, "s3": [s3],
                 "profile": {"rtt_ms": REGION_RTT_MS}},
                {"name": "region-dynamodb", "listen": "127.0.0.1:0", "upstream": dynamodb, "dynamodb": [dynamodb],
                 "profile": {"rtt_ms": REGION_RTT_MS}},
                {"name": "sink", "listen": "127.0.0.1:0", "sink": True},
            ],
        }
        # The region's front door for S3 (what servers are configured with, so what their presigned URLs name) is
        # S3 itself on the client's link: the client's bytes cross only the client's link.
        region_s3 = f"127.0.0.1:{free_port()}"
        config["links"][0]["aliases"] = {region_s3: s3}
        config["links"][1]["listen"] = region_s3
        path = scratch / "link-proxy.json"
        path.write_text(json.dumps(config))
        # Its timers are the model's delays: ahead of the machine's other work (builds, emulators), a busy machine
        # makes them late by less.
        self.process = Process("link-proxy", ["nice", "-n", "-10", str(RELEASE / "link_proxy"), str(path)],
                               ready=lambda line: line.startswith("{"))
        bound = json.loads(self.process.first_line)
        self.control = f"http://{bound['control']}"
        self.links = bound["links"]
        self.proxy_url = f"http://{self.links['client']}"
        self.region_s3 = f"http://{self.links['region-s3']}"
        self.region_dynamodb = f"http://{self.links['region-dynamodb']}"
        self.sink = f"http://{self.links['sink']}"
        self.ns = ns

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else b""
        request = urllib.request.Request(self.control + path, data=data if method == "POST" else None, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def set_profile(self, profile: Profile) -> None:
        """The client's link (the proxy's delays and the kernel's shaper) and the region's (its option flags)."""
        shaper = self._call("POST", "/profile?link=client", profile.to_json())["shaper_bits_per_second"]
        self.ns.shape(shaper)
        region = {"rtt_ms": REGION_RTT_MS, "slow_start": profile.slow_start, "tls": profile.tls}
        for link in ("region-s3", "region-dynamodb"):
            self._call("POST", f"/profile?link={link}", region)

    def mark(self) -> None:
        self._call("POST", "/mark")

    def cut_after(self, payload_bytes: int) -> None:
        self._call("POST", f"/cut?link=client&after={payload_bytes}")

    def report(self) -> dict:
        return self._call("GET", "/report")

    def stop(self) -> None:
        self.process.stop()


# ---------------------------------------------------------------------------------------------------------------
# S3, seen from the host (not through any link)


class Storage:
    def __init__(self) -> None:
        import boto3
        from botocore.config import Config

        self.s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"], region_name="us-east-1",
                               aws_access_key_id="test", aws_secret_access_key="test",
                               config=Config(s3={"addressing_style": "path"}))
        self.bucket = os.environ["CHUNKED_UPLOAD_BUCKET"]
        self.endpoint = os.environ["AWS_ENDPOINT_URL_S3"]

    def ensure_bucket(self, name: str, cors_methods: list[str]) -> None:
        """A bucket of a competitor's, with the CORS a browser upload to it needs."""
        try:
            self.s3.create_bucket(Bucket=name)
        except self.s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        self.s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": [{
            "AllowedMethods": cors_methods, "AllowedOrigins": ["http://127.0.0.1:*"], "AllowedHeaders": ["*"],
            "ExposeHeaders": ["ETag", "Location"], "MaxAgeSeconds": 600}]})

    def verify_and_delete(self, bucket: str, key: str, md5: str, size: int) -> None:
        """The object must hold exactly the file's bytes; it is deleted either way."""
        try:
            body = self.s3.get_object(Bucket=bucket, Key=key)["Body"]
            digest, length = hashlib.md5(), 0
            for chunk in iter(lambda: body.read(1 << 20), b""):
                digest.update(chunk)
                length += len(chunk)
        finally:
            self.s3.delete_object(Bucket=bucket, Key=key)
        if (length, digest.hexdigest()) != (size, md5):
            raise RuntimeError(f"s3://{bucket}/{key} holds {length} bytes, MD5 {digest.hexdigest()}; "
                               f"the file {size} bytes, MD5 {md5}")

    def clean_prefix(self, bucket: str, prefix: str = "") -> None:
        """Removes what competitors leave beside their objects (tus' .info files) and unfinished multipart uploads."""
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                self.s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        for upload in self.s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", []):
            self.s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dev_token(owner: str) -> str:
    """An unsigned JWT naming `owner`, which the local server accepts (shared::local::dev_token)."""
    import base64

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(b'{"alg":"none","typ":"JWT"}')
    payload = b64(json.dumps({"sub": owner, "iss": "local-dev"}, separators=(",", ":")).encode())
    return f"{header}.{payload}."
