"""The systems the link benchmark sets side by side: ours (the CLI and the browser client in each mode;
tus-js-client against this service's tus route; Uppy's S3 plugin against this service) and what users would
pick instead (boto3 at the AWS CLI's defaults, Uppy with Companion, tus-node-server driven by tus-js-client).

A system is a command that uploads one file and prints one JSON line saying where the object is. Adding one is
adding an entry to SYSTEMS (README.md beside this file says how).
"""

from __future__ import annotations

import json
import os
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness import HERE, RELEASE, LinkProxy, Namespace

NODE = "node"
BROWSER = HERE / "clients" / "browser.mjs"
VENV_PYTHON = HERE / ".venv" / "bin" / "python"


@dataclass
class Context:
    """Where everything is, for the commands."""

    ns: Namespace
    proxy: LinkProxy
    scratch: Path
    api: str  # the local server (the service's API), as clients address it
    token: str
    bucket: str  # the service's bucket
    s3: str  # S3 itself (LocalStack), as boto3 addresses it
    tus: str  # tus-node-server's base URL
    tus_bucket: str
    companion: str  # the Companion server's base URL (and the Uppy page's origin)
    companion_bucket: str
    chromium: Path  # a wrapper that starts Chromium in the client's namespace
    roles: dict[str, str] = field(default_factory=dict)  # host:port -> api, s3, tus, companion

    def client_env(self) -> dict[str, str]:
        proxy = self.proxy.proxy_url
        return {"HTTP_PROXY": proxy, "http_proxy": proxy, "NO_PROXY": "", "no_proxy": ""}


@dataclass
class Command:
    argv: list[str]
    env: dict[str, str]
    # Chromium's driver stays outside the namespace (Chromium itself is inside) and marks the run itself, once the
    # page is loaded.
    in_namespace: bool = True
    marks_itself: bool = False


@dataclass
class System:
    name: str
    label: str
    family: str  # "ours" or "theirs"
    # (ctx, file, token, cut_after) -> the command; cut_after only for commands that mark the run themselves.
    command: Callable[[Context, Path, str, int | None], Command]
    # (ctx, the JSON line printed, the uploader's token) -> (bucket, key) of the object
    stored: Callable[[Context, dict, str], tuple[str, str]]
    sizes: tuple[str, ...] = ("big", "small")
    # Why it does not run yet; the results say "pending" instead of a figure.
    pending: str | None = None
    # It takes part in the many-uploads run.
    concurrent: bool = False


def cli(mode: str) -> Callable[[Context, Path, str, int | None], Command]:
    def command(ctx: Context, file: Path, token: str, _cut: int | None) -> Command:
        state = ctx.scratch / f"state-{uuid.uuid4().hex}"
        env = {**ctx.client_env(), "CHUNKED_UPLOAD_ENDPOINT": ctx.api, "CHUNKED_UPLOAD_TOKEN": token,
               "CHUNKED_UPLOAD_STATE_DIR": str(state)}
        return Command([str(RELEASE / "chunked-upload"), "--json", "put", "--mode", mode, str(file)], env)

    return command


def result_location(_ctx: Context, line: dict, _token: str) -> tuple[str, str]:
    return line["bucket"], line["key"]


def browser_ours(mode: str) -> Callable[[Context, Path, str, int | None], Command]:
    def command(ctx: Context, file: Path, token: str, cut: int | None) -> Command:
        # A quiet document of the API's origin: the client's module is imported from there, the API is same-origin.
        return browser_command(ctx, file, cut, ["--client", "ours", "--page", f"{ctx.api}/client/package.json",
                                                "--endpoint", ctx.api, "--mode", mode, "--token", token])

    return command


def browser_command(ctx: Context, file: Path, cut: int | None, extra: list[str]) -> Command:
    argv = [NODE, str(BROWSER), "--chromium", str(ctx.chromium), "--proxy", ctx.proxy.proxy_url, "--file", str(file),
            "--control", ctx.proxy.control, *extra]
    if cut is not None:
        argv += ["--cut-after", str(cut)]
    return Command(argv, {}, in_namespace=False, marks_itself=True)


def uppy_companion(ctx: Context, file: Path, _token: str, cut: int | None) -> Command:
    # The page is Companion's, as a deployment that serves both from one origin has it.
    extra = ["--client", "uppy", "--page", f"{ctx.companion}/", "--endpoint", ctx.companion]
    return browser_command(ctx, file, cut, extra)


def uppy_ours(ctx: Context, file: Path, token: str, cut: int | None) -> Command:
    # The page is on the API's origin, as our browser client's is and as Uppy + Companion's is on Companion's: like
    # for like. Cross-origin, each API request would pay a preflight round trip for its Authorization header, which
    # Uppy's unauthenticated requests to Companion do not (bench/link/README.md). The bundle is Companion's copy.
    extra = ["--client", "uppy", "--page", f"{ctx.api}/client/package.json", "--endpoint", ctx.api,
             "--bundle", f"{ctx.companion}/uppy/uppy.min.mjs", "--token", token]
    return browser_command(ctx, file, cut, extra)


