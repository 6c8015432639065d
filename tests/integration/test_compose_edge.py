"""docker-compose.edge.yml run as an operator runs it: the Kamailio edge on the
carrier's address, node1 on 127.0.0.11 and node2 on 127.0.0.12, each an
Asterisk and a bridge container, one PostgreSQL. Calls placed at the edge
reach both nodes and are recorded; a drain survives a recreated edge
container; nobody but the carrier reaches the edge, nobody but the edge a node.

Slow (images are built as in tests/integration/test_compose.py, whose helpers
this module uses; a separate module so each stays readable).
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter

import pytest

from tests.integration.test_compose import (BASE_IMAGES, ComposeStack, compose_command, configure, copy_repository,
                                            query, run_script)
from tests.support.ports import free_port
from tests.support.sipp import Sipp, render

pytestmark = pytest.mark.compose
EDGE_HOST, NODE_HOSTS = "127.0.0.10", {"node1": "127.0.0.11", "node2": "127.0.0.12"}
COMPOSE_FILE = "docker-compose.edge.yml"


class EdgeCompose(ComposeStack):
    """The compose helpers, on the edge's file; `masking` runs in node1's bridge."""

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        command = [*compose_command(), "--file", COMPOSE_FILE, "--project-name", self.project, *args]
        result = subprocess.run(command, cwd=self.workdir, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout[-3000:]}"
                                 f"\n{result.stderr[-3000:]}\n{self.logs()}")
        return result

    def logs(self, service: str = "") -> str:
        result = subprocess.run([*compose_command(), "--file", COMPOSE_FILE, "--project-name", self.project, "logs",
                                 "--no-color", "--tail", "40", *([service] if service else [])],
                                cwd=self.workdir, capture_output=True, text=True, timeout=60)
        return result.stdout[-6000:]

    def masking(self, *args: str) -> str:
        return self.compose("exec", "-T", "node1-bridge", "with-secrets", "masking", *args, timeout=60).stdout

    def edge_cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.compose("exec", "-T", "edge", "with-secrets", "masking", "edge", *args, timeout=90, check=check)

    def node_states(self) -> dict[str, str]:
        result = self.edge_cli("status", "--json", check=False)
        if result.returncode != 0:
            return {}
        return {n["node"]: n["state"] for n in json.loads(result.stdout)["nodes"]}

    def wait_states(self, wanted: dict[str, str], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while (states := self.node_states()) != wanted:
            if time.monotonic() > deadline:
                raise AssertionError(f"the edge sees {states}, not {wanted}\n{self.logs('edge')}")
            time.sleep(1)

    @property
    def http(self) -> str:
        return f"http://{NODE_HOSTS['node1']}:{self.env['MASKING_HTTP_PORT']}"

    def ready(self) -> dict:
        """Ready when every node's bridge is."""
        nodes = {}
        for name, host in NODE_HOSTS.items():
            try:
                with urllib.request.urlopen(f"http://{host}:{self.env['MASKING_HTTP_PORT']}/readyz",
                                            timeout=3) as response:
                    nodes[name] = json.loads(response.read()).get("ready", False)
            except (urllib.error.URLError, OSError, ValueError):
                nodes[name] = False
        return {"ready": all(nodes.values()), "nodes": nodes}

    @property
    def sip_target(self) -> str:
        return f"{EDGE_HOST}:{self.env['MASKING_SIP_PORT']}"

    def node_of(self, row: dict) -> str:
        return next(name for name, host in NODE_HOSTS.items() if row["asterisk_node"].startswith(f"http://{host}:"))


def set_env(env_file, changes: dict[str, str]) -> None:
    lines = env_file.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.split("=", 1)[0] in changes:
            lines[i] = f"{line.split('=', 1)[0]}={changes[line.split('=', 1)[0]]}"
    env_file.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def edge_compose(tmp_path_factory):
    run_script("docker-daemon")
    run_script("docker-base", *(tag.rsplit(":", 1)[1] for tag in BASE_IMAGES.values()))
    workdir = tmp_path_factory.mktemp("compose-edge") / "masking-bridge"
    workdir.mkdir()
    copy_repository(workdir)
    subprocess.run(["cp", ".env.example", ".env"], cwd=workdir, check=True)
    env = configure(workdir / ".env")
    # What an operator sets for the edge: its address (the carrier's SIP
    # target), the carrier's, the nodes' SIP port and the edge's RPC.
    edge = {"MASKING_SIP_HOST": EDGE_HOST, "MASKING_INBOUND_MATCH": "127.0.0.1", "MASKING_OUTBOUND_HOST": "127.0.0.1",
            "MASKING_EDGE_NODE_HOSTS": ",".join(NODE_HOSTS.values()), "MASKING_EDGE_NODE_SIP_PORT": str(free_port()),
            "MASKING_EDGE_RPC_PORT": str(free_port()), "MASKING_EDGE_PROBE_INTERVAL": "1"}
    set_env(workdir / ".env", edge)
    env.update(edge)
    stack = EdgeCompose(workdir, f"maskingedge{os.getpid()}{uuid.uuid4().hex[:6]}", env)
    started = time.monotonic()
    try:
        stack.compose("build", "--force-rm", timeout=2400)
        built = time.monotonic()
        subprocess.run(["docker", "image", "prune", "--force", "--filter", "label=masking-bridge.image"],
                       capture_output=True, timeout=300)
        stack.compose("up", "--detach", timeout=900)
        stack.wait_ready()
        stack.wait_states({"node1": "active", "node2": "active"})
        print(f"compose edge: images built in {built - started:.0f} s, ready {time.monotonic() - built:.0f} s later")
        yield stack
    finally:
        stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "20", timeout=300, check=False)


