"""The purpose registry: what each purpose a session may name promises (PDPA s18, s20).

A session names why its numbers were collected; the registry
(`MASKING_PURPOSE_REGISTRY`, a TOML file; the project ships
`dialplan/purposes.toml`) says what that purpose allows:

```toml
[purposes.delivery_order]
description = "A rider and a customer reach each other about one order"
records = true                      # calls may be recorded (never otherwise)
marketing = false                   # true: sessions must carry Do Not Call evidence
empty_opt_out_allowed = false       # true: MASKING_NOTICE_OPT_OUT_DIGIT may be empty
retention = { sessions_days = 90, recordings_days = 30 }
webhooks = { hosts = ["hooks.example.com"], countries = ["SG"] }
notice = { text = "This call may be recorded...", sha256 = "<sha256 of the notice audio>" }
```

A session naming a purpose not registered is refused (`unregistered_purpose`),
so is a marketing session without its Do Not Call check
(`dnc_evidence_required`), a recording asked for under a purpose that does
not record (`purpose_does_not_record`), and a webhook to a host the purpose
does not list (`webhook_destination_not_allowed`). Pure: the file is read
once per path; the API, the CLI and the call flow ask the same functions.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from bridge.config import PURPOSE_CODE, Settings

# A wheel carries dialplan/ as bridge/stack/dialplan/ (setup.py); a checkout has it at the top.
_PACKAGED = Path(__file__).resolve().parents[1] / "stack" / "dialplan" / "purposes.toml"
SHIPPED = _PACKAGED if _PACKAGED.is_file() else Path(__file__).resolve().parents[2] / "dialplan" / "purposes.toml"
SHA256 = re.compile(r"[0-9a-f]{64}")
COUNTRY = re.compile(r"[A-Z]{2}")
KNOWN_KEYS = {"description", "records", "marketing", "empty_opt_out_allowed", "retention", "webhooks", "notice"}


class RegistryError(ValueError):
    """The registry file is missing or says something it may not."""


@dataclass(frozen=True)
class PurposeNotice:
    text: str  # what the notice says, as it is recorded
    sha256: str  # of the audio that says it: goes into each call row that played it


@dataclass(frozen=True)
class Purpose:
    code: str
    description: str
    notice: PurposeNotice
    records: bool = False
    marketing: bool = False
    empty_opt_out_allowed: bool = False
    sessions_days: int | None = None  # retention: None keeps the global setting
    recordings_days: int | None = None
    webhook_hosts: tuple[str, ...] = ()
    webhook_countries: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"code": self.code, "description": self.description, "records": self.records,
                "marketing": self.marketing, "empty_opt_out_allowed": self.empty_opt_out_allowed,
                "retention": {"sessions_days": self.sessions_days, "recordings_days": self.recordings_days},
                "webhooks": {"hosts": list(self.webhook_hosts), "countries": list(self.webhook_countries)},
                "notice": {"text": self.notice.text, "sha256": self.notice.sha256}}


@dataclass(frozen=True)
class Registry:
    path: Path
    purposes: dict[str, Purpose]

    def get(self, code: str | None) -> Purpose | None:
        return self.purposes.get(code) if isinstance(code, str) else None


@dataclass(frozen=True)
class Refusal:
    """Why a session may not be made as asked: a stable code, the field, a message."""

    code: str
    field: str
    message: str


def registry_path(settings: Settings) -> Path:
    return settings.purpose_registry if str(settings.purpose_registry) not in ("", ".") else SHIPPED


_loaded: dict[tuple[Path, float], Registry] = {}


def registry_for(settings: Settings) -> Registry:
    """The registry the settings name, read once (again only if the file changed)."""
    path = registry_path(settings)
    try:
        stamp = path.stat().st_mtime
    except OSError:
        raise RegistryError(f"MASKING_PURPOSE_REGISTRY: cannot read {path}") from None
    if (path, stamp) not in _loaded:
        _loaded[(path, stamp)] = load_registry(path)
    return _loaded[(path, stamp)]


def load_registry(path: Path) -> Registry:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"MASKING_PURPOSE_REGISTRY: cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"MASKING_PURPOSE_REGISTRY: {path} is not TOML: {exc}") from None
    table = data.get("purposes")
    if not isinstance(table, dict) or not table:
        raise RegistryError(f"{path}: no [purposes.<code>] table")
    return Registry(path, {code: parse_purpose(code, entry) for code, entry in table.items()})


def parse_purpose(code: str, entry: object) -> Purpose:
    where = f"purpose {code!r}"
    if not PURPOSE_CODE.fullmatch(code):
        raise RegistryError(f"{where}: a code is like delivery_order")
    if not isinstance(entry, dict):
        raise RegistryError(f"{where}: a table of keys")
    if set(entry) - KNOWN_KEYS:
        raise RegistryError(f"{where}: unknown keys {sorted(set(entry) - KNOWN_KEYS)}")
    flags = {name: entry.get(name, False) for name in ("records", "marketing", "empty_opt_out_allowed")}
    if not all(isinstance(v, bool) for v in flags.values()):
        raise RegistryError(f"{where}: records, marketing and empty_opt_out_allowed are true or false")
    notice = entry.get("notice")
    if not isinstance(notice, dict) or not isinstance(notice.get("text"), str) or not notice["text"].strip() \
            or not SHA256.fullmatch(str(notice.get("sha256", ""))):
        raise RegistryError(f"{where}: notice needs its text and the sha256 (64 hex digits) of its audio")
    retention = entry.get("retention", {})
    days = {name: retention.get(name) for name in ("sessions_days", "recordings_days")} \
        if isinstance(retention, dict) else {}
    if not isinstance(retention, dict) or any(d is not None and (not isinstance(d, int) or isinstance(d, bool)
                                                                 or not 0 < d <= 3660) for d in days.values()):
        raise RegistryError(f"{where}: retention days are whole numbers from 1 to 3660")
    webhooks = entry.get("webhooks", {})
    hosts, countries = (webhooks.get("hosts", []), webhooks.get("countries", [])) \
        if isinstance(webhooks, dict) else (None, None)
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts) \
            or not isinstance(countries, list) or not all(isinstance(c, str) and COUNTRY.fullmatch(c)
                                                          for c in countries):
        raise RegistryError(f"{where}: webhooks are hosts (names) and countries (ISO codes like SG)")
    return Purpose(code, str(entry.get("description", "")), PurposeNotice(notice["text"].strip(), notice["sha256"]),
                   **flags, **days, webhook_hosts=tuple(h.lower() for h in hosts), webhook_countries=tuple(countries))


def check_opt_out_digit(registry: Registry, digit: str) -> None:
    """An empty opt-out digit leaves nobody a way to refuse a recording: only
    a registry whose every recording purpose allows that may run without one."""
    if digit:
        return
    strict = sorted(p.code for p in registry.purposes.values() if p.records and not p.empty_opt_out_allowed)
    if strict:
        raise RegistryError("MASKING_NOTICE_OPT_OUT_DIGIT is empty, but these recording purposes require an opt-out"
                            f" digit: {', '.join(strict)}")


def refusal_for_session(registry: Registry, code: object, record: bool | None, webhook_url: str | None,
                        dnc_checked_at: datetime | None, dnc_reference: str | None) -> Refusal | None:
    """Whether a session may name `code` as asked (`record` None: not asked either way)."""
    purpose = registry.get(code) if isinstance(code, str) else None
    if purpose is None:
        known = ", ".join(sorted(registry.purposes))
        return Refusal("unregistered_purpose", "purpose", f"purpose must be a registered purpose: one of {known}")
    if record and not purpose.records:
        return Refusal("purpose_does_not_record", "record", f"purpose {purpose.code} does not allow recording")
    if purpose.marketing and (dnc_checked_at is None or not dnc_reference):
        return Refusal("dnc_evidence_required", "dnc_reference",
                       f"purpose {purpose.code} carries marketing: give dnc_checked_at and dnc_reference"
                       " (the Do Not Call register check)")
    if (dnc_checked_at is None) != (not dnc_reference):
        return Refusal("invalid_field", "dnc_reference", "dnc_checked_at and dnc_reference go together")
    if webhook_url and (urlsplit(webhook_url).hostname or "").lower() not in purpose.webhook_hosts:
        return Refusal("webhook_destination_not_allowed", "webhook_url",
                       f"purpose {purpose.code} allows webhooks only to: {', '.join(purpose.webhook_hosts) or 'none'}")
    return None


def records(registry: Registry, code: str, asked: bool) -> bool:
    """Whether a session records: asked for, and its purpose allows it."""
    purpose = registry.get(code)
    return bool(asked and purpose is not None and purpose.records)


def declared_country(registry: Registry | None, code: str | None) -> str | None:
    """The country a purpose declares its webhooks go to, when it declares exactly
    one (the ledger's answer for a host MASKING_DESTINATION_COUNTRIES does not map)."""
    purpose = registry.get(code) if registry is not None else None
    return purpose.webhook_countries[0] if purpose is not None and len(purpose.webhook_countries) == 1 else None


def notice_sha256(registry: Registry, code: str | None) -> str | None:
    purpose = registry.get(code)
    return purpose.notice.sha256 if purpose else None
