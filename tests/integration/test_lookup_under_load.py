"""A lookup under load never waits behind row writes (issue 16).

Call-row writes stall (each takes seconds and a cancel does not stop it, as on
a stalled disk) while a flood of callers to a number nobody holds keeps every
write connection busy with their rows. Real callers
arriving then must still be routed, dialed and bridged: the lookups that
route them have connections of their own, and the rows written late are complete.
"""
from __future__ import annotations

import asyncio
import re
import time
from contextlib import contextmanager

import asyncpg

from tests.integration.conftest import new_parties, query
from tests.integration.test_masked_call import assert_no_leftovers
from tests.support.sipp import Sipp, render

FLOOD_CALLS = 20  # more row writers than the write pool has connections (MASKING_DB_POOL_SIZE, 10)
WRITE_POOL = 10
REAL_CALLS = 6
UNKNOWN_NUMBER = "+6569990077"


# Every write to `calls` takes WRITE_SECONDS and a cancel does not cut it
# short: a backend waiting on a stalled disk. A writer that gives up after
# MASKING_DB_TIMEOUT still has its connection until the write is done.
SLOW_WRITES = """
CREATE FUNCTION test_slow_call_write() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE done_at timestamptz := clock_timestamp() + interval '%s seconds';
BEGIN
    LOOP
        BEGIN
            PERFORM pg_sleep(greatest(0, extract(epoch FROM done_at - clock_timestamp())));
            EXIT;
        EXCEPTION WHEN query_canceled THEN
            NULL;  -- not before the write is done
        END;
    END LOOP;
    RETURN NEW;
END $$;
CREATE TRIGGER test_slow_call_write BEFORE INSERT OR UPDATE ON calls
    FOR EACH ROW EXECUTE FUNCTION test_slow_call_write();
"""
WRITE_SECONDS = 5


def execute(dsn: str, sql: str) -> None:
    async def run():
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@contextmanager
def slow_row_writes(stack):
    execute(stack.dsn, SLOW_WRITES % WRITE_SECONDS)
    try:
        yield
    finally:
        execute(stack.dsn, "DROP TRIGGER test_slow_call_write ON calls; DROP FUNCTION test_slow_call_write()")


def writers_stuck(stack) -> int:
    return query(stack.dsn, "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()"
                            " AND usename = $1 AND wait_event = 'PgSleep'",
                 stack.app_dsn.split("//", 1)[1].split("@", 1)[0])[0]["n"]


def flood(stack, tmp_path) -> Sipp:
    """FLOOD_CALLS callers at once to a number that is in no pool: each is turned
    away with a prompt, and each leaves a row to write."""
    scenario = render("uac_rejected.xml", tmp_path, final_status=404, tag="flood")
    sipp = Sipp(tmp_path, scenario, ["-s", UNKNOWN_NUMBER, "-key", "caller", "+6597770077",
                                     "-r", str(FLOOD_CALLS), "-l", str(FLOOD_CALLS), stack.sip_target], "flood")
    sipp.command[sipp.command.index("-m") + 1] = str(FLOOD_CALLS)
    return sipp.start()


def callers(stack, tmp_path, parties) -> tuple[Sipp, Sipp]:
    """REAL_CALLS callers, one after another in the flood, each to the session's
    counterpart, who answers them all."""
    uas = Sipp(tmp_path, render("uas_answer.xml", tmp_path, tag="real"), ["-rtp_echo", "-d", "2000"], "counterpart",
               port=stack.counterpart_port)
    uas.command[uas.command.index("-m") + 1] = str(REAL_CALLS)
    uac = Sipp(tmp_path, render("uac_call.xml", tmp_path, tag="real"),
               ["-s", parties.virtual_number, "-key", "caller", parties.a, "-d", "2000",
                "-r", str(REAL_CALLS * 2), "-l", str(REAL_CALLS), stack.sip_target], "caller")
    uac.command[uac.command.index("-m") + 1] = str(REAL_CALLS)
    return uas, uac


def test_callers_are_bridged_while_a_flood_of_outsiders_rows_holds_every_write_connection(stack, tmp_path):
    parties = new_parties(stack, record=False)
    uas, uac = callers(stack, tmp_path, parties)
    flooders = None
    try:
        with slow_row_writes(stack):
            uas.start()
            flooders = flood(stack, tmp_path)
            deadline = time.monotonic() + 20
            while writers_stuck(stack) < WRITE_POOL:  # every write connection busy with a row
                assert time.monotonic() < deadline, "the flood never filled the write pool"
                time.sleep(0.05)

            caller = uac.start().wait(60)
            flooders.wait(30)
        counterpart = uas.wait(20)
    finally:
        for sipp in (uac, uas, flooders):
            if sipp:
                sipp.stop()
    assert caller.succeeded, caller.output  # every caller got 200 OK, none "try again later"
    assert counterpart.succeeded, counterpart.output
    invites = [m for m in counterpart.received() if m.startswith("INVITE")]
    assert len(invites) == REAL_CALLS
    for invite in invites:
        assert re.search(r"^From: .*<sip:" + re.escape(parties.virtual_number) + "@", invite, re.M), invite

    # The rows held up are written once the writes are fast again, complete.
    deadline = time.monotonic() + 60
    while (rows := query(stack.dsn, "SELECT disposition, answered_at, callee_channel_id FROM calls"
                                    " WHERE virtual_number = $1", parties.virtual_number)) is not None:
        if len(rows) == REAL_CALLS and all(r["disposition"] == "answered" for r in rows):
            break
        assert time.monotonic() < deadline, f"the callers' rows were not all written: {rows}"
        time.sleep(0.5)
    assert all(r["answered_at"] and r["callee_channel_id"] for r in rows)
    while (flooded := query(stack.dsn, "SELECT disposition FROM calls WHERE virtual_number = $1",
                            UNKNOWN_NUMBER)) != [{"disposition": "rejected"}] * FLOOD_CALLS:
        assert time.monotonic() < deadline, f"the flood's rows were not all written: {flooded}"
        time.sleep(0.5)
    assert_no_leftovers(stack)
