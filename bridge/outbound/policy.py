"""Where the bridge may send HTTP requests: pure rules, no I/O.

A business names the URLs (a session's `webhook_url`), so a URL is untrusted
input that must not turn the bridge into a way into the operator's network:
https only (plain http only in the explicit development mode), no credentials
in it, and no destination on a loopback, private, link-local, cloud metadata
or otherwise non-public address, unless the operator allows it
(`MASKING_OUTBOUND_ALLOW`: CIDRs, or host names, for receivers on the premises).

The rules apply twice: to the URL when it is accepted (`url_problem`), and to
every address its host resolves to when a request is sent (`address_problem`,
bridge/outbound/client.py), which connects only to an address it checked.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud instance metadata services: credentials live there.
METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254"))
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
LOOPBACK_NAMES = ("localhost", "localhost.localdomain")
INVALID_URL, NOT_ALLOWED = "invalid_url", "destination_not_allowed"  # DestinationRefused's categories


class DestinationRefused(Exception):
    """The policy refuses this URL or address; `category` says why in one word."""

    def __init__(self, category: str, message: str):
        super().__init__(message)
        self.category = category


@dataclass(frozen=True)
class OutboundPolicy:
    development: bool = False  # plain http allowed
    allowed_networks: tuple[IpNetwork, ...] = ()
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, allow: str, development: bool = False) -> "OutboundPolicy":
        """From `MASKING_OUTBOUND_ALLOW` ("10.1.0.0/16, hooks.corp.example"); ValueError names a bad entry."""
        networks, hosts = [], set()
        for entry in (e.strip() for e in allow.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            name = entry.lower().rstrip(".")
            if not name or any(not (c.isalnum() or c in "-._") for c in name):
                raise ValueError(f"not a CIDR or a host name: {entry!r}")
            hosts.add(name)
        return cls(development, tuple(networks), frozenset(hosts))

    def host_allowed(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.allowed_hosts


def url_problem(url: str, policy: OutboundPolicy) -> str | None:
    """Why the bridge may not send to `url` (a sentence to finish "webhook_url ..."), or None."""
    try:
        check_url(url, policy)
    except DestinationRefused as exc:
        return str(exc)
    return None


def check_url(url: str, policy: OutboundPolicy) -> None:
    """Raise DestinationRefused (`invalid_url`, or `destination_not_allowed`) unless
    the bridge may send to `url`. Checks what the URL itself says; a host name
    is resolved, and its addresses checked, when sending."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise DestinationRefused(INVALID_URL, "must be a well-formed URL") from None
    if parts.scheme not in ("http", "https"):
        raise DestinationRefused(INVALID_URL, "must be an http(s) URL")
    if parts.scheme != "https" and not policy.development:
        raise DestinationRefused(INVALID_URL, "must use https")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise DestinationRefused(INVALID_URL, "must not carry credentials (user:password@); "
                                              "the signature authenticates the bridge")
    if not host:
        raise DestinationRefused(INVALID_URL, "must name a host")
    if port == 0:
        raise DestinationRefused(INVALID_URL, "must name a port between 1 and 65535")
    if policy.host_allowed(host):
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        name = host.rstrip(".")
        if _legacy_ipv4(name):  # 2130706433, 127.1, 0x7f.1: what a resolver would take for an address
            raise DestinationRefused(INVALID_URL, "must write an IPv4 address as four decimal numbers") from None
        if name in LOOPBACK_NAMES or name.endswith(".localhost"):
            raise DestinationRefused(NOT_ALLOWED, "names this machine (a loopback address); "
                                                  "list it in MASKING_OUTBOUND_ALLOW if intended") from None
        return
    problem = address_problem(address, policy)
    if problem is not None:
        raise DestinationRefused(NOT_ALLOWED, f"points at a {problem.replace('_', '-')} address; "
                                              "list it in MASKING_OUTBOUND_ALLOW if intended")


def address_problem(address: IpAddress, policy: OutboundPolicy, host: str | None = None) -> str | None:
    """The kind of address this is, if the policy refuses it (`loopback`, `private`,
    `link_local`, `metadata`, `multicast`, `not_public`); None for an allowed one."""
    if host is not None and policy.host_allowed(host):
        return None
    address = _embedded_ipv4(address)
    if any(address in network for network in policy.allowed_networks):
        return None
    if address in METADATA:
        return "metadata"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link_local"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if not address.is_global or address.is_reserved or address.is_unspecified:
        return "not_public"
    return None


def _legacy_ipv4(name: str) -> bool:
    try:
        socket.inet_aton(name)
    except OSError:
        return False
    return True


def _embedded_ipv4(address: IpAddress) -> IpAddress:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), which is where it leads."""
    if isinstance(address, ipaddress.IPv6Address):
        address = address if address.scope_id is None else ipaddress.IPv6Address(str(address).split("%")[0])
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if any(address in network for network in NAT64):
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address
