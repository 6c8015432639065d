"""The Kamailio edge in front of two Asterisk nodes, each with its own bridge:
calls spread over both, a dead node routed around, a refusing node skipped,
a drained node given no new call (docs/scaling.md).

Success is counted at the far end: the counterpart's SIPp, the call rows and
the recordings in the shared database, never SIPp's caller-side counter.
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone

import pytest

from bridge.stack.kamailio import EdgeRpc
from tests.integration.conftest import new_parties, query, wait_for_call_row
from tests.support.edge import EdgeStack, running_edge_stack
from tests.support.sipp import Sipp, render
from tests.support.stack import REPO

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def edge(tmp_path_factory) -> EdgeStack:
    with running_edge_stack(tmp_path_factory.mktemp("edge"), count=2) as stack:
        yield stack


@pytest.fixture
def healthy(edge):
    """Every node up and taking calls before and after each test."""
    _restore(edge)
    yield edge
    _restore(edge)


def _restore(edge: EdgeStack) -> None:
    for name, node in edge.nodes.items():
        if node.asterisk.process is None or node.asterisk.process.poll() is not None:
            node.asterisk.start()
        if node.service is None or node.service.poll() is not None:
            node.start_service()
        asyncio.run(EdgeRpc.of(edge.settings).set_state(name, "ap"))
        edge.wait_node_state(name, takes_calls=True)
        node.wait_connected()


def batch(edge: EdgeStack, tmp_path, virtual_number: str, caller: str, calls: int, talk_ms: int = 2000,
          rate: float = 4, tag: str = "batch") -> tuple[Sipp, Sipp]:
    """`calls` calls from one caller to one virtual number through the edge, with a
    counterpart that answers them all; started, not awaited."""
    uas = Sipp(tmp_path, render("uas_answer_routed.xml", tmp_path), ["-rtp_echo", "-d", str(talk_ms)], f"{tag}-uas",
               port=edge.counterpart_port)
    uas.command[uas.command.index("-m") + 1] = str(calls)
    uas.start()
    time.sleep(0.3)
    uac = Sipp(tmp_path, render("uac_call_routed.xml", tmp_path),
               ["-s", virtual_number, "-key", "caller", caller, "-d", str(talk_ms), "-r", str(rate),
                "-l", str(calls), edge.sip_target], f"{tag}-uac")
    uac.command[uac.command.index("-m") + 1] = str(calls)
    uac.start()
    return uac, uas


def finished_rows(edge: EdgeStack, virtual_number: str, count: int, timeout: float = 40) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        rows = query(edge.dsn, "SELECT c.*, r.duration_seconds AS recorded_seconds FROM calls c"
                               " LEFT JOIN recordings r ON r.call_id = c.id WHERE c.virtual_number = $1"
                               " ORDER BY c.started_at", virtual_number)
        done = [r for r in rows if r["disposition"] != "in_progress" and (not r["recorded"] or
                                                                          r["disposition"] != "answered" or
                                                                          r["recorded_seconds"] is not None)]
        if len(rows) >= count and len(done) == len(rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(done)}/{count} calls finished: {[r['disposition'] for r in rows]}")
        time.sleep(0.2)


def test_a_batch_of_calls_is_spread_over_both_nodes_each_masked_and_recorded(healthy, tmp_path):
    parties = new_parties(healthy)
    uac, uas = batch(healthy, tmp_path, parties.virtual_number, parties.a, calls=6)
    uac.wait(60)
    counterpart = uas.wait(20)

    rows = finished_rows(healthy, parties.virtual_number, 6)
    assert [r["disposition"] for r in rows] == ["answered"] * 6
    assert all(r["recorded_seconds"] and r["recorded_seconds"] > 1 for r in rows), "a call was not recorded"
    per_node = Counter(healthy.node_of(r) for r in rows)
    assert set(per_node) == {"node1", "node2"} and min(per_node.values()) >= 2, per_node
    invites = [m for m in counterpart.received() if m.startswith("INVITE ")]
    assert len(invites) == 6
    for invite in invites:
        # The counterpart sees the virtual number only, and the edge as the sender.
        assert parties.a not in invite and parties.virtual_number in invite
        assert f"Via: SIP/2.0/UDP {healthy.settings.asterisk.sip_host}:" in invite


def test_the_node_sees_the_edge_as_its_carrier_and_the_original_caller(healthy, place_call):
    parties = new_parties(healthy)
    call = place_call(parties.a, parties.virtual_number, via=healthy, uac="uac_call_routed.xml",
                      uas="uas_answer_routed.xml", talk_ms=1500)
    assert call.caller.succeeded and call.counterpart.succeeded, call.caller.output
    row = wait_for_call_row(healthy, parties.virtual_number, with_recording=True)
    node = healthy.nodes[healthy.node_of(row)]
    assert row["disposition"] == "answered"
    channels = node.asterisk.cli("pjsip show identifies")
    assert healthy.settings.asterisk.sip_host in channels  # the edge, not the caller's own address
    assert row["caller_number_hash"] if "caller_number_hash" in row else True
