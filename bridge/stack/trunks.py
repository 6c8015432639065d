"""The carriers this bridge talks to: which trunks exist and how each behaves.

Site-wide things a machine has once (its SIP ports, its public addresses
behind a NAT, its TLS certificate) are `MASKING_*` settings. Things there is
one of per carrier (the addresses it calls from, where to send calls, its
credentials, codecs, DTMF, identity headers) are in a small TOML file named by
`MASKING_TRUNKS_FILE`: several inbound carriers and an outbound trunk or two
read better as a table each than as numbered variables. Without the file the
two trunks of a loopback test stack are built from the old settings
(`MASKING_INBOUND_MATCH`, `MASKING_OUTBOUND_HOST`/`_PORT`), exactly as before.

Pure: parsing and validation only; `bridge/stack/pjsip.py` renders the result.
"""
from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from bridge.config import ConfigError, Settings

CODECS = frozenset({"alaw", "ulaw", "g722"})
DTMF_MODES = frozenset({"rfc4733", "inband", "info", "auto"})
TRANSPORTS = frozenset({"udp", "tls"})
SRTP_MODES = frozenset({"no", "optional", "required"})  # optional: SDES when the far end offers or takes it
SESSION_TIMERS = frozenset({"no", "yes", "always"})  # yes: when the carrier asks; always: we ask too
PRIVACY = frozenset({"none", "id"})
# Sections the template itself defines: a trunk may not take their names.
RESERVED_NAMES = frozenset({"global", "system", "transport-udp", "transport-tls", "trunk-defaults"})
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,39}")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_SIP_USER = re.compile(r"[A-Za-z0-9+._~-]{1,64}")


class TrunkError(ConfigError):
    """The trunks file (or the settings standing in for it) is wrong; the message says where."""


@dataclass(frozen=True)
class Media:
    """How calls on a trunk carry audio, and how a dead far end is noticed."""

    codecs: tuple[str, ...] = ("alaw", "ulaw")
    dtmf_mode: str = "rfc4733"
    srtp: str = "no"
    # Seconds without RTP from the far end before the call is ended (0: never);
    # the second while the far end holds the call.
    rtp_timeout: int = 60
    rtp_timeout_hold: int = 600
    session_timers: str = "yes"
    session_expires: int = 1800


@dataclass(frozen=True)
class InboundTrunk:
    """A carrier that sends us calls, known by the addresses it sends them from."""

    name: str
    match: tuple[str, ...]
    transport: str = "udp"
    media: Media = field(default_factory=Media)


@dataclass(frozen=True)
class OutboundTrunk:
    """Where counterparts are dialed: the carrier's address, credentials and identity rules."""

    name: str
    host: str
    port: int = 5060
    transport: str = "udp"
    username: str = ""
    password: str = field(default="", repr=False)
    realm: str = ""
    register: bool = False
    registrar: str = ""  # host[:port] to register with; empty: host and port
    register_expiry: int = 600
    register_retry: int = 60
    from_user: str = ""  # empty: the virtual number, as the bridge sets it
    from_domain: str = ""  # empty: host
    pai: bool = True  # P-Asserted-Identity carrying the virtual number
    privacy: str = "none"  # id: Privacy: id, From anonymous, PAI still the virtual number
    media: Media = field(default_factory=Media)

    @property
    def authenticates(self) -> bool:
        return bool(self.username)


@dataclass(frozen=True)
class TrunkPlan:
    inbound: tuple[InboundTrunk, ...]
    outbound: tuple[OutboundTrunk, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in (*self.inbound, *self.outbound))

    @property
    def registrations(self) -> tuple[OutboundTrunk, ...]:
        return tuple(t for t in self.outbound if t.register)

    @property
    def uses_tls(self) -> bool:
        return any(t.transport == "tls" for t in (*self.inbound, *self.outbound))


