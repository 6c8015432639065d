"""The edge topology for the integration tests: Kamailio in front of several
Asterisk nodes, each with its own bridge, one PostgreSQL.

Each run takes a loopback network of its own (127.R.S.0/24, R and S random):
the edge at .1, node k at .1k, so nodes and edge use their usual distinct
addresses without colliding with another run. Carriers (SIPp) stay on
127.0.0.1: the edge accepts calls only from there, the nodes only from the edge.
"""
from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import time
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import asyncpg

from bridge.config import Settings
from bridge.stack.asterisk import AsteriskInstance, find_install
from bridge.stack.kamailio import EdgeInstance, EdgeRpc, NodeState
from bridge.stack.nodes import plan_nodes
from bridge.privacy.crypto import KeyRing
from tests.support.ports import free_port
from tests.support.stack import ADMIN_DSN, Stack, create_database, drop_database, make_settings, migrate


def _loopback_net() -> str:
    for _ in range(50):
        net = f"127.{random.randint(100, 250)}.{random.randint(1, 250)}"
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((f"{net}.1", 0))
            return net
        except OSError:
            continue
    raise RuntimeError("no loopback network free")


@dataclass
class EdgeStack:
    workdir: Path
    env: dict[str, str]
    settings: Settings
    edge: EdgeInstance
    nodes: dict[str, Stack]

    @property
    def dsn(self) -> str:
        return self.settings.database_url

    @property
    def keys(self) -> KeyRing:
        return KeyRing.load(self.settings.keys_path)

    @property
    def sip_target(self) -> str:
        return f"{self.settings.asterisk.sip_host}:{self.settings.asterisk.sip_port}"

    @property
    def counterpart_port(self) -> int:
        return self.settings.asterisk.outbound_port

    def node_of(self, call_row: dict) -> str:
        """The node that served a call, by its bridge's lease key."""
        return next(name for name, node in self.nodes.items()
                    if call_row["asterisk_node"] == f"{node.settings.ari_url}/{node.settings.ari_app}")

    def node_states(self) -> dict[str, NodeState]:
        return {state.name: state for state in asyncio.run(EdgeRpc.of(self.settings).nodes())}

    def wait_node_state(self, name: str, takes_calls: bool, timeout: float = 30) -> float:
        """Seconds until the edge sees node `name` taking calls (or not)."""
        started = time.monotonic()
        while self.node_states()[name].takes_calls != takes_calls:
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{name} still {self.node_states()[name]} after {timeout} s")
            time.sleep(0.05)
        return time.monotonic() - started

    def kill_asterisk(self, name: str) -> None:
        """kill -9 the node's Asterisk (its bridge keeps running, as on a real host)."""
        process = self.nodes[name].asterisk.process
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def edge_env(workdir: Path, database: str, count: int, admin_dsn: str = ADMIN_DSN,
             rtp_ports: int = 100) -> dict[str, str]:
    _, env = make_settings(workdir, database, rtp_ports=rtp_ports * count, admin_dsn=admin_dsn)
    net = _loopback_net()
    env.update({
        "MASKING_SIP_HOST": f"{net}.1",
        "MASKING_SIP_PORT": str(free_port()),
        "MASKING_INBOUND_MATCH": "127.0.0.1",
        "MASKING_OUTBOUND_HOST": "127.0.0.1",
        "MASKING_EDGE_NODE_HOSTS": ",".join(f"{net}.{10 + k}" for k in range(1, count + 1)),
        "MASKING_EDGE_NODE_SIP_PORT": str(free_port()),
        "MASKING_EDGE_RPC_HOST": f"{net}.1",
        "MASKING_EDGE_RPC_PORT": str(free_port()),
        "MASKING_EDGE_PROBE_INTERVAL": "1",
        "MASKING_EDGE_SETUP_TIMEOUT_MS": "1500",
        "MASKING_EDGE_CHILDREN": "2",
    })
    return env


@contextmanager
def running_edge_stack(workdir: Path, count: int = 2, rtp_ports: int = 100, **overrides: str) -> Iterator[EdgeStack]:
    """Database, `count` Asterisk nodes with a bridge each (`rtp_ports` each), and the edge."""
    database = f"masking_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    env = {**edge_env(workdir, database, count, rtp_ports=rtp_ports), **overrides}
    settings = Settings.from_env(env)
    install = find_install(settings.asterisk.asterisk_root)
    asyncio.run(create_database(database))
    migrate(env)
    nodes = plan_nodes(env, count)
    stacks = {}
    for node in nodes:
        node_dir = workdir / node.name
        node_dir.mkdir(exist_ok=True)
        node_settings = node.settings(env)
        stacks[node.name] = Stack(workdir=node_dir, env={**env, **node.env}, settings=node_settings,
                                  asterisk=AsteriskInstance(node_settings, install))
    edge = EdgeInstance(settings, nodes)
    stack = EdgeStack(workdir, env, settings, edge, stacks)
    with ExitStack() as cleanup:
        cleanup.callback(_drop, database)
        for node_stack in stacks.values():
            cleanup.callback(shutil.rmtree, node_stack.asterisk.dir, ignore_errors=True)
            cleanup.callback(node_stack.asterisk.stop)
            node_stack.asterisk.start()
        cleanup.callback(edge.stop)
        edge.start()
        for node_stack in stacks.values():
            cleanup.callback(node_stack.stop_service)
            node_stack.start_service()
        for name in stacks:
            stack.wait_node_state(name, takes_calls=True)
        yield stack


def _drop(database: str) -> None:
    try:
        asyncio.run(drop_database(database))
    except (OSError, asyncpg.PostgresError):
        pass
