"""The service's settings from the environment (`MASKING_*`), validated once
at start. Every port and path is a setting so that two stacks can run side by
side on one machine (the integration tests do exactly that); `.env.example`
lists them all."""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Mapping

import phonenumbers

from bridge.config.errors import ConfigError
from bridge.config.groups import AsteriskSettings, DialedRule, EdgeSettings, Notice, Prompts, parse_dialed_rules
from bridge.config.values import (ENTITY_ID, PURPOSE_CODE, load_group, parse_countries, parse_days, parse_networks,
                                  path_text)
from bridge.outbound.policy import OutboundPolicy, url_problem


@dataclass(frozen=True)
class Settings:
    # The service connects as an application role with only the DML it needs;
    # `masking db upgrade` connects as the admin URL's role (owner of the
    # schema), applies migrations and grants the application role its rights.
    # No admin URL: one role does both (docs/security.md).
    database_url: str = "postgresql://127.0.0.1:5432/masking"
    database_admin_url: str = ""
    db_timeout: float = 2.0
    # Connections for everything else (call-row writes, the API, the sweeps),
    # and a separate few kept for routing a call that is arriving: a lookup
    # never queues behind row writes (docs/operations.md).
    db_pool_size: int = 10
    db_lookup_pool_size: int = 4
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
    # Addresses (or CIDR networks) the fallback accepts connections from: the Asterisk hosts.
    agi_allowed_sources: str = "127.0.0.1,::1"
    outbound_endpoint: str = "carrier-out"
    dial_timeout: int = 30
    recording_dir: Path = Path(".run/recordings")
    recording_format: str = "wav"
    # How a bridged call is recorded (bridge/calls/recording.py): `mixmonitor`
    # (over AMI, on the caller's channel; WAV only) or `snoop` (over ARI).
    recording_tap: str = "mixmonitor"
    # Asterisk's recording spool (its `astspooldir/recording`) as this host
    # sees it, where the service shares Asterisk's disk: a finished recording
    # is sealed straight from there and removed, instead of downloaded over
    # ARI and deleted: two requests and a plaintext copy fewer per recorded
    # call. Empty: over ARI. `masking run` sets it for the Asterisk it runs.
    asterisk_recording_dir: Path = Path("")
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
    # Wrong PINs across calls (bridge/sessions/pin_guard.py): a caller past
    # `pin_caller_failures` in `pin_failure_window_seconds` may key no PIN for
    # `pin_lockout_seconds`, doubled at each lockout; a number past
    # `pin_number_failures` takes PINs only from its sessions' participants.
    pin_caller_failures: int = 6
    pin_number_failures: int = 60
    pin_failure_window_seconds: float = 3600.0
    pin_lockout_seconds: float = 60.0
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
    # The purpose registry (TOML, bridge/privacy/purposes.py); empty: the shipped dialplan/purposes.toml.
    purpose_registry: Path = Path("")
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
    # An explicit development mode, never in production: the service starts even
    # with the secrets that ship in this repository (or empty ones), and webhooks
    # and the out-of-session URL may use plain http.
    development: bool = False
    # The shared secret the dialplan passes to the FastAGI fallback with each request.
    agi_secret: str = ""
    # Outbound HTTP (bridge/outbound/): destinations on loopback, private,
    # link-local or metadata addresses are refused unless listed here (CIDRs
    # or host names, comma-separated): receivers on the premises.
    outbound_allow: str = ""
    # Where webhook and out-of-session hosts are, for the disclosure ledger
    # (host=CC or *.domain=CC, comma-separated); a host not listed: "unknown".
    destination_countries: str = ""
    # Requests per second each API key may make (sustained), and the burst
    # above it; per process. 0: no limit.
    api_rate: float = 20.0
    api_burst: int = 100
    # Seconds an uploaded wait audio may take to convert (in a child process).
    wait_audio_convert_seconds: float = 20.0
    default_region: str = "SG"
    # How each inbound trunk delivers the dialed number (see DialedRule); empty:
    # every trunk in the Request-URI, national numbers in `default_region`.
    dialed_number_rules: str = ""
    log_level: str = "info"
    # uvloop (the default) or asyncio: the event loop every command runs on (bridge/cli/__init__.py).
    event_loop: str = "uvloop"
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
    # Recordings a dead process or a failed collection left in Asterisk's spool
    # or half-downloaded: sealed or removed at start and then this often (0: at start only).
    recording_sweep_seconds: float = 600.0
    # Signed checkpoints of the audit trail's head, written outside the database
    # every `audit_checkpoint_seconds` (0: only `masking audit checkpoint`) to a
    # file (empty: `<state_dir>/audit/checkpoints.jsonl`), and optionally to
    # syslog (`/dev/log` or `host:port`, UDP) and a URL (POSTed as JSON).
    audit_checkpoint_seconds: float = 300.0
    audit_checkpoint_file: Path = Path("")
    audit_checkpoint_syslog: str = ""
    audit_checkpoint_url: str = ""
    # The web console (/console): how long a sign-in lasts before the key must be given again.
    console_session_minutes: int = 480
    asterisk: AsteriskSettings = field(default_factory=AsteriskSettings)
    prompts: Prompts = field(default_factory=Prompts)
    notice: Notice = field(default_factory=Notice)
    edge: EdgeSettings = field(default_factory=EdgeSettings)

    @property
    def allowed_purposes(self) -> frozenset[str]:
        return frozenset(p.strip() for p in self.purposes.split(",") if p.strip())

    def dialed_rule(self, trunk: str) -> DialedRule:
        """The rule for calls arriving on `trunk` (validated at start)."""
        rules = parse_dialed_rules(self.dialed_number_rules)
        return rules.get(trunk) or rules.get("*") or DialedRule()

    @property
    def outbound_policy(self) -> OutboundPolicy:
        """Where webhooks and the out-of-session question may go (bridge/outbound/policy.py)."""
        return OutboundPolicy.parse(self.outbound_allow, self.development)

    @property
    def destination_country_map(self) -> dict[str, str]:
        """Country by destination host (bridge/privacy/ledger.py)."""
        return parse_countries(self.destination_countries)

    @property
    def keys_path(self) -> Path:
        return self.keys_file if str(self.keys_file) not in ("", ".") else self.state_dir / "keys.json"

    @property
    def edge_drained_path(self) -> Path:
        """Where `masking edge drain` records drained nodes for the edge's next start."""
        drained = self.edge.drained_file
        return drained if str(drained) not in ("", ".") else self.state_dir / "edge-drained"

    @property
    def shared_recording_spool(self) -> Path | None:
        """Asterisk's recording spool on this host's disk, if it is shared (see the setting)."""
        spool = self.asterisk_recording_dir
        return spool if str(spool) not in ("", ".") else None

    @property
    def migration_url(self) -> str:
        """The URL `masking db upgrade` connects with: the admin's, or the only one."""
        return self.database_admin_url or self.database_url

    @property
    def audit_checkpoint_path(self) -> Path:
        if str(self.audit_checkpoint_file) not in ("", "."):
            return self.audit_checkpoint_file
        return self.state_dir / "audit" / "checkpoints.jsonl"

    @property
    def ari_url(self) -> str:
        return f"http://{self.ari_host}:{self.ari_port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Read `MASKING_*` variables; anything unset keeps its default."""
        env = os.environ if env is None else env
        asterisk = load_group(AsteriskSettings, env, "MASKING_")
        prompts = load_group(Prompts, env, "MASKING_PROMPT_")
        notice = load_group(Notice, env, "MASKING_NOTICE_")
        if notice.opt_out_digit.strip().lower() == "none":  # an empty value keeps the default: no opt-out is said so
            notice = replace(notice, opt_out_digit="")
        edge = load_group(EdgeSettings, env, "MASKING_EDGE_")
        settings = load_group(cls, env, "MASKING_", skip={"asterisk", "prompts", "notice", "edge"})
        settings = replace(settings, asterisk=asterisk, prompts=prompts, notice=notice, edge=edge)
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
            "MASKING_EDGE_NODE_SIP_PORT": self.edge.node_sip_port,
        }
        for name, port in ports.items():
            if not 0 < port < 65536:
                raise ConfigError(f"{name} must be a port number (1-65535), got {port}")
        if self.asterisk.rtp_end <= self.asterisk.rtp_start:
            raise ConfigError("MASKING_RTP_END must be above MASKING_RTP_START")
        if not self.database_url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("MASKING_DATABASE_URL must be a postgresql:// URL")
        if self.database_admin_url and not self.database_admin_url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("MASKING_DATABASE_ADMIN_URL must be a postgresql:// URL")
        if self.dial_timeout <= 0 or self.db_timeout <= 0:
            raise ConfigError("MASKING_DIAL_TIMEOUT and MASKING_DB_TIMEOUT must be positive")
        if self.db_pool_size < 1 or self.db_lookup_pool_size < 1:
            raise ConfigError("MASKING_DB_POOL_SIZE and MASKING_DB_LOOKUP_POOL_SIZE must be at least 1")
        if self.sticky not in {"none", "prefer_sticky", "avoid_sticky"}:
            raise ConfigError("MASKING_STICKY must be one of none, prefer_sticky, avoid_sticky")
        self._validate_outbound()
        bad = [p for p in self.allowed_purposes if not PURPOSE_CODE.fullmatch(p)]
        if bad or not PURPOSE_CODE.fullmatch(self.out_of_session_purpose):
            raise ConfigError("MASKING_PURPOSES and MASKING_OUT_OF_SESSION_PURPOSE must be codes like delivery_order")
        if self.notice.opt_out_digit not in {"", *"0123456789*#"} or len(self.notice.opt_out_digit) > 1:
            raise ConfigError("MASKING_NOTICE_OPT_OUT_DIGIT must be one DTMF digit (0-9, *, #) or empty")
        if not 0 < self.subject_request_days <= 366:
            raise ConfigError("MASKING_SUBJECT_REQUEST_DAYS must be between 1 and 366")
        if not 3 <= self.pin_length <= 8:
            raise ConfigError("MASKING_PIN_LENGTH must be between 3 and 8 digits")
        if min(self.pin_caller_failures, self.pin_number_failures) < 1 or self.pin_failure_window_seconds <= 0 \
                or self.pin_lockout_seconds <= 0:
            raise ConfigError("MASKING_PIN_CALLER_FAILURES, _NUMBER_FAILURES, _FAILURE_WINDOW_SECONDS and"
                              " MASKING_PIN_LOCKOUT_SECONDS must be positive")
        if self.pin_attempts < 1 or self.pin_digit_timeout <= 0 or self.pin_quarantine_seconds < 0:
            raise ConfigError("MASKING_PIN_ATTEMPTS and MASKING_PIN_DIGIT_TIMEOUT must be positive,"
                              " MASKING_PIN_QUARANTINE_SECONDS not negative")
        if self.default_region not in phonenumbers.SUPPORTED_REGIONS:
            raise ConfigError("MASKING_DEFAULT_REGION must be a country code such as SG")
        try:
            parse_dialed_rules(self.dialed_number_rules)
        except ValueError as exc:
            raise ConfigError(f"MASKING_DIALED_NUMBER_RULES: {exc}") from None
        if self.recording_format not in {"wav", "gsm", "sln"}:
            raise ConfigError("MASKING_RECORDING_FORMAT must be one of wav, gsm, sln")
        if self.event_loop not in {"uvloop", "asyncio"}:
            raise ConfigError("MASKING_EVENT_LOOP must be uvloop or asyncio")
        if self.recording_tap not in {"mixmonitor", "snoop"}:
            raise ConfigError("MASKING_RECORDING_TAP must be mixmonitor or snoop")
        if not re.fullmatch(r"[A-Za-z0-9._~-]*", self.agi_secret):
            raise ConfigError("MASKING_AGI_SECRET may hold only letters, digits and . _ ~ - (it travels in a URL)")
        try:
            parse_networks(self.agi_allowed_sources)
        except ValueError:
            raise ConfigError("MASKING_AGI_ALLOWED_SOURCES must list addresses or networks (CIDR), comma-separated")
        self._validate_retention()
        self._validate_edge()
        self._validate_checkpoints()
        self._validate_carrier()

    def _validate_edge(self) -> None:
        edge = self.edge
        if not 0 <= edge.rpc_port < 65536:
            raise ConfigError(f"MASKING_EDGE_RPC_PORT must be a port number or 0 (no edge), got {edge.rpc_port}")
        if edge.probe_interval < 1 or edge.probe_threshold < 1 or not 100 <= edge.setup_timeout_ms <= 60000:
            raise ConfigError("MASKING_EDGE_PROBE_INTERVAL and _PROBE_THRESHOLD must be at least 1,"
                              " MASKING_EDGE_SETUP_TIMEOUT_MS between 100 and 60000")
        if self.asterisk.entity_id and not ENTITY_ID.fullmatch(self.asterisk.entity_id):
            raise ConfigError("MASKING_ENTITY_ID must look like a MAC address (02:00:5e:10:00:01)")

    def _validate_checkpoints(self) -> None:
        if not 0 <= self.audit_checkpoint_seconds <= 86400:
            raise ConfigError("MASKING_AUDIT_CHECKPOINT_SECONDS must be between 0 (off) and 86400")
        syslog = self.audit_checkpoint_syslog
        host, _, port = syslog.rpartition(":")
        if syslog and not syslog.startswith("/") and not (host and port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError("MASKING_AUDIT_CHECKPOINT_SYSLOG must be a socket path (/dev/log) or host:port")

    def _validate_outbound(self) -> None:
        try:
            policy = self.outbound_policy
        except ValueError as exc:
            raise ConfigError(f"MASKING_OUTBOUND_ALLOW: {exc}") from None
        try:
            parse_countries(self.destination_countries)
        except ValueError as exc:
            raise ConfigError(f"MASKING_DESTINATION_COUNTRIES: {exc}") from None
        for name, url in (("MASKING_WEBHOOK_URL", self.webhook_url),
                          ("MASKING_OUT_OF_SESSION_URL", self.out_of_session_url),
                          ("MASKING_AUDIT_CHECKPOINT_URL", self.audit_checkpoint_url)):
            problem = url and url_problem(url, policy)
            if problem:  # never the URL itself: it may carry a token
                raise ConfigError(f"{name} {problem}")
        if self.api_rate < 0 or self.api_burst < 1:
            raise ConfigError("MASKING_API_RATE must not be negative (0: no limit), MASKING_API_BURST at least 1")
        if not 0 < self.wait_audio_convert_seconds <= 600:
            raise ConfigError("MASKING_WAIT_AUDIO_CONVERT_SECONDS must be between 0 and 600")
        if not 1 <= self.console_session_minutes <= 10080:
            raise ConfigError("MASKING_CONSOLE_SESSION_MINUTES must be between 1 and 10080 (a week)")

    def _validate_carrier(self) -> None:
        ast = self.asterisk
        if not 0 <= ast.sip_tls_port < 65536:
            raise ConfigError(f"MASKING_SIP_TLS_PORT must be a port number or 0 (no TLS), got {ast.sip_tls_port}")
        if ast.sip_tls_port and "" in (path_text(ast.tls_cert_file), path_text(ast.tls_key_file)):
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


_NESTED = {"asterisk": "MASKING_", "prompts": "MASKING_PROMPT_", "notice": "MASKING_NOTICE_",
           "edge": "MASKING_EDGE_"}  # as `from_env` reads them



def settings_by_name(settings: Settings) -> dict[str, str]:
    """Every setting by its variable name, as text (the names operators set)."""
    named = {}
    for group, prefix in ((settings, "MASKING_"), *((getattr(settings, g), p) for g, p in _NESTED.items())):
        for f in fields(group):
            if f.name not in _NESTED:
                named[prefix + f.name.upper()] = str(getattr(group, f.name))
    return named
