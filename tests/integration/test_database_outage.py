"""PostgreSQL going away: callers get a prompt, calls go on, no record is lost.

These tests run a stack of their own on a PostgreSQL cluster of their own,
which they stop and start; the shared server is never touched.
"""
from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.integration.conftest import new_parties, wait_for_call_row
from tests.integration.test_faults import Background, both_up, bridged, ensure_service, fastagi_fallback, wait_until
from tests.integration.test_masked_call import assert_no_leftovers, sealed_audio
from tests.support.postgres import Cluster
from tests.support.stack import running_stack


@pytest.fixture(scope="module")
def outage(tmp_path_factory):
    cluster = Cluster()
    cluster.start()
    try:
        with running_stack(tmp_path_factory.mktemp("outage"), admin_dsn=cluster.dsn(),
                           MASKING_DB_TIMEOUT="1") as stack:
            yield stack, cluster
    finally:
        cluster.destroy()


@pytest.fixture
def database_back(outage):
    """Whatever the test did, the server is up again afterwards."""
    yield
    stack, cluster = outage
    try:
        cluster.start()
    except Exception:
        pass  # already running


def test_a_caller_arriving_while_the_database_is_down_hears_a_prompt_and_the_row_appears_later(
        outage, place_call, database_back):
    stack, cluster = outage
    parties = new_parties(stack)
    cluster.stop()

    call = place_call(parties.a, parties.virtual_number, via=stack, uac="uac_rejected.xml",
                      uac_values={"final_status": 503, "tag": "db-down"})

    assert call.caller.succeeded, call.caller.output
    assert call.caller_rtp.level > 100, "caller heard no prompt"
    assert stack.service.poll() is None, "the service died with the database"
    assert_no_leftovers(stack)
    cluster.start()
    row = wait_for_call_row(stack, parties.virtual_number, timeout=30)
    assert row["disposition"] == "rejected" and row["reject_reason"] == "database_unavailable"


def recorded_call_through_an_outage(stack, cluster, place_call, connected) -> dict:
    """A recorded call placed, PostgreSQL stopped once `connected()`, the call
    talked out (neither side dropped, nothing left in Asterisk), PostgreSQL
    started again: the call's row once it has its recording."""
    parties = new_parties(stack)
    call = Background(place_call, parties.a, parties.virtual_number, via=stack, uas="uas_answer.xml",
                      talk_ms=5000)
    wait_until(connected)

    cluster.stop()
    result = call.join()
    assert result.caller.succeeded and result.counterpart.succeeded, "the call was dropped"
    assert_no_leftovers(stack)
    cluster.start()
    return wait_for_call_row(stack, parties.virtual_number, with_recording=True, timeout=30)


def test_a_bridged_call_goes_on_when_the_database_dies_and_its_record_is_complete_after(
        outage, place_call, database_back):
    stack, cluster = outage
    row = recorded_call_through_an_outage(stack, cluster, place_call, lambda: bridged(stack))
    assert row["disposition"] == "answered" and row["hangup_by"] == "caller"
    sealed_audio(stack, row["recording"])  # replayed from the spool with its wrapped key: it opens
    assert '"call.row_spooled"' in stack.service_log.read_text()


def test_a_fallback_call_ending_while_the_database_is_down_keeps_its_recording(
        outage, place_call, database_back, tmp_path):
    """`finish` cannot read the row then; the caller's channel says both
    parties heard the notice out and MixMonitor runs (MASKING_RECORDED)."""
    stack, cluster = outage
    try:
        with fastagi_fallback(stack, tmp_path / "agi.log"):
            row = recorded_call_through_an_outage(stack, cluster, place_call, lambda: both_up(stack))
            assert row["path"] == "agi" and row["disposition"] == "answered"
            sealed_audio(stack, row["recording"])
            assert '"recording.stored"' in (tmp_path / "agi.log").read_text()
    finally:
        ensure_service(stack)


def test_a_call_still_in_the_spool_when_a_new_process_starts_is_not_adopted_as_interrupted(
        outage, place_call, database_back):
    """A caller turned away while the database was down, and the process
    replaced before the database came back: the new process replays the
    spool while it reconciles. The row its replay inserts says `in_progress`
    until the replay reaches the call's last write; reconciliation must not
    take it for a call its predecessor left (found by the compose test: the
    row ended `interrupted`). Other writes are put between the call's insert
    and its ending, so a reconciliation running beside the replay meets it."""
    stack, cluster = outage
    parties = new_parties(stack)
    cluster.stop()
    call = place_call(parties.a, parties.virtual_number, via=stack, uac="uac_rejected.xml",
                      uac_values={"final_status": 503, "tag": "db-down-restart"})
    assert call.caller.succeeded, call.caller.output
    stack.stop_service()
    spool = stack.settings.state_dir / "spool" / "calls.jsonl"
    lines = spool.read_text().splitlines()
    first = json.loads(lines[0])
    assert first["op"] == "insert", lines[0]
    padding = [json.dumps({"call_id": str(uuid.uuid4()), "op": "insert", "fields": {
        **first["fields"], "disposition": "failed", "virtual_number": "+6560000999",
        "caller_channel_id": f"padding-{i}"}}) for i in range(2000)]
    spool.write_text("\n".join([lines[0], *padding, *lines[1:]]) + "\n")

    cluster.start()
    ensure_service(stack)
    deadline = time.monotonic() + 30
    while spool.exists():
        assert time.monotonic() < deadline, "the spool was not replayed"
        time.sleep(0.2)
    row = wait_for_call_row(stack, parties.virtual_number, timeout=5)
    assert row["id"] == uuid.UUID(first["call_id"])
    assert (row["disposition"], row["reject_reason"]) == ("rejected", "database_unavailable")
    # Which of the two last writes lands last is luck: what must not happen is the adoption.
    adopted = [line for line in stack.service_log.read_text().splitlines()
               if first["call_id"] in line and '"call.interrupted"' in line]
    assert adopted == []
