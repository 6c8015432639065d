"""Who may ask the FastAGI fallback anything: only Asterisk.

The fallback answers a request with what to dial, so a client that could pose
as Asterisk would learn a counterpart's number from its own and the virtual
number. A connection is served only when it comes from an address in
MASKING_AGI_ALLOWED_SOURCES and its request carries the shared secret the
dialplan sends (`agi://host:port/route?key=...`, compared in constant time);
anything else is closed without a byte, and logged. Headers are read with a
size and a time bound, so a raw client can neither fill memory nor hold the
connection. The protocol after the gate is panoramisk's (`fast_agi.Request`).
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
from dataclasses import dataclass
from typing import Awaitable, Callable
from urllib.parse import parse_qs

from panoramisk import fast_agi

from bridge.config import parse_networks
from bridge.logs import get_logger

log = get_logger("bridge.agi")
MAX_REQUEST_BYTES = 16 * 1024
REQUEST_SECONDS = 5.0

Route = Callable[[fast_agi.Request], Awaitable[None]]


@dataclass(frozen=True)
class AgiRequestLine:
    script: str  # the route's name
    key: str  # the secret the dialplan sent ('' if none)


def request_line(network_script: str) -> AgiRequestLine:
    """`route?key=...` as Asterisk sends it in agi_network_script."""
    script, _, query = network_script.partition("?")
    return AgiRequestLine(script.strip("/"), parse_qs(query).get("key", [""])[0])


class Gate:
    """An asyncio server callback serving `routes` to Asterisk alone."""

    def __init__(self, routes: dict[str, Route], secret: str, sources: str):
        self.routes, self.secret, self.sources = routes, secret, parse_networks(sources)

    async def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            peer = writer.get_extra_info("peername")
            if not self._allowed(peer[0] if peer else ""):
                log.warning("agi.refused", reason="source", source=peer[0] if peer else None)
                return
            headers = await _read_headers(reader)
            if headers is None:
                log.warning("agi.refused", reason="malformed", source=peer[0])
                return
            line = request_line(headers.get("agi_network_script", ""))
            if not self.secret or not hmac.compare_digest(line.key.encode(), self.secret.encode()):
                log.warning("agi.refused", reason="secret", source=peer[0])
                return
            route = self.routes.get(line.script)
            if route is None:
                log.warning("agi.refused", reason="route", source=peer[0])
                return
            await route(fast_agi.Request(None, headers, reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the channel hung up mid-request
        finally:
            writer.close()

    def _allowed(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.sources)


async def _read_headers(reader: asyncio.StreamReader) -> dict[str, str] | None:
    """The request's `name: value` lines up to the blank line; None when they
    do not come within the size and time bounds."""
    try:
        block = await asyncio.wait_for(reader.readuntil(b"\n\n"), REQUEST_SECONDS)
    except (asyncio.TimeoutError, asyncio.LimitOverrunError, asyncio.IncompleteReadError):
        return None
    lines = block.decode("utf-8", errors="replace").splitlines()
    return dict(line.split(": ", 1) for line in lines if ": " in line)