def parties(stack: EdgeCompose, n: int) -> tuple[str, str, str]:
    virtual, a, b = f"+65661200{n:02d}", f"+65961200{n:02d}", f"+65861200{n:02d}"
    stack.masking("numbers", "add", virtual)
    stack.masking("sessions", "create", "--purpose", "delivery_order", "--a", a, "--b", b, "--ttl", "600")
    return virtual, a, b


def calls_through_the_edge(stack: EdgeCompose, tmp_path, virtual: str, caller: str, calls: int, tag: str):
    """`calls` callers at the edge and the counterparts' carrier answering them; both awaited."""
    uas = Sipp(tmp_path, render("uas_answer_routed.xml", tmp_path), ["-rtp_echo"], f"{tag}-uas",
               port=stack.counterpart_port)
    uas.command[uas.command.index("-m") + 1] = str(calls)
    uas.start()
    time.sleep(0.3)
    uac = Sipp(tmp_path, render("uac_call_routed.xml", tmp_path),
               ["-s", virtual, "-key", "caller", caller, "-d", "3000", "-r", "2", "-l", str(calls),
                stack.sip_target], f"{tag}-uac")
    uac.command[uac.command.index("-m") + 1] = str(calls)
    caller_result = uac.start().wait(90)
    return caller_result, uas.wait(30)


def finished_rows(stack: EdgeCompose, virtual: str, count: int, timeout: float = 90) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        rows = query(stack.dsn, "SELECT c.*, r.id AS recording_id FROM calls c LEFT JOIN recordings r"
                                " ON r.call_id = c.id WHERE c.virtual_number = $1", virtual)
        if len(rows) >= count and all(r["disposition"] != "in_progress" and r["recording_id"] for r in rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"calls not finished and recorded: {rows}\n{stack.logs('node1-bridge')}")
        time.sleep(0.5)


def test_calls_at_the_edge_are_spread_over_both_node_containers_masked_and_recorded(edge_compose, tmp_path):
    virtual, a, _ = parties(edge_compose, 1)
    caller, far_end = calls_through_the_edge(edge_compose, tmp_path, virtual, a, calls=6, tag="spread")
    assert caller.succeeded, caller.output[-2000:]
    rows = finished_rows(edge_compose, virtual, 6)
    assert [r["disposition"] for r in rows] == ["answered"] * 6
    per_node = Counter(edge_compose.node_of(r) for r in rows)
    assert set(per_node) == {"node1", "node2"}, per_node
    invites = [m for m in far_end.received() if m.startswith("INVITE ")]
    assert len(invites) == 6 and all(a not in m and virtual in m for m in invites), "a caller's number leaked"


def test_a_drain_survives_a_recreated_edge_container_and_undrain_brings_the_node_back(edge_compose, tmp_path):
    assert edge_compose.edge_cli("drain", "node1").returncode == 0
    edge_compose.compose("rm", "--stop", "--force", "edge")
    edge_compose.compose("up", "--detach", "edge", timeout=300)
    edge_compose.wait_states({"node1": "disabled", "node2": "active"})
    virtual, a, _ = parties(edge_compose, 2)
    caller, _ = calls_through_the_edge(edge_compose, tmp_path, virtual, a, calls=3, tag="drained")
    assert caller.succeeded, caller.output[-2000:]
    assert {edge_compose.node_of(r) for r in finished_rows(edge_compose, virtual, 3)} == {"node2"}

    assert edge_compose.edge_cli("undrain", "node1").returncode == 0
    edge_compose.compose("restart", "edge", timeout=300)
    edge_compose.wait_states({"node1": "active", "node2": "active"})


def test_only_the_carrier_reaches_the_edge_and_only_the_edge_a_node(edge_compose, tmp_path):
    virtual, a, _ = parties(edge_compose, 3)
    node1 = f"{NODE_HOSTS['node1']}:{edge_compose.env['MASKING_EDGE_NODE_SIP_PORT']}"
    for target, source, status in ((edge_compose.sip_target, "127.0.0.99", 403), (node1, "127.0.0.1", None)):
        scenario = render("uac_rejected.xml", tmp_path, final_status=status or 401, tag=f"outsider-{status}")
        sipp = Sipp(tmp_path, scenario, ["-s", virtual, "-key", "caller", a, target, "-timeout", "8",
                                         "-timeout_error"], f"outsider-{status}")
        sipp.command[sipp.command.index("-i") + 1] = source
        result = sipp.start().wait(30)
        received = "".join(result.received())
        if status:
            assert f"SIP/2.0 {status}" in received, result.output
        else:
            assert "SIP/2.0 200" not in received and "SIP/2.0 183" not in received, "a node served a stranger"
    assert not query(edge_compose.dsn, "SELECT id FROM calls WHERE virtual_number = $1", virtual)


def test_down_leaves_no_container_and_no_volume(edge_compose):
    edge_compose.compose("down", "--volumes", "--remove-orphans", "--timeout", "20")
    label = f"label=com.docker.compose.project={edge_compose.project}"
    for kind in (["ps", "-aq"], ["volume", "ls", "-q"]):
        listed = subprocess.run(["docker", *kind, "--filter", label], capture_output=True, text=True, check=True,
                                timeout=30).stdout.split()
        assert listed == [], kind
