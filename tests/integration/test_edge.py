"""The Kamailio edge in front of two Asterisk nodes, each with its own bridge:
calls spread over both, a dead node routed around, a refusing node skipped,
a drained node given no new call (docs/scaling.md).

Success is counted at the far end: the counterpart's SIPp, the call rows and
the recordings in the shared database, never SIPp's caller-side counter.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter

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
    edge.settings.edge_drained_path.unlink(missing_ok=True)
    if edge.edge.process is None or edge.edge.process.poll() is not None:
        edge.edge.start()
    for name, node in edge.nodes.items():
        if node.asterisk.process is None or node.asterisk.process.poll() is not None:
            node.asterisk.start()
        if node.service is None or node.service.poll() is not None:
            node.start_service()
        asyncio.run(EdgeRpc.of(edge.settings).set_state(name, "ap"))
        edge.wait_node_state(name, takes_calls=True)
        node.wait_connected()


def counterpart(edge: EdgeStack, tmp_path, calls: int = 50, tag: str = "counterpart") -> Sipp:
    """The counterparts' carrier: answers every call the edge sends out (echoing
    audio) until stopped."""
    uas = Sipp(tmp_path, render("uas_answer_routed.xml", tmp_path), ["-rtp_echo"], tag, port=edge.counterpart_port)
    uas.command[uas.command.index("-m") + 1] = str(calls)
    uas.start()
    time.sleep(0.3)
    return uas


def batch(edge: EdgeStack, tmp_path, virtual_number: str, caller: str, calls: int, talk_ms: int = 2000,
          rate: float = 4, tag: str = "batch") -> Sipp:
    """`calls` calls from one caller to one virtual number through the edge; started, not awaited."""
    uac = Sipp(tmp_path, render("uac_call_routed.xml", tmp_path),
               ["-s", virtual_number, "-key", "caller", caller, "-d", str(talk_ms), "-r", str(rate),
                "-l", str(calls), edge.sip_target], f"{tag}-uac")
    uac.command[uac.command.index("-m") + 1] = str(calls)
    return uac.start()


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
    uas = counterpart(healthy, tmp_path, calls=6)
    batch(healthy, tmp_path, parties.virtual_number, parties.a, calls=6).wait(60)
    far_end = uas.wait(20)

    rows = finished_rows(healthy, parties.virtual_number, 6)
    assert [r["disposition"] for r in rows] == ["answered"] * 6
    assert all(r["recorded_seconds"] and r["recorded_seconds"] > 1 for r in rows), "a call was not recorded"
    per_node = Counter(healthy.node_of(r) for r in rows)
    assert set(per_node) == {"node1", "node2"} and min(per_node.values()) >= 2, per_node
    invites = [m for m in far_end.received() if m.startswith("INVITE ")]
    assert len(invites) == 6
    for invite in invites:
        # The counterpart sees the virtual number only, and the edge as the sender.
        assert parties.a not in invite and parties.virtual_number in invite
        assert f"Via: SIP/2.0/UDP {healthy.settings.asterisk.sip_host}:" in invite


def bridged_on(edge: EdgeStack, virtual_number: str) -> Counter:
    rows = query(edge.dsn, "SELECT * FROM calls WHERE virtual_number = $1 AND disposition = 'in_progress'"
                           " AND answered_at IS NOT NULL", virtual_number)
    return Counter(edge.node_of(r) for r in rows)


def wait_until(condition, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


def test_kill_9_of_a_node_new_calls_reach_the_other_its_calls_end_interrupted_and_it_comes_back(
        healthy, tmp_path):
    edge = healthy
    talking = new_parties(edge)
    uas = counterpart(edge, tmp_path)
    uac = batch(edge, tmp_path, talking.virtual_number, talking.a, calls=4, talk_ms=30000, tag="long")
    wait_until(lambda: bridged_on(edge, talking.virtual_number) == Counter(node1=2, node2=2), 40,
               "two bridged calls on each node")

    killed_at = time.monotonic()
    edge.kill_asterisk("node1")
    # Calls arriving before the edge noticed: the one sent to node1 gets no
    # answer within the setup timeout and is retried on node2.
    during = new_parties(edge)
    uac_during = batch(edge, tmp_path, during.virtual_number, during.a, calls=2, talk_ms=1000, tag="during")
    edge.wait_node_state("node1", takes_calls=False)
    detected = time.monotonic() - killed_at
    after = new_parties(edge)
    uac_after = batch(edge, tmp_path, after.virtual_number, after.a, calls=2, talk_ms=1000, tag="after")
    uac_during.wait(40)
    uac_after.wait(40)

    for parties in (during, after):
        rows = finished_rows(edge, parties.virtual_number, 2)
        assert [r["disposition"] for r in rows] == ["answered", "answered"]
        assert {edge.node_of(r) for r in rows} == {"node2"}
    print(f"edge took node1 out {detected:.2f} s after kill -9 (probe every "
          f"{edge.settings.edge.probe_interval} s, setup timeout {edge.settings.edge.setup_timeout_ms} ms)")
    assert detected < edge.settings.edge.probe_interval + 2 * edge.settings.edge.setup_timeout_ms / 1000 + 1

    # The node comes back: its bridge finds the calls gone with the old Asterisk.
    edge.nodes["node1"].asterisk.start()
    edge.wait_node_state("node1", takes_calls=True)
    edge.nodes["node1"].wait_connected()
    long_rows = wait_until(lambda: [r for r in query(edge.dsn, "SELECT * FROM calls WHERE virtual_number = $1",
                                                     talking.virtual_number)
                                    if edge.node_of(r) == "node1" and r["disposition"] != "in_progress"], 40,
                           "node1's calls finished")
    assert [r["disposition"] for r in long_rows] == ["interrupted", "interrupted"]
    assert not query(edge.dsn, "SELECT id FROM calls WHERE virtual_number = $1 AND disposition = 'in_progress'"
                               " AND asterisk_node = $2", talking.virtual_number,
                     f"{edge.nodes['node1'].settings.ari_url}/{edge.nodes['node1'].settings.ari_app}")
    # node2's two long calls end here, while their counterpart still answers;
    # left up, RTP's timeout (60 s) would end them during a later test.
    edge.nodes["node2"].asterisk.cli("channel request hangup all")
    wait_until_no_call_in_progress(edge, talking.virtual_number)
    uac.stop()

    back = new_parties(edge)
    batch(edge, tmp_path, back.virtual_number, back.a, calls=4, talk_ms=1000, tag="back").wait(40)
    stop_counterpart(edge, uas, back.virtual_number)
    rows = finished_rows(edge, back.virtual_number, 4)
    assert [r["disposition"] for r in rows] == ["answered"] * 4
    assert "node1" in {edge.node_of(r) for r in rows}, "node1 takes no call after coming back"


def wait_until_no_call_in_progress(edge: EdgeStack, virtual_number: str) -> None:
    wait_until(lambda: not query(edge.dsn, "SELECT id FROM calls WHERE virtual_number = $1"
                                           " AND disposition = 'in_progress'", virtual_number), 30,
               f"calls to {virtual_number} finished")


def stop_counterpart(edge: EdgeStack, uas: Sipp, *virtual_numbers: str) -> None:
    """Stop the counterpart once every call to it ended and it answered each BYE.

    The next test's counterpart listens on the same port: a BYE this one missed
    is retransmitted to it, and SIPp takes it for a call of its own, one fewer
    for the calls that test counts. Rows finished means every BYE was sent; a
    message log quiet for longer than SIP's T1 (0.5 s) means none is being
    retransmitted.
    """
    for number in virtual_numbers:
        wait_until_no_call_in_progress(edge, number)
    size, quiet_since = -1, time.monotonic()
    deadline = quiet_since + 30
    while time.monotonic() - quiet_since < 1.5:
        assert time.monotonic() < deadline, "the counterpart kept receiving messages after every call ended"
        now = uas.message_file.stat().st_size if uas.message_file.exists() else 0
        if now != size:
            size, quiet_since = now, time.monotonic()
        time.sleep(0.1)
    uas.stop()


def test_a_node_refusing_with_503_before_answering_is_skipped_and_the_call_connects_on_the_other(
        healthy, tmp_path):
    edge = healthy
    # node1's bridge stopped: its Asterisk has no Stasis app and no FastAGI, and
    # refuses with 503 (it is told another node is left), still answering probes.
    edge.nodes["node1"].stop_service()
    assert edge.node_states()["node1"].takes_calls
    parties = new_parties(edge)
    uas = counterpart(edge, tmp_path, calls=4)
    caller = batch(edge, tmp_path, parties.virtual_number, parties.a, calls=4, talk_ms=1000, tag="refused").wait(40)
    uas.wait(20)

    rows = finished_rows(edge, parties.virtual_number, 4)
    assert [r["disposition"] for r in rows] == ["answered"] * 4, caller.output
    assert {edge.node_of(r) for r in rows} == {"node2"}
    assert "edge.next_node" in edge.edge.log.read_text(), "no call was refused by node1 and retried"
    assert caller.succeeded, "a caller noticed: " + caller.output[-2000:]


def test_a_call_the_counterpart_refuses_is_answered_once_and_not_tried_on_another_node(healthy, place_call):
    """The node's 503 after the prompt is the call's outcome: the edge must not
    dial the counterpart again from another node."""
    parties = new_parties(healthy)
    call = place_call(parties.a, parties.virtual_number, via=healthy, uac="uac_rejected.xml", uas="uas_status.xml",
                      uac_values={"final_status": 503, "tag": "refused-by-b"}, uas_values={"status": 503, "reason": "Service Unavailable"},
                      uas_args=())
    assert call.caller.succeeded and call.caller_rtp.level > 100, "the caller heard no prompt"
    rows = query(healthy.dsn, "SELECT * FROM calls WHERE virtual_number = $1", parties.virtual_number)
    assert len(rows) == 1 and rows[0]["disposition"] == "failed"


def masking(edge: EdgeStack, *args: str) -> subprocess.CompletedProcess:
    """The operator's CLI, with node1's variables (any node's would do)."""
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args], cwd=REPO,
                          env={**os.environ, **edge.nodes["node1"].env}, capture_output=True, text=True, timeout=60)


