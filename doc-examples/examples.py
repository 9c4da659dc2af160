"""Runs the shell examples of README.md and docs/*.md against the local API server, and checks the answers they show.

The convention (doc-examples/README.md says it for writers):

- A fenced block whose language is `sh`, `bash` or `shell` is an example. The blocks of one page run in order, in one
  bash session (`set -eu`), so a variable set in one block is there in the next. `http://127.0.0.1:8080`
  (what `make run` serves) is the test's local server.
- A comment line right after a command that starts with `{` or `[` (JSON), with a status (`# 404 {...}`, `# 202`), or
  with `> ` (a line of text) is an expectation, checked against what the commands since the last expectation printed:
  - JSON: some JSON document printed must match. `...` stands for anything: `"..."` any string, `"uploads/.../a"` a
    string with anything in the middle, `...` as a value any value, `...` among an object's members any other members
    (without it the object must have exactly the keys shown), `...` in an array any elements there. It may run over
    several comment lines; text after it on its line is a note.
  - a status: the last HTTP answer (curl's) must have it; without one, every answer must be a 2xx. Answers no
    expectation covers must be 2xx too.
  - `> text`: some line printed must be the text, `...` standing for anything and any run of blanks for any other.
- An HTML comment on the line before the fence says more:
  - `<!-- example: not run: REASON -->`: not run (it needs AWS, starts a server, ...); only checked to parse.
  - `<!-- example: server NAME=VALUE ... -->`: run against a local server started with these settings, in a session
    of its own (one per page and settings).

Usage: examples.py --repo DIR --server LOCAL_SERVER --cli CHUNKED_UPLOAD --logs DIR [FILE...]; exits 1 if an example failed. Each session runs in a fresh
directory that links the repository's top-level entries (so `emulators/with` works and scratch files stay out of the
checkout), with the built binaries (`chunked-upload`) on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

SHELL_LANGUAGES = {"sh", "bash", "shell"}
LOCAL_API = "http://127.0.0.1:8080"
SESSION_TIMEOUT_SECS = 120
MARK = "\x1edoc-example-mark"


# ---------------------------------------------------------------------------------------------------- patterns


class Ellipsis_:
    """`...` where a value, an array element or an object member stands."""

    def __repr__(self) -> str:
        return "..."


ANY = Ellipsis_()


class PatternError(ValueError):
    pass


def parse_pattern(text: str) -> tuple[object, int]:
    """Parses a JSON value in which `...` (or `…`) may stand for a value, elements or members; returns it and where it
    ends in `text`. Strings stay strings: their `...` are wildcards when matched."""
    parser = _PatternParser(text)
    value = parser.value()
    return value, parser.pos


class _PatternParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> PatternError:
        return PatternError(f"{what} at {self.pos} in {self.text!r}")

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
            self.pos += 1

    def ellipsis(self) -> bool:
        self.skip()
        for token in ("...", "…"):
            if self.text.startswith(token, self.pos):
                self.pos += len(token)
                return True
        return False

    def value(self) -> object:
        if self.ellipsis():
            return ANY
        self.skip()
        if self.pos >= len(self.text):
            raise self.fail("a value expected")
        char = self.text[self.pos]
        if char == "{":
            return self.obj()
        if char == "[":
            return self.array()
        try:
            value, end = json.JSONDecoder().raw_decode(self.text, self.pos)
        except json.JSONDecodeError as e:
            raise self.fail(f"not JSON ({e.msg})") from None
        if isinstance(value, (dict, list)):
            raise self.fail("unexpected")
        self.pos = end
        return value

    def obj(self) -> dict:
        self.pos += 1
        members: dict = {}
        while True:
            self.skip()
            if self.text.startswith("}", self.pos):
                self.pos += 1
                return members
            if self.ellipsis():
                members[ANY] = ANY
            else:
                key = self.value()
                if not isinstance(key, str):
                    raise self.fail("a member name expected")
                self.skip()
                if not self.text.startswith(":", self.pos):
                    raise self.fail("':' expected")
                self.pos += 1
                members[key] = self.value()
            self.skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1
            elif not self.text.startswith("}", self.pos):
                raise self.fail("',' or '}' expected")

    def array(self) -> list:
        self.pos += 1
        items: list = []
        while True:
            self.skip()
            if self.text.startswith("]", self.pos):
                self.pos += 1
                return items
            items.append(self.value())
            self.skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1
            elif not self.text.startswith("]", self.pos):
                raise self.fail("',' or ']' expected")


def wildcard(text: str, loose_blanks: bool = False) -> re.Pattern:
    """A text in which `...` (or `…`) stands for any characters, as a regular expression of the whole text; with
    `loose_blanks`, a run of blanks stands for any run of blanks (columns of a table line up differently)."""
    parts = [re.escape(p) for p in re.split(r"\.\.\.|…", text)]
    if loose_blanks:
        parts = [re.sub(r"(?:\\\s)+", r"\\s+", p) for p in parts]
    return re.compile("(?s)" + ".*".join(parts))


def matches(pattern: object, value: object) -> bool:
    if pattern is ANY:
        return True
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return False
        named = {k: v for k, v in pattern.items() if k is not ANY}
        if ANY not in pattern and set(named) != set(value):
            return False
        return all(k in value and matches(v, value[k]) for k, v in named.items())
    if isinstance(pattern, list):
        if not isinstance(value, list):
            return False
        if ANY not in pattern:
            return len(pattern) == len(value) and all(matches(p, v) for p, v in zip(pattern, value))
        cut = pattern.index(ANY)
        head, tail = pattern[:cut], pattern[cut + 1 :]
        if len(head) + len(tail) > len(value):
            return False
        if not all(matches(p, v) for p, v in zip(head, value)):
            return False
        # Whatever follows the ellipsis matches the end of the array (itself possibly with an ellipsis).
        return matches(tail, value[len(value) - len(tail) :]) if ANY in tail else all(
            matches(p, v) for p, v in zip(tail, value[len(value) - len(tail) :])
        )
    if isinstance(pattern, str):
        return isinstance(value, str) and wildcard(pattern).fullmatch(value) is not None
    if isinstance(pattern, bool) or isinstance(value, bool):
        return pattern is value
    return pattern == value


def json_documents(text: str) -> list:
    """Every JSON object or array printed in `text`, in order (several may share a line)."""
    decoder = json.JSONDecoder()
    found, pos = [], 0
    while True:
        starts = [i for i in (text.find("{", pos), text.find("[", pos)) if i >= 0]
        if not starts:
            return found
        start = min(starts)
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            pos = start + 1
            continue
        found.append(value)
        pos = end


# ---------------------------------------------------------------------------------------------------- markdown


@dataclass
class Expectation:
    line: int  # in the page, from 1
    source: str
    status: int | None = None
    json: object = None
    has_json: bool = False
    text: str | None = None


@dataclass
class Block:
    path: str
    line: int  # the fence's line, from 1
    lines: list[tuple[int, str]]  # (line in the page, text)
    skip_reason: str | None = None
    server_env: tuple[tuple[str, str], ...] = ()
    # Expectations by the index in `lines` they end on; consecutive ones are about the same output, so they share one.
    expectations: dict[int, list[Expectation]] = field(default_factory=dict)


DIRECTIVE = re.compile(r"^\s*<!--\s*example:\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^\s`]*)")
EXPECTATION_START = re.compile(r"^\s*#\s?(?:(\d{3})(?=\s|$)\s*)?([\[{].*|>\s.*|>)?\s*$")


def blocks_of(path: str, text: str) -> list[Block]:
    """The shell blocks of a Markdown page, with their directives and expectations."""
    lines = text.split("\n")
    for number, line in enumerate(lines[:-1], 1):
        if DIRECTIVE.match(line) and not FENCE.match(lines[number]):
            raise PatternError(f"{path}:{number}: a directive must be on the line right before a fence")
    blocks, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        indent, marker, language = fence.group(1), fence.group(2), fence.group(3).lower()
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(marker):
            body.append((i + 1, lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip()))
            i += 1
        i += 1
        if language not in SHELL_LANGUAGES:
            continue
        block = Block(path, start + 1, body)
        previous = lines[start - 1] if start > 0 else ""
        directive = DIRECTIVE.match(previous)
        if directive:
            apply_directive(block, directive.group(1))
        if block.skip_reason is None:
            block.expectations = expectations_of(block)
        blocks.append(block)
    return blocks


def apply_directive(block: Block, directive: str) -> None:
    where = f"{block.path}:{block.line - 1}"
    if directive.startswith("not run:"):
        reason = directive[len("not run:") :].strip()
        if not reason:
            raise PatternError(f"{where}: `not run:` needs a reason")
        block.skip_reason = reason
    elif directive.startswith("server "):
        pairs = []
        for word in shlex.split(directive[len("server ") :]):
            name, sep, value = word.partition("=")
            if not sep or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
                raise PatternError(f"{where}: `server` takes NAME=VALUE settings, not {word!r}")
            pairs.append((name, value))
        block.server_env = tuple(sorted(pairs))
    else:
        raise PatternError(f"{where}: unknown directive {directive!r} (`not run: REASON` or `server NAME=VALUE ...`)")


def expectations_of(block: Block) -> dict[int, list[Expectation]]:
    """Expectation comments, grouped and keyed by the index of the block line the group ends on (the mark goes after
    it): expectations with no command between them check the same output."""
    found: dict[int, list[Expectation]] = {}
    i = 0
    while i < len(block.lines):
        number, text = block.lines[i]
        start = EXPECTATION_START.match(text)
        continues = i > 0 and block.lines[i - 1][1].rstrip().endswith("\\")
        if not start or continues or (start.group(1) is None and start.group(2) is None):
            i += 1
            continue
        expectation, first = Expectation(number, text.strip()), i
        if start.group(1):
            expectation.status = int(start.group(1))
        rest = start.group(2) or ""
        if rest.startswith(">"):
            expectation.text = rest[1:].strip()
        elif rest:
            # JSON, possibly over the following comment lines.
            source, j = rest, i
            while True:
                try:
                    expectation.json, _ = parse_pattern(source)
                    expectation.has_json = True
                    break
                except PatternError as e:
                    following = block.lines[j + 1][1].strip() if j + 1 < len(block.lines) else ""
                    if not following.startswith("#"):
                        raise PatternError(f"{block.path}:{number}: {e}") from None
                    j += 1
                    source += "\n" + following[1:]
            expectation.source = source
            i = j
        # Right after another expectation: the same output is checked.
        found[i] = found.pop(first - 1, []) + [expectation]
        i += 1
    return found


# ---------------------------------------------------------------------------------------------------- sessions

# No pipefail: `tail -c +N file | head -c M | curl ...` is how examples cut chunks, and tail dies of SIGPIPE there.
# A curl that fails in a pipeline is caught all the same: it records status 000.
PREAMBLE = r"""
set -eEu
trap 'printf "\n%s %s %s\n" "$DOC_EXAMPLES_FAILED" "$LINENO" "$?"' ERR
# Every HTTP status curl gets, kept aside (not in the output a pattern is matched against).
curl() { command curl -w '%{stderr}%{http_code}\n' "$@" 2>>"$DOC_EXAMPLES_STATUS"; }
__doc_example_mark() {
    wait
    printf '\n%s\n' "$DOC_EXAMPLES_MARK"
    cat "$DOC_EXAMPLES_STATUS"
    : >"$DOC_EXAMPLES_STATUS"
    printf '%s\n' "$DOC_EXAMPLES_MARK_END"
}
"""
MARK_END = MARK + "-end"
FAILED = "\x1edoc-example-failed"


@dataclass
class Segment:
    output: str
    statuses: list[int]
    other: list[str]  # what curl said on stderr besides statuses


def script_of(blocks: list[Block], api: str) -> tuple[str, dict[int, tuple[str, int]]]:
    """The session's bash script, and for each of its lines the page line it comes from. A mark follows every
    expectation and every block."""
    lines = PREAMBLE.strip("\n").split("\n")
    origin: dict[int, tuple[str, int]] = {}
    for block in blocks:
        for index, (number, text) in enumerate(block.lines):
            origin[len(lines) + 1] = (block.path, number)
            lines.append(text.replace(LOCAL_API, api))
            if index in block.expectations:
                lines.append("__doc_example_mark")
        lines.append("__doc_example_mark")
    return "\n".join(lines) + "\n", origin


def segments_of(log: str) -> list[Segment]:
    """Splits a session's output at its marks: what ran before each mark, and the statuses curl got meanwhile."""
    segments, current, statuses, other, in_marks = [], [], [], [], False
    for line in log.split("\n"):
        if line == MARK:
            in_marks = True
        elif line == MARK_END:
            segments.append(Segment("\n".join(current), statuses, other))
            current, statuses, other, in_marks = [], [], [], False
        elif in_marks and re.fullmatch(r"\d{3}", line):
            statuses.append(int(line))
        elif in_marks:
            if line:
                other.append(line)
        else:
            current.append(line)
    return segments


