"""The database stays one primary, and the service follows it when a streaming
replica is promoted (docs/scaling.md): the service's DSN names both hosts with
target_session_attrs=read-write, so new connections land on whichever accepts
writes; call-row writes made while there is none wait in the spool and are
replayed on the new primary; the node's lease is taken again there.

Each test has a primary of its own (`initdb` on a free port) and a replica of
it (`pg_basebackup`, synchronous streaming replication, so a promoted replica
has every committed row); the shared server is never touched. Calls are real
SIPp calls through a real Asterisk.
"""
from __future__ import annotations

import time
import urllib.parse
from types import SimpleNamespace

import pytest

from tests.integration.conftest import new_parties, query
from tests.integration.test_lease import advisory_locks
from tests.support.postgres import Cluster
from tests.support.sipp import Sipp, render
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.integration


def wait_until(condition, timeout: float = 30):
    """The condition's first true value, polled until `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.2)
    return value


def both_hosts_dsn(stack: Stack, first: Cluster, second: Cluster) -> str:
    """The service's own DSN (its role, its database) naming both servers."""
    parts = urllib.parse.urlsplit(stack.app_dsn)
    return (f"postgresql://{parts.username}@127.0.0.1:{first.port},127.0.0.1:{second.port}{parts.path}"
            "?target_session_attrs=read-write")


@pytest.fixture
def replicated(tmp_path_factory):
    """A stack whose service connects through a two-host DSN: primary, then replica."""
    primary = Cluster()
    primary.start()
    replica = None
    try:
        replica = Cluster(primary=primary)
        replica.start()
        primary.require_synchronous_replica()
        with running_stack(tmp_path_factory.mktemp("promotion"), admin_dsn=primary.dsn(),
                           MASKING_DB_TIMEOUT="1") as stack:
            stack.stop_service()
            stack.env["MASKING_DATABASE_URL"] = both_hosts_dsn(stack, primary, replica)
            stack.start_service()
            assert advisory_locks(primary.dsn(database_of(stack)), stack) == 1, "the lease is not on the primary"
            yield stack, primary, replica
    finally:
        if replica is not None:
            replica.destroy()
        primary.destroy()


def database_of(stack: Stack) -> str:
    return urllib.parse.urlsplit(stack.app_dsn).path.lstrip("/")


def answering(stack: Stack, tmp_path, calls: int) -> Sipp:
    """The counterparts: answer `calls` calls, echoing audio, until the bridge hangs up."""
    uas = Sipp(tmp_path, render("uas_answer.xml", tmp_path), ["-rtp_echo"], "counterparts",
               port=stack.counterpart_port)
    uas.command[uas.command.index("-m") + 1] = str(calls)
    uas.start()
    time.sleep(0.3)
    return uas


def callers(stack: Stack, tmp_path, virtual_number: str, caller: str, calls: int, talk_ms: int, tag: str) -> Sipp:
    """`calls` callers with real audio dialing one virtual number, `talk_ms` each; started, not awaited."""
    uac = Sipp(tmp_path, render("uac_call.xml", tmp_path),
               ["-s", virtual_number, "-key", "caller", caller, "-d", str(talk_ms), "-r", "5",
                "-l", str(calls), stack.sip_target], tag)
    uac.command[uac.command.index("-m") + 1] = str(calls)
    return uac.start()


def bridged_calls(stack: Stack) -> int:
    return sum(1 for b in stack.ari("GET", "/bridges") if len(b.get("channels", [])) == 2)


def finished_rows(dsn: str, virtual_number: str, count: int, timeout: float = 60) -> list[dict]:
    """The call rows once `count` have ended and every answered one has its recording."""
    def done():
        rows = query(dsn, "SELECT c.*, r.duration_seconds AS recorded_seconds FROM calls c"
                          " LEFT JOIN recordings r ON r.call_id = c.id WHERE c.virtual_number = $1",
                     virtual_number)
        finished = [r for r in rows if r["disposition"] != "in_progress"
                    and (r["disposition"] != "answered" or r["recorded_seconds"] is not None)]
        return rows if len(rows) >= count and len(finished) == len(rows) else None

    return wait_until(done, timeout)


