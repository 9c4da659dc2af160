"""moto's server on one thread, for DynamoDB.

`python -m moto.server` answers on many threads and moto does not lock an item while it checks a condition and
writes, so two conditional writes on one item could both succeed (seen: two chunks for one offset both accepted).
Real DynamoDB serializes the writes to an item; one thread does the same here.

moto's TransactWriteItems deep-copies every table it touches, stream records included, to roll back a canceled
transaction: each one took longer as the suite's shared table grew and kept megabytes alive, until the one thread
answered in seconds and SDK attempts timed out. Here a transaction keeps a copy of only the items it names and the
length of the table's stream, which is all a rollback needs.

Usage: python moto_dynamodb.py HOST PORT
"""

import copy
import sys

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


class _TablesKept:
    """`copy` as moto's models module sees it, except that a Table is not copied: the rollback below restores it."""

    def __getattr__(self, name):
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value, memo=None):
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _keys(backend, transact_items):
    """(table, hash value, range value) of each item the transaction names, for the tables that exist."""
    for action in transact_items:
        for kind, op in action.items():
            table = backend.tables.get(op.get("TableName"))
            if table is None:
                continue
            attrs = op.get("Item", {}) if kind == "Put" else op.get("Key", {})
            if table.hash_key_attr not in attrs:
                continue
            hash_value = DynamoType(attrs[table.hash_key_attr])
            range_attr = table.range_key_attr
            if range_attr and range_attr not in attrs:
                continue
            range_value = DynamoType(attrs[range_attr]) if range_attr else None
            yield table, hash_value, range_value


def _put_back(table, hash_value, range_value, item):
    if range_value is None:
        if item is None:
            table.items.pop(hash_value, None)
        else:
            table.items[hash_value] = item
    elif item is None:
        table.items.get(hash_value, {}).pop(range_value, None)
    else:
        table.items[hash_value][range_value] = item


_transact_write_items = DynamoDBBackend.transact_write_items


def transact_write_items(self, transact_items):
    kept = [(t, h, r, copy.deepcopy(t.get_item(h, r))) for t, h, r in _keys(self, transact_items)]
    streams = {id(t): (t.stream_shard, len(t.stream_shard.items)) for t, _, _, _ in kept if t.stream_shard}
    try:
        return _transact_write_items(self, transact_items)
    except Exception:
        for table, hash_value, range_value, item in reversed(kept):
            _put_back(table, hash_value, range_value, item)
        for shard, length in streams.values():
            del shard.items[length:]
        raise


def main() -> None:
    dynamodb_models.copy = _TablesKept()
    DynamoDBBackend.transact_write_items = transact_write_items
    host, port = sys.argv[1], int(sys.argv[2])
    run_simple(host, port, DomainDispatcherApplication(create_backend_app), threaded=False)


if __name__ == "__main__":
    main()
