"""`masking run --nodes N`: the edge, N Asterisk nodes and a bridge per node, on this machine.

Each bridge is its own `masking serve` process with the node's variables
(bridge/stack/nodes.py), as on separate hosts: a crash of one takes no other
node's calls. Ctrl-C (or SIGTERM) drains the bridges, then stops the edge and
the nodes.
"""
from __future__ import annotations

import asyncio
import os
import signal
import sys

from bridge.config import Settings
from bridge.stack.asterisk import AsteriskInstance
from bridge.stack.kamailio import EdgeInstance, rpc_port
from bridge.stack.nodes import Node, plan_nodes


async def run_nodes(settings: Settings, count: int) -> int:
    env = dict(os.environ)
    nodes = plan_nodes(env, count)
    asterisks = [AsteriskInstance(node.settings(env)) for node in nodes]
    edge = EdgeInstance(settings, nodes)
    bridges: list[asyncio.subprocess.Process] = []
    try:
        for node, asterisk in zip(nodes, asterisks):
            await asyncio.to_thread(asterisk.start)
            _say(f"{node.name}: Asterisk at {node.sip_uri}, ARI {node.settings(env).ari_url}, "
                 f"console log {asterisk.console_log}")
        await asyncio.to_thread(edge.start)
        _say(f"edge: SIP udp {settings.asterisk.sip_host}:{settings.asterisk.sip_port} (carriers from "
             f"{settings.asterisk.inbound_match}), counterparts dialed at {settings.asterisk.outbound_host}:"
             f"{settings.asterisk.outbound_port}, RPC udp {settings.edge.rpc_host}:{rpc_port(settings)}, log {edge.log}")
        for node, asterisk in zip(nodes, asterisks):
            bridges.append(await _start_bridge(env, node, asterisk))
        return await _wait(bridges)
    finally:
        for bridge in bridges:
            if bridge.returncode is None:
                bridge.send_signal(signal.SIGTERM)
        await asyncio.gather(*(b.wait() for b in bridges), return_exceptions=True)
        await asyncio.to_thread(edge.stop)
        for asterisk in asterisks:
            await asyncio.to_thread(asterisk.stop)


async def _start_bridge(env: dict[str, str], node: Node, asterisk: AsteriskInstance) -> asyncio.subprocess.Process:
    node_settings = node.settings(env)
    node_settings.recording_dir.mkdir(parents=True, exist_ok=True)
    # Its Asterisk's disk is this host's: recordings are sealed from its spool, not downloaded.
    shared = {"MASKING_ASTERISK_RECORDING_DIR": str(asterisk.recording_spool)}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bridge.cli", "serve",
                                                   env={**shared, **env, **node.env}, stdin=asyncio.subprocess.DEVNULL)
    _say(f"{node.name}: bridge pid {process.pid}, HTTP API http://{node_settings.http_host}:{node_settings.http_port}")
    return process


async def _wait(bridges: list[asyncio.subprocess.Process]) -> int:
    """Until Ctrl-C / SIGTERM (0) or until a bridge exits on its own (its code)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopping = asyncio.create_task(stop.wait())
    exits = [asyncio.create_task(b.wait()) for b in bridges]
    done, _ = await asyncio.wait([stopping, *exits], return_when=asyncio.FIRST_COMPLETED)
    for task in (stopping, *exits):
        if task not in done:
            task.cancel()
    if stopping in done:
        return 0
    code = next(t.result() for t in exits if t in done)
    _say(f"a bridge exited with {code}: stopping everything")
    return code or 1


def _say(line: str) -> None:
    print(line, file=sys.stderr)
