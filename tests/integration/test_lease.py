"""The node's lease follows the database: lost with a restart, taken again
when the server is back, on whichever host of a multi-host DSN is the primary.

A cluster of the test's own is stopped and started; the shared server is never touched.
"""
from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from tests.support.ports import free_port
from tests.support.postgres import Cluster
from tests.support.stack import running_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lease_stack(tmp_path_factory):
    cluster = Cluster()
    cluster.start()
    try:
        with running_stack(tmp_path_factory.mktemp("lease"), admin_dsn=cluster.dsn(), MASKING_DB_TIMEOUT="1") as stack:
            yield stack, cluster
    finally:
        cluster.destroy()


def advisory_locks(dsn: str, stack) -> int:
    """How many sessions hold `stack`'s node lease on that server. Only that
    lock: audit appends and session creation take transaction-scoped advisory
    locks of their own, which a count of every lock would catch in passing."""
    key = f"{stack.settings.ari_url}/{stack.settings.ari_app}"

    async def count():
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
                " AND ((classid::bigint << 32) | objid::bigint) = hashtextextended($1, 0)", key)
        finally:
            await conn.close()

    return asyncio.run(count())


def wait_for(condition, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_the_lease_is_taken_again_after_the_database_restarts(lease_stack):
    stack, cluster = lease_stack
    assert advisory_locks(stack.dsn, stack) == 1

    cluster.stop("immediate")
    time.sleep(3)  # the service notices the loss while the server is down
    cluster.start()

    assert wait_for(lambda: advisory_locks(stack.dsn, stack) == 1), \
        "nobody holds the node's lease after the database came back: a second instance would take the node"
    assert '"lease.reacquired"' in stack.service_log.read_text()


def test_a_multi_host_dsn_takes_the_lease_on_the_host_that_answers(lease_stack, tmp_path):
    stack, cluster = lease_stack
    dead_port = free_port()  # a host of the DSN that is down
    database = stack.dsn.rsplit("/", 1)[1]
    multi = (f"postgresql://postgres@127.0.0.1:{dead_port},127.0.0.1:{cluster.port}/{database}"
             "?target_session_attrs=read-write")
    stack.stop_service()
    try:
        stack.start_service(MASKING_DATABASE_URL=multi)
        assert wait_for(lambda: advisory_locks(stack.dsn, stack) == 1)
    finally:
        stack.stop_service()
        stack.start_service()
