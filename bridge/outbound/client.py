"""The one HTTP client that sends to URLs a business named (webhooks, the
out-of-session question), under the rules of `policy.py`.

- The URL is checked before anything is sent (scheme, credentials, a literal
  address, a loopback name).
- A host name is resolved once per connection, by `CheckedResolver`: every
  address it resolves to is checked, and the connection goes to one of those
  checked addresses (no second lookup a rebinding DNS server could answer
  differently).
- Redirects are never followed: a 3xx is an answer like any other non-2xx.
- No proxy from the environment, the system's CA store for https.
- A failure is a `DeliveryFailed` with a category (`connection_refused`,
  `tls_error`, `timeout`, `http_500`...), never the remote's text or an
  exception's message, so what a receiver says cannot leak back through
  the API.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from bridge.outbound.policy import NOT_ALLOWED, DestinationRefused, OutboundPolicy, address_problem, check_url


class DeliveryFailed(Exception):
    """A request did not get an answer; `category` says why, in one word."""

    def __init__(self, category: str, detail: str = ""):
        super().__init__(category)
        self.category, self.detail = category, detail  # detail: for our logs, never for the API


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


class CheckedResolver(AbstractResolver):
    """Resolves with `inner`, refuses the lot if any address is refused, and
    hands the connector only the addresses it checked."""

    def __init__(self, policy: OutboundPolicy, inner: AbstractResolver | None = None):
        self.policy, self.inner = policy, inner

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET,
                      ) -> list[ResolveResult]:
        if self.inner is None:
            self.inner = aiohttp.ThreadedResolver()
        results = await self.inner.resolve(host, port, family)
        for result in results:
            problem = address_problem(ipaddress.ip_address(result["host"]), self.policy, host)
            if problem is not None:
                raise DestinationRefused(NOT_ALLOWED, f"the host resolves to a {problem} address")
        return results

    async def close(self) -> None:
        if self.inner is not None:
            await self.inner.close()


class OutboundHttp:
    """`async with OutboundHttp(policy, timeout) as http: await http.post(...)`."""

    def __init__(self, policy: OutboundPolicy, timeout: float, resolver: AbstractResolver | None = None):
        self.policy, self.timeout, self._inner = policy, timeout, resolver
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "OutboundHttp":
        connector = aiohttp.TCPConnector(resolver=CheckedResolver(self.policy, self._inner), use_dns_cache=False)
        self._session = aiohttp.ClientSession(connector=connector, trust_env=False,
                                              timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self

    async def __aexit__(self, *exc_info) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, url: str, body: bytes, headers: dict[str, str], read_limit: int = 0) -> Answer:
        """POST `body`; the answer's status, and up to `read_limit` bytes of its
        body (more: `response_too_large`). Raises DeliveryFailed."""
        try:
            check_url(url, self.policy)
            async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                content = await _read(resp, read_limit) if read_limit else b""
                return Answer(resp.status, content)
        except DestinationRefused as exc:
            raise DeliveryFailed(exc.category, str(exc)) from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            raise DeliveryFailed(category(exc), type(exc).__name__) from None


async def _read(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    content = bytearray()
    async for chunk in resp.content.iter_chunked(16 * 1024):
        content += chunk
        if len(content) > limit:
            raise DeliveryFailed("response_too_large")
    return bytes(content)


def category(exc: BaseException) -> str:
    """One word for why a request failed, from the exception's type alone."""
    if isinstance(exc, DestinationRefused):
        return exc.category
    if isinstance(exc, (aiohttp.ClientSSLError, ssl.SSLError)):
        return "tls_error"
    if isinstance(exc, asyncio.TimeoutError):  # aiohttp's timeouts are TimeoutErrors too
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error
        if isinstance(cause, socket.gaierror):
            return "dns_error"
        if isinstance(cause, ConnectionRefusedError):
            return "connection_refused"
        if isinstance(cause, TimeoutError):
            return "timeout"
        return "connection_error"
    if isinstance(exc, (aiohttp.ServerDisconnectedError, ConnectionResetError)):
        return "connection_reset"
    if isinstance(exc, (aiohttp.InvalidURL, ValueError)):
        return "invalid_url"
    return "connection_error"


def status_category(status: int) -> str:
    return f"http_{status}"
