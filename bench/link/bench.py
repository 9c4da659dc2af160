"""The link benchmark: every system uploads over a modeled internet link, per profile, side by side.

Run by `bench/run` (make bench) with the emulators up and the release binaries built; by hand:
    bench/link/.venv/bin/python bench/link/bench.py OUT.jsonl
Environment (README.md beside this file): BENCH_LINK_PLAN (full | quick), BENCH_LINK_PROFILES, BENCH_LINK_VARIANTS,
BENCH_LINK_ROUNDS, BENCH_LINK_FILE_MIB, BENCH_LINK_SYSTEMS, BENCH_LINK_CUT, BENCH_LINK_MANY, BENCH_LINK_MANY_MIB.

Writes one JSON line per measurement to OUT.jsonl as it goes (`bench` is link_verify, link_run, link_pending or
link_many); bench/link_report.py turns them into tables.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import harness
from harness import HERE, RELEASE, ROOT, LinkProxy, Namespace, Process, Profile, Storage, log
from systems import Context, System, by_name, parse_line

MIB = 1024 * 1024
# API Gateway's HTTP APIs meter requests in 512 KB increments.
API_METERING_BYTES = 512 * 1024
RUN_TIMEOUT_S = 1800
STATIC = (".js", ".mjs", ".css", ".html", ".map", ".json")
PROFILES = {
    "broadband": Profile("broadband", 50, 30),
    "office": Profile("office", 200, 20),
    "far": Profile("far", 100, 150),
}
VARIANTS = {"plain": (False, False), "slow-start+tls": (True, True)}
# The many-uploads run's link: an office's, shared by every upload.
MANY_PROFILE = "office"


@dataclass
class Plan:
    profiles: list[Profile]
    variants: list[str]
    rounds: int
    big_bytes: int
    small_bytes: int
    systems: list[System]
    cut: bool
    many: int
    many_bytes: int
    owners: int = 10

    def concurrent_systems(self) -> list[System]:
        """The systems that take part in the many-uploads run."""
        return [s for s in self.systems if s.concurrent and not s.pending]


def plan_from_env() -> Plan:
    quick = os.environ.get("BENCH_LINK_PLAN", "full") == "quick"
    env = os.environ.get
    default_profiles = "office" if quick else ",".join(PROFILES)
    profiles = [PROFILES[p.strip()] for p in env("BENCH_LINK_PROFILES", default_profiles).split(",") if p.strip()]
    variants = env("BENCH_LINK_VARIANTS", "plain" if quick else "plain,slow-start+tls").split(",")
    for variant in variants:
        if variant not in VARIANTS:
            raise SystemExit(f"bench/link: unknown variant {variant!r}; known: {list(VARIANTS)}")
    return Plan(
        profiles=profiles,
        variants=variants,
        rounds=int(env("BENCH_LINK_ROUNDS", "1" if quick else "3")),
        big_bytes=int(env("BENCH_LINK_FILE_MIB", "16" if quick else "256")) * MIB,
        small_bytes=1 * MIB,
        systems=by_name(env("BENCH_LINK_SYSTEMS")),
        cut=env("BENCH_LINK_CUT", "off" if quick else "on") == "on",
        many=int(env("BENCH_LINK_MANY", "10" if quick else "50")),
        many_bytes=int(env("BENCH_LINK_MANY_MIB", "2" if quick else "32")) * MIB,
    )


@dataclass
class File:
    path: Path
    size: int
    md5: str


def random_file(path: Path, size: int) -> File:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 * MIB)
            f.write(random.randbytes(n))
            left -= n
    return File(path, size, harness.md5_of(path))


# ---------------------------------------------------------------------------------------------------------------
# One measurement


def figures(report: dict, roles: dict[str, str], size: int, started_monotonic: float) -> dict:
    """A run's figures from the link proxy's report: times on the client's link from when the client started the
    upload (CLOCK_MONOTONIC), its connections and requests, the service's in-region calls."""
    client = report["client"]
    summary, requests = client["summary"], client["requests"]
    started = started_monotonic - client["mark_monotonic"]
    # The upload's requests: to the systems under test, not the page's static files, nor what a browser asks of the
    # internet on its own (refused here: the machine has no internet).
    service = [r for r in requests if r["destination"] in roles and not static(r)]
    first_request = min((r["first_on_link"] for r in service), default=None)
    finished = max((r["answer_at_client"] for r in service if r["answer_at_client"] is not None), default=None)
    row: dict = {}
    if first_request is not None and finished is not None:
        row["seconds"] = finished - started
        row["mib_per_s"] = size / MIB / row["seconds"]
        # Before its first request, the client read or hashed (or, for boto3, nothing: it starts with a request).
        row["before_first_request"] = first_request - started
    if summary["first_payload"] is not None and started is not None:
        row["before_first_byte"] = summary["first_payload"] - started
        row["after_last_byte"] = finished - summary["last_payload"]
        row["idle_seconds"] = summary["idle_seconds"]
    by_role: Counter = Counter()
    for destination, count in summary["connections"].items():
        if destination in roles:
            by_role[roles[destination]] += count
    row["connections"] = dict(by_role)
    row["payload_bytes"] = summary["payload_bytes"]
    row["uplink_bytes"] = summary["uplink_bytes"]
    row["piece_bytes"] = max((r["body_bytes"] for r in requests if r["payload"]), default=0)
    row["requests"] = dict(Counter(f"{roles.get(r['destination'], 'other')} {r['name']}" for r in requests))
    row["statuses"] = dict(Counter(str(r["status"]) for r in requests))
    # The API's requests (the page's static files would be a CDN's, not API Gateway's).
    api = [r for r in requests if roles.get(r["destination"]) == "api" and not static(r)]
    row["api_units"] = sum(max(1, math.ceil(r["body_bytes"] / API_METERING_BYTES)) for r in api)
    # The API's (the handlers') time for each request, by route: Lambda's billed duration.
    by_route: dict[str, list[float]] = {}
    for r in api:
        if far_side(r) is not None:
            by_route.setdefault(r["name"], []).append(round(far_side(r) * 1000, 1))
    row["handler_ms_by_route"] = by_route
    rtt = client["rtt_ms"] / 1000
    rate = client["uplink_mbit"] * 1e6 / 8
    handshakes = 1 + int(client["tls"])
    # One request at a time, each: its bytes at the link's rate, a round trip, the server's time; and a handshake.
    row["serial_limit_seconds"] = handshakes * rtt + sum(r["body_bytes"] / rate + rtt + (far_side(r) or 0) for r in api)
    row["s3_client"] = dict(Counter(r["name"] for r in requests if roles.get(r["destination"]) == "s3"))
    row["s3_service"] = dict(Counter(r["name"] for r in report["region-s3"]["requests"]))
    row["dynamodb"] = dict(Counter(r["name"] for r in report["region-dynamodb"]["requests"]))
    if summary["cut_at"] is not None:
        row["cut"] = {
            "at": summary["cut_at"],
            "payload_before": summary["payload_before_cut"],
            "resent_bytes": summary["payload_bytes"] - size,
            "resumed_after": None if summary["resumed_at"] is None else summary["resumed_at"] - summary["cut_at"],
        }
    return row