def boto3_command(ctx: Context, file: Path, _token: str, _cut: int | None) -> Command:
    key = f"bench-link/boto3-{uuid.uuid4().hex}"
    argv = [str(VENV_PYTHON), str(HERE / "clients" / "boto3_upload.py"), "--file", str(file), "--bucket", ctx.bucket,
            "--key", key, "--endpoint", ctx.s3]
    return Command(argv, ctx.client_env())


def tus_js_client(endpoint: Callable[[Context], str], parallel: int, chunk_bytes: int | None, authorized: bool):
    def command(ctx: Context, file: Path, token: str, _cut: int | None) -> Command:
        argv = [NODE, str(HERE / "clients" / "tus_upload.mjs"), "--endpoint", endpoint(ctx), "--file", str(file),
                "--proxy", ctx.proxy.proxy_url, "--parallel", str(parallel)]
        if chunk_bytes:
            argv += ["--chunk-bytes", str(chunk_bytes)]
        if authorized:
            argv += ["--header", f"Authorization: Bearer {token}"]
        return Command(argv, {})

    return command


def tus_node_server_location(ctx: Context, line: dict, _token: str) -> tuple[str, str]:
    # @tus/s3-store keys the object by the upload id.
    return ctx.tus_bucket, line["id"]


def our_upload_location(ctx: Context, line: dict, token: str) -> tuple[str, str]:
    """Where the service stored a tus upload it completed (its id is the upload URL's last segment): its status says,
    asked by its owner (another owner is told 404) from the host, not over the link."""
    request = urllib.request.Request(f"{ctx.api}/upload/{line['id']}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        status = json.loads(response.read())
    return status["bucket"], status["key"]


# This service's tus route (tus 1.0.0 at /files); BENCH_LINK_TUS_PATH when a deployment serves it elsewhere.
OUR_TUS_PATH = os.environ.get("BENCH_LINK_TUS_PATH", "/files")

SYSTEMS: list[System] = [
    System("cli-sequential", "CLI sequential", "ours", cli("sequential"), result_location, concurrent=True),
    System("cli-parallel", "CLI parallel", "ours", cli("parallel"), result_location, concurrent=True),
    System("cli-direct", "CLI direct", "ours", cli("direct"), result_location, concurrent=True),
    System("cli-auto", "CLI auto", "ours", cli("auto"), result_location, sizes=("small",)),
    System("browser-sequential", "browser sequential", "ours", browser_ours("sequential"), result_location),
    System("browser-parallel", "browser parallel", "ours", browser_ours("parallel"), result_location),
    System("browser-direct", "browser direct", "ours", browser_ours("direct"), result_location),
    System("browser-auto", "browser auto", "ours", browser_ours("auto"), result_location, sizes=("small",)),
    # PATCHes of 4 MiB: API Gateway takes a request of at most 10 MB, Lambda an event of 6 MB.
    System("ours-tus", "tus (tus-js-client)", "ours",
           tus_js_client(lambda ctx: f"{ctx.api}{OUR_TUS_PATH}", 1, 4 * 1024 * 1024, True),
           our_upload_location, concurrent=True),
    System("ours-tus-parallel", "tus, parallelUploads 4", "ours",
           tus_js_client(lambda ctx: f"{ctx.api}{OUR_TUS_PATH}", 4, 4 * 1024 * 1024, True),
           our_upload_location),
    System("ours-uppy-s3", "Uppy S3 plugin", "ours", uppy_ours,
           lambda ctx, line, _token: (ctx.bucket, line["key"])),
    System("boto3", "boto3 upload_file", "theirs", boto3_command, result_location),
    System("uppy-companion", "Uppy + Companion", "theirs", uppy_companion,
           lambda ctx, line, _token: (ctx.companion_bucket, line["key"])),
    System("tus-node-server", "tus-node-server", "theirs",
           tus_js_client(lambda ctx: f"{ctx.tus}/files", 1, None, False), tus_node_server_location),
]

# What each of ours is held against (the budgets of issue 21, section 3).
BASELINES = {
    "cli-parallel": "boto3", "cli-direct": "boto3", "browser-parallel": "boto3", "browser-direct": "boto3",
    "ours-tus": "tus-node-server", "ours-tus-parallel": "boto3", "ours-uppy-s3": "uppy-companion",
}


def by_name(names: str | None) -> list[System]:
    if not names:
        return SYSTEMS
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = sorted(set(wanted) - {s.name for s in SYSTEMS})
    if unknown:
        raise SystemExit(f"bench/link: unknown systems {unknown}; known: {[s.name for s in SYSTEMS]}")
    return [s for s in SYSTEMS if s.name in wanted]


def parse_line(stdout: str) -> dict:
    """The last JSON object a command printed."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON line in the output: {stdout[-500:]!r}")

