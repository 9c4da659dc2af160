"""The link benchmark's part of RESULTS.md (and link.svg): medians per profile and system, the model's verification,
the budgets of issue 21 with their measured verdicts, the cut, the many-uploads run and the cost per GiB.

Used by bench/report.py; reads the rows bench/link/bench.py wrote (`bench`: link_verify, link_run, link_cut,
link_pending, link_many). Standard library only.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from xml.sax.saxutils import escape

MIB = 1024 * 1024
GIB = 1024 * MIB
PROFILE_ORDER = ("broadband", "office", "far")
VARIANT_ORDER = ("plain", "slow-start+tls")
VARIANT_LABEL = {"plain": "plain", "slow-start+tls": "slow start and TLS on"}
# What each of ours is held against (bench/link/systems.py BASELINES).
BASELINES = {
    "cli-parallel": "boto3", "cli-direct": "boto3", "browser-parallel": "boto3", "browser-direct": "boto3",
    "ours-tus": "tus-node-server", "ours-tus-parallel": "boto3", "ours-uppy-s3": "uppy-companion",
}
# Issue 21's floors: at least this times the baseline's MiB/s.
FLOORS = {"ours-tus": 1.0, "ours-tus-parallel": 0.95, "ours-uppy-s3": 0.95}
COLOURS = ("#2b6cb0", "#3182ce", "#63b3ed", "#2f855a", "#38a169", "#68d391", "#805ad5", "#d53f8c", "#dd6b20",
           "#718096", "#4a5568", "#b7791f", "#c53030", "#319795")

# Prices, us-east-1, list prices as of 2026-12-06 (sources in PRICE_SOURCES).
PRICES = {
    "api_per_million": 1.00,  # HTTP API, first 300 million a month, metered in 512 KB increments
    "lambda_requests_per_million": 0.20,
    "lambda_gb_second_arm64": 0.0000133334,  # template.yaml's Architecture default: arm64
    "dynamodb_write_per_million": 0.625,  # on-demand write request units
    "dynamodb_read_per_million": 0.125,
    "s3_put_per_thousand": 0.005,  # PUT, COPY, POST, LIST (UploadPart, Create/CompleteMultipartUpload, ...)
    "s3_get_per_thousand": 0.0004,  # GET, HEAD and the rest
}
PRICE_SOURCES = [
    ("API Gateway HTTP API: $1.00 per million requests (first 300 million), metered in 512 KB increments",
     "https://aws.amazon.com/api-gateway/pricing/"),
    ("Lambda: $0.20 per million requests; $0.0000133334 per GB-second on arm64 ($0.0000166667 on x86)",
     "https://aws.amazon.com/lambda/pricing/"),
    ("DynamoDB on demand: $0.625 per million write and $0.125 per million read request units (since November 2024)",
     "https://aws.amazon.com/dynamodb/pricing/on-demand/"),
    ("S3 Standard: $0.005 per 1,000 PUT, COPY, POST and LIST requests, $0.0004 per 1,000 GET; data in is free",
     "https://aws.amazon.com/s3/pricing/"),
    ("EC2 t4g (Linux, on demand) and their baseline network bandwidth",
     "https://aws.amazon.com/ec2/pricing/on-demand/ and "
     "https://docs.aws.amazon.com/ec2/latest/instancetypes/gp.html#gp_network"),
]
# (instance, $ per hour, baseline Mbit/s each way): the smallest that sustains a throughput runs tusd for it.
T4G = [("t4g.nano", 0.0042, 32), ("t4g.micro", 0.0084, 64), ("t4g.small", 0.0168, 128), ("t4g.medium", 0.0336, 256),
       ("t4g.large", 0.0672, 512), ("t4g.xlarge", 0.1344, 1024), ("t4g.2xlarge", 0.2688, 2048)]
# Memory (MB) of the function serving each route (template.yaml: ChunkMemorySize default, the complete function).
FUNCTION_MB = {"POST /upload/complete": 512}
DEFAULT_FUNCTION_MB = 1024
S3_PUT_CLASS = {"PutObject", "UploadPart", "CreateMultipartUpload", "CompleteMultipartUpload", "ListObjectsV2",
                "ListParts", "DeleteObjects", "ListMultipartUploads", "PostObject", "Other"}
S3_FREE = {"DeleteObject", "AbortMultipartUpload"}
DYNAMODB_WRITES = {"PutItem": 1, "UpdateItem": 1, "DeleteItem": 1, "TransactWriteItems": 4, "BatchWriteItem": 1}
DYNAMODB_READS = {"GetItem": 1, "Query": 1, "BatchGetItem": 1, "Scan": 1, "TransactGetItems": 2}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=2, unit=""):
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}{unit}"


class Link:
    """The link rows of one bench run."""

    def __init__(self, by_bench: dict[str, list[dict]]):
        self.verify = by_bench.get("link_verify", [])
        self.runs = [r for r in by_bench.get("link_run", [])]
        self.cuts = by_bench.get("link_cut", [])
        # Once per system, however many runs the rows come from.
        self.pending = list({r["system"]: r for r in by_bench.get("link_pending", [])}.values())
        self.many = by_bench.get("link_many", [])
        self.labels = {r["system"]: r.get("label", r["system"]) for r in self.runs + self.pending + self.cuts}
        self.families = {r["system"]: r.get("family") for r in self.runs + self.pending + self.cuts}
        self.systems = list(dict.fromkeys(r["system"] for r in self.runs))
        sizes = sorted({r["size"] for r in self.runs})
        self.small = sizes[0] if sizes else None
        self.big = sizes[-1] if len(sizes) > 1 else None
        self.profiles = [p for p in PROFILE_ORDER if any(r["profile"] == p for r in self.runs)]
        self.variants = [v for v in VARIANT_ORDER if any(r["variant"] == v for r in self.runs)]
        self.link = {r["profile"]: (r["uplink_mbit"], r["rtt_ms"]) for r in self.runs + self.verify}

    def __bool__(self) -> bool:
        return bool(self.runs or self.verify)

    def rows(self, profile, variant, size, system) -> list[dict]:
        return [r for r in self.runs if (r["profile"], r["variant"], r["size"], r["system"]) == (profile, variant, size,
                                                                                                     system)]

    def med(self, profile, variant, size, system, key):
        rows = [r for r in self.rows(profile, variant, size, system) if "error" not in r]
        return median([r.get(key) for r in rows])

    def failures(self, profile, variant, size, system) -> list[str]:
        return [r["error"] for r in self.rows(profile, variant, size, system) if "error" in r]

    def resent(self, cut_row: dict) -> int:
        """File bytes a cut made its system send again: the payload beyond the file's size, less what the same
        system's runs without a cut carry beyond it too (form fields, multipart boundaries)."""
        uncut_payload = self.med(cut_row["profile"], cut_row["variant"], cut_row["size"], cut_row["system"], "payload_bytes")
        overhead = max(0, uncut_payload - cut_row["size"]) if uncut_payload is not None else 0
        return max(0, cut_row["cut"]["resent_bytes"] - overhead)

    def label(self, system) -> str:
        return self.labels.get(system, system)

    def rtt(self, profile) -> float:
        return self.link[profile][1] / 1000

    def rate(self, profile) -> float:
        """Bytes a second of payload."""
        return self.link[profile][0] * 1e6 / 8