def test_a_drained_node_gets_no_new_call_and_its_calls_end_normally(healthy, tmp_path):
    edge = healthy
    talking = new_parties(edge)
    uas = counterpart(edge, tmp_path, calls=5)
    uac = batch(edge, tmp_path, talking.virtual_number, talking.a, calls=2, talk_ms=6000, tag="drain-long")
    wait_until(lambda: bridged_on(edge, talking.virtual_number) == Counter(node1=1, node2=1), 30,
               "a bridged call on each node")

    drain = masking(edge, "edge", "drain", "node1")
    assert drain.returncode == 0, drain.stderr
    assert edge.node_states()["node1"].state == "disabled"
    fresh = new_parties(edge)
    batch(edge, tmp_path, fresh.virtual_number, fresh.a, calls=3, talk_ms=1000, tag="drain-fresh").wait(40)
    drained = masking(edge, "edge", "drain", "node1", "--wait", "30")
    uac.wait(40)
    uas.wait(20)

    assert drained.returncode == 0 and "no call in progress" in drained.stderr, drained.stderr
    long_rows = finished_rows(edge, talking.virtual_number, 2)
    assert [(r["disposition"], r["hangup_by"]) for r in long_rows] == [("answered", "caller")] * 2
    assert all(float(r["talk_seconds"]) > 5 for r in long_rows)
    rows = finished_rows(edge, fresh.virtual_number, 3)
    assert [r["disposition"] for r in rows] == ["answered"] * 3
    assert {edge.node_of(r) for r in rows} == {"node2"}

    undrain = masking(edge, "edge", "undrain", "node1")
    assert undrain.returncode == 0, undrain.stderr
    edge.wait_node_state("node1", takes_calls=True)


