"""Probe a local emulator endpoint (stdlib only).

Usage: probe.py localstack|moto BASE_URL

Exit status:
  0  the expected emulator answers and is ready
  1  nothing answers on that address
  2  the expected emulator answers but is not ready yet
  3  something else answers there
"""

import json
import sys
import urllib.error
import urllib.request

READY, NOTHING, STARTING, FOREIGN = 0, 1, 2, 3


def get_json(url):
    """Return (status, parsed JSON or None); raise OSError if nothing answers."""
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=3) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    except urllib.error.URLError as err:
        raise OSError(str(err.reason)) from err
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def probe_localstack(base):
    status, doc = get_json(base + "/_localstack/health")
    if status != 200 or not isinstance(doc, dict) or "services" not in doc:
        return FOREIGN
    state = doc["services"].get("s3")
    return READY if state in ("running", "available") else STARTING


def probe_moto(base):
    status, doc = get_json(base + "/moto-api/data.json")
    if status == 200 and isinstance(doc, dict):
        return READY
    return FOREIGN


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("localstack", "moto"):
        print(__doc__, file=sys.stderr)
        return 64
    kind, base = sys.argv[1], sys.argv[2].rstrip("/")
    try:
        return probe_localstack(base) if kind == "localstack" else probe_moto(base)
    except (OSError, TimeoutError):
        return NOTHING
    except Exception:  # an answer we cannot make sense of
        return FOREIGN


if __name__ == "__main__":
    sys.exit(main())