# ---------------------------------------------------------------------------------------------------------------


def section(link: Link, machine: dict) -> list[str]:
    if not link:
        return ["# Over a modeled internet link", "",
                "Not measured in this run (the link benchmark needs root: `BENCH_LINK=off` skipped it, or it failed)."]
    loads = [r["load"] for r in link.runs if "load" in r]
    load = (f"The 1-minute load average during the runs was {min(loads):.1f} to {max(loads):.1f} on "
            f"{machine.get('cores', '?')} cores") if loads else "The load was not recorded"
    lines = [
        "# Over a modeled internet link",
        "",
        "What a user's upload takes over an internet link, each system side by side in one run: a client in a network "
        "namespace whose uplink the kernel shapes, every request through a proxy that adds the link's delays (and, in "
        "the second variant, TCP's slow start and a TLS round trip per connection), the service's own calls to S3 and "
        f"DynamoDB through a {2} ms in-region round trip. [docs/benchmarks.md](../../docs/benchmarks.md) describes the "
        f"model and how to run it. {load}: every figure is bounded by the link, but the emulators, the servers and the "
        "clients still share the machine's cores, so figures from a busy machine are provisional.",
        "",
    ]
    lines += verification(link)
    lines += wall_tables(link)
    lines += detail_tables(link)
    lines += small_file(link)
    lines += cut_table(link)
    lines += budgets(link)
    lines += many_users(link)
    lines += costs(link)
    if link.pending:
        lines += ["## Pending systems", "",
                  "Not run, so no figures: " + "; ".join(f"{r['label']} (`{r['system']}`): {r['reason']}"
                                                        for r in link.pending) + ". `bench/link/README.md` says how "
                  "to add them when they land.", ""]
    lines += ["![Wall time by profile and system](link.svg)", ""]
    return lines


