from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from types import SimpleNamespace

import asyncpg
import pytest

from bridge.config import Settings
from bridge.sessions.models import SessionRequest
from bridge.stack.asterisk import AsteriskNotInstalled, find_install
from bridge.store import Store
from tests.support.keys import keys_file, shared_keys
from tests.support.rtp import RtpSniffer
from tests.support.sipp import Sipp, SippResult, render
from tests.support.stack import (ADMIN_DSN, Stack, app_role_name, create_database, database_env, drop_database,
                                 migrate, running_stack)

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Stack:
    if not shutil.which("sipp"):
        pytest.fail("sipp is not installed: run scripts/bootstrap")
    try:
        find_install(Settings().asterisk.asterisk_root)
    except AsteriskNotInstalled as exc:
        pytest.fail(str(exc))
    with running_stack(tmp_path_factory.mktemp("stack")) as stack:
        yield stack


@pytest.fixture(scope="module")
def dsn():
    """A migrated database of its own, for tests that need no Asterisk."""
    name = f"masking_db_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    asyncio.run(create_database(name))
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    migrate({"MASKING_DATABASE_URL": url})
    yield url
    asyncio.run(drop_database(name))


@pytest.fixture(scope="module")
def app_db():
    """A database migrated by `masking db upgrade` as the superuser, which made its application role:
    `env` runs `masking` as that role; `admin` is the superuser's URL, `app` the role's."""
    name, role = f"masking_db_{os.getpid()}_{uuid.uuid4().hex[:6]}", app_role_name()
    asyncio.run(create_database(name))
    env = {**database_env(ADMIN_DSN, name, role), "MASKING_KEYS_FILE": str(keys_file())}
    migrate(env)
    yield SimpleNamespace(env=env, role=role, admin=env["MASKING_DATABASE_ADMIN_URL"], app=env["MASKING_DATABASE_URL"])
    asyncio.run(drop_database(name, role=role))


@pytest.fixture
async def store(dsn):
    """A store over the module's database, emptied for each test."""
    store = await Store.connect(dsn, shared_keys())
    await empty(store)
    yield store
    await store.close()


async def empty(store: Store) -> None:
    async with store.pool.acquire() as conn:
        # As a superuser only can: past the trigger that keeps audit_log append-only.
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("TRUNCATE webhook_outbox, idempotency_keys, recordings, calls, session_participants,"
                           " masking_sessions, virtual_numbers, api_keys, audit_log, subject_requests, incidents CASCADE")
        await conn.execute("RESET session_replication_role")


_serial = itertools.count(1000)


@dataclass(frozen=True)
class Parties:
    virtual_number: str
    a: str
    b: str


def query(dsn: str, sql: str, *args):
    async def run():
        conn = await asyncpg.connect(dsn)
        try:
            return [dict(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return asyncio.run(run())


def new_parties(stack: Stack, ttl: int = 3600, record: bool = True, add_session: bool = True,
                time_limit: int | None = None) -> Parties:
    """A fresh virtual number and two participants, with a live session between them."""
    n = next(_serial)
    parties = Parties(f"+656100{n:04d}", f"+659100{n:04d}", f"+658100{n:04d}")

    async def run():
        store = await Store.connect(stack.dsn, stack.keys)
        try:
            await store.numbers.add(parties.virtual_number)
            if add_session:
                await store.sessions.create(SessionRequest(parties.a, parties.b, ttl_seconds=ttl, record=record, purpose="delivery_order",
                                                          time_limit_seconds=time_limit))
        finally:
            await store.close()

    asyncio.run(run())
    return parties


def wait_for_call_row(stack: Stack, virtual_number: str, with_recording: bool = False, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        rows = query(stack.dsn, "SELECT * FROM calls WHERE virtual_number = $1 ORDER BY started_at DESC",
                     virtual_number)
        if rows and rows[0]["disposition"] != "in_progress":
            row = rows[0]
            recording = query(stack.dsn, "SELECT * FROM recordings WHERE call_id = $1", row["id"])
            if not with_recording or recording:
                row["recording"] = recording[0] if recording else None
                row["count"] = len(rows)
                return row
        if time.monotonic() > deadline:
            raise AssertionError(f"no finished call row for the virtual number: {rows}")
        time.sleep(0.1)


@dataclass
class CallResult:
    caller: SippResult
    counterpart: SippResult | None
    caller_rtp: RtpSniffer
    counterpart_rtp: RtpSniffer | None


@pytest.fixture
def place_call(request, tmp_path):
    """Run one caller (UAC) against a stack (the shared one unless `via` says
    otherwise), with an optional counterpart (UAS)."""
    started: list[Sipp] = []

    def place(caller_number: str, virtual_number: str, *, via: Stack | None = None, uac: str = "uac_call.xml",
              uas: str | None = None,
              talk_ms: int = 3000, counterpart_talk_ms: int | None = None, uac_values: dict | None = None, uas_values: dict | None = None,
              uas_args: tuple[str, ...] = ("-rtp_echo",), timeout: float = 40) -> CallResult:
        stack = via or request.getfixturevalue("stack")
        counterpart = None
        if uas:
            scenario = render(uas, tmp_path, **(uas_values or {}))
            counterpart = Sipp(tmp_path, scenario, [*uas_args, "-d", str(counterpart_talk_ms or talk_ms)], "counterpart",
                               port=stack.counterpart_port)
            started.append(counterpart.start())
            time.sleep(0.2)  # SIPp binds its port
        scenario = render(uac, tmp_path, **(uac_values or {}))
        caller = Sipp(tmp_path, scenario, ["-s", virtual_number, "-key", "caller", caller_number,
                                           "-d", str(talk_ms), stack.sip_target], "caller")
        counterpart_rtp = RtpSniffer(counterpart.media_port) if counterpart else None
        with RtpSniffer(caller.media_port) as caller_rtp:
            if counterpart_rtp:
                counterpart_rtp.__enter__()
            started.append(caller.start())
            caller_result = caller.wait(timeout)
            counterpart_result = counterpart.wait(10) if counterpart else None
            if counterpart_rtp:
                counterpart_rtp.__exit__(None, None, None)
        return CallResult(caller_result, counterpart_result, caller_rtp, counterpart_rtp)

    yield place
    for process in started:
        process.stop()
