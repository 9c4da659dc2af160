"""The link model's check against its profile, run in the client's namespace: small requests through the link
proxy to the sink (a new connection, then the same one again), and one raw transfer whose arrival the sink times.

Usage: python probe.py --proxy http://HOST:PORT --sink http://127.0.0.1:PORT --raw-bytes N [--repeat 5]
Prints one JSON line: milliseconds of each small request on a new connection and on a reused one, and the raw
transfer's bytes and the seconds the sink saw them arrive over. Standard library only.
"""

import argparse
import http.client
import json
import os
import time
from urllib.parse import urlsplit


def timed_get(conn: http.client.HTTPConnection, url: str) -> float:
    started = time.perf_counter()
    conn.request("GET", url)
    conn.getresponse().read()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--proxy", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--raw-bytes", type=int, required=True)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    proxy = urlsplit(args.proxy)
    new, reused = [], []
    for i in range(args.repeat):
        conn = http.client.HTTPConnection(proxy.hostname, proxy.port)
        new.append(timed_get(conn, f"{args.sink}/small-{i}"))
        reused.append(timed_get(conn, f"{args.sink}/again-{i}"))
        conn.close()
    body = os.urandom(args.raw_bytes)
    conn = http.client.HTTPConnection(proxy.hostname, proxy.port)
    conn.request("PUT", f"{args.sink}/raw", body=body)
    arrived = json.loads(conn.getresponse().read())
    print(json.dumps({"new_connection_ms": new, "reused_connection_ms": reused, "raw": arrived}))


if __name__ == "__main__":
    main()
