"""Settings from the environment, validated once at start.

`settings.py` holds the service's settings and their checks, `groups.py` the
groups read with their own prefix (prompts, the notice, Asterisk, the edge,
dialed-number rules), `secrets.py` which settings are secrets and the rule
that a service never runs with a published one, `values.py` the syntaxes they
share. Everything is importable from here.
"""
from bridge.config.errors import ConfigError
from bridge.config.groups import (
    DIALED_RULE_KEYS, AsteriskSettings, DialedRule, EdgeSettings, Notice, Prompts, parse_dialed_rules,
)
from bridge.config.secrets import (
    MIN_SECRET_LENGTH, PUBLISHED_SECRETS, SECRET_SETTINGS, STRONG_SECRETS, UNDISCLOSED_SETTINGS,
    require_strong_secrets, weak_secrets,
)
from bridge.config.settings import Settings, settings_by_name
from bridge.config.values import ENTITY_ID, PURPOSE_CODE, parse_days, parse_networks

__all__ = [
    "DIALED_RULE_KEYS", "ENTITY_ID", "MIN_SECRET_LENGTH", "PUBLISHED_SECRETS", "PURPOSE_CODE", "SECRET_SETTINGS",
    "STRONG_SECRETS", "UNDISCLOSED_SETTINGS", "AsteriskSettings", "ConfigError", "DialedRule", "EdgeSettings",
    "Notice", "Prompts", "Settings", "parse_days", "parse_dialed_rules", "parse_networks", "require_strong_secrets",
    "settings_by_name", "weak_secrets",
]