def check(expectations: list[Expectation], segment: Segment) -> list[str]:
    """What is wrong with a segment's output, given the expectations after it (none: only statuses are checked)."""
    problems = []
    if 0 in segment.statuses:
        problems.append("a request got no answer (curl: " + " ".join(segment.other)[:200] + ")")
    said = [e.status for e in expectations if e.status is not None]
    for status in said:
        if not segment.statuses:
            problems.append(f"status {status} expected, but no HTTP request was made")
        elif segment.statuses[-1] != status:
            problems.append(f"status {status} expected, got {segment.statuses[-1]}")
    earlier = segment.statuses[:-1] if said else segment.statuses
    refused = [s for s in earlier if s and not 200 <= s < 300]
    if refused:
        problems.append(f"answers {refused} that no expectation shows (say them: `# {refused[-1]} {{...}}`)")
    for expectation in expectations:
        problems += check_output(expectation, segment)
    return problems


def check_output(expectation: Expectation, segment: Segment) -> list[str]:
    problems = []
    if expectation.has_json:
        documents = json_documents(segment.output)
        if not any(matches(expectation.json, d) for d in documents):
            shown = " | ".join(json.dumps(d)[:300] for d in documents[-3:]) or "(no JSON)"
            problems.append(f"no JSON printed matches {expectation.source.strip()!r}; printed: {shown}")
    if expectation.text is not None:
        pattern = wildcard(expectation.text, loose_blanks=True)
        printed = [line.strip() for line in strip_ansi(segment.output).split("\n")]
        if not any(pattern.fullmatch(line) for line in printed):
            problems.append(f"no line printed is {expectation.text!r}; printed: {' | '.join(printed[-5:])[:400]}")
    return problems


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", text)