def test_a_drained_node_stays_drained_when_the_edge_restarts_and_takes_calls_once_undrained(healthy, tmp_path):
    edge = healthy
    drain = masking(edge, "edge", "drain", "node1")
    assert drain.returncode == 0, drain.stderr
    edge.edge.stop()
    edge.edge.start()  # a restarted edge (a crash, an upgrade, a reboot) reads the record of drains
    assert edge.node_states()["node1"].state == "disabled"
    edge.wait_node_state("node2", takes_calls=True)
    parties = new_parties(edge)
    uas = counterpart(edge, tmp_path, calls=3)
    batch(edge, tmp_path, parties.virtual_number, parties.a, calls=3, talk_ms=1000, tag="restart-drained").wait(40)
    uas.wait(20)
    rows = finished_rows(edge, parties.virtual_number, 3)
    assert [r["disposition"] for r in rows] == ["answered"] * 3
    assert {edge.node_of(r) for r in rows} == {"node2"}, "the restarted edge sent a call to the drained node"
    assert edge.node_states()["node1"].state == "disabled"

    undrain = masking(edge, "edge", "undrain", "node1")
    assert undrain.returncode == 0, undrain.stderr
    edge.edge.stop()
    edge.edge.start()  # and an undrained node comes back in rotation after a restart
    edge.wait_node_state("node1", takes_calls=True)
    back = new_parties(edge)
    uas = counterpart(edge, tmp_path, calls=4, tag="counterpart-back")
    batch(edge, tmp_path, back.virtual_number, back.a, calls=4, talk_ms=1000, tag="restart-back").wait(40)
    uas.wait(20)
    rows = finished_rows(edge, back.virtual_number, 4)
    assert "node1" in {edge.node_of(r) for r in rows}, "node1 takes no call after being undrained"


