"""docker-compose.edge.yml has the topology `masking run --nodes 2` has: the
edge on the carrier's address, every node's containers on that node's
variables, one database and one key ring for all, nothing shared that must
not be (an Asterisk's configuration, a bridge's spool). Read as YAML, without
Docker; tests/integration/test_compose_edge.py runs it."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1].parent
COMPOSE = yaml.safe_load((REPO / "docker-compose.edge.yml").read_text())
SERVICES = COMPOSE["services"]
NODES = sorted({m.group(1) for name in SERVICES if (m := re.fullmatch(r"(node\d+)-\w+", name))})


def node_wrapper(command: list[str], node: str) -> list[str]:
    """The `masking edge node --nodes N NAME --` prefix a node's container runs its command under."""
    joined = " ".join(command)
    match = re.search(rf"masking edge node --nodes (\d+) {node} -- ", joined)
    assert match, f"{node}: {joined!r} does not run with the node's variables"
    return [match.group(1)]


def mounts(service: str) -> dict[str, str]:
    return {v.split(":")[1]: v.split(":")[0] for v in SERVICES[service].get("volumes", [])}


def test_two_nodes_each_with_its_configuration_asterisk_and_bridge_and_one_edge():
    assert NODES == ["node1", "node2"]
    for node in NODES:
        assert {f"{node}-config", f"{node}-asterisk", f"{node}-bridge"} <= set(SERVICES)
    assert {"secrets", "postgres", "edge"} <= set(SERVICES)
    assert all(s["network_mode"] == "host" for s in SERVICES.values()), "SIP and RTP without NAT, as the base file"


def test_every_node_container_runs_on_its_own_node_variables_and_agrees_on_the_node_count():
    counts = set()
    for node in NODES:
        for role in ("config", "bridge"):
            counts.update(node_wrapper(SERVICES[f"{node}-{role}"]["command"], node))
            counts.update(node_wrapper(SERVICES[f"{node}-{role}"]["healthcheck"]["test"], node)
                          if role == "bridge" else [])
    edge = SERVICES["edge"]["command"]
    assert edge[:3] == ["masking", "edge", "serve"]
    counts.add(edge[edge.index("--nodes") + 1])
    assert counts == {str(len(NODES))}, "the edge and the nodes disagree on how many nodes there are"


def test_each_asterisk_reads_the_configuration_rendered_for_its_own_node():
    for node in NODES:
        config = mounts(f"{node}-config")["/var/lib/masking-asterisk"]
        assert mounts(f"{node}-asterisk")["/var/lib/masking-asterisk"] == config == f"asterisk-{node}"
        assert SERVICES[f"{node}-asterisk"]["depends_on"] == {f"{node}-config":
                                                              {"condition": "service_completed_successfully"}}
    assert len({mounts(f"{n}-bridge")["/var/lib/masking/state"] for n in NODES}) == len(NODES), \
        "two bridges share a spool"


def test_all_nodes_share_the_key_ring_and_recordings_and_one_bridge_migrates_first():
    for node in NODES:
        volumes = mounts(f"{node}-bridge")
        assert volumes["/var/lib/masking/keys"] == "keys" and volumes["/var/lib/masking/recordings"] == "recordings"
        assert volumes["/var/lib/masking/secrets"] == "secrets"
    migrating = [n for n in NODES if "--migrate" in " ".join(SERVICES[f"{n}-bridge"]["command"])]
    assert migrating == ["node1"]
    assert SERVICES["node2-bridge"]["depends_on"]["node1-bridge"] == {"condition": "service_healthy"}


def test_the_edge_runs_kamailio_from_its_own_image_and_keeps_the_drained_nodes_in_a_volume():
    edge = SERVICES["edge"]
    assert edge["build"]["target"] == "edge" and edge["build"]["dockerfile"] == "docker/bridge/Dockerfile"
    assert "AS edge" in (REPO / "docker" / "bridge" / "Dockerfile").read_text()
    assert mounts("edge")["/var/lib/masking/state"] == "edge-state"
    assert edge["restart"] == "unless-stopped"


def test_what_the_edge_may_not_touch_it_mounts_read_only():
    """The edge needs the key ring and the secrets only to read calls for `drain --wait`."""
    for volume in SERVICES["edge"]["volumes"]:
        source, target, *mode = volume.split(":")
        if source in ("keys", "secrets"):
            assert mode == ["ro"], f"the edge can write {target}"
    for node in NODES:
        assert "/var/lib/masking/keys" not in mounts(f"{node}-asterisk"), "an Asterisk sees the key ring"
        assert "/var/lib/masking/secrets" not in mounts(f"{node}-asterisk")