# ---------------------------------------------------------------------------------------------------- servers


class Servers:
    """Local API servers, one per set of settings, started on first use and stopped at the end."""

    def __init__(self, binary: str, repo: str, logs: str, env: dict[str, str]) -> None:
        self.binary, self.repo, self.logs, self.env = binary, repo, logs, env
        self.running: dict[tuple, tuple[subprocess.Popen, str]] = {}

    def url(self, settings: tuple[tuple[str, str], ...]) -> str:
        if settings in self.running:
            return self.running[settings][1]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**self.env, "PORT": str(port), "CHUNKED_UPLOAD_STATIC_DIR": self.repo, **dict(settings)}
        log = open(os.path.join(self.logs, f"local-server-{len(self.running) + 1}.log"), "w")
        log.write(f"settings: {dict(settings)}\n")
        log.flush()
        process = subprocess.Popen([self.binary], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.repo)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"local-server exited ({process.returncode}); see {log.name}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"local-server did not answer within 60 s; see {log.name}") from None
                time.sleep(0.1)
        self.running[settings] = (process, url)
        return url

    def stop(self) -> None:
        for process, _ in self.running.values():
            process.terminate()
        for process, _ in self.running.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


# ---------------------------------------------------------------------------------------------------- running


def session_env(base: dict[str, str], bin_dir: str, scratch: str) -> dict[str, str]:
    """The environment an example sees: the emulators' endpoints, the built binaries first on PATH, and nothing of
    the developer's own chunked-upload settings."""
    env = {k: v for k, v in base.items() if not k.startswith("CHUNKED_UPLOAD_")}
    for name in ("CHUNKED_UPLOAD_BUCKET", "CHUNKED_UPLOAD_TABLE"):
        if name in base:
            env[name] = base[name]
    env["PATH"] = bin_dir + os.pathsep + base.get("PATH", "")
    for name, sub in (("TMPDIR", "tmp"), ("XDG_STATE_HOME", "state")):
        env[name] = os.path.join(scratch, sub)
        os.makedirs(env[name], exist_ok=True)
    env["LC_ALL"] = "C.UTF-8"
    return env


