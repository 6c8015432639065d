"""Several Asterisk nodes behind the edge on one machine: who is where.

Pure: from the operator's settings (their `MASKING_*` variables) to each node's
own variables. Node k gets its own address (MASKING_EDGE_NODE_HOSTS, by default
127.0.0.1k) with the usual ports on it, its own Asterisk instance, entity id,
RTP slice and state directory (spool), and a bridge of its own (`masking serve`
with these variables): calls, recordings, adoption and the lease stay per node
exactly as with one Asterisk. The edge takes the carrier's address, so each
node trusts the edge as its carrier and dials counterparts through it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Mapping

from bridge.config import Settings

NODE_GROUP = 1  # the dispatcher set that holds the nodes
DEFAULT_RPC_PORT = 5064


@dataclass(frozen=True)
class Node:
    name: str
    host: str
    sip_port: int
    env: dict[str, str]  # the node's MASKING_* variables, over the operator's

    @property
    def sip_uri(self) -> str:
        return f"sip:{self.host}:{self.sip_port}"

    def settings(self, base_env: Mapping[str, str]) -> Settings:
        return Settings.from_env({**base_env, **self.env})


def entity_id(instance_name: str) -> str:
    """A stable, locally administered MAC-like id for an Asterisk instance."""
    digest = hashlib.sha256(instance_name.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def rpc_port(settings: Settings) -> int:
    return settings.edge.rpc_port or DEFAULT_RPC_PORT


def plan_nodes(env: Mapping[str, str], count: int) -> list[Node]:
    """Nodes 1..count behind the edge that `env`'s settings describe."""
    if count < 1:
        raise ValueError("at least one node")
    base = Settings.from_env(env)
    ast, edge = base.asterisk, base.edge
    span = (ast.rtp_end - ast.rtp_start + 1) // count
    if span < 20:
        raise ValueError(f"MASKING_RTP_START..END is too narrow for {count} nodes")
    nodes = []
    for k, host in enumerate(edge.hosts(count), start=1):
        name = f"node{k}"
        instance = f"{ast.instance_name}-{name}"
        rtp_start = ast.rtp_start + (k - 1) * span
        node_env = {
            "MASKING_INSTANCE_NAME": instance,
            "MASKING_ENTITY_ID": entity_id(instance),
            "MASKING_SIP_HOST": host,
            "MASKING_SIP_PORT": str(edge.node_sip_port),
            # The edge is this node's carrier, both ways.
            "MASKING_INBOUND_MATCH": ast.sip_host,
            "MASKING_OUTBOUND_HOST": ast.sip_host,
            "MASKING_OUTBOUND_PORT": str(ast.sip_port),
            "MASKING_RTP_START": str(rtp_start),
            "MASKING_RTP_END": str(rtp_start + span - 1 - (span % 2)),
            "MASKING_ARI_HOST": host,
            "MASKING_AMI_HOST": host,
            "MASKING_HTTP_HOST": host,
            "MASKING_AGI_HOST": host,
            "MASKING_STATE_DIR": str(base.state_dir / name),
            "MASKING_KEYS_FILE": str(base.keys_path),
            "MASKING_EDGE_RPC_HOST": edge.rpc_host,
            "MASKING_EDGE_RPC_PORT": str(rpc_port(base)),
            # One record of drained nodes, whichever node's variables run the CLI.
            "MASKING_EDGE_DRAINED_FILE": str(base.edge_drained_path),
        }
        nodes.append(Node(name, host, edge.node_sip_port, node_env))
    return nodes
