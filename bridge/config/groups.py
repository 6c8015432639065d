"""The settings groups beside the main one: prompts, the recording notice, the
Kamailio edge, how each inbound trunk delivers the dialed number, and the
Asterisk instance we render. Each is read with its own prefix (`from_env`)."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import phonenumbers

from bridge.config.errors import ConfigError


@dataclass(frozen=True)
class Prompts:
    """Core-sound prompts the parties hear (`&` joins files)."""

    unknown_number: str = "ss-noservice"
    not_a_participant: str = "cannot-complete-as-dialed&check-number-dial-again"
    session_ended: str = "ss-noservice"
    busy: str = "vm-nobodyavail&please-try-call-later"
    no_answer: str = "number-not-answering&please-try-call-later"
    unreachable: str = "all-circuits-busy-now&please-try-call-later"
    unavailable: str = "sorry&please-try-call-later"
    # Click-to-call: the first party, on answering, while the other is dialed.
    connecting: str = "pls-hold-while-try"
    # Both parties, before a call's time limit ends it.
    time_limit_warning: str = "beep"
    # Shared (pin_mode) numbers: asked for the PIN, told it was wrong, and
    # released after the last wrong attempt.
    pin_request: str = "confbridge-pin"
    pin_invalid: str = "confbridge-pin-bad"
    pin_failed: str = "confbridge-pin-bad&vm-goodbye"


@dataclass(frozen=True)
class Notice:
    """The recording notice both parties hear before a recorded call connects.

    `id` and `version` go into the call row as evidence of what was played;
    change the version whenever the wording changes. Pressing `opt_out_digit`
    during the notice turns recording off for the call (MASKING_NOTICE_OPT_OUT_DIGIT=none:
    no opt-out, which the start refuses unless the purpose registry allows it).
    """

    sound: str = "masking/masking-recording-notice"
    id: str = "recording-notice"
    version: str = "1"
    opt_out_digit: str = "9"


@dataclass(frozen=True)
class EdgeSettings:
    """The Kamailio edge in front of several Asterisk nodes (docs/scaling.md).

    The edge takes the carrier's address (MASKING_SIP_HOST/PORT); node k of
    `masking run --nodes N` gets its own address (the k-th of `node_hosts`, by
    default 127.0.0.1k: 127.0.0.11, 127.0.0.12...) with the usual ports on it.
    A bridge with `rpc_port` set shows the edge's view of the nodes in
    /metrics and `masking doctor`.
    """

    node_hosts: str = ""
    node_sip_port: int = 5060
    # JSON-RPC over UDP (dispatcher.list, dispatcher.set_duid_state); 0: no edge.
    rpc_host: str = "127.0.0.1"
    rpc_port: int = 0
    # Nodes are probed with OPTIONS every `probe_interval` seconds and taken out
    # after `probe_threshold` probes without answer; an INVITE no node answers
    # within `setup_timeout_ms` goes to the next node.
    probe_interval: int = 2
    probe_threshold: int = 1
    setup_timeout_ms: int = 2000
    children: int = 4
    kamailio_modules: Path = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
    # The nodes an operator drained (`masking edge drain`), one name a line: a
    # restarted edge starts them drained. Empty: MASKING_STATE_DIR/edge-drained.
    drained_file: Path = Path("")

    def hosts(self, count: int) -> list[str]:
        """The addresses of nodes 1..count."""
        listed = [h.strip() for h in self.node_hosts.split(",") if h.strip()]
        if listed:
            if len(listed) < count:
                raise ConfigError(f"MASKING_EDGE_NODE_HOSTS names {len(listed)} nodes, {count} wanted")
            return listed[:count]
        return [f"127.0.0.{10 + k}" for k in range(1, count + 1)]


@dataclass(frozen=True)
class DialedRule:
    """How one inbound trunk delivers the number the caller dialed
    (MASKING_DIALED_NUMBER_RULES; read by bridge/numbering/dialed.py)."""

    source: str = "ruri"  # 'ruri': the Request-URI's user part; 'to': the To header
    strip: str = ""  # a routing prefix the carrier puts before the number, removed first
    region: str = ""  # the country of numbers in national form; empty: MASKING_DEFAULT_REGION


DIALED_RULE_KEYS = {"from": "source", "strip": "strip", "region": "region"}


@functools.lru_cache(maxsize=8)
def parse_dialed_rules(raw: str) -> dict[str, DialedRule]:
    """`carrier-in: from=to strip=1633; *: region=MY` -> a rule per trunk (the
    PJSIP endpoint a call arrives on; `*`: any other). Raises ValueError."""
    rules = {}
    for part in filter(None, (p.strip() for p in raw.split(";"))):
        name, colon, body = part.partition(":")
        trunk = name.strip()
        if not colon or not re.fullmatch(r"\*|[\w.-]+", trunk) or trunk in rules:
            raise ValueError(f"each rule is a trunk name, a colon and its keys, once per trunk: {part!r}")
        values = {}
        for item in body.split():
            key, equals, value = item.partition("=")
            if key not in DIALED_RULE_KEYS or not equals:
                raise ValueError(f"{item!r}: the keys are from=, strip=, region=")
            values[DIALED_RULE_KEYS[key]] = value
        rule = DialedRule(**values)
        if rule.source not in ("ruri", "to") or not re.fullmatch(r"[+\d*#]*", rule.strip) \
                or (rule.region and rule.region not in phonenumbers.SUPPORTED_REGIONS):
            raise ValueError(f"{part!r}: from=ruri or to, strip= digits, region= a country such as SG")
        rules[trunk] = rule
    return rules


@dataclass(frozen=True)
class AsteriskSettings:
    """What the rendered Asterisk configuration needs: its ports and trunks."""

    sip_host: str = "127.0.0.1"
    sip_port: int = 5060
    rtp_start: int = 10000
    rtp_end: int = 10999
    inbound_match: str = "127.0.0.1"
    outbound_host: str = "127.0.0.1"
    outbound_port: int = 5070
    from_domain: str = "masking.invalid"
    codecs: str = "alaw,ulaw"
    tone_country: str = "sg"
    # Carrier trunks (docs/carrier.md). What there is one of per carrier lives
    # in the trunks file (bridge/stack/trunks.py); what the machine has once,
    # here: its TLS port and certificate, its public addresses behind a NAT
    # (`local_nets`: the networks reached without it), the RTP inactivity
    # timeouts trunks default to, and the operator's own Asterisk additions.
    trunks_file: Path = Path("")
    sip_tls_port: int = 0  # 0: no TLS transport
    tls_cert_file: Path = Path("")
    tls_key_file: Path = Path("")
    tls_ca_file: Path = Path("")  # CAs that sign carriers' certificates; empty: not verified
    external_signaling_address: str = ""
    external_media_address: str = ""
    local_nets: str = ""
    rtp_timeout: int = 60  # seconds without RTP before a call is ended as dead (0: never)
    rtp_timeout_hold: int = 600
    local_config_dir: Path = Path("")  # empty: <state_dir>/asterisk-local
    asterisk_root: Path = Path("/var/cache/masking-bridge/asterisk-sid")
    instance_name: str = "default"
    # Asterisk's entity id (asterisk.conf `entityid`, ARI's `asterisk_id`);
    # empty: one derived from `instance_name`, stable across restarts.
    entity_id: str = ""
