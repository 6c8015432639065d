"""Operating the edge (docs/scaling.md): the operator sees each node as the edge
sees it in `masking doctor` and every bridge's /metrics; a drained node whose
calls have ended stops cleanly while the other serves; calls are masked both
ways through the edge. Same topology as test_edge.py: real Kamailio, two real
Asterisk nodes with a bridge each, real PostgreSQL, SIPp as the carrier.
"""
from __future__ import annotations

import time
import urllib.request

import pytest

from tests.integration.conftest import new_parties, query
from tests.integration.test_edge import (EdgeStack, batch, counterpart, edge, finished_rows, healthy,  # noqa: F401
                                         masking)

pytestmark = pytest.mark.integration


def metric_states(edge: EdgeStack, node: str) -> dict[str, float]:
    """masking_edge_node_state{node=..., state=...} from `node`'s bridge."""
    settings = edge.nodes[node].settings
    with urllib.request.urlopen(f"http://{settings.http_host}:{settings.http_port}/metrics", timeout=10) as r:
        lines = r.read().decode().splitlines()
    states = {}
    for line in lines:
        if line.startswith("masking_edge_node_state{"):
            labels, value = line.rsplit(" ", 1)
            states[labels[len("masking_edge_node_state"):]] = float(value)
    return states


def shown_in_metrics(edge: EdgeStack, node: str, state: str, timeout: float = 30) -> bool:
    """Whether every bridge's /metrics comes to show `node` in `state` (it polls the edge)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(metric_states(edge, name).get(f'{{node="{node}",state="{state}"}}') == 1 for name in edge.nodes):
            return True
        time.sleep(0.5)
    return False


def test_doctor_and_metrics_show_each_node_as_the_edge_sees_it(healthy):
    doctor = masking(healthy, "doctor")
    assert "2 of 2 nodes take calls" in doctor.stdout, doctor.stdout
    for node in ("node1", "node2"):
        line = next(line for line in doctor.stdout.splitlines() if f"edge {node}" in line)
        assert line.startswith("ok") and "active" in line, line
        assert shown_in_metrics(healthy, node, "active"), metric_states(healthy, "node1")

    assert masking(healthy, "edge", "drain", "node1").returncode == 0
    doctor = masking(healthy, "doctor")
    assert "1 of 2 nodes take calls" in doctor.stdout, doctor.stdout
    node1 = next(line for line in doctor.stdout.splitlines() if "edge node1" in line)
    assert "disabled" in node1 and node1.startswith("ok"), "a drained node is not a fault"
    assert shown_in_metrics(healthy, "node1", "disabled"), metric_states(healthy, "node2")
    # Labels are node names and states: no number, no address of a party.
    assert all("+" not in labels for labels in metric_states(healthy, "node2"))


def test_a_drained_node_stops_cleanly_once_its_calls_ended_and_the_other_serves_on(healthy, tmp_path):
    edge = healthy
    talking = new_parties(edge)
    uas = counterpart(edge, tmp_path, calls=6)
    uac = batch(edge, tmp_path, talking.virtual_number, talking.a, calls=2, talk_ms=5000, tag="stop-long")
    time.sleep(1)
    drained = masking(edge, "edge", "drain", "node1", "--wait", "40")
    uac.wait(40)
    assert drained.returncode == 0 and "it can be stopped" in drained.stderr, drained.stderr

    node1 = edge.nodes["node1"]
    node1.service.terminate()
    assert node1.service.wait(timeout=30) == 0, node1.service_log.read_text()[-2000:]
    node1.asterisk.stop()
    assert edge.node_states()["node1"].state == "disabled", "a stopped drained node went back to being probed"

    rows = finished_rows(edge, talking.virtual_number, 2)
    assert [(r["disposition"], r["hangup_by"]) for r in rows] == [("answered", "caller")] * 2
    fresh = new_parties(edge)
    caller = batch(edge, tmp_path, fresh.virtual_number, fresh.a, calls=3, talk_ms=1000, tag="stop-fresh").wait(40)
    uas.wait(20)
    assert caller.succeeded, caller.output[-2000:]
    assert {edge.node_of(r) for r in finished_rows(edge, fresh.virtual_number, 3)} == {"node2"}


def test_calls_are_masked_both_ways_through_the_edge(healthy, tmp_path):
    """B calls the same virtual number back: A is dialed, and neither side ever
    sees the other's number."""
    parties = new_parties(healthy)
    for caller, callee, tag in ((parties.a, parties.b, "a-to-b"), (parties.b, parties.a, "b-to-a")):
        uas = counterpart(healthy, tmp_path, calls=2, tag=f"{tag}-far")
        started = batch(healthy, tmp_path, parties.virtual_number, caller, calls=2, talk_ms=1500, tag=tag)
        heard = started.wait(40)
        far_end = uas.wait(20)
        assert heard.succeeded, heard.output[-2000:]
        invites = [m for m in far_end.received() if m.startswith("INVITE ")]
        assert len(invites) == 2
        for invite in invites:
            assert invite.startswith(f"INVITE sip:{callee}@"), "the edge did not dial the other party"
            assert caller not in invite and parties.virtual_number in invite
        assert not any(callee in m for m in heard.received()), "the caller saw the callee's number"
    rows = finished_rows(healthy, parties.virtual_number, 4)
    assert [r["disposition"] for r in rows] == ["answered"] * 4
    assert {healthy.node_of(r) for r in rows} == {"node1", "node2"}
    assert not query(healthy.dsn, "SELECT id FROM calls WHERE virtual_number = $1 AND disposition <> 'answered'",
                     parties.virtual_number)
