"""Settings from the environment, validated once at start.

Every port and path is a setting so that two stacks can run side by side on one
machine (the integration tests do exactly that). Names are `MASKING_*`; the
README and `.env.example` list them.
"""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Mapping

# What a purpose code looks like (MASKING_PURPOSES, sessions' `purpose`).
PURPOSE_CODE = re.compile(r"[a-z][a-z0-9_.-]{0,63}")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


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
    during the notice turns recording off for the call (empty: no opt-out).
    """

    sound: str = "masking/masking-recording-notice"
    id: str = "recording-notice"
    version: str = "1"
    opt_out_digit: str = "9"


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


@dataclass(frozen=True)
class Settings:
    database_url: str = "postgresql://127.0.0.1:5432/masking"
    db_timeout: float = 2.0
    ari_host: str = "127.0.0.1"
    ari_port: int = 8088
    ari_user: str = "masking"
    ari_password: str = "masking-dev-secret"
    ari_app: str = "masking"
    ami_host: str = "127.0.0.1"
    ami_port: int = 5038
    ami_user: str = "masking"
    ami_password: str = "masking-dev-secret"
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    # FastAGI fallback, used by the dialplan when the Stasis app is not registered.
    agi_host: str = "127.0.0.1"
    agi_port: int = 4573
    outbound_endpoint: str = "carrier-out"
    dial_timeout: int = 30
    recording_dir: Path = Path(".run/recordings")
    recording_format: str = "wav"
    record_by_default: bool = True
    default_ttl: int = 3600
    # Pool rules (see bridge/sessions/pool.py).
    quarantine_seconds: int = 86400
    sticky: str = "none"  # none | prefer_sticky | avoid_sticky
    # Shared (pin_mode) numbers (see bridge/sessions/pins.py): digits of a new
    # PIN, how long an ended session's PIN is not handed out again, attempts a
    # caller has, and seconds of silence that end an entry.
    pin_length: int = 4
    pin_quarantine_seconds: int = 3600
    pin_attempts: int = 3
    pin_digit_timeout: float = 5.0
    # Call and session events to the business; per-session URLs override.
    webhook_url: str = ""
    webhook_secret: str = "masking-dev-webhook-secret"
    webhook_max_attempts: int = 8
    # Asked what to do when no live session matches a call; empty: prompt.
    out_of_session_url: str = ""
    out_of_session_timeout: float = 2.0
    # The purposes sessions may name (comma-separated codes); empty: any well-formed code.
    purposes: str = ""
    out_of_session_purpose: str = "out_of_session"  # for sessions the business makes on the spot
    # On SIGTERM: new calls go to the dialplan fallback, calls in progress get
    # this long to finish before they are released.
    drain_seconds: float = 30.0
    # Take the client address for audit rows from the last X-Forwarded-For
    # entry: only behind a reverse proxy that sets it (anyone can send one).
    trust_forwarded_for: bool = False
    # Days a data subject's request may take to answer (PDPA: 30); due_at = received + this.
    subject_request_days: int = 30
    # Fault-injection endpoints (/debug/...) for the test suite; never in production.
    test_hooks: bool = False
    default_region: str = "SG"
    log_level: str = "info"
    state_dir: Path = Path(".run")
    # Where Asterisk reads this project's sounds as `masking/...` (uploaded wait
    # audio goes below it); empty: the sounds directory of the Asterisk we run.
    asterisk_sounds_dir: Path = Path("")
    # Master keys and the lookup key (see bridge/privacy/crypto.py); empty
    # means `<state_dir>/keys.json`. Keep it off the database host's backups.
    keys_file: Path = Path("")
    # Retention (bridge/privacy/retention.py), in days or `never`: recordings from
    # when stored, calls' personal details from their start, sessions' numbers
    # from their end. The purge runs every `purge_interval_seconds` (0: only
    # `masking purge`), `purge_batch` rows per transaction.
    retain_recordings_days: str = "90"
    retain_call_details_days: str = "365"
    retain_sessions_days: str = "90"
    purge_interval_seconds: float = 3600.0
    purge_batch: int = 500
    # Longest a connected call may last, in seconds (0: no limit): a backstop
    # for a far end that vanished without the RTP timeout noticing. It works
    # as a time limit on every call (the session's own, when shorter, wins).
    max_call_seconds: int = 0
    asterisk: AsteriskSettings = field(default_factory=AsteriskSettings)
    prompts: Prompts = field(default_factory=Prompts)
    notice: Notice = field(default_factory=Notice)

    @property
    def allowed_purposes(self) -> frozenset[str]:
        return frozenset(p.strip() for p in self.purposes.split(",") if p.strip())

    @property
    def keys_path(self) -> Path:
        return self.keys_file if str(self.keys_file) not in ("", ".") else self.state_dir / "keys.json"

    @property
    def ari_url(self) -> str:
        return f"http://{self.ari_host}:{self.ari_port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Read `MASKING_*` variables; anything unset keeps its default."""
        env = os.environ if env is None else env
        asterisk = _load(AsteriskSettings, env, "MASKING_")
        prompts = _load(Prompts, env, "MASKING_PROMPT_")
        notice = _load(Notice, env, "MASKING_NOTICE_")
        settings = _load(cls, env, "MASKING_", skip={"asterisk", "prompts", "notice"})
        settings = replace(settings, asterisk=asterisk, prompts=prompts, notice=notice)
        settings.validate()
        return settings

    def validate(self) -> None:
        ports = {
            "MASKING_ARI_PORT": self.ari_port,
            "MASKING_AMI_PORT": self.ami_port,
            "MASKING_HTTP_PORT": self.http_port,
            "MASKING_AGI_PORT": self.agi_port,
            "MASKING_SIP_PORT": self.asterisk.sip_port,
            "MASKING_OUTBOUND_PORT": self.asterisk.outbound_port,
            "MASKING_RTP_START": self.asterisk.rtp_start,
            "MASKING_RTP_END": self.asterisk.rtp_end,
        }
        for name, port in ports.items():
            if not 0 < port < 65536:
                raise ConfigError(f"{name} must be a port number (1-65535), got {port}")
        if self.asterisk.rtp_end <= self.asterisk.rtp_start:
            raise ConfigError("MASKING_RTP_END must be above MASKING_RTP_START")
        if not self.database_url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("MASKING_DATABASE_URL must be a postgresql:// URL")
        if self.dial_timeout <= 0 or self.db_timeout <= 0:
            raise ConfigError("MASKING_DIAL_TIMEOUT and MASKING_DB_TIMEOUT must be positive")
        if self.sticky not in {"none", "prefer_sticky", "avoid_sticky"}:
            raise ConfigError("MASKING_STICKY must be one of none, prefer_sticky, avoid_sticky")
        for name, url in (("MASKING_WEBHOOK_URL", self.webhook_url),
                          ("MASKING_OUT_OF_SESSION_URL", self.out_of_session_url)):
            if url and not url.startswith(("http://", "https://")):
                raise ConfigError(f"{name} must be an http(s) URL")
        bad = [p for p in self.allowed_purposes if not PURPOSE_CODE.fullmatch(p)]
        if bad or not PURPOSE_CODE.fullmatch(self.out_of_session_purpose):
            raise ConfigError("MASKING_PURPOSES and MASKING_OUT_OF_SESSION_PURPOSE must be codes like delivery_order")
        if self.notice.opt_out_digit not in {"", *"0123456789*#"} or len(self.notice.opt_out_digit) > 1:
            raise ConfigError("MASKING_NOTICE_OPT_OUT_DIGIT must be one DTMF digit (0-9, *, #) or empty")
        if not 0 < self.subject_request_days <= 366:
            raise ConfigError("MASKING_SUBJECT_REQUEST_DAYS must be between 1 and 366")
        if not 3 <= self.pin_length <= 8:
            raise ConfigError("MASKING_PIN_LENGTH must be between 3 and 8 digits")
        if self.pin_attempts < 1 or self.pin_digit_timeout <= 0 or self.pin_quarantine_seconds < 0:
            raise ConfigError("MASKING_PIN_ATTEMPTS and MASKING_PIN_DIGIT_TIMEOUT must be positive,"
                              " MASKING_PIN_QUARANTINE_SECONDS not negative")
        if self.recording_format not in {"wav", "gsm", "sln"}:
            raise ConfigError("MASKING_RECORDING_FORMAT must be one of wav, gsm, sln")
        self._validate_retention()
        self._validate_carrier()

    def _validate_retention(self) -> None:
        for name in ("retain_recordings_days", "retain_call_details_days", "retain_sessions_days"):
            try:
                parse_days(getattr(self, name))
            except ValueError:
                raise ConfigError(f"MASKING_{name.upper()} must be a number of days (0-36500) or never, "
                                  f"got {getattr(self, name)!r}") from None
        if not 0 <= self.purge_interval_seconds <= 7 * 86400:
            raise ConfigError("MASKING_PURGE_INTERVAL_SECONDS must be between 0 (off) and 604800")
        if not 1 <= self.purge_batch <= 10000:
            raise ConfigError("MASKING_PURGE_BATCH must be between 1 and 10000")

    def _validate_carrier(self) -> None:
        ast = self.asterisk
        if not 0 <= ast.sip_tls_port < 65536:
            raise ConfigError(f"MASKING_SIP_TLS_PORT must be a port number or 0 (no TLS), got {ast.sip_tls_port}")
        if ast.sip_tls_port and "" in (_path_text(ast.tls_cert_file), _path_text(ast.tls_key_file)):
            raise ConfigError("MASKING_SIP_TLS_PORT needs MASKING_TLS_CERT_FILE and MASKING_TLS_KEY_FILE")
        if ast.rtp_timeout < 0 or ast.rtp_timeout_hold < 0 or self.max_call_seconds < 0:
            raise ConfigError("MASKING_RTP_TIMEOUT, MASKING_RTP_TIMEOUT_HOLD and MASKING_MAX_CALL_SECONDS "
                              "must not be negative (0: off)")
        for name, address in (("MASKING_EXTERNAL_SIGNALING_ADDRESS", ast.external_signaling_address),
                              ("MASKING_EXTERNAL_MEDIA_ADDRESS", ast.external_media_address)):
            if address and not re.fullmatch(r"[A-Za-z0-9.:-]+", address):
                raise ConfigError(f"{name} must be an address or host name, got {address!r}")
        for net in self.local_networks:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ConfigError(f"MASKING_LOCAL_NETS must list networks like 10.0.0.0/8, got {net!r}") from None

    @property
    def local_networks(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in self.asterisk.local_nets.split(",") if n.strip())


