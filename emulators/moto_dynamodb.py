"""moto's server on one thread, for DynamoDB.

`python -m moto.server` answers on many threads and moto does not lock an item while it checks a condition and
writes, so two conditional writes on one item could both succeed (seen: two chunks for one offset both accepted).
Real DynamoDB serializes the writes to an item; one thread does the same here.

Usage: python moto_dynamodb.py HOST PORT
"""

import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    run_simple(host, port, DomainDispatcherApplication(create_backend_app), threaded=False)


if __name__ == "__main__":
    main()
