"""What counts as "the database is unavailable" on the call path: the flow
answers StoreUnavailable with a prompt and the call-row writer spools; any other
exception is a bug. No server needed: the operations raise what asyncpg raises."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import asyncpg
import pytest

from bridge.store.db import Database
from bridge.store.errors import StoreUnavailable


class _Pool:
    """Hands out a connection, or fails to, as asyncpg's pool would."""

    def __init__(self, fail: Exception | None = None):
        self.fail = fail

    @asynccontextmanager
    async def acquire(self):
        if self.fail is not None:
            raise self.fail
        yield object()


def _run(database: Database, operation):
    return asyncio.run(database.run(operation))


@pytest.mark.parametrize("error", [
    # every host of a multi-host DSN answered, none accepts writes (a failover half done)
    asyncpg.TargetServerAttributeNotMatched("None of the hosts match the target attribute requirement"),
    ConnectionRefusedError(111, "refused"),  # no host answered
    asyncpg.CannotConnectNowError("the database system is starting up"),
])
def test_no_primary_to_connect_to_is_the_database_unavailable(error):
    database = Database(_Pool(fail=error), keys=None, timeout=1)
    with pytest.raises(StoreUnavailable) as raised:
        _run(database, lambda conn: asyncio.sleep(0))
    assert type(error).__name__ in str(raised.value)


def test_a_write_refused_by_a_read_only_server_is_the_database_unavailable():
    async def write(conn):
        raise asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction")

    with pytest.raises(StoreUnavailable):
        _run(Database(_Pool(), keys=None, timeout=1), write)


def test_a_query_error_is_not_mistaken_for_an_outage():
    async def bad(conn):
        raise asyncpg.UndefinedColumnError("column does not exist")

    with pytest.raises(asyncpg.UndefinedColumnError):
        _run(Database(_Pool(), keys=None, timeout=1), bad)