def test_draining_a_node_the_edge_does_not_have_changes_nothing(healthy):
    refused = masking(healthy, "edge", "drain", "node1\n1 sip:203.0.113.66:5060")
    assert refused.returncode != 0
    assert not healthy.settings.edge_drained_path.exists()
    assert {s.state for s in healthy.node_states().values()} == {"active"}


def test_only_the_carrier_may_send_calls_to_the_edge_and_only_the_edge_to_a_node(healthy, tmp_path):
    parties = new_parties(healthy)
    outsider = "127.0.0.1"
    net = healthy.settings.asterisk.sip_host.rsplit(".", 1)[0]
    for target, source, status in ((healthy.sip_target, f"{net}.99", 403),
                                   (healthy.nodes["node1"].sip_target, outsider, None)):
        scenario = render("uac_rejected.xml", tmp_path, final_status=status or 401, tag=f"outsider-{status}")
        sipp = Sipp(tmp_path, scenario, ["-s", parties.virtual_number, "-key", "caller", parties.a, target,
                                         "-timeout", "8", "-timeout_error"], f"outsider-{status}")
        sipp.command[sipp.command.index("-i") + 1] = source
        result = sipp.start().wait(20)
        if status:
            assert f"SIP/2.0 {status}" in "".join(result.received()), result.output
        else:
            assert not any(m.startswith("SIP/2.0 200") or m.startswith("SIP/2.0 183")
                           for m in result.received()), "a node served a caller that bypassed the edge"
    assert not query(healthy.dsn, "SELECT id FROM calls WHERE virtual_number = $1", parties.virtual_number)


def test_a_bridge_draining_on_sigterm_sends_new_callers_to_the_other_node_and_finishes_its_own(healthy, tmp_path):
    edge = healthy
    uas = counterpart(edge, tmp_path, calls=5)
    talking = new_parties(edge)
    uac = batch(edge, tmp_path, talking.virtual_number, talking.a, calls=2, talk_ms=6000, tag="sigterm-long")
    wait_until(lambda: bridged_on(edge, talking.virtual_number) == Counter(node1=1, node2=1), 30,
               "a bridged call on each node")

    draining = edge.nodes["node1"]
    draining.service.terminate()
    time.sleep(0.5)
    fresh = new_parties(edge)
    caller = batch(edge, tmp_path, fresh.virtual_number, fresh.a, calls=3, talk_ms=1000, tag="sigterm-fresh").wait(40)
    uac.wait(40)
    uas.wait(20)
    draining.service.wait(timeout=30)

    assert caller.succeeded, "a new caller noticed the draining node: " + caller.output[-2000:]
    rows = finished_rows(edge, fresh.virtual_number, 3)
    assert [r["disposition"] for r in rows] == ["answered"] * 3
    assert {edge.node_of(r) for r in rows} == {"node2"}
    assert '"call.sent_to_fallback"' in draining.service_log.read_text(), "node1 was offered no new call"
    # A recording the drained process had no time to move is moved by the next one.
    draining.start_service()
    long_rows = finished_rows(edge, talking.virtual_number, 2)
    assert [(r["disposition"], r["hangup_by"]) for r in long_rows] == [("answered", "caller")] * 2
