"""Secrets for `masking run`: random ones, generated on first start and kept.

An all-in-one stack renders Asterisk's ARI and AMI accounts and runs the
bridge and the FastAGI fallback itself, so it can choose their secrets:
whichever secret setting is empty or a published default is replaced by a
random value kept in `<state_dir>/secrets.env` (0600), the same at every
start. Values set in the environment that are strong are used as they are.
"""
from __future__ import annotations

import secrets
from dataclasses import replace
from pathlib import Path

from bridge.config import Settings, weak_secrets
from bridge.files import write_private

FIELDS = {"MASKING_ARI_PASSWORD": "ari_password", "MASKING_AMI_PASSWORD": "ami_password",
          "MASKING_WEBHOOK_SECRET": "webhook_secret", "MASKING_AGI_SECRET": "agi_secret"}


def secrets_file(settings: Settings) -> Path:
    return settings.state_dir / "secrets.env"


def with_generated_secrets(settings: Settings) -> tuple[Settings, list[str]]:
    """`settings` with every weak secret replaced by the kept (or a new) random
    one; returns them and the names generated just now."""
    weak = weak_secrets(settings)
    if not weak:
        return settings, []
    path = secrets_file(settings)
    kept = _read(path)
    generated = [name for name in weak if name not in kept]
    for name in generated:
        kept[name] = secrets.token_urlsafe(24)
    if generated:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, "".join(f"{name}={value}\n" for name, value in sorted(kept.items())))
    return replace(settings, **{FIELDS[name]: kept[name] for name in weak}), generated


def secret_env(settings: Settings) -> dict[str, str]:
    """The secrets as variables, for processes started with the environment
    (`masking run --nodes`: each node's bridge is a `masking serve`)."""
    return {name: getattr(settings, field) for name, field in FIELDS.items()}


def _read(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return {}
    pairs = (line.split("=", 1) for line in lines if "=" in line)
    return {name: value for name, value in pairs if name in FIELDS and value}