def verification(link: Link) -> list[str]:
    lines = ["## The link model, verified against its profiles", "",
             "Each profile's link checked as the run began: a raw transfer of 4 seconds' worth (the sink times the "
             "bytes' arrival), and small requests through the proxy, on a new connection (TCP's handshake, and TLS's "
             "when on, then the request: 2 or 3 round trips) and on the same connection again (1 round trip). Medians "
             "of 5; within 5 ms and 5 % passes.", "",
             "| profile | variant | uplink | RTT | raw transfer | new connection (expected) | reused (expected) | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(link.verify, key=lambda r: (PROFILE_ORDER.index(r["profile"]), r["variant"])):
        raw = f"{r['raw_mbit']:.1f} Mbit/s ({r['raw_mbit'] / r['uplink_mbit']:.1%})"
        if "bandwidth" not in r["checks"]:
            raw += ", slow start"
        lines.append(f"| {r['profile']} | {VARIANT_LABEL.get(r['variant'], r['variant'])} | {r['uplink_mbit']:g} Mbit/s"
                     f" | {r['rtt_ms']:g} ms | {raw} | {r['new_connection_ms']:.1f} ms ({r['expected_new_connection_ms']:g})"
                     f" | {r['reused_connection_ms']:.1f} ms ({r['expected_reused_connection_ms']:g}) | "
                     f"{'verified' if r['ok'] else 'off: ' + ', '.join(k for k, v in r['checks'].items() if not v)} |")
    return lines + [""]


def wall_tables(link: Link) -> list[str]:
    lines = []
    if link.big is None:
        return lines
    for variant in link.variants:
        rounds = max((r["round"] for r in link.runs if r["variant"] == variant), default=0)
        lines += [f"## {link.big // MIB} MiB: wall time by profile ({VARIANT_LABEL[variant]}, median of {rounds})", "",
                  "Seconds from the client's start to the completion's answer, MiB/s, and the ratio to the baseline "
                  "the system is held against (boto3 for parallel and direct). The link alone is the file at the "
                  "profile's rate.", "",
                  "| system | " + " | ".join(f"{p} ({link.link[p][0]:g} Mbit/s, {link.link[p][1]:g} ms)"
                                            for p in link.profiles) + " |",
                  "|---|" + "---|" * len(link.profiles),
                  "| link alone | " + " | ".join(f"{link.big / link.rate(p):.2f} s" for p in link.profiles) + " |"]
        for system in link.systems:
            cells = []
            for profile in link.profiles:
                seconds = link.med(profile, variant, link.big, system, "seconds")
                if seconds is None:
                    failed = link.failures(profile, variant, link.big, system)
                    cells.append("failed" if failed else "not run")
                    continue
                cell = f"{seconds:.2f} s ({link.big / MIB / seconds:.1f} MiB/s)"
                base = BASELINES.get(system)
                base_seconds = link.med(profile, variant, link.big, base, "seconds") if base else None
                if base_seconds:
                    cell += f" {base_seconds / seconds:.2f}x"
                cells.append(cell)
            lines.append(f"| {link.label(system)} | " + " | ".join(cells) + " |")
        lines += [f"| {r['label']} | " + " | ".join("pending" for _ in link.profiles) + " |" for r in link.pending]
        lines.append("")
    return lines


def detail_tables(link: Link) -> list[str]:
    if link.big is None:
        return []
    lines = ["## Where the time goes, per profile", "",
             f"{link.big // MIB} MiB, medians. Before the first byte: from the client's start to the first byte of "
             "file data on the link; link idle: the link's capacity left unused between the first and the last byte "
             "of file data, in seconds (that span less the time its bytes take at the link's rate); after the last "
             "byte: from it to the completion's answer. Connections: new connections "
             "by destination (a TCP handshake each, and a TLS one when on).", ""]
    for variant in link.variants:
        for profile in link.profiles:
            lines += [f"### {profile}, {VARIANT_LABEL[variant]} ({link.link[profile][0]:g} Mbit/s, "
                      f"{link.link[profile][1]:g} ms RTT)", "",
                      "| system | wall | before first byte | link idle | after last byte | connections | requests |",
                      "|---|---|---|---|---|---|---|"]
            for system in link.systems:
                rows = [r for r in link.rows(profile, variant, link.big, system) if "error" not in r]
                if not rows:
                    continue
                connections = rows[0].get("connections", {})
                requests = sum(rows[0].get("requests", {}).values())
                lines.append(
                    f"| {link.label(system)} | {fmt(link.med(profile, variant, link.big, system, 'seconds'))} s | "
                    f"{fmt(link.med(profile, variant, link.big, system, 'before_first_byte'), 3)} s | "
                    f"{fmt(link.med(profile, variant, link.big, system, 'idle_seconds'), 2)} s | "
                    f"{fmt(link.med(profile, variant, link.big, system, 'after_last_byte'), 3)} s | "
                    f"{sum(connections.values())} ({', '.join(f'{k} {v}' for k, v in sorted(connections.items()))}) | "
                    f"{requests} |")
            lines.append("")
    return lines


def small_file(link: Link) -> list[str]:
    if link.small is None:
        return []
    lines = [f"## A {link.small // MIB} MiB file", "",
             "Milliseconds from the client's start to the completion's answer (median), beside the budget: the file "
             "at the link's rate plus 3 round trips. `auto` is the clients' own choice (the mode it picked in "
             "brackets).", ""]
    for variant in link.variants:
        lines += [f"### {VARIANT_LABEL[variant]}", "",
                  "| system | " + " | ".join(f"{p}: budget {1000 * (link.small / link.rate(p) + 3 * link.rtt(p)):.0f} ms"
                                            for p in link.profiles) + " |",
                  "|---|" + "---|" * len(link.profiles)]
        for system in link.systems:
            cells = []
            for profile in link.profiles:
                seconds = link.med(profile, variant, link.small, system, "seconds")
                if seconds is None:
                    cells.append("failed" if link.failures(profile, variant, link.small, system) else "not run")
                    continue
                modes = {r.get("mode") for r in link.rows(profile, variant, link.small, system) if r.get("mode")}
                picked = f" ({', '.join(sorted(modes))})" if system.endswith("-auto") and modes else ""
                cells.append(f"{seconds * 1000:.0f} ms{picked}")
            lines.append(f"| {link.label(system)} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def cut_table(link: Link) -> list[str]:
    if not link.cuts:
        return []
    profiles = [p for p in PROFILE_ORDER if any(r["profile"] == p for r in link.cuts)]
    lines = ["## After a cut at 50 %", "",
             "Every connection of the client's link reset once half the file's bytes had crossed it (plain link). "
             "Re-sent: file bytes sent again (the piece: the largest request of file data); back after: seconds "
             "from the cut to the next byte of file data.", "",
             "| system | " + " | ".join(profiles) + " |", "|---|" + "---|" * len(profiles)]
    for system in dict.fromkeys(r["system"] for r in link.cuts):
        cells = []
        for profile in profiles:
            rows = [r for r in link.cuts if (r["system"], r["profile"]) == (system, profile)]
            if not rows or "cut" not in rows[0]:
                cells.append("failed: " + rows[0].get("error", "no cut")[:80] if rows else "not run")
                continue
            r = rows[0]
            cut = r["cut"]
            back = "never" if cut["resumed_after"] is None else f"{cut['resumed_after']:.2f} s"
            state = "" if "error" not in r else " (then failed)"
            cells.append(f"{link.resent(r) / MIB:.1f} MiB re-sent (piece {r.get('piece_bytes', 0) / MIB:.1f} MiB), "
                         f"back after {back}{state}")
        lines.append(f"| {link.label(system)} | " + " | ".join(cells) + " |")
    return lines + [""]


# ---------------------------------------------------------------------------------------------------------------
# Budgets


def budgets(link: Link) -> list[str]:
    lines = ["## Budgets (issue 21, section 3)", "",
             "Each budget on every profile, with slow start and TLS off and on; where one is missed, what stands in "
             "the way, measured.", ""]
    if link.big is not None:
        for system in [s for s in link.systems if BASELINES.get(s) == "boto3" and s not in FLOORS]:
            lines += relayed_and_direct(link, system)
        for system in [s for s in link.systems if s in FLOORS]:
            lines += floored(link, system)
        for system in [s for s in link.systems if s.endswith("-sequential")]:
            lines += sequential(link, system)
    lines += small_budget(link)
    lines += resume_budget(link)
    for r in link.pending:
        base = BASELINES.get(r["system"])
        if base:
            lines.append(f"- **{r['label']}** at least {FLOORS.get(r['system'], 1.0):.2f}x {link.label(base)}: "
                         "pending (not built yet).")
    return lines + [""]


def relayed_and_direct(link: Link, system: str) -> list[str]:
    lines = [f"- **{link.label(system)}**: at least 1.0x boto3, its time before the first byte at most boto3's, "
             "after the last byte at most 2 RTT."]
    for variant in link.variants:
        for profile in link.profiles:
            ours = {k: link.med(profile, variant, link.big, system, k)
                    for k in ("seconds", "before_first_byte", "after_last_byte", "before_first_request")}
            theirs = {k: link.med(profile, variant, link.big, "boto3", k) for k in ("seconds", "before_first_byte")}
            if ours["seconds"] is None or theirs["seconds"] is None:
                lines.append(f"  - {profile}, {VARIANT_LABEL[variant]}: not measured")
                continue
            ratio = theirs["seconds"] / ours["seconds"]
            rtt = link.rtt(profile)
            checks = [
                (ratio >= 1.0, f"{ratio:.3f}x boto3"),
                (ours["before_first_byte"] <= theirs["before_first_byte"],
                 f"first byte {ours['before_first_byte']:.3f} s vs boto3's {theirs['before_first_byte']:.3f} s"),
                (ours["after_last_byte"] <= 2 * rtt, f"after the last byte {ours['after_last_byte']:.3f} s vs "
                                                    f"2 RTT {2 * rtt:.3f} s"),
            ]
            verdict = "met" if all(ok for ok, _ in checks) else "missed"
            why = []
            if not checks[2][0]:
                complete = handler_median(link, profile, variant, system, "POST /upload/complete")
                if complete is not None:
                    why.append(f"the completion's own time is {complete:.0f} ms (its S3 and DynamoDB calls, in "
                               f"region), on top of the last part's answer and the completion's round trips")
            if not checks[1][0] and ours["before_first_request"] is not None:
                opening = handler_median(link, profile, variant, system, "POST /upload/create")
                why.append(f"{ours['before_first_request']:.3f} s pass before the first request (the client's "
                           "start-up, and reading the first pieces)" +
                           (f"; the opening's own time is {opening:.0f} ms" if opening is not None else ""))
            lines.append(f"  - {profile}, {VARIANT_LABEL[variant]}: **{verdict}**: " +
                         "; ".join(text + ("" if ok else " (missed)") for ok, text in checks) +
                         (f". In the way: {'; '.join(why)}" if why else ""))
    return lines


def floored(link: Link, system: str) -> list[str]:
    """A protocol's system against what its users would run instead, on the big file: at least FLOORS times its
    MiB/s. Where missed, the differences that measure why: before the first byte and after the last, link idle,
    and the service's time per route."""
    base, floor = BASELINES[system], FLOORS[system]
    lines = [f"- **{link.label(system)}**: at least {floor:.2f}x {link.label(base)}."]
    keys = ("seconds", "before_first_byte", "after_last_byte", "idle_seconds")
    for variant in link.variants:
        for profile in link.profiles:
            ours = {k: link.med(profile, variant, link.big, system, k) for k in keys}
            theirs = {k: link.med(profile, variant, link.big, base, k) for k in keys}
            if ours["seconds"] is None or theirs["seconds"] is None:
                lines.append(f"  - {profile}, {VARIANT_LABEL[variant]}: not measured")
                continue
            ratio = theirs["seconds"] / ours["seconds"]
            text = f"{ratio:.3f}x {link.label(base)} ({ours['seconds']:.2f} s against {theirs['seconds']:.2f} s)"
            if ratio >= floor:
                lines.append(f"  - {profile}, {VARIANT_LABEL[variant]}: **met**: {text}")
                continue
            why = [f"{name} {fmt(ours[k])} s against {fmt(theirs[k])} s"
                   for k, name in (("before_first_byte", "before the first byte"),
                                   ("idle_seconds", "link idle"), ("after_last_byte", "after the last byte"))
                   if ours[k] is not None and theirs[k] is not None and ours[k] > theirs[k]]
            routes = sorted({route for r in link.rows(profile, variant, link.big, system)
                             for route in r.get("handler_ms_by_route", {})})
            served = [f"{route} {handler_median(link, profile, variant, system, route):.0f} ms" for route in routes]
            if served:
                why.append("the service's time per request (medians): " + ", ".join(served))
            lines.append(f"  - {profile}, {VARIANT_LABEL[variant]}: **missed**: {text}. In the way: " + "; ".join(why))
    return lines


def handler_median(link, profile, variant, system, route) -> float | None:
    values = [ms for r in link.rows(profile, variant, link.big, system) for ms in r.get("handler_ms_by_route", {})
              .get(route, [])]
    return median(values)


def sequential(link: Link, system: str) -> list[str]:
    lines = [f"- **{link.label(system)}** within 5 % of its own limit (one request at a time: each request's bytes at "
             "the link's rate, its round trip and the server's time for it, measured; plus the connection's "
             "handshake)."]
    for variant in link.variants:
        for profile in link.profiles:
            seconds = link.med(profile, variant, link.big, system, "seconds")
            limit = link.med(profile, variant, link.big, system, "serial_limit_seconds")
            if seconds is None or limit is None:
                lines.append(f"  - {profile}, {VARIANT_LABEL[variant]}: not measured")
                continue
            server = median([sum(map(sum, r.get("handler_ms_by_route", {}).values())) / 1000
                             for r in link.rows(profile, variant, link.big, system) if "error" not in r])
            over = seconds / limit - 1
            lines.append(f"  - {profile}, {VARIANT_LABEL[variant]}: **{'met' if over <= 0.05 else 'missed'}**: "
                         f"{seconds:.2f} s against a limit of {limit:.2f} s ({over:+.1%}; the server's time in it: "
                         f"{fmt(server)} s)")
    return lines


def small_budget(link: Link) -> list[str]:
    if link.small is None:
        return []
    ours = [s for s in link.systems if link.families.get(s) == "ours" and not s.endswith("-auto")]
    lines = [f"- **A {link.small // MIB} MiB file** in at most its transfer time plus 3 RTT in some mode, and the "
             "clients' automatic choice picks it."]
    for variant in link.variants:
        for profile in link.profiles:
            budget = link.small / link.rate(profile) + 3 * link.rtt(profile)
            timed = {s: link.med(profile, variant, link.small, s, "seconds") for s in ours}
            timed = {s: t for s, t in timed.items() if t is not None}
            if not timed:
                continue
            best = min(timed, key=timed.get)
            autos = []
            for auto in (s for s in link.systems if s.endswith("-auto")):
                modes = {r.get("mode") for r in link.rows(profile, variant, link.small, auto) if r.get("mode")}
                t = link.med(profile, variant, link.small, auto, "seconds")
                autos.append(f"{link.label(auto)} picks {'/'.join(sorted(modes)) or '?'} ({fmt(t and t * 1000, 0)} ms)")
            met = timed[best] <= budget
            extra = ""
            if not met:
                rows = [r for r in link.rows(profile, variant, link.small, best) if "error" not in r]
                server = median([sum(map(sum, r.get("handler_ms_by_route", {}).values())) for r in rows])
                start = median([r.get("before_first_request") for r in rows])
                rest = timed[best] - link.small / link.rate(profile) - (server or 0) / 1000 - (start or 0)
                extra = (f"in the way: the server's time {fmt(server, 0)} ms, the client's start-up "
                         f"{fmt(start and start * 1000, 0)} ms, and {rest / link.rtt(profile):.1f} RTT of round trips"
                         " (the connection's handshake and each request's" +
                         (", and slow start's" if variant != "plain" else "") + ")")
            lines.append(f"  - {profile}, {VARIANT_LABEL[variant]}: **{'met' if met else 'missed'}** by "
                         f"{link.label(best)}: {timed[best] * 1000:.0f} ms against {budget * 1000:.0f} ms; "
                         + "; ".join([*autos, extra] if extra else autos))
    return lines


def resume_budget(link: Link) -> list[str]:
    ours = [r for r in link.cuts if link.families.get(r["system"]) == "ours" and "cut" in r]
    if not ours:
        return []
    lines = ["- **Resume** re-sends at most one piece's bytes (the largest request of file data)."]
    for r in ours:
        resent, piece = link.resent(r), r.get("piece_bytes", 0)
        verdict = "met" if resent <= piece else "missed"
        why = "" if resent <= piece else (f"; in the way: {resent / max(piece, 1):.1f} pieces were on their way at the "
                                           "cut, and a piece is taken whole (S3 takes a part whole)")
        lines.append(f"  - {link.label(r['system'])}, {r['profile']}: **{verdict}**: {resent / MIB:.1f} MiB re-sent, "
                     f"piece {piece / MIB:.1f} MiB{why}")
    return lines


# ---------------------------------------------------------------------------------------------------------------


def many_users(link: Link) -> list[str]:
    if not link.many:
        return []
    r = link.many[-1]
    gib = r["bytes"] / GIB
    lines = [f"## Many users at once ({r['profile']} link)", "",
             f"{r['uploads']} uploads at once by {r['owners']} owners over one {r['uplink_mbit']:g} Mbit/s, "
             f"{r['rtt_ms']:g} ms link, {r['bytes'] / MIB:.0f} MiB in all, in turn {', '.join(r['systems'])}: "
             f"**{r['verified']} of {r['uploads']} objects verified byte for byte**"
             + (f" ({len(r['failures'])} failed: {'; '.join(r['failures'][:3])})" if r["failures"] else "") +
             f"; {r['aggregate_mib_per_s']:.1f} MiB/s aggregate in {r['seconds']:.1f} s (the link carries "
             f"{r['uplink_mbit'] / 8 * 1e6 / MIB:.1f} MiB/s).", "",
             "| requests | count | p50 client | p99 client | p50 server | p99 server |", "|---|---|---|---|---|---|"]
    wanted = {"POST /upload": "chunks (`POST /upload`)", "POST /upload/{id}/parts": "part URLs",
              "PATCH": "tus `PATCH`"}
    for name, label in wanted.items():
        samples = {"client_ms": [], "server_ms": []}
        for request, values in r["latency"].items():
            if request == name or (name == "PATCH" and request.startswith("PATCH ")):
                for k in samples:
                    samples[k] += values.get(k, [])
        if not samples["client_ms"]:
            lines.append(f"| {label} | 0 | | | | |" if name != "PATCH" else f"| {label} | pending | | | | |")
            continue
        p = lambda values, q: fmt(percentile(values, q), 0, " ms")  # noqa: E731
        lines.append(f"| {label} | {len(samples['client_ms'])} | {p(samples['client_ms'], 0.5)} | "
                     f"{p(samples['client_ms'], 0.99)} | {p(samples['server_ms'], 0.5)} | "
                     f"{p(samples['server_ms'], 0.99)} |")
    s3 = {**count_merge(r["s3_service"], r["s3_client"])}
    lines += ["", "Client: from the request's first byte on the link to its answer's first byte at the client (a "
                  "chunk's own transfer included); server: from its last byte at the API to the answer's first.", "",
              f"Per GiB: DynamoDB {sum(r['dynamodb'].values()) / gib:.0f} requests ("
              + ", ".join(f"{k} {v / gib:.0f}" for k, v in sorted(r["dynamodb"].items())) + f"); S3 "
              f"{sum(s3.values()) / gib:.0f} requests (" + ", ".join(f"{k} {v / gib:.0f}" for k, v in sorted(s3.items()))
              + ").", ""]
    return lines


def percentile(values, q):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def count_merge(*counts: dict) -> dict:
    merged: dict = defaultdict(int)
    for c in counts:
        for k, v in c.items():
            merged[k] += v
    return dict(merged)


# ---------------------------------------------------------------------------------------------------------------
# Cost per GiB


def cost_of(row: dict, size: int, api: bool) -> dict:
    """Dollars per GiB of a run's measured counts."""
    per_gib = GIB / size
    s3 = count_merge(row.get("s3_service", {}), row.get("s3_client", {}))
    s3_put = sum(v for k, v in s3.items() if k in S3_PUT_CLASS)
    s3_get = sum(v for k, v in s3.items() if k not in S3_PUT_CLASS and k not in S3_FREE)
    writes = sum(DYNAMODB_WRITES.get(k, 0) * v for k, v in row.get("dynamodb", {}).items())
    reads = sum(DYNAMODB_READS.get(k, 0) * v for k, v in row.get("dynamodb", {}).items())
    invocations = sum(len(v) for v in row.get("handler_ms_by_route", {}).values()) if api else 0
    gb_seconds = 0.0
    if api:
        for route, durations in row.get("handler_ms_by_route", {}).items():
            memory_gb = FUNCTION_MB.get(route, DEFAULT_FUNCTION_MB) / 1024
            gb_seconds += sum(math.ceil(ms) / 1000 for ms in durations) * memory_gb
    units = row.get("api_units", 0) if api else 0
    dollars = {
        "API Gateway": units * PRICES["api_per_million"] / 1e6,
        "Lambda": invocations * PRICES["lambda_requests_per_million"] / 1e6
        + gb_seconds * PRICES["lambda_gb_second_arm64"],
        "DynamoDB": writes * PRICES["dynamodb_write_per_million"] / 1e6 + reads * PRICES["dynamodb_read_per_million"] / 1e6,
        "S3": s3_put * PRICES["s3_put_per_thousand"] / 1e3 + s3_get * PRICES["s3_get_per_thousand"] / 1e3,
    }
    return {"api_units": units * per_gib, "invocations": invocations * per_gib, "gb_seconds": gb_seconds * per_gib,
            "dynamodb_writes": writes * per_gib, "dynamodb_reads": reads * per_gib, "s3_put": s3_put * per_gib,
            "s3_get": s3_get * per_gib, "dollars": {k: v * per_gib for k, v in dollars.items()},
            "total": sum(dollars.values()) * per_gib}


def costs(link: Link) -> list[str]:
    if link.big is None or not link.profiles:
        return []
    profile, variant = link.profiles[0], "plain"
    lines = [f"## Cost per GiB, from the counts measured in this run ({profile}, {link.big // MIB} MiB)", "",
             "Lambda GB-seconds are the handlers' measured times (from a request's last byte at the API to its "
             "answer's first, each rounded up to the millisecond) at the template's memory (chunk function 1024 MB, "
             "complete function 512 MB, arm64); API Gateway requests are metered in 512 KB units; DynamoDB units "
             "count 1 per write and read (items under 1 KB; a transaction's 2 items at 2 each); S3 requests are the "
             "service's own and the client's direct ones. The emulators answer in their own time, not S3's and "
             "DynamoDB's: the GB-seconds are this machine's.", "",
             "| per GiB | API units | Lambda invocations | GB-s | DynamoDB WRU / RRU | S3 PUT-class / GET | "
             "API Gateway | Lambda | DynamoDB | S3 | **total** |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for system in link.systems:
        rows = [r for r in link.rows(profile, variant, link.big, system) if "error" not in r]
        if not rows:
            continue
        c = cost_of(rows[0], link.big, api=link.families.get(system) == "ours")
        d = c["dollars"]
        lines.append(f"| {link.label(system)} | {c['api_units']:.0f} | {c['invocations']:.0f} | {c['gb_seconds']:.1f} | "
                     f"{c['dynamodb_writes']:.0f} / {c['dynamodb_reads']:.0f} | {c['s3_put']:.0f} / {c['s3_get']:.0f} | "
                     f"${d['API Gateway']:.5f} | ${d['Lambda']:.5f} | ${d['DynamoDB']:.5f} | ${d['S3']:.5f} | "
                     f"**${c['total']:.5f}** |")
    lines += ["", "boto3's row is the raw S3 upload (its requests only). Uppy + Companion's and tus-node-server's rows "
                  "count their S3 requests only; their servers are priced below."]
    lines += tusd_instance(link)
    lines += ["", "Prices (us-east-1, list prices, as published on 2026-12-06):", ""]
    lines += [f"- {text} ({url})" for text, url in PRICE_SOURCES]
    lines += ["- EC2 figures: " + ", ".join(f"{name} ${price}/h, {mbit} Mbit/s baseline" for name, price, mbit in T4G),
              ""]
    return lines


def tusd_instance(link: Link) -> list[str]:
    """A tusd server on the smallest t4g whose baseline bandwidth carries the throughput in and out (to S3)."""
    if not link.many:
        return []
    r = link.many[-1]
    mbit = r["aggregate_mib_per_s"] * MIB * 8 / 1e6
    fit = next((t for t in T4G if t[2] >= mbit), T4G[-1])
    gib_per_hour = r["aggregate_mib_per_s"] * 3600 / 1024
    per_gib = fit[1] / gib_per_hour
    tus_rows = [x for x in link.rows(link.profiles[0], "plain", link.big, "tus-node-server") if "error" not in x]
    s3 = cost_of(tus_rows[0], link.big, api=False)["total"] if tus_rows else None
    return ["", f"A tusd server for the many-uploads run's {mbit:.0f} Mbit/s: the smallest t4g whose baseline bandwidth "
                f"carries it (each way: in from clients, out to S3) is {fit[0]} (${fit[1]}/h, {fit[2]} Mbit/s): "
                f"${per_gib:.5f} per GiB when it is busy all the time (idle hours cost the same and carry nothing), "
                f"plus its S3 requests (tus-node-server's, measured above: {fmt(s3, 5, '')} $/GiB). Its CPU at that "
                "rate is not measured here."]


# ---------------------------------------------------------------------------------------------------------------
# Chart: wall time by profile and system


def link_svg(link: Link) -> str:
    width, height, left, right, top, bottom = 880, 460, 64, 24, 52, 120
    if link.big is None or not link.profiles:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="80"><text x="20" y="40">no link '
                "figures</text></svg>\n")
    variant = link.variants[0]
    systems = link.systems
    values = {(p, s): link.med(p, variant, link.big, s, "seconds") for p in link.profiles for s in systems}
    top_value = max([v for v in values.values() if v] + [link.big / link.rate(p) for p in link.profiles])
    step = 10 ** math.floor(math.log10(top_value / 5))
    step = next(m * step for m in (1, 2, 2.5, 5, 10) if m * step * 5 >= top_value)
    y_max = step * math.ceil(top_value / step)
    plot_w, plot_h = width - left - right, height - top - bottom
    base_y = top + plot_h

    def y(v):
        return base_y - v / y_max * plot_h

    title = (f"{link.big // MIB} MiB over a modeled link ({VARIANT_LABEL[variant]}): wall time by profile and system "
             "(lower is better; dashed: the link alone)")
    body = [f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
            f'<text x="{width / 2}" y="26" text-anchor="middle" font-size="14" font-weight="bold">{escape(title)}</text>']
    for i in range(round(y_max / step) + 1):
        v = i * step
        body.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{left + plot_w}" y2="{y(v):.1f}" stroke="#e2e8f0"/>')
        body.append(f'<text x="{left - 8}" y="{y(v) + 4:.1f}" text-anchor="end" fill="#4a5568">{v:g}</text>')
    body.append(f'<text x="16" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
                f'transform="rotate(-90 16 {top + plot_h / 2:.1f})">seconds</text>')
    group_w = plot_w / len(link.profiles)
    bar_w = min(40.0, group_w * 0.85 / len(systems))
    for g, profile in enumerate(link.profiles):
        centre = left + group_w * (g + 0.5)
        x0 = centre - bar_w * len(systems) / 2
        alone = link.big / link.rate(profile)
        body.append(f'<line x1="{x0:.1f}" y1="{y(alone):.1f}" x2="{x0 + bar_w * len(systems):.1f}" y2="{y(alone):.1f}" '
                    'stroke="#1a202c" stroke-dasharray="4 3"/>')
        for i, system in enumerate(systems):
            v = values[(profile, system)]
            if v is None:
                continue
            x = x0 + i * bar_w
            body.append(f'<rect x="{x + 1:.1f}" y="{y(v):.1f}" width="{bar_w - 2:.1f}" height="{base_y - y(v):.1f}" '
                        f'fill="{COLOURS[i % len(COLOURS)]}"><title>{escape(link.label(system))}: {v:.2f} s</title></rect>')
        body.append(f'<text x="{centre:.1f}" y="{base_y + 16}" text-anchor="middle">{escape(profile)} '
                    f'({link.link[profile][0]:g} Mbit/s, {link.link[profile][1]:g} ms)</text>')
    x, row_y = 20.0, base_y + 40
    for i, system in enumerate(systems):
        label = link.label(system)
        w = 18 + len(label) * 7
        if x + w > width - 20:
            x, row_y = 20.0, row_y + 18
        body.append(f'<rect x="{x:.1f}" y="{row_y - 10:.1f}" width="12" height="12" fill="{COLOURS[i % len(COLOURS)]}"/>')
        body.append(f'<text x="{x + 16:.1f}" y="{row_y:.1f}">{escape(label)}</text>')
        x += w + 12
    return "\n".join(['<?xml version="1.0" encoding="UTF-8"?>',
                      f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} '
                      f'{height}" font-family="sans-serif" font-size="12" fill="#1a202c">',
                      f"<title>{escape(title)}</title>", *body, "</svg>", ""])