# Never recorded anywhere, not even as a digest.
SECRET_SETTINGS = frozenset({"MASKING_ARI_PASSWORD", "MASKING_AMI_PASSWORD", "MASKING_WEBHOOK_SECRET"})
# May carry credentials or personal data (user:password@host, a token in a
# query): audit rows hold a keyed digest of these, never the value.
UNDISCLOSED_SETTINGS = frozenset({"MASKING_DATABASE_URL", "MASKING_WEBHOOK_URL", "MASKING_OUT_OF_SESSION_URL"})
_NESTED = {"asterisk": "MASKING_", "prompts": "MASKING_PROMPT_"}  # as `from_env` reads them


def _path_text(path: Path) -> str:
    """A path setting as set: '' when unset (Path('') reads back as '.')."""
    return "" if str(path) in ("", ".") else str(path)


def parse_days(raw: str) -> int | None:
    """A retention period: `90` days, or `never` (kept until erased). Raises ValueError otherwise."""
    text = raw.strip().lower()
    if text in ("never", "forever"):
        return None
    if not (text.isascii() and text.isdigit()):
        raise ValueError(raw)
    days = int(text)
    if days > 36500:
        raise ValueError(raw)
    return days


def settings_by_name(settings: Settings) -> dict[str, str]:
    """Every setting by its variable name, as text (the names operators set)."""
    named = {}
    for group, prefix in ((settings, "MASKING_"), *((getattr(settings, g), p) for g, p in _NESTED.items())):
        for f in fields(group):
            if f.name not in _NESTED:
                named[prefix + f.name.upper()] = str(getattr(group, f.name))
    return named


def _load(cls, env: Mapping[str, str], prefix: str, skip: frozenset | set = frozenset()):
    values = {}
    for f in fields(cls):
        if f.name in skip:
            continue
        raw = env.get(prefix + f.name.upper())
        if raw is None or raw == "":
            continue
        values[f.name] = _convert(prefix + f.name.upper(), raw, f.type)
    return cls(**values)


def _convert(name: str, raw: str, kind: str):
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if kind == "Path":
            return Path(raw)
        return raw
    except ValueError:
        raise ConfigError(f"{name} must be a {kind}, got {raw!r}") from None
