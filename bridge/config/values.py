"""Reading one setting's text: the syntaxes settings share, and the conversion
of `MASKING_*` variables into a settings group's typed fields."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import fields
from pathlib import Path
from typing import Mapping

from bridge.config.errors import ConfigError

# What a purpose code looks like (MASKING_PURPOSES, sessions' `purpose`).
PURPOSE_CODE = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
ENTITY_ID = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


def parse_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """`10.0.0.5, 10.1.0.0/16, ::1` as networks; ValueError if one is not."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


def parse_countries(raw: str) -> dict[str, str]:
    """`MASKING_DESTINATION_COUNTRIES`: `host=CC` pairs, comma-separated; host a
    name, an address, or `*.domain` for every name under it; CC an ISO 3166
    alpha-2 code. ValueError names the first bad pair.

    >>> parse_countries("hooks.shop.sg=SG, *.example.com=us")
    {'hooks.shop.sg': 'SG', '*.example.com': 'US'}
    """
    mapping: dict[str, str] = {}
    for pair in (p.strip() for p in raw.split(",")):
        if not pair:
            continue
        host, sep, country = (part.strip() for part in pair.partition("="))
        if not sep or not host or len(country) != 2 or not country.isalpha() or not country.isascii():
            raise ValueError(f"{pair!r} is not host=CC (a two-letter country code)")
        mapping[host.lower().rstrip(".")] = country.upper()
    return mapping


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


def path_text(path: Path) -> str:
    """A path setting as set: '' when unset (Path('') reads back as '.')."""
    return "" if str(path) in ("", ".") else str(path)


def load_group(cls, env: Mapping[str, str], prefix: str, skip: frozenset | set = frozenset()):
    values = {}
    for f in fields(cls):
        if f.name in skip:
            continue
        raw = env.get(prefix + f.name.upper())
        if raw is None or raw == "":
            continue
        values[f.name] = convert(prefix + f.name.upper(), raw, f.type)
    return cls(**values)


def convert(name: str, raw: str, kind: str):
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