def static(request: dict) -> bool:
    return request["name"].startswith("GET ") and request["name"].endswith(STATIC)


def far_side(request: dict) -> float | None:
    answered = request.get("answer_from_far_side")
    return None if answered is None else answered - request["last_delivered"]


class Bench:
    def __init__(self, ctx: Context, storage: Storage, out):
        self.ctx, self.storage, self.out = ctx, storage, out

    def emit(self, row: dict) -> None:
        self.out.write(json.dumps(row) + "\n")
        self.out.flush()

    def run_once(self, system: System, file: File, cut_after: int | None = None) -> dict:
        """Uploads `file` with `system`; its figures, the object checked byte for byte (then deleted)."""
        ctx = self.ctx
        command = system.command(ctx, file.path, ctx.token, cut_after)
        if not command.marks_itself:
            ctx.proxy.mark()
            if cut_after is not None:
                ctx.proxy.cut_after(cut_after)
        argv = ctx.ns.wrap(command.argv) if command.in_namespace else command.argv
        load = os.getloadavg()[0]
        # Clients that say when they began (after their own start-up) are timed from then; the CLI from its spawn.
        spawned = time.monotonic()
        try:
            done = subprocess.run(argv, env={**os.environ, **command.env}, capture_output=True, text=True,
                                  timeout=RUN_TIMEOUT_S, cwd=HERE)
        except subprocess.TimeoutExpired:
            return {"error": f"no result within {RUN_TIMEOUT_S} s", "load": load}
        row: dict = {"load": round(load, 2)}
        try:
            line = parse_line(done.stdout) if done.returncode == 0 else {}
        except (ValueError, RuntimeError) as e:
            line, row["error"] = {}, f"output: {e}"
        try:
            row.update(figures(ctx.proxy.report(), ctx.roles, file.size, line.get("started_monotonic", spawned)))
        except (KeyError, TypeError, ValueError) as e:
            row["figures_error"] = repr(e)
        if done.returncode != 0:
            row["error"] = done.stderr.strip()[-800:] or f"exit code {done.returncode}"
            return row
        if "error" in row:
            return row
        try:
            bucket, key = system.stored(ctx, line, ctx.token)
            self.storage.verify_and_delete(bucket, key, file.md5, file.size)
            row["verified"] = True
            row["mode"] = line.get("mode")
        except Exception as e:  # a wrong or missing object is a failed run, reported as such
            row["error"] = f"verification: {e}"
        return row

    def verify_model(self, profile: Profile) -> dict:
        """The link against its profile: small requests within a few ms of the round trip, and (without slow start)
        a raw transfer within 5 % of the bandwidth."""
        ctx = self.ctx
        raw_bytes = int(profile.uplink_mbit * 1e6 / 8 * 4)
        done = ctx.ns.exec([str(HERE / ".venv" / "bin" / "python"), str(HERE / "clients" / "probe.py"),
                            "--proxy", ctx.proxy.proxy_url, "--sink", ctx.proxy.sink, "--raw-bytes", str(raw_bytes)])
        probe = json.loads(done.stdout)
        new_ms, reused_ms = statistics.median(probe["new_connection_ms"]), statistics.median(probe["reused_connection_ms"])
        expected_new = profile.rtt_ms * (2 + int(profile.tls))
        raw_mbit = probe["raw"]["bytes"] * 8 / probe["raw"]["seconds"] / 1e6
        tolerance_ms = 5
        checks = {
            "new_connection": 0 <= new_ms - expected_new <= tolerance_ms,
            "reused_connection": 0 <= reused_ms - profile.rtt_ms <= tolerance_ms,
        }
        if not profile.slow_start:
            checks["bandwidth"] = abs(raw_mbit / profile.uplink_mbit - 1) <= 0.05
        return {
            "new_connection_ms": round(new_ms, 2), "expected_new_connection_ms": expected_new,
            "reused_connection_ms": round(reused_ms, 2), "expected_reused_connection_ms": profile.rtt_ms,
            "raw_mbit": round(raw_mbit, 2), "raw_bytes": probe["raw"]["bytes"], "tolerance_ms": tolerance_ms,
            "checks": checks, "ok": all(checks.values()),
        }

    def many(self, plan: Plan, files: list[File]) -> dict:
        """`plan.many` uploads at once by `plan.owners` owners over one link, the concurrent systems in turn."""
        ctx = self.ctx
        systems = plan.concurrent_systems()
        commands = []
        for i, file in enumerate(files):
            system = systems[i % len(systems)]
            token = harness.dev_token(f"owner-{i % plan.owners}")
            commands.append((system, file, token, system.command(ctx, file.path, token, None)))
        ctx.proxy.mark()
        load = os.getloadavg()[0]
        started = time.monotonic()
        procs = [subprocess.Popen(ctx.ns.wrap(c.argv), env={**os.environ, **c.env}, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, cwd=HERE) for _, _, _, c in commands]
        outputs = [p.communicate(timeout=RUN_TIMEOUT_S) for p in procs]
        wall = time.monotonic() - started
        report = ctx.proxy.report()
        verified, failures = 0, []
        for (system, file, token, _), proc, (stdout, stderr) in zip(commands, procs, outputs):
            if proc.returncode != 0:
                failures.append(f"{system.name}: {stderr.strip()[-300:]}")
                continue
            try:
                bucket, key = system.stored(ctx, parse_line(stdout), token)
                self.storage.verify_and_delete(bucket, key, file.md5, file.size)
                verified += 1
            except Exception as e:
                failures.append(f"{system.name}: verification: {e}")
        client = report["client"]
        summary, requests = client["summary"], client["requests"]
        total = sum(f.size for f in files)
        latencies: dict[str, dict] = {}
        for r in requests:
            name = r["name"]
            if r["answer_at_client"] is None:
                continue
            entry = latencies.setdefault(name, {"client_ms": [], "server_ms": []})
            entry["client_ms"].append((r["answer_at_client"] - r["first_on_link"]) * 1000)
            if far_side(r) is not None:
                entry["server_ms"].append(far_side(r) * 1000)
        span = summary["finished"] - (started - client["mark_monotonic"])
        return {
            "uploads": len(files), "owners": plan.owners, "bytes": total, "systems": [s.name for s in systems],
            "verified": verified, "failures": failures, "load": round(load, 2),
            "seconds": span, "process_seconds": wall, "aggregate_mib_per_s": total / MIB / span,
            "latency": {name: {k: [round(v, 1) for v in vs] for k, vs in entry.items()}
                        for name, entry in latencies.items()},
            "s3_client": dict(Counter(r["name"] for r in requests if ctx.roles.get(r["destination"]) == "s3")),
            "s3_service": dict(Counter(r["name"] for r in report["region-s3"]["requests"])),
            "dynamodb": dict(Counter(r["name"] for r in report["region-dynamodb"]["requests"])),
            "connections": sum(summary["connections"].values()),
        }


