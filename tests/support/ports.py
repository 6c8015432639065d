"""Free ports on loopback: tests never assume a port is free.

Single ports (HTTP, ARI, AMI, SIP over TCP and TLS) are picked below the
kernel's ephemeral range: a port free when picked but inside that range can be
taken by any outgoing TCP connection (the tests' own database and HTTP clients
open thousands) before Asterisk binds it, and Asterisk then runs without its
HTTP server or a SIP transport. RTP blocks are UDP only, where outgoing
sockets are rare, and need the room: they stay where they were. Freedom is
checked on every address, since some stacks listen on 0.0.0.0.
"""
from __future__ import annotations

import random
import socket
from pathlib import Path

_handed_out: set[int] = set()


def _ephemeral_low(default: int = 32768) -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


_SINGLE = (10000, max(20000, min(_ephemeral_low(), 65000)))  # 32768 on Linux by default
_BLOCKS = (30000, 60000)


def _free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                return False
    return True


def free_port() -> int:
    """A port free for both TCP and UDP, never handed out twice in this run."""
    for _ in range(200):
        port = random.randint(_SINGLE[0], _SINGLE[1] - 4)
        if port not in _handed_out and _free(port) and _free(port + 1) and _free(port + 2) and _free(port + 3):
            _handed_out.update(range(port, port + 4))
            return port
    raise RuntimeError("no free port found")


def free_range(size: int) -> tuple[int, int]:
    """A block of `size` ports (for RTP), sampled for freedom at a few points."""
    for _ in range(100):
        start = random.randrange(_BLOCKS[0], _BLOCKS[1] - size, 2)
        if any(p in _handed_out for p in range(start, start + size)):
            continue
        if all(_free(p) for p in range(start, start + size, max(1, size // 16))):
            _handed_out.update(range(start, start + size))
            return start, start + size - 1
    raise RuntimeError("no free port range found")
