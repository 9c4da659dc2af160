#!/usr/bin/env python3
"""Turn the benchmarks' JSON lines into RESULTS.md and throughput.svg.

Usage: python3 bench/report.py RAW_DIR OUT_DIR

Reads every RAW_DIR/*.jsonl (one JSON object a line; other lines are ignored) and RAW_DIR/machine.json, and
(over)writes OUT_DIR/RESULTS.md and OUT_DIR/throughput.svg. A benchmark whose figures are missing shows up as
"not measured"; it never stops the report. Standard library only.
"""

import json
import math
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import link_report

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
BUDGET_CHUNK = 4 * MIB  # the chunk size the throughput, read-back and memory budgets are stated for
BUDGET_PARTS = 10000  # the write-unit budget's part count: the most any upload has (S3's limit), up to 5 TiB
# chunked-upload is the sequential mode; raw-multipart and raw-parallel the SDK straight to S3, 1 and 4 parts in flight.
SYSTEMS = ("chunked-upload", "chunked-parallel", "chunked-direct", "raw-multipart", "raw-parallel", "tus-node-server")
BASELINES = ("raw-multipart", "tus-node-server")  # what chunked-upload's throughput is compared with in its table
# (system, baseline, floor): system's MiB/s at least floor times baseline's, at BUDGET_CHUNK.
THROUGHPUT_BUDGETS = (
    ("chunked-upload", "raw-multipart", 0.45),
    ("chunked-upload", "tus-node-server", 1.5),
    ("chunked-direct", "raw-parallel", 0.9),
    ("chunked-parallel", "raw-parallel", 0.5),
    ("chunked-parallel", "chunked-upload", 2.0),
)
COLOURS = ("#2b6cb0", "#718096", "#dd6b20", "#38a169", "#805ad5", "#d53f8c")
ANALYSIS = Path(__file__).parent / "analysis.md"


# ---------------------------------------------------------------------------------------------------------------
# Reading the figures


def read_figures(raw_dir: Path) -> dict[str, list[dict]]:
    """Every JSON object in RAW_DIR/*.jsonl, grouped by its "bench" key."""
    by_bench: dict[str, list[dict]] = defaultdict(list)
    for path in sorted(raw_dir.glob("*.jsonl")):
        for row in json_objects(path.read_text(encoding="utf-8", errors="replace")):
            # A line without "bench" (function_process --json prints none) belongs to the file it was saved in.
            by_bench[str(row.get("bench", path.stem))].append(row)
    return by_bench


def json_objects(text: str) -> list[dict]:
    """The lines of `text` that are JSON objects."""
    objects = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            objects.append(value)
    return objects


def read_machine(path: Path) -> dict:
    """machine.json as one object; were it written as JSON lines, their objects merged; {} when absent."""
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict):
        return value
    merged: dict = {}
    for row in json_objects(text):
        merged.update(row)
    return merged