def load_plan(settings: Settings, env: Mapping[str, str] | None = None) -> TrunkPlan:
    """The trunks to render: from `MASKING_TRUNKS_FILE`, or the two default ones."""
    ast = settings.asterisk
    if str(ast.trunks_file) in ("", "."):
        plan = default_plan(settings)
    else:
        try:
            data = tomllib.loads(Path(ast.trunks_file).read_text())
        except OSError as exc:
            raise TrunkError(f"MASKING_TRUNKS_FILE: cannot read {ast.trunks_file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise TrunkError(f"MASKING_TRUNKS_FILE: {ast.trunks_file} is not valid TOML: {exc}") from None
        plan = parse_plan(data, settings, os.environ if env is None else env)
    check_plan(plan, settings)
    return plan


def outbound_presentation(settings: Settings) -> str:
    """"prohib" when the outbound trunk asks for privacy (`privacy = "id"`), else "".

    The calls set it on each counterpart's leg once Asterisk has created it.
    Not as the endpoint's `set_var = CONNECTEDLINE(pres)=prohib`: chan_pjsip
    applies set_var while it builds the channel, the write queues a connected-
    line update on the session's serializer, and that task can run before the
    session has its channel: Asterisk 22.10 then dies (SIGSEGV in
    ast_channel_state), seen under load with a core dump."""
    plan = load_plan(settings)
    trunk = next(t for t in plan.outbound if t.name == settings.outbound_endpoint)
    return "prohib" if trunk.privacy == "id" else ""


def default_plan(settings: Settings) -> TrunkPlan:
    """Today's two loopback trunks, from the settings that always described them."""
    ast = settings.asterisk
    media = Media(codecs=_codecs(ast.codecs.split(","), "MASKING_CODECS"),
                  rtp_timeout=ast.rtp_timeout, rtp_timeout_hold=ast.rtp_timeout_hold)
    inbound = InboundTrunk("carrier-in", tuple(m.strip() for m in ast.inbound_match.split(",") if m.strip()),
                           media=media)
    outbound = OutboundTrunk(settings.outbound_endpoint, ast.outbound_host, ast.outbound_port,
                             from_domain=ast.from_domain, media=media)
    return TrunkPlan((inbound,), (outbound,))


def parse_plan(data: Mapping[str, Any], settings: Settings, env: Mapping[str, str]) -> TrunkPlan:
    """`[defaults]`, `[[inbound]]` and `[[outbound]]` tables into trunks; every mistake named."""
    _no_unknown(data, {"defaults", "inbound", "outbound"}, "the trunks file")
    ast = settings.asterisk
    site = {"codecs": ast.codecs.split(","), "rtp_timeout": ast.rtp_timeout, "rtp_timeout_hold": ast.rtp_timeout_hold}
    defaults = {**site, **_table(data.get("defaults", {}), "[defaults]")}
    _no_unknown(defaults, _MEDIA_KEYS, "[defaults]")
    inbound = tuple(_inbound(_merged(defaults, t, f"[[inbound]] #{i + 1}"))
                    for i, t in enumerate(_tables(data, "inbound")))
    outbound = tuple(_outbound(_merged(defaults, t, f"[[outbound]] #{i + 1}"), env)
                     for i, t in enumerate(_tables(data, "outbound")))
    if not outbound:
        raise TrunkError("the trunks file has no [[outbound]] trunk: counterparts could not be dialed")
    return TrunkPlan(inbound, outbound)


def check_plan(plan: TrunkPlan, settings: Settings) -> None:
    """What only makes sense across trunks or with the site's settings."""
    seen: set[str] = set()
    for name in plan.names:
        if name in seen:
            raise TrunkError(f"trunk name {name!r} is used twice")
        seen.add(name)
    if settings.outbound_endpoint not in {t.name for t in plan.outbound}:
        have = ", ".join(t.name for t in plan.outbound)
        raise TrunkError(f"MASKING_OUTBOUND_ENDPOINT={settings.outbound_endpoint} names no outbound trunk "
                         f"(the trunks file has: {have})")
    if plan.uses_tls and not settings.asterisk.sip_tls_port:
        raise TrunkError("a trunk uses transport tls: set MASKING_SIP_TLS_PORT, MASKING_TLS_CERT_FILE "
                         "and MASKING_TLS_KEY_FILE")
    for trunk in (*plan.inbound, *plan.outbound):
        if trunk.media.srtp != "no" and trunk.transport != "tls":
            raise TrunkError(f"trunk {trunk.name}: srtp needs transport = \"tls\" (SDES keys travel in the SDP)")


_MEDIA_KEYS = frozenset({"codecs", "dtmf_mode", "srtp", "rtp_timeout", "rtp_timeout_hold", "session_timers",
                         "session_expires"})
_INBOUND_KEYS = frozenset({"name", "match", "transport"}) | _MEDIA_KEYS
_OUTBOUND_KEYS = frozenset({"name", "host", "port", "transport", "username", "password", "password_env", "realm",
                            "register", "registrar", "register_expiry", "register_retry", "from_user",
                            "from_domain", "pai", "privacy"}) | _MEDIA_KEYS


def _inbound(t: dict[str, Any]) -> InboundTrunk:
    where = t["_where"]
    _no_unknown(t, _INBOUND_KEYS | {"_where"}, where)
    name = _name(t, where)
    raw = t.get("match")
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise TrunkError(f"inbound trunk {name}: match must list the addresses the carrier calls from")
    return InboundTrunk(name, tuple(_address(a, f"inbound trunk {name}") for a in raw),
                        _choice(t, "transport", "udp", TRANSPORTS, name), _media(t, name))


def _outbound(t: dict[str, Any], env: Mapping[str, str]) -> OutboundTrunk:
    where = t["_where"]
    _no_unknown(t, _OUTBOUND_KEYS | {"_where"}, where)
    name = _name(t, where)
    host = _str(t, "host", "", name)
    if not _HOST.fullmatch(host):
        raise TrunkError(f"outbound trunk {name}: host must be a host name or address, got {host!r}")
    password = _str(t, "password", "", name)
    if "password_env" in t:
        variable = _str(t, "password_env", "", name)
        if variable not in env:
            raise TrunkError(f"outbound trunk {name}: password_env names {variable}, which is not set")
        password = env[variable]
    username = _str(t, "username", "", name)
    if username and not _SIP_USER.fullmatch(username):
        raise TrunkError(f"outbound trunk {name}: username has characters a SIP URI cannot carry")
    if bool(username) != bool(password):
        raise TrunkError(f"outbound trunk {name}: username and password go together")
    register = _bool(t, "register", False, name)
    if register and not username:
        raise TrunkError(f"outbound trunk {name}: register = true needs username and password")
    registrar = _str(t, "registrar", "", name)
    if registrar and not _HOST.fullmatch(registrar.rsplit(":", 1)[0]):
        raise TrunkError(f"outbound trunk {name}: registrar must be host or host:port, got {registrar!r}")
    from_user = _str(t, "from_user", "", name)
    if from_user and not _SIP_USER.fullmatch(from_user):
        raise TrunkError(f"outbound trunk {name}: from_user has characters a SIP URI cannot carry")
    return OutboundTrunk(
        name, host, _int(t, "port", 5060, name, 1, 65535), _choice(t, "transport", "udp", TRANSPORTS, name),
        username, password, _str(t, "realm", "", name), register, registrar,
        _int(t, "register_expiry", 600, name, 60, 86400), _int(t, "register_retry", 60, name, 1, 3600),
        from_user, _str(t, "from_domain", "", name) or host, _bool(t, "pai", True, name),
        _choice(t, "privacy", "none", PRIVACY, name), _media(t, name))


def _media(t: dict[str, Any], name: str) -> Media:
    return Media(
        codecs=_codecs(t.get("codecs", ["alaw", "ulaw"]), f"trunk {name}"),
        dtmf_mode=_choice(t, "dtmf_mode", "rfc4733", DTMF_MODES, name),
        srtp=_choice(t, "srtp", "no", SRTP_MODES, name),
        rtp_timeout=_int(t, "rtp_timeout", 60, name, 0, 86400),
        rtp_timeout_hold=_int(t, "rtp_timeout_hold", 600, name, 0, 86400),
        session_timers=_choice(t, "session_timers", "yes", SESSION_TIMERS, name),
        session_expires=_int(t, "session_expires", 1800, name, 90, 86400),
    )


def _codecs(raw: Any, where: str) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = raw.split(",")
    if not isinstance(raw, list):
        raise TrunkError(f"{where}: codecs must be a list like [\"alaw\", \"ulaw\"]")
    codecs = tuple(str(c).strip().lower() for c in raw if str(c).strip())
    unknown = [c for c in codecs if c not in CODECS]
    if unknown or not codecs:
        raise TrunkError(f"{where}: codecs must be some of {', '.join(sorted(CODECS))}, got {list(raw)}")
    return codecs


def _address(raw: Any, where: str) -> str:
    """An address, a network (CIDR) or a host name: what `identify` matches on."""
    text = str(raw).strip()
    try:
        return str(ipaddress.ip_network(text, strict=False)) if "/" in text else str(ipaddress.ip_address(text))
    except ValueError:
        if _HOST.fullmatch(text) and not text.replace(".", "").isdigit():
            return text
        raise TrunkError(f"{where}: {text!r} in match is not an address, a network or a host name") from None


def _merged(defaults: dict[str, Any], table: Any, where: str) -> dict[str, Any]:
    return {**defaults, **_table(table, where), "_where": where}


def _tables(data: Mapping[str, Any], key: str) -> list:
    tables = data.get(key, [])
    if not isinstance(tables, list):
        raise TrunkError(f"{key} must be written [[{key}]] (an array of tables)")
    return tables


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TrunkError(f"{where} must be a table")
    return dict(value)


def _no_unknown(table: Mapping[str, Any], known: frozenset | set, where: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise TrunkError(f"{where}: unknown key(s) {', '.join(unknown)}")


def _name(t: dict[str, Any], where: str) -> str:
    name = t.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise TrunkError(f"{where}: name must be letters, digits, - or _ (starting with a letter), got {name!r}")
    return name


def _str(t: dict[str, Any], key: str, default: str, name: str) -> str:
    value = t.get(key, default)
    if not isinstance(value, str) or any(c in value for c in "\r\n;[]"):
        raise TrunkError(f"trunk {name}: {key} must be text on one line")
    return value.strip()


def _int(t: dict[str, Any], key: str, default: int, name: str, low: int, high: int) -> int:
    value = t.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise TrunkError(f"trunk {name}: {key} must be a whole number from {low} to {high}, got {value!r}")
    return value


def _bool(t: dict[str, Any], key: str, default: bool, name: str) -> bool:
    value = t.get(key, default)
    if not isinstance(value, bool):
        raise TrunkError(f"trunk {name}: {key} must be true or false, got {value!r}")
    return value


def _choice(t: dict[str, Any], key: str, default: str, allowed: frozenset, name: str) -> str:
    value = t.get(key, default)
    if not isinstance(value, str) or value not in allowed:
        raise TrunkError(f"trunk {name}: {key} must be one of {', '.join(sorted(allowed))}, got {value!r}")
    return value
