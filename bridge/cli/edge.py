"""`masking edge status | drain NODE | undrain NODE`: the nodes as the Kamailio edge sees them;
`masking edge serve` and `masking edge node`: the edge and a node as their own
processes (one container each in docker-compose.edge.yml).

Draining sets the node's dispatcher state to disabled: the edge sends it no new
call and stops probing it; calls already on it go on (their in-dialog requests
follow the route set, not the dispatcher). `undrain` puts it back in rotation,
probed again. Both talk to the edge's RPC (MASKING_EDGE_RPC_HOST/PORT), and
record the change in MASKING_EDGE_DRAINED_FILE, so a restarted edge starts a
drained node drained (and an undrained one in rotation).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import urllib.parse

from bridge.cli.common import EXIT_FAILED, UsageError, command, emit, group, open_store
from bridge.config import Settings
from bridge.stack.kamailio import (EdgeInstance, EdgeNotInstalled, EdgeRpc, EdgeStartError, EdgeUnavailable,
                                   NodeState, record_drained)
from bridge.stack.nodes import plan_nodes


def add_commands(sub) -> None:
    edge = group(sub, "edge", "the SIP edge in front of the Asterisk nodes")
    command(edge, "status", cmd_status, "each node's state as the edge sees it", listing=True)
    p = command(edge, "drain", cmd_drain, "send the node no new call; its calls go on")
    p.add_argument("node")
    p.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                   help="then wait up to SECONDS for the node's calls to end (exit 1 if some remain)")
    p = command(edge, "undrain", cmd_undrain, "put a drained node back in rotation")
    p.add_argument("node")
    p = command(edge, "serve", cmd_serve, "run the edge (Kamailio) in the foreground in front of N nodes")
    p.add_argument("--nodes", type=int, required=True, metavar="N")
    p = command(edge, "node", cmd_node, "run COMMAND with node NAME's variables (its addresses, ports, spool)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--nodes", type=int, required=True, metavar="N", help="how many nodes the edge has")
    p.add_argument("run", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")


async def cmd_serve(settings: Settings, args) -> int:
    """Render the configuration (drained nodes start drained) and become Kamailio."""
    try:
        edge = EdgeInstance(settings, plan_nodes(os.environ, args.nodes))
        command = edge.checked_command()
    except (EdgeNotInstalled, EdgeStartError) as exc:
        print(f"masking: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"edge: SIP udp {settings.asterisk.sip_host}:{settings.asterisk.sip_port} in front of "
          + ", ".join(f"{n.name} {n.sip_uri}" for n in edge.nodes), file=sys.stderr)
    sys.stderr.flush()
    os.execvp(command[0], command)


async def cmd_node(settings: Settings, args) -> int:
    """Become COMMAND with the node's variables over this environment's."""
    run = args.run[1:] if args.run[:1] == ["--"] else args.run
    if not run:
        raise UsageError("no command to run: masking edge node --nodes N NAME -- COMMAND ...")
    nodes = {node.name: node for node in plan_nodes(os.environ, args.nodes)}
    if args.name not in nodes:
        raise UsageError(f"no node {args.name!r} among {args.nodes} (they are: {', '.join(nodes)})")
    sys.stdout.flush()
    os.execvpe(run[0], run, {**os.environ, **nodes[args.name].env})


async def _states(settings: Settings) -> list[NodeState]:
    return await EdgeRpc.of(settings).nodes()


async def _node(settings: Settings, name: str) -> NodeState:
    states = await _states(settings)
    for state in states:
        if state.name == name:
            return state
    raise UsageError(f"the edge has no node {name!r} (it has: {', '.join(s.name for s in states) or 'none'})")


async def cmd_status(settings: Settings, args) -> int:
    try:
        states = await _states(settings)
    except EdgeUnavailable as exc:
        print(f"masking: {exc}", file=sys.stderr)
        return EXIT_FAILED
    emit([{"node": s.name, "uri": s.uri, "state": s.state, "flags": s.flags} for s in states],
         ["node", "uri", "state", "flags"], args.json, key="nodes")
    return 0


async def cmd_drain(settings: Settings, args) -> int:
    try:
        node = await _node(settings, args.node)
        await EdgeRpc.of(settings).set_state(node.name, "d")
        record_drained(settings.edge_drained_path, node.name, drained=True)
    except (EdgeUnavailable, OSError) as exc:
        print(f"masking: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{node.name}: drained, the edge sends it no new call", file=sys.stderr)
    if args.wait > 0:
        return await _wait_calls_end(settings, node, args.wait)
    return 0


async def cmd_undrain(settings: Settings, args) -> int:
    try:
        node = await _node(settings, args.node)
        await EdgeRpc.of(settings).set_state(node.name, "ap")
        record_drained(settings.edge_drained_path, node.name, drained=False)
    except (EdgeUnavailable, OSError) as exc:
        print(f"masking: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{node.name}: back in rotation (probed)", file=sys.stderr)
    return 0


async def _wait_calls_end(settings: Settings, node: NodeState, seconds: float) -> int:
    """Until no call of the node's bridge is in progress. The bridge's lease key
    is its ARI URL: the node's SIP host with the ARI port and app every node
    shares (the topology `masking run --nodes` starts, docs/scaling.md)."""
    host = urllib.parse.urlsplit(node.uri.replace("sip:", "sip://", 1)).hostname
    key = f"http://{host}:{settings.ari_port}/{settings.ari_app}"
    deadline = time.monotonic() + seconds
    async with open_store(settings) as store:
        while True:
            left = len(await store.calls.in_progress(key))
            if not left:
                print(f"{node.name}: no call in progress; it can be stopped", file=sys.stderr)
                return 0
            if time.monotonic() > deadline:
                print(f"{node.name}: {left} calls still in progress after {seconds:g} s", file=sys.stderr)
                return EXIT_FAILED
            await asyncio.sleep(1)
