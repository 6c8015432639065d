"""The one error settings raise: the message names the variable, never a secret's value."""
from __future__ import annotations


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""