def test_a_replica_promoted_while_calls_run_loses_no_call_row_and_takes_the_lease(replicated, tmp_path,
                                                                                   place_call):
    stack, primary, replica = replicated
    database = database_of(stack)
    parties = new_parties(stack)
    uas = answering(stack, tmp_path, calls=5)
    short = callers(stack, tmp_path, parties.virtual_number, parties.a, calls=3, talk_ms=6000, tag="short")
    long = callers(stack, tmp_path, parties.virtual_number, parties.a, calls=2, talk_ms=20000, tag="long")
    wait_until(lambda: bridged_calls(stack) == 5, 30)

    primary.stop("immediate")  # the primary dies with five calls up
    # The short calls end while no server accepts writes: their rows wait in the spool.
    wait_until(lambda: '"call.row_spooled"' in stack.service_log.read_text(), 40)
    still_talking = long.process.poll() is None
    replica.promote()  # what the HA tool does

    assert short.wait(30).succeeded and long.wait(40).succeeded, "a call was dropped by the failover"
    assert uas.wait(20).succeeded
    rows = finished_rows(replica.dsn(database), parties.virtual_number, 5)
    assert len(rows) == 5, "a call row was lost"
    assert [(r["disposition"], r["hangup_by"]) for r in rows] == [("answered", "caller")] * 5
    assert all(r["recorded_seconds"] > 1 for r in rows), "a recording row was lost"
    assert '"spool.replayed"' in stack.service_log.read_text()
    print(f"the long calls were {'still' if still_talking else 'no longer'} talking at the promotion")

    # The lease is held again, on the new primary.
    assert wait_until(lambda: advisory_locks(replica.dsn(database), stack) == 1, 30)
    assert '"lease.reacquired"' in stack.service_log.read_text()
    # And a new caller is served as before, its row on the new primary.
    after = new_parties(stack_on(stack, replica))
    call = place_call(after.a, after.virtual_number, via=stack, uas="uas_answer.xml", talk_ms=2000)
    assert call.caller.succeeded and call.counterpart.succeeded
    assert [r["disposition"] for r in finished_rows(replica.dsn(database), after.virtual_number, 1)] == ["answered"]


def stack_on(stack: Stack, cluster: Cluster) -> SimpleNamespace:
    """The stack as the test reads and writes it through `cluster`."""
    return SimpleNamespace(dsn=cluster.dsn(database_of(stack)), keys=stack.keys)


def test_with_no_host_accepting_writes_callers_hear_the_prompt_and_no_row_is_written_until_a_primary(
        replicated, place_call):
    """The adversarial half of a failover: the old primary fenced read-only, the
    replica not yet promoted. Both hosts answer, neither accepts writes; the
    service must not write (it cannot), must not hang, and must not lose the row."""
    stack, primary, replica = replicated
    database = database_of(stack)
    parties = new_parties(stack)
    primary.execute("ALTER SYSTEM SET default_transaction_read_only = on")
    primary.stop("fast")
    primary.start()  # back, read-only: every connection the service had is gone

    call = place_call(parties.a, parties.virtual_number, via=stack, uac="uac_rejected.xml",
                      uac_values={"final_status": 503, "tag": "no-primary"})
    assert call.caller.succeeded, call.caller.output
    assert call.caller_rtp.level > 100, "the caller heard no prompt"
    assert stack.service.poll() is None, "the service died without a primary"
    log = stack.service_log.read_text()
    assert '"call.row_spooled"' in log
    assert '"call.row_write_failed"' not in log, "no primary was taken for a refused write, not an outage"
    for cluster in (primary, replica):
        assert not query(cluster.dsn(database), "SELECT id FROM calls WHERE virtual_number = $1",
                         parties.virtual_number)

    replica.promote()
    rows = finished_rows(replica.dsn(database), parties.virtual_number, 1)
    assert [(r["disposition"], r["reject_reason"]) for r in rows] == [("rejected", "database_unavailable")]
    assert wait_until(lambda: advisory_locks(replica.dsn(database), stack) == 1, 30)
    # The fenced old primary got nothing.
    assert not query(primary.dsn(database), "SELECT id FROM calls WHERE virtual_number = $1",
                     parties.virtual_number)
    assert advisory_locks(primary.dsn(database), stack) == 0