def scratch_dir(repo: str) -> str:
    """A directory that looks like the repository (its top-level entries linked) where examples may leave files."""
    scratch = tempfile.mkdtemp(prefix="doc-examples.")
    for entry in os.listdir(repo):
        if entry not in (".git",):
            os.symlink(os.path.join(repo, entry), os.path.join(scratch, entry))
    return scratch


def run_session(blocks: list[Block], api: str, env_base: dict[str, str], repo: str, bin_dir: str) -> list[str]:
    """Runs one session's blocks; returns its failures, each naming the page line."""
    scratch = scratch_dir(repo)
    try:
        env = session_env(env_base, bin_dir, scratch)
        status_file = os.path.join(scratch, "tmp", ".statuses")
        open(status_file, "w").close()
        env.update(DOC_EXAMPLES_STATUS=status_file, DOC_EXAMPLES_MARK=MARK, DOC_EXAMPLES_MARK_END=MARK_END)
        env["DOC_EXAMPLES_FAILED"] = FAILED
        script, origin = script_of(blocks, api)
        script_path = os.path.join(scratch, "tmp", ".session.sh")
        with open(script_path, "w") as f:
            f.write(script)
        try:
            done = subprocess.run(
                ["bash", script_path],
                cwd=scratch,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=SESSION_TIMEOUT_SECS,
            )
            log, code = done.stdout.decode(errors="replace"), done.returncode
        except subprocess.TimeoutExpired as e:
            log = (e.stdout or b"").decode(errors="replace")
            code = None
        return failures_of(blocks, log, code, origin)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def failures_of(blocks, log: str, code, origin) -> list[str]:
    """What went wrong in a session: the expectations its output breaks, and where it stopped if it did."""
    failures = []
    # One entry per mark, in the script's order: each expectation group's, then the block's end.
    expected: list[tuple[list[Expectation], str, int]] = []
    for block in blocks:
        for index in sorted(block.expectations):
            group = block.expectations[index]
            expected.append((group, block.path, group[0].line))
        expected.append(([], block.path, block.lines[-1][0] if block.lines else block.line))
    segments = segments_of(log)
    for (group, path, line), segment in zip(expected, segments):
        for problem in check(group, segment):
            failures.append(f"{path}:{line}: {problem}")
    if len(segments) < len(expected):
        path, line = expected[len(segments)][1:]
        stopped = "ran past its time limit" if code is None else f"stopped with status {code}"
        tail = "\n".join("        " + l for l in log.rstrip("\n").split("\n")[-12:])
        where = failing_line(log, origin) or f"{path}, before line {line}"
        failures.append(f"{where}: the session {stopped}; its last output:\n{tail}")
    return failures