# ---------------------------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: bench.py OUT.jsonl", file=sys.stderr)
        return 2
    harness.require_root_tools()
    plan = plan_from_env()
    for name in ("chunked-upload", "local-server", "link_proxy"):
        if not (RELEASE / name).exists():
            raise SystemExit(f"bench/link: {RELEASE / name} is missing: cargo build --release -p bench -p local-server"
                             " -p chunked-upload")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    stack: list = []
    scratch = Path(tempfile.mkdtemp(prefix="bench-link-"))
    os.environ.setdefault("BENCH_LINK_LOGS", str(scratch))
    try:
        with open(argv[1], "a") as out:
            run_plan(plan, scratch, stack, out)
    finally:
        for item in reversed(stack):
            item()
        subprocess.run(["rm", "-rf", str(scratch)])
    return 0


def run_plan(plan: Plan, scratch: Path, stack: list, out) -> None:
    storage = Storage()
    s3 = storage.endpoint.removeprefix("http://")
    dynamodb = os.environ["AWS_ENDPOINT_URL_DYNAMODB"].removeprefix("http://")
    log(f"files: {plan.big_bytes // MIB} MiB and {plan.small_bytes // MIB} MiB; {plan.rounds} round(s); "
        f"profiles {[p.name for p in plan.profiles]}; variants {plan.variants}")
    big = random_file(scratch / "big.bin", plan.big_bytes)
    small = random_file(scratch / "small.bin", plan.small_bytes)

    ns = Namespace()
    stack.append(ns.close)
    proxy = LinkProxy(ns, s3, dynamodb, scratch)
    stack.append(proxy.stop)
    tus_bucket, companion_bucket = "bench-link-tus", "bench-link-companion"
    storage.ensure_bucket(tus_bucket, ["PUT"])
    storage.ensure_bucket(companion_bucket, ["PUT", "POST"])

    api_port = harness.free_port()
    local = Process("local-server", [str(RELEASE / "local-server")], env={
        "PORT": str(api_port), "AWS_ENDPOINT_URL_S3": proxy.region_s3,
        "AWS_ENDPOINT_URL_DYNAMODB": proxy.region_dynamodb, "CHUNKED_UPLOAD_STATIC_DIR": str(ROOT),
        "CHUNKED_UPLOAD_METRICS_NAMESPACE": "off", "RUST_LOG": "warn"})
    stack.append(local.stop)
    harness.wait_for_port("127.0.0.1", api_port)
    listening = lambda line: line.startswith("listening ")  # noqa: E731
    tus = Process("tus-node-server", ["node", str(ROOT / "bench" / "tus" / "server.mjs"), "--port", "0",
                                      "--endpoint", proxy.region_s3, "--bucket", tus_bucket], ready=listening)
    stack.append(tus.stop)
    companion = Process("companion", ["node", str(HERE / "servers" / "companion.mjs"), "--s3-endpoint",
                                      proxy.region_s3, "--bucket", companion_bucket], ready=listening)
    stack.append(companion.stop)
    chromium = scratch / "chromium-in-namespace"
    chromium.write_text(f'#!/bin/sh\nexec ip netns exec {ns.name} /usr/bin/chromium "$@"\n')
    chromium.chmod(0o755)

    tus_port, companion_port = tus.first_line.split()[1], companion.first_line.split()[1]
    ctx = Context(
        ns=ns, proxy=proxy, scratch=scratch, api=f"http://127.0.0.1:{api_port}",
        token=harness.dev_token("bench-link"), bucket=storage.bucket, s3=storage.endpoint,
        tus=f"http://127.0.0.1:{tus_port}", tus_bucket=tus_bucket,
        companion=f"http://127.0.0.1:{companion_port}", companion_bucket=companion_bucket, chromium=chromium,
        roles={f"127.0.0.1:{api_port}": "api", s3: "s3", f"127.0.0.1:{tus_port}": "tus",
               f"127.0.0.1:{companion_port}": "companion"},
    )
    bench = Bench(ctx, storage, out)
    sizes = {"big": big, "small": small}
    for system in plan.systems:
        if system.pending:
            bench.emit({"bench": "link_pending", "system": system.name, "label": system.label,
                        "family": system.family, "reason": system.pending})
    active = [s for s in plan.systems if not s.pending]

    for base in plan.profiles:
        for variant in plan.variants:
            profile = base.variant(*VARIANTS[variant])
            proxy.set_profile(profile)
            where = {"profile": profile.name, "variant": variant, "uplink_mbit": profile.uplink_mbit,
                     "rtt_ms": profile.rtt_ms}
            check = bench.verify_model(profile)
            bench.emit({"bench": "link_verify", **where, **check})
            log(f"{profile.name}, {variant}: model {'verified' if check['ok'] else 'OFF ITS PROFILE'}: {check}")
            for round_ in range(1, plan.rounds + 1):
                for size, file in sizes.items():
                    for system in (s for s in active if size in s.sizes):
                        row = bench.run_once(system, file)
                        bench.emit({"bench": "link_run", **where, "system": system.name, "label": system.label,
                                    "family": system.family, "size": file.size, "round": round_, **row})
                        log(f"{profile.name}/{variant} r{round_} {size} {system.name}: "
                            f"{row.get('seconds', 0):.2f} s {row.get('error', '')}")
            if plan.cut and variant == "plain":
                for system in active:
                    if "big" not in system.sizes:
                        continue
                    row = bench.run_once(system, big, cut_after=big.size // 2)
                    bench.emit({"bench": "link_cut", **where, "system": system.name, "label": system.label,
                                "family": system.family, "size": big.size, **row})
                    log(f"{profile.name} cut {system.name}: {row.get('cut')} {row.get('error', '')}")
            storage.clean_prefix(tus_bucket)
            storage.clean_prefix(companion_bucket)

    # A BENCH_LINK_SYSTEMS without a concurrent system has nothing to run the many uploads with.
    if plan.many and not plan.concurrent_systems():
        log("many: skipped, none of the systems chosen takes part (the CLI's modes and tus do)")
    elif plan.many:
        profile = PROFILES[MANY_PROFILE] if PROFILES[MANY_PROFILE] in plan.profiles else plan.profiles[0]
        proxy.set_profile(profile)
        files = [random_file(scratch / f"many-{i}.bin", plan.many_bytes + i) for i in range(plan.many)]
        row = bench.many(plan, files)
        bench.emit({"bench": "link_many", "profile": profile.name, "uplink_mbit": profile.uplink_mbit,
                    "rtt_ms": profile.rtt_ms, **row})
        log(f"many: {row['uploads']} uploads, {row['verified']} verified, {row['aggregate_mib_per_s']:.1f} MiB/s")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
