"""The edge's plan and configuration: pure, checked without Kamailio."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import ConfigError, Settings
from bridge.stack.kamailio import (NodeState, carrier_subnets, dispatcher_list, edge_values, read_drained,
                                   record_drained, render_config)
from bridge.stack.nodes import entity_id, plan_nodes

REPO = Path(__file__).resolve().parents[2]

BASE = {"MASKING_SIP_HOST": "127.0.0.1", "MASKING_SIP_PORT": "5060", "MASKING_STATE_DIR": "/srv/masking",
        "MASKING_INBOUND_MATCH": "198.51.100.7, 203.0.113.0/24"}


def test_each_node_gets_its_own_address_entity_id_rtp_slice_and_spool_and_trusts_the_edge_as_its_carrier():
    nodes = plan_nodes(BASE, 3)
    assert [n.name for n in nodes] == ["node1", "node2", "node3"]
    assert [n.host for n in nodes] == ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
    settings = [n.settings(BASE) for n in nodes]
    assert len({s.asterisk.entity_id for s in settings}) == 3
    assert len({s.state_dir for s in settings}) == 3
    for s in settings:
        assert s.asterisk.inbound_match == "127.0.0.1"  # the edge
        assert (s.asterisk.outbound_host, s.asterisk.outbound_port) == ("127.0.0.1", 5060)
        assert s.ari_host == s.ami_host == s.http_host == s.agi_host == s.asterisk.sip_host
        assert s.keys_path == Settings.from_env(BASE).keys_path
    ranges = [(s.asterisk.rtp_start, s.asterisk.rtp_end) for s in settings]
    assert all(a_end < b_start for (_, a_end), (b_start, _) in zip(ranges, ranges[1:]))


def test_node_addresses_can_be_named_and_too_few_is_an_error():
    env = {**BASE, "MASKING_EDGE_NODE_HOSTS": "10.0.0.5,10.0.0.6"}
    assert [n.host for n in plan_nodes(env, 2)] == ["10.0.0.5", "10.0.0.6"]
    with pytest.raises(ConfigError, match="MASKING_EDGE_NODE_HOSTS"):
        plan_nodes(env, 3)


def test_an_entity_id_is_stable_and_looks_like_a_mac():
    assert entity_id("default-node1") == entity_id("default-node1") != entity_id("default-node2")
    with pytest.raises(ConfigError, match="MASKING_ENTITY_ID"):
        Settings.from_env({"MASKING_ENTITY_ID": "node-1"})


def test_the_carrier_match_becomes_networks_for_the_edge():
    assert carrier_subnets("198.51.100.7, 203.0.113.0/24") == "198.51.100.7/32,203.0.113.0/24"
    with pytest.raises(ValueError):
        carrier_subnets("carrier.example")


def test_a_drained_node_starts_disabled_and_the_others_probed():
    text = dispatcher_list(plan_nodes(BASE, 2), drained=frozenset({"node2"}))
    assert "1 sip:127.0.0.11:5060 8 0 duid=node1" in text
    assert "1 sip:127.0.0.12:5060 4 0 duid=node2" in text


def test_node_states_read_as_the_edge_reports_them():
    assert NodeState("node1", "sip:x", "AP").takes_calls
    assert NodeState("node1", "sip:x", "TP").takes_calls
    assert not NodeState("node1", "sip:x", "IP").takes_calls
    assert NodeState("node1", "sip:x", "DX").state == "disabled"


def test_the_rendered_configuration_has_no_placeholder_left_and_kamailio_accepts_it(tmp_path):
    settings = Settings.from_env({**BASE, "MASKING_EDGE_RPC_PORT": "5064"})
    config = render_config(edge_values(settings, tmp_path))
    assert "{{" not in config
    assert 'is_in_subnet("$si", "198.51.100.7/32,203.0.113.0/24")' in config
    if not shutil.which("kamailio"):
        pytest.skip("kamailio not installed (scripts/bootstrap installs it)")
    (tmp_path / "dispatcher.list").write_text(dispatcher_list(plan_nodes(BASE, 2)))
    (tmp_path / "kamailio.cfg").write_text(config)
    check = subprocess.run(["kamailio", "-c", "-f", str(tmp_path / "kamailio.cfg")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr[-2000:]


def test_drains_are_recorded_for_the_next_start_and_every_node_shares_one_record(tmp_path):
    record = tmp_path / "state" / "edge-drained"
    record_drained(record, "node2", drained=True)
    record_drained(record, "node1", drained=True)
    record_drained(record, "node1", drained=False)
    assert read_drained(record) == {"node2"}
    assert read_drained(tmp_path / "missing") == frozenset()
    # Whichever node's variables run `masking edge drain`, it writes the edge's record.
    env = {**BASE, "MASKING_STATE_DIR": str(tmp_path / "state")}
    assert Settings.from_env(env).edge_drained_path == record
    assert {n.settings(env).edge_drained_path for n in plan_nodes(env, 3)} == {record}
    assert Settings.from_env({**env, "MASKING_EDGE_DRAINED_FILE": "/etc/masking/drained"}).edge_drained_path \
        == Path("/etc/masking/drained")


def test_a_tampered_drain_record_can_only_drain_known_nodes_never_add_a_destination(tmp_path):
    record = tmp_path / "edge-drained"
    record.write_text("node1\n1 sip:203.0.113.66:5060 0 0 duid=evil\nsip:203.0.113.66\n\nnode9\n")
    drained = read_drained(record)
    assert drained == {"node1", "node9"}
    text = dispatcher_list(plan_nodes(BASE, 2), drained)
    assert "203.0.113.66" not in text and "evil" not in text
    assert "1 sip:127.0.0.11:5060 4 0 duid=node1" in text
    assert "1 sip:127.0.0.12:5060 8 0 duid=node2" in text  # a name the edge does not have drains nothing
    with pytest.raises(ValueError):
        record_drained(record, "node1\n1 sip:203.0.113.66:5060", drained=True)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MASKING_")}
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args], cwd=REPO, env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


def test_a_node_container_command_runs_on_that_nodes_variables_and_an_unknown_node_is_refused(tmp_path):
    env = {**BASE, "MASKING_STATE_DIR": str(tmp_path)}
    show = ("import os; print(' '.join(os.environ[n] for n in"
            " ('MASKING_SIP_HOST', 'MASKING_RTP_START', 'MASKING_ENTITY_ID')))")
    ran = _cli("edge", "node", "--nodes", "2", "node2", "--", sys.executable, "-c", show, env=env)
    node2 = plan_nodes(env, 2)[1].env
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == [node2["MASKING_SIP_HOST"], node2["MASKING_RTP_START"], node2["MASKING_ENTITY_ID"]]
    refused = _cli("edge", "node", "--nodes", "2", "node3", "--", "true", env=env)
    assert refused.returncode == 2 and "no node 'node3'" in refused.stderr
    assert _cli("edge", "node", "--nodes", "2", "node1", env=env).returncode == 2