def number(row: dict | None, key: str) -> float | None:
    """row[key] when it is a finite number; null, text, booleans and NaN count as missing."""
    value = row.get(key) if isinstance(row, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def by_chunk_size(rows: list[dict]) -> dict[int, dict]:
    """The rows keyed by their chunk size (a later row for the same size wins)."""
    return keyed_by(rows, "chunk_bytes")


def keyed_by(rows: list[dict], key: str) -> dict[int, dict]:
    """The rows keyed by their whole number `key` (a later row for the same value wins)."""
    keyed = {}
    for row in rows:
        value = number(row, key)
        if value is not None:
            keyed[int(value)] = row
    return keyed


def quotient(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


@dataclass
class ChunkMedians:
    """The end-to-end medians at one chunk size."""

    chunk_bytes: int
    part_bytes: int | None
    runs: int | None
    mib_per_s: dict[str, float]
    ratio_to: dict[str, float]  # baseline system -> chunked-upload's MiB/s divided by the baseline's


@dataclass
class EndToEnd:
    uploads: list[dict]  # one row per upload
    medians: list[ChunkMedians]  # by chunk size, ascending
    file_bytes: int | None  # None unless every upload was of the same size
    systems: list[str]  # the known ones in their usual order, then any others

    def at(self, chunk_bytes: int) -> ChunkMedians | None:
        return next((m for m in self.medians if m.chunk_bytes == chunk_bytes), None)


def end_to_end_figures(rows: list[dict]) -> EndToEnd:
    """The per-upload rows and, per chunk size, the medians: the benchmark's own summary where it printed one,
    else computed from its uploads the same way (median of MiB/s per system; ratios of those medians)."""
    uploads = [
        r
        for r in rows
        if "summary" not in r
        and isinstance(r.get("system"), str)
        and number(r, "chunk_bytes") is not None
        and number(r, "mib_per_s") is not None
    ]
    summaries = by_chunk_size([r for r in rows if r.get("summary") == "median"])
    found = {u["system"] for u in uploads}
    for summary in summaries.values():
        if isinstance(summary.get("mib_per_s"), dict):
            found.update(summary["mib_per_s"])
    systems = [s for s in SYSTEMS if s in found] + sorted(found - set(SYSTEMS))

    medians = []
    for chunk in sorted({int(number(u, "chunk_bytes")) for u in uploads} | set(summaries)):
        own = [u for u in uploads if number(u, "chunk_bytes") == chunk]
        summary = summaries.get(chunk, {})
        rates = {}
        for system in systems:
            measured = [number(u, "mib_per_s") for u in own if u["system"] == system]
            if measured:
                rates[system] = statistics.median(measured)
        if isinstance(summary.get("mib_per_s"), dict):
            rates.update({s: v for s in summary["mib_per_s"] if (v := number(summary["mib_per_s"], s)) is not None})
        ratio_to = {}
        for baseline in BASELINES:
            ratio = number(summary, "ratio_to_" + baseline.replace("-", "_"))
            if ratio is None:
                ratio = quotient(rates.get("chunked-upload"), rates.get(baseline))
            if ratio is not None:
                ratio_to[baseline] = ratio
        part = number(summary, "part_bytes") or next((p for u in own if (p := number(u, "part_bytes"))), None)
        runs = run_count(summary) or len({number(u, "round") for u in own} - {None}) or None
        medians.append(ChunkMedians(chunk, int(part) if part else None, runs, rates, ratio_to))

    sizes = {int(b) for u in uploads if (b := number(u, "bytes")) is not None}
    file_bytes = sizes.pop() if len(sizes) == 1 else None
    return EndToEnd(uploads, medians, file_bytes, systems)


@dataclass
class Figures:
    handler: dict[int, dict]  # handler_cost by chunk size
    e2e: EndToEnd
    costs: dict[int, dict]  # request_costs by chunk size
    process: dict | None  # the last function_process report
    machine: dict
    write_units: dict[int, dict]  # write_units by part count
    link: link_report.Link  # the link benchmark's rows (bench/link)


def load_figures(raw_dir: Path) -> Figures:
    by_bench = read_figures(raw_dir)
    process = by_bench.get("function_process")
    return Figures(
        handler=by_chunk_size(by_bench.get("handler_cost", [])),
        e2e=end_to_end_figures(by_bench.get("end_to_end", [])),
        costs=by_chunk_size(by_bench.get("request_costs", [])),
        process=process[-1] if process else None,
        machine=read_machine(raw_dir / "machine.json"),
        write_units=keyed_by(by_bench.get("write_units", []), "parts"),
        link=link_report.Link(by_bench),
    )


def run_count(row: dict | None) -> int | None:
    runs = number(row, "runs")
    return int(runs) if runs else None


def process_chunk_bytes(process: dict) -> int | None:
    """The chunk size the process figures were taken at."""
    chunk = number(process, "chunk_bytes")
    return int(chunk) if chunk is not None else None


def binary_sizes(process: dict | None) -> dict[str, float]:
    sizes = process.get("binary_bytes") if process else None
    if not isinstance(sizes, dict):
        return {}
    return {name: v for name in sizes if (v := number(sizes, name)) is not None}


# ---------------------------------------------------------------------------------------------------------------
# Formatting


def fmt(value: float | None, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:.2f}{suffix}"


def fmt_small(value: float | None, suffix: str = "") -> str:
    """Three significant digits, for figures well below 1 that two decimals would round away."""
    return "n/a" if value is None else f"{value:.3g}{suffix}"


def fmt_count(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"


def fmt_against(value: float, limit: float, suffix: str = "") -> str:
    """Like fmt, with more decimals where two would round a value onto its budget's limit (1.4989 shows as
    1.499x, not as a 1.50x that reads as met)."""
    decimals = 2
    while decimals < 6 and value != limit and f"{value:.{decimals}f}" == f"{limit:.{decimals}f}":
        decimals += 1
    return f"{value:.{decimals}f}{suffix}"


def size_label(n: int) -> str:
    """1048576 -> "1 MiB", 262144 -> "256 KiB"."""
    if n >= GIB and n % GIB == 0:
        return f"{n // GIB} GiB"
    if n >= MIB and n % MIB == 0:
        return f"{n // MIB} MiB"
    if n >= KIB and n % KIB == 0:
        return f"{n // KIB} KiB"
    return f"{n / MIB:.2f} MiB"


def runs_phrase(runs: list[int | None]) -> str | None:
    """ "3", or "3 to 5" when the counts differ; None when none is known."""
    known = sorted({r for r in runs if r})
    if not known:
        return None
    return str(known[0]) if len(known) == 1 else f"{known[0]} to {known[-1]}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def operations(counts) -> str:
    """{"PutObject": 8, "UploadPart": 4} -> "PutObject 8, UploadPart 4" (by name, so reruns diff cleanly)."""
    if not isinstance(counts, dict) or not counts:
        return "n/a"
    return ", ".join(f"{name} {counts[name]:g}" if number(counts, name) is not None else f"{name} ?"
                     for name in sorted(counts))


# ---------------------------------------------------------------------------------------------------------------
# Budgets: each row is (figure, budget, measured, verdict)


def verdict(met: bool | None) -> str:
    return "not measured" if met is None else ("met" if met else "not met")


def handler_ratio(row: dict) -> float | None:
    ratio = number(row, "ratio")
    return ratio if ratio is not None else quotient(number(row, "cpu_ms_per_mib"), number(row, "md5_ms_per_mib"))


def minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def crc64_ratio(row: dict) -> float | None:
    """The CRC64NVME check's CPU per MiB over MD5's, measured side by side."""
    return quotient(number(row, "crc64_ms_per_mib"), number(row, "md5_ms_per_mib"))


def per_size_budget(figure, budget, values: dict[int, float | None], limit: float, suffix: str = "") -> tuple:
    """A budget that must hold at every chunk size benchmarked (the largest listed first): one size over it and
    the budget is not met; a size without its figure leaves it not measured."""
    if not values:
        return figure, budget, "n/a", verdict(None)
    values = dict(sorted(values.items(), reverse=True))
    measured = ", ".join(f"{fmt_against(v, limit, suffix) if v is not None else 'n/a'} at {size_label(chunk)}"
                         for chunk, v in values.items())
    if any(v is not None and v > limit for v in values.values()):
        return figure, budget, measured, verdict(False)
    return figure, budget, measured, verdict(None if None in values.values() else True)


def throughput_budget(e2e: EndToEnd, system: str, baseline: str, floor: float) -> tuple:
    figure = f"end-to-end throughput at {size_label(BUDGET_CHUNK)} chunks, {system} vs {baseline}"
    budget = f"≥ {floor:g}x"
    medians = e2e.at(BUDGET_CHUNK)
    ours, theirs = (medians.mib_per_s.get(system), medians.mib_per_s.get(baseline)) if medians else (None, None)
    ratio = quotient(ours, theirs)
    if ratio is None:
        return figure, budget, "n/a", verdict(None)
    measured = f"{fmt_against(ratio, floor, 'x')} ({fmt(ours)} vs {fmt(theirs)} MiB/s)"
    return figure, budget, measured, verdict(ratio >= floor)


def read_back_budget(costs: dict[int, dict]) -> tuple:
    figure = f"S3 bytes read back per byte uploaded at {size_label(BUDGET_CHUNK)} chunks"
    read_back = number(costs.get(BUDGET_CHUNK), "s3_bytes_read_per_byte")
    if read_back is None:
        return figure, "≤ 0.5", "n/a", verdict(None)
    return figure, "≤ 0.5", fmt_against(read_back, 0.5), verdict(read_back <= 0.5)


def memory_budget(process: dict | None) -> tuple:
    figure = f"peak RSS serving {size_label(BUDGET_CHUNK)} chunks"
    rss = number(process, "peak_rss_mib_median")
    if rss is None:
        return figure, "≤ 48 MiB", "n/a", verdict(None)
    chunk = process_chunk_bytes(process)
    if chunk is not None and chunk != BUDGET_CHUNK:
        # A figure taken at another chunk size says nothing about this budget.
        return figure, "≤ 48 MiB", f"{fmt(rss)} MiB, but at {size_label(chunk)} chunks", verdict(None)
    return figure, "≤ 48 MiB", fmt_against(rss, 48, " MiB"), verdict(rss <= 48)


def binary_budget(process: dict | None) -> tuple:
    figure = "stripped binary per function"
    sizes = binary_sizes(process)
    if not sizes:
        return figure, "≤ 8 MiB", "n/a", verdict(None)
    name = max(sizes, key=sizes.get)
    measured = f"{fmt_against(sizes[name] / MIB, 8, ' MiB')} ({name}, the largest of {len(sizes)})"
    return figure, "≤ 8 MiB", measured, verdict(sizes[name] <= 8 * MIB)


def write_units_budget(write_units: dict[int, dict]) -> tuple:
    figure = f"DynamoDB write units / chunk at {BUDGET_PARTS:,} parts"
    row = write_units.get(BUDGET_PARTS)
    worst = number(row, "wcu_per_chunk_worst")
    if worst is None:
        return figure, "≤ 4", "n/a", verdict(None)
    typical, before = number(row, "wcu_per_chunk_typical"), number(row, "wcu_per_chunk_before")
    measured = (f"{fmt_count(worst)} with the longest names and a flush lease held "
                f"({fmt_count(typical)} with typical names; {fmt_count(before)} before)")
    return figure, "≤ 4", measured, verdict(worst <= 4)


def budgets_section(handler: dict[int, dict], e2e: EndToEnd, costs: dict[int, dict], process: dict | None,
                    write_units: dict[int, dict]) -> list[str]:
    rows = [
        per_size_budget("handler CPU per MiB", "≤ 1.5x MD5 alone, at every chunk size",
                        {c: handler_ratio(r) for c, r in handler.items()}, 1.5, "x"),
        per_size_budget("CRC64NVME check CPU per MiB", "≤ 0.1x MD5's, at every chunk size",
                        {c: crc64_ratio(r) for c, r in handler.items()}, 0.1, "x"),
        *(throughput_budget(e2e, system, baseline, floor) for system, baseline, floor in THROUGHPUT_BUDGETS),
        per_size_budget("DynamoDB requests per chunk", "≤ 2, at every chunk size",
                        {c: number(r, "dynamodb_requests_per_chunk") for c, r in costs.items()}, 2),
        write_units_budget(write_units),
        read_back_budget(costs),
        memory_budget(process),
        binary_budget(process),
    ]
    return ["## Budgets", "", *table(["figure", "budget", "measured", "verdict"], [list(r) for r in rows])]


# ---------------------------------------------------------------------------------------------------------------
# Sections


def not_measured(bench: str) -> list[str]:
    return [f"Not measured: no `{bench}` figures in this run."]


def handler_section(handler: dict[int, dict]) -> list[str]:
    lines = ["## Handler cost per MiB (in process)", ""]
    if not handler:
        return lines + not_measured("handler_cost")
    runs = runs_phrase([run_count(row) for row in handler.values()])
    lines += [
        "CPU the chunk function spends per MiB uploaded, beside MD5 alone and CRC64NVME alone (crc_fast, the "
        "check of a parallel chunk) over the same bytes in the same chunks"
        + (f" (median of {runs} runs)." if runs else "."),
        "",
    ]
    rows = [
        [size_label(chunk), fmt(number(row, "cpu_ms_per_mib")), fmt(number(row, "kernel_ms_per_mib")),
         fmt(number(row, "md5_ms_per_mib")), fmt(handler_ratio(row), "x"),
         fmt(quotient(minus(number(row, "cpu_ms_per_mib"), number(row, "kernel_ms_per_mib")),
                      number(row, "md5_ms_per_mib")), "x"),
         fmt_small(number(row, "crc64_ms_per_mib")), fmt_small(crc64_ratio(row), "x")]
        for chunk, row in sorted(handler.items())
    ]
    lines += table(["chunk", "CPU ms/MiB", "of it in the kernel", "MD5 ms/MiB", "ratio", "user-space ratio",
                    "CRC64NVME ms/MiB", "CRC64NVME / MD5"], rows)
    return lines + ["", "In the kernel is the system time of the handler's calls: mostly copying the bytes through "
                    "its sockets to S3 and back (a buffered chunk is written, read back and written again as part of "
                    "a part), which the Lambda runtime pays as well; the user-space ratio leaves it out."]


def end_to_end_section(e2e: EndToEnd) -> list[str]:
    runs = runs_phrase([m.runs for m in e2e.medians])
    about = ", ".join(filter(None, [
        f"{size_label(e2e.file_bytes)} file" if e2e.file_bytes else None,
        f"median of {runs} runs" if runs else None,
    ]))
    lines = ["## End to end" + (f" ({about})" if about else ""), ""]
    if not e2e.medians:
        return lines + not_measured("end_to_end")
    lines += [
        "The same file through the service (chunked-upload: the sequential mode; chunked-parallel: relayed chunks, "
        "4 in flight; chunked-direct: presigned part PUTs, 4 in flight, parts as the service plans them whatever the "
        "chunk size), as a plain S3 multipart upload with the SDK, same part size (the ceilings: raw-multipart one "
        "part after another, raw-parallel 4 parts in flight) and through tus-node-server, all into LocalStack S3; "
        "the systems take turns within each round.",
        "",
    ]
    header = ["chunk", *(f"{s} MiB/s" for s in e2e.systems), *(f"vs {b}" for b in BASELINES), "part size"]
    rows = [
        [size_label(m.chunk_bytes), *(fmt(m.mib_per_s.get(s)) for s in e2e.systems),
         *(fmt(m.ratio_to.get(b), "x") for b in BASELINES),
         size_label(m.part_bytes) if m.part_bytes else "n/a"]
        for m in e2e.medians
    ]
    lines += table(header, rows) + ["", "![throughput by chunk size](throughput.svg)"]
    lines += cpu_split_section(e2e)
    if e2e.uploads:
        order = {s: i for i, s in enumerate(e2e.systems)}
        uploads = sorted(e2e.uploads, key=lambda u: (number(u, "chunk_bytes"), number(u, "round") or 0,
                                                     order[u["system"]]))
        rows = [
            [size_label(int(number(u, "chunk_bytes"))), fmt_count(number(u, "round")), u["system"],
             size_label(int(p)) if (p := number(u, "part_bytes")) else "n/a",
             fmt(number(u, "seconds")), fmt(number(u, "mib_per_s"))]
            for u in uploads
        ]
        lines += ["", f"<details><summary>Individual uploads ({len(uploads)})</summary>", "",
                  *table(["chunk", "round", "system", "part size", "seconds", "MiB/s"], rows), "", "</details>"]
    return lines


CPU_SIDES = ("client", "api", "s3", "dynamodb")


def cpu_split_section(e2e: EndToEnd) -> list[str]:
    """CPU seconds per GiB each side spent, per system and chunk size (medians over the rounds). The machine's
    cores are shared by all sides, so their sum over the cores bounds the upload's time from below: a mode whose
    sum is far above the ceiling's is bounded by the work it gives the emulators, not by its protocol."""
    rows = []
    for chunk in sorted({int(number(u, "chunk_bytes") or 0) for u in e2e.uploads}):
        for system in e2e.systems:
            uploads = [u for u in e2e.uploads if u["system"] == system and number(u, "chunk_bytes") == chunk]
            per_gib = {side: [u["cpu_seconds"][side] * GIB / u["bytes"] for u in uploads
                              if isinstance(u.get("cpu_seconds", {}).get(side), (int, float)) and u.get("bytes")]
                       for side in CPU_SIDES}
            medians = {side: statistics.median(v) if v else None for side, v in per_gib.items()}
            if all(v is None for v in medians.values()):
                continue
            known = [v for v in medians.values() if v is not None]
            rows.append([size_label(chunk), system, *(fmt(medians[side]) for side in CPU_SIDES), fmt(sum(known))])
    if not rows:
        return []
    return ["", "CPU seconds per GiB uploaded, by side (client, the local API server running the functions' "
            "handlers, LocalStack's S3, moto's DynamoDB; tus-node-server's own processes are not measured), read "
            "from /proc around each upload; on this machine all sides share its cores.", "",
            *table(["chunk", "system", *(f"{side} s/GiB" for side in CPU_SIDES), "total s/GiB"], rows)]


def costs_section(costs: dict[int, dict]) -> list[str]:
    lines = ["## Cost per chunk", ""]
    if not costs:
        return lines + not_measured("request_costs")
    lines += ["Requests the service makes per chunk, and S3 bytes moved per byte uploaded.", ""]
    header = ["chunk", "chunks", "S3 requests/chunk", "DynamoDB requests/chunk", "S3 written/byte",
              "S3 read back/byte", "S3 requests by operation", "DynamoDB requests by operation"]
    rows = [
        [size_label(chunk), fmt_count(number(row, "chunks")),
         fmt(number(row, "s3_requests_per_chunk")), fmt(number(row, "dynamodb_requests_per_chunk")),
         fmt(number(row, "s3_bytes_written_per_byte")), fmt(number(row, "s3_bytes_read_per_byte")),
         operations(row.get("s3_requests_by_operation")), operations(row.get("dynamodb_requests_by_operation"))]
        for chunk, row in sorted(costs.items())
    ]
    return lines + table(header, rows)


def write_units_section(write_units: dict[int, dict]) -> list[str]:
    lines = ["## DynamoDB write units per chunk", ""]
    if not write_units:
        return lines + not_measured("write_units")
    lines += [
        "DynamoDB bills a write by the larger of the item before and after it, one write unit per started KB; a "
        "chunk is two writes (the conditional claim and the commit), and a conditional write that fails is billed "
        "too. Budget: at most 4 write units a chunk at every file size up to 5 TiB. Computed, not measured: "
        "`bench/write_units` sizes the items of the records of `shared::store::sizing` by DynamoDB's rule. "
        "Typical: typical names; worst: the longest names the service stores, with a flush lease held (a chunk "
        "that fills a part holds one while it uploads it); before: typical names, with the parts list of "
        "19 bytes a part that the item held before the part ledger.",
        "",
    ]
    header = ["parts", "item bytes (typical)", "WCU/chunk (typical)", "item bytes (worst)", "WCU/chunk (worst)",
              "WCU/chunk before"]
    keys = ["item_bytes_typical", "wcu_per_chunk_typical", "item_bytes_worst", "wcu_per_chunk_worst",
            "wcu_per_chunk_before"]
    rows = [[f"{parts:,}", *(fmt_count(number(row, key)) for key in keys)]
            for parts, row in sorted(write_units.items())]
    return lines + table(header, rows)


def process_section(process: dict | None) -> list[str]:
    lines = ["## Memory, size and start-up", ""]
    if process is None:
        return lines + not_measured("function_process")
    sizes = binary_sizes(process)
    if sizes:
        lines += table(["function", "stripped binary"], [[n, fmt(b / MIB, " MiB")] for n, b in sizes.items()])
        lines.append("")
    chunk = process_chunk_bytes(process)
    runs = run_count(process)
    lines.append(
        f"Start-up: {fmt(number(process, 'startup_ms_median'), ' ms')}; peak RSS"
        + (f" serving {size_label(chunk)} chunks" if chunk else "")
        + f": {fmt(number(process, 'peak_rss_mib_median'), ' MiB')}"
        + (f" (medians of {runs} runs)." if runs else ".")
    )
    return lines


def analysis_section() -> list[str]:
    lines = ["## Where the budgets stand", "", "<!-- analysis -->"]
    if ANALYSIS.is_file():
        lines.append(ANALYSIS.read_text(encoding="utf-8").strip())
    return lines


def machine_section(machine: dict) -> list[str]:
    lines = ["## Machine", ""]
    if not machine:
        return lines + ["Not recorded: no machine.json in this run."]
    return lines + [f"- {key}: {value}" for key, value in machine.items()]


def results_markdown(f: Figures) -> str:
    machine = f.machine
    runs = {
        "handler cost": runs_phrase([run_count(row) for row in f.handler.values()]),
        "end to end": runs_phrase([m.runs for m in f.e2e.medians]),
        "memory and start-up": runs_phrase([run_count(f.process)]),
    }
    counted = ", ".join(f"{name} {n}" for name, n in runs.items() if n)
    provenance = " ".join(filter(None, [
        f"Measured on {machine['date']}" if "date" in machine else None,
        f"at commit {machine['commit']}" if "commit" in machine else None,
    ]))
    intro = (
        "Produced by `make bench` (`bench/run`: the benchmarks, then `bench/report.py`). "
        + (f"{provenance}. " if provenance else "")
        + "Each figure is a median over repeated runs"
        + (f" ({counted})" if counted else "")
        + "; every ratio compares figures measured in the same run."
    )
    sections = [
        ["# Benchmark results", "", intro],
        link_report.section(f.link, machine),
        ["# CPU-bound benchmarks (client, server and emulators on this machine's cores)", "",
         "In process and on loopback, with no link between them: every figure below is bounded by the CPU the "
         "client, the server and the emulators share."],
        budgets_section(f.handler, f.e2e, f.costs, f.process, f.write_units),
        handler_section(f.handler),
        end_to_end_section(f.e2e),
        costs_section(f.costs),
        write_units_section(f.write_units),
        process_section(f.process),
        analysis_section(),
        machine_section(machine),
    ]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Chart

WIDTH, HEIGHT = 720, 400
LEFT, RIGHT, TOP, BOTTOM = 64, 24, 52, 102  # plot margins: y tick labels, title, x labels + axis title + legend


def svg_document(body: list[str], title: str) -> str:
    return "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12" fill="#1a202c">',
        f"<title>{escape(title)}</title>",
        # An opaque background keeps the dark text readable on dark themes.
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        *body,
        "</svg>",
        "",
    ])


def text(x: float, y: float, content: str, **attributes) -> str:
    extra = "".join(f' {name.replace("_", "-")}="{value}"' for name, value in attributes.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{escape(content)}</text>'


def nice_axis(top_value: float, ticks: int = 5) -> tuple[float, float]:
    """A round tick step (1, 2, 2.5 or 5 times a power of ten) and the axis maximum, a whole number of steps
    above `top_value`."""
    if top_value <= 0:
        return 1.0, float(ticks)
    magnitude = 10 ** math.floor(math.log10(top_value / ticks))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude * ticks >= top_value)
    return step, step * math.ceil(top_value / step)


def chart_title(e2e: EndToEnd) -> str:
    what = f"{size_label(e2e.file_bytes)} upload" if e2e.file_bytes else "Upload"
    runs = runs_phrase([m.runs for m in e2e.medians])
    return f"{what} into LocalStack S3: throughput by chunk size" + (f" (median of {runs} runs)" if runs else "")


def throughput_svg(e2e: EndToEnd) -> str:
    rates = [v for m in e2e.medians for v in m.mib_per_s.values()]
    if not rates:
        message = "no end-to-end figures"
        return svg_document([text(WIDTH / 2, HEIGHT / 2, message, text_anchor="middle", font_size=16)], message)

    title = chart_title(e2e)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    baseline_y = TOP + plot_h
    step, y_max = nice_axis(max(rates))

    def y(value: float) -> float:
        return baseline_y - value / y_max * plot_h

    # Shrink a long title to fit: bold sans-serif runs about 0.6 em a character.
    title_size = min(15.0, (WIDTH - 32) / (0.6 * len(title)))
    body = [text(WIDTH / 2, 26, title, text_anchor="middle", font_size=f"{title_size:.1f}", font_weight="bold")]
    for i in range(round(y_max / step) + 1):
        tick = i * step
        body.append(f'<line x1="{LEFT}" y1="{y(tick):.1f}" x2="{LEFT + plot_w}" y2="{y(tick):.1f}" '
                    f'stroke="{"#4a5568" if i == 0 else "#e2e8f0"}"/>')
        body.append(text(LEFT - 8, y(tick) + 4, f"{tick:g}", text_anchor="end", fill="#4a5568"))
    body.append(text(18, TOP + plot_h / 2, "MiB/s", text_anchor="middle",
                     transform=f"rotate(-90 18 {TOP + plot_h / 2:.1f})"))

    group_w = plot_w / len(e2e.medians)
    bar_w = min(64.0, group_w * 0.75 / len(e2e.systems))
    for g, medians in enumerate(e2e.medians):
        centre = LEFT + group_w * (g + 0.5)
        first_x = centre - bar_w * len(e2e.systems) / 2
        for s, system in enumerate(e2e.systems):
            x = first_x + s * bar_w
            value = medians.mib_per_s.get(system)
            if value is None:
                body.append(text(x + bar_w / 2, baseline_y - 4, "n/a", text_anchor="middle", font_size=10,
                                 fill="#718096"))
                continue
            # 1 px between neighbouring bars keeps them apart without hiding the grouping.
            body.append(f'<rect x="{x + 1:.1f}" y="{y(value):.1f}" width="{bar_w - 2:.1f}" '
                        f'height="{baseline_y - y(value):.1f}" fill="{COLOURS[s % len(COLOURS)]}">'
                        f"<title>{escape(f'{system}: {value:.2f} MiB/s')}</title></rect>")
            body.append(text(x + bar_w / 2, y(value) - 4, f"{value:.2f}", text_anchor="middle", font_size=11))
        body.append(text(centre, baseline_y + 18, size_label(medians.chunk_bytes), text_anchor="middle"))
    body.append(text(LEFT + plot_w / 2, baseline_y + 38, "chunk size", text_anchor="middle", fill="#4a5568"))
    body += legend(e2e.systems, HEIGHT - 12)
    return svg_document(body, title)


def legend(systems: list[str], baseline: float) -> list[str]:
    """One swatch and name per system, in centred rows that fit the chart's width; the last row at `baseline`."""
    swatch, gap, char_w, row_h = 12, 22, 7, 18  # char_w: a rough width of a 12 px sans-serif character
    entries = [(i, system, swatch + 6 + len(system) * char_w) for i, system in enumerate(systems)]
    rows: list[list[tuple[int, str, int]]] = [[]]
    for entry in entries:
        if rows[-1] and sum(w for _, _, w in rows[-1]) + gap * len(rows[-1]) + entry[2] > WIDTH - 32:
            rows.append([])
        rows[-1].append(entry)
    items = []
    for r, row in enumerate(rows):
        y = baseline - row_h * (len(rows) - 1 - r)
        x = (WIDTH - sum(w for _, _, w in row) - gap * (len(row) - 1)) / 2
        for i, system, width in row:
            items.append(f'<rect x="{x:.1f}" y="{y - swatch + 1:.1f}" width="{swatch}" height="{swatch}" '
                         f'fill="{COLOURS[i % len(COLOURS)]}"/>')
            items.append(text(x + swatch + 6, y, system))
            x += width + gap
    return items


# ---------------------------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python3 bench/report.py RAW_DIR OUT_DIR", file=sys.stderr)
        return 2
    raw_dir, out_dir = Path(argv[1]), Path(argv[2])
    if not raw_dir.is_dir():
        print(f"report.py: {raw_dir} is not a directory", file=sys.stderr)
        return 2
    figures = load_figures(raw_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "RESULTS.md").write_text(results_markdown(figures), encoding="utf-8")
    (out_dir / "throughput.svg").write_text(throughput_svg(figures.e2e), encoding="utf-8")
    (out_dir / "link.svg").write_text(link_report.link_svg(figures.link), encoding="utf-8")
    print(f"wrote {out_dir / 'RESULTS.md'}, {out_dir / 'throughput.svg'} and {out_dir / 'link.svg'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
