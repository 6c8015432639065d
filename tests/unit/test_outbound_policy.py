"""Where the bridge may send HTTP: public https destinations, the operator's
allow-list, and nothing a business could point at the operator's own network."""
from __future__ import annotations

import ipaddress
import socket

import pytest

from bridge.config import ConfigError, Settings
from bridge.outbound.client import CheckedResolver
from bridge.outbound.policy import DestinationRefused, OutboundPolicy, address_problem, url_problem

STRICT = OutboundPolicy()
DEV = OutboundPolicy(development=True)


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("127.3.2.1", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.9", "private"), ("192.168.1.1", "private"), ("fd12::1", "private"),
    ("169.254.1.1", "link_local"), ("fe80::1", "link_local"), ("fe80::1%2", "link_local"),
    ("169.254.169.254", "metadata"), ("fd00:ec2::254", "metadata"), ("100.100.100.200", "metadata"),
    ("100.64.0.1", "not_public"), ("0.0.0.0", "private"), ("224.0.0.1", "multicast"), ("240.0.0.1", "private"),
    # IPv6 forms that lead to an IPv4 address are judged by where they lead
    ("::ffff:127.0.0.1", "loopback"), ("64:ff9b::a9fe:a9fe", "metadata"), ("2002:7f00:1::1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
])
def test_addresses_inside_the_operators_network_or_the_cloud_are_refused(address, kind):
    assert address_problem(ipaddress.ip_address(address), STRICT) == kind


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"])
def test_public_addresses_are_allowed(address):
    assert address_problem(ipaddress.ip_address(address), STRICT) is None


def test_the_allow_list_opens_its_networks_and_hosts_and_nothing_else():
    policy = OutboundPolicy.parse("10.20.0.0/16, 127.0.0.2, hooks.corp.example")

    assert address_problem(ipaddress.ip_address("10.20.5.5"), policy) is None
    assert address_problem(ipaddress.ip_address("127.0.0.2"), policy) is None
    assert address_problem(ipaddress.ip_address("127.0.0.1"), policy) == "loopback"
    assert address_problem(ipaddress.ip_address("10.21.0.1"), policy) == "private"
    assert address_problem(ipaddress.ip_address("192.168.0.1"), policy, host="HOOKS.corp.example.") is None
    assert address_problem(ipaddress.ip_address("192.168.0.1"), policy, host="other.corp.example") == "private"


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "not a host", "a/b"])
def test_a_malformed_allow_list_entry_is_refused(entry):
    with pytest.raises(ValueError):
        OutboundPolicy.parse(entry)


@pytest.mark.parametrize(("url", "problem"), [
    ("ftp://shop.example/hook", "must be an http(s) URL"),
    ("http://shop.example/hook", "must use https"),
    ("https://user:s3cret@shop.example/hook", "must not carry credentials"),
    ("https://token@shop.example/hook", "must not carry credentials"),
    ("https:///hook", "must name a host"),
    ("https://shop.example:0/hook", "must name a port"),
    ("https://shop.example:99999/hook", "must be a well-formed URL"),
    ("https://127.0.0.1/hook", "points at a loopback address"),
    ("https://[::1]:8080/hook", "points at a loopback address"),
    ("https://169.254.169.254/latest/meta-data/", "points at a metadata address"),
    ("https://10.0.0.5/hook", "points at a private address"),
    ("https://localhost:8080/hook", "names this machine"),
    ("https://api.localhost/hook", "names this machine"),
    ("https://2130706433/hook", "four decimal numbers"),
    ("https://127.1/hook", "four decimal numbers"),
    ("https://0x7f.0.0.1/hook", "four decimal numbers"),
])
def test_a_url_the_bridge_may_not_send_to_says_precisely_why(url, problem):
    assert problem in url_problem(url, STRICT)


def test_public_https_urls_pass_and_http_only_in_development_mode():
    assert url_problem("https://shop.example/hooks?token=abc", STRICT) is None
    assert url_problem("http://shop.example/hooks", DEV) is None
    assert "loopback" in url_problem("http://127.0.0.1:9000/hooks", DEV), "development does not open the network"


def test_settings_refuse_credentials_in_urls_without_repeating_them():
    for name in ("MASKING_WEBHOOK_URL", "MASKING_OUT_OF_SESSION_URL"):
        with pytest.raises(ConfigError) as refused:
            Settings.from_env({name: "https://shop:s3cret-pass@shop.example/hook"})
        assert name in str(refused.value) and "s3cret-pass" not in str(refused.value)


def test_settings_refuse_plain_http_and_internal_urls_outside_development_mode():
    with pytest.raises(ConfigError, match="must use https"):
        Settings.from_env({"MASKING_OUT_OF_SESSION_URL": "http://shop.example/ask"})
    with pytest.raises(ConfigError, match="metadata"):
        Settings.from_env({"MASKING_WEBHOOK_URL": "https://169.254.169.254/"})
    with pytest.raises(ConfigError, match="MASKING_OUTBOUND_ALLOW"):
        Settings.from_env({"MASKING_OUTBOUND_ALLOW": "10.0.0.0/99"})
    allowed = Settings.from_env({"MASKING_DEVELOPMENT": "true", "MASKING_OUTBOUND_ALLOW": "127.0.0.1",
                                 "MASKING_WEBHOOK_URL": "http://127.0.0.1:9000/hook"})
    assert allowed.outbound_policy.development


class Answers:
    """A DNS server that answers what it is told, one answer per lookup."""

    def __init__(self, *answers: list[str]):
        self.answers, self.lookups = list(answers), 0

    async def resolve(self, host, port=0, family=socket.AF_INET):
        self.lookups += 1
        return [{"hostname": host, "host": a, "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}
                for a in self.answers.pop(0)]

    async def close(self):
        pass


async def test_a_name_resolving_to_any_internal_address_is_refused_even_beside_public_ones():
    resolver = CheckedResolver(STRICT, Answers(["93.184.216.34", "127.0.0.1"]))
    with pytest.raises(DestinationRefused) as refused:
        await resolver.resolve("rebind.example", 443)
    assert refused.value.category == "destination_not_allowed"


async def test_each_connection_is_checked_against_its_own_lookup_so_a_rebinding_answer_is_refused():
    inner = Answers(["93.184.216.34"], ["169.254.169.254"])
    resolver = CheckedResolver(STRICT, inner)

    first = await resolver.resolve("rebind.example", 443)
    with pytest.raises(DestinationRefused):
        await resolver.resolve("rebind.example", 443)
    assert [r["host"] for r in first] == ["93.184.216.34"] and inner.lookups == 2
