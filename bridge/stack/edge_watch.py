"""Each node's state as the edge sees it, for a bridge's /metrics.

Polled in the background (the RPC is a UDP round trip, /metrics must not wait
on it) into one gauge per node and state (bridge/metrics.py). Labels are node
names and states, never numbers.
"""
from __future__ import annotations

import asyncio

from bridge import metrics
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
            self._publish()
            await asyncio.sleep(self.interval)

    def _publish(self) -> None:
        metrics.edge_up.set(int(self.reachable))
        for node in self.nodes:
            for state in STATES:
                metrics.edge_node_state.labels(node=node.name, state=state).set(int(node.state == state))
