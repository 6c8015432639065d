"""Each node's state as the edge sees it, for a bridge's /metrics.

Polled in the background (the RPC is a UDP round trip, /metrics must not wait
on it) and rendered as one gauge per node and state. Labels are node names
and states, never numbers.
"""
from __future__ import annotations

import asyncio

from bridge.logs import get_logger
from bridge.stack.kamailio import EdgeRpc, EdgeUnavailable, NodeState

log = get_logger("bridge.edge")
STATES = ("active", "trying", "inactive", "disabled")


class EdgeWatch:
    def __init__(self, rpc: EdgeRpc, interval: float = 5.0):
        self.rpc, self.interval = rpc, interval
        self.nodes: list[NodeState] = []
        self.reachable = False

    async def run(self) -> None:
        while True:
            try:
                self.nodes, reachable = await self.rpc.nodes(), True
            except EdgeUnavailable:
                reachable = False
            if reachable != self.reachable:
                log.info("edge.reachable" if reachable else "edge.unreachable")
            self.reachable = reachable
            await asyncio.sleep(self.interval)

    def metrics(self) -> list[str]:
        lines = ["# HELP masking_edge_up 1 while the edge's RPC answers.", "# TYPE masking_edge_up gauge",
                 f"masking_edge_up {int(self.reachable)}",
                 "# HELP masking_edge_node_state 1 for each node's state as the edge sees it (dispatcher).",
                 "# TYPE masking_edge_node_state gauge"]
        for node in self.nodes:
            for state in STATES:
                lines.append(f'masking_edge_node_state{{node="{node.name}",state="{state}"}} '
                             f"{int(node.state == state)}")
        return lines