def failing_line(log: str, origin) -> str | None:
    """The page line of the command that failed, from the ERR trap's report (or bash's own error message)."""
    # The first report is the failing command itself; the others are the functions and subshells it ran in.
    found = re.findall(re.escape(FAILED) + r" (\d+) \d+", log) or re.findall(r"\.session\.sh: line (\d+):", log)
    if found and int(found[0]) in origin:
        path, line = origin[int(found[0])]
        return f"{path}:{line}"
    return None


def syntax_errors(block: Block) -> list[str]:
    source = "\n".join(text for _, text in block.lines) + "\n"
    done = subprocess.run(["bash", "-n"], input=source.encode(), capture_output=True)
    if done.returncode == 0:
        return []
    return [f"{block.path}:{block.line}: does not parse as bash: {done.stderr.decode().strip()[:300]}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--server", required=True, help="the local-server binary")
    parser.add_argument("--cli", required=True, help="the chunked-upload binary, put on the examples' PATH")
    parser.add_argument("--logs", required=True)
    parser.add_argument("files", nargs="*")
    args = parser.parse_args()
    repo = os.path.abspath(args.repo)
    files = args.files or ["README.md"] + sorted(
        os.path.join("docs", f) for f in os.listdir(os.path.join(repo, "docs")) if f.endswith(".md")
    )
    os.makedirs(args.logs, exist_ok=True)
    bin_dir = tempfile.mkdtemp(prefix="doc-examples-bin.")
    os.symlink(os.path.abspath(args.cli), os.path.join(bin_dir, "chunked-upload"))
    servers = Servers(os.path.abspath(args.server), repo, args.logs, dict(os.environ))
    failures, counts = [], {"run": 0, "skipped": 0, "expectations": 0}
    try:
        for path in files:
            started = time.monotonic()
            try:
                blocks = blocks_of(path, open(os.path.join(repo, path)).read())
            except PatternError as e:
                failures.append(str(e))
                print(f"FAIL  {path}: {e}")
                continue
            page_failures = []
            sessions: dict[tuple, list[Block]] = {}
            for block in blocks:
                if block.skip_reason is not None:
                    counts["skipped"] += 1
                    page_failures += syntax_errors(block)
                    continue
                counts["run"] += 1
                counts["expectations"] += sum(len(group) for group in block.expectations.values())
                sessions.setdefault(block.server_env, []).append(block)
            for settings, session in sessions.items():
                page_failures += run_session(session, servers.url(settings), dict(os.environ), repo, bin_dir)
            ran = sum(len(s) for s in sessions.values())
            verdict = "FAIL" if page_failures else "ok  "
            print(f"{verdict}  {path}: {ran} run, {len(blocks) - ran} not run, {time.monotonic() - started:.1f} s")
            for failure in page_failures:
                print("      " + failure)
            failures += page_failures
    finally:
        servers.stop()
        shutil.rmtree(bin_dir, ignore_errors=True)
    print(
        f"{counts['run']} examples run ({counts['expectations']} expectations), {counts['skipped']} not run; "
        f"{len(failures)} failure(s)"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
