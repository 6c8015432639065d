"""Free ports on loopback: tests never assume a port is free."""
from __future__ import annotations

import random
import socket

_handed_out: set[int] = set()


def _free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port() -> int:
    """A port free for both TCP and UDP, never handed out twice in this run."""
    for _ in range(200):
        port = random.randint(20000, 59000)
        if port not in _handed_out and _free(port) and _free(port + 1) and _free(port + 2) and _free(port + 3):
            _handed_out.update(range(port, port + 4))
            return port
    raise RuntimeError("no free port found")


def free_range(size: int) -> tuple[int, int]:
    """A block of `size` ports (for RTP), sampled for freedom at a few points."""
    for _ in range(100):
        start = random.randrange(30000, 60000 - size, 2)
        if any(p in _handed_out for p in range(start, start + size)):
            continue
        if all(_free(p) for p in range(start, start + size, max(1, size // 16))):
            _handed_out.update(range(start, start + size))
            return start, start + size - 1
    raise RuntimeError("no free port range found")
