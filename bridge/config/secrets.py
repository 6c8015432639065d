"""Which settings are secrets, and the rule that a service never runs with one
anyone can know (outside the explicit development mode)."""
from __future__ import annotations

from bridge.config.errors import ConfigError
from bridge.config.settings import Settings, settings_by_name

# Never recorded anywhere, not even as a digest.
SECRET_SETTINGS = frozenset({"MASKING_ARI_PASSWORD", "MASKING_AMI_PASSWORD", "MASKING_WEBHOOK_SECRET",
                             "MASKING_AGI_SECRET", "MASKING_DATABASE_ADMIN_URL"})
# The secrets a service must not run with when they are weak (weak_secrets);
# `masking run` generates these.
STRONG_SECRETS = ("MASKING_AGI_SECRET", "MASKING_AMI_PASSWORD", "MASKING_ARI_PASSWORD", "MASKING_WEBHOOK_SECRET")
# Values of those that are published (defaults, .env.example, docs): whoever
# reads this repository knows them, so they count as no secret at all.
PUBLISHED_SECRETS = frozenset({
    "masking-dev-secret", "masking-dev-webhook-secret", "change-me", "change-me-ari", "change-me-ami",
    "change-me-webhook", "change-me-agi", "secret", "password", "masking",
})
MIN_SECRET_LENGTH = 16
# May carry credentials or personal data (user:password@host, a token in a
# query): audit rows hold a keyed digest of these, never the value.
UNDISCLOSED_SETTINGS = frozenset({"MASKING_DATABASE_URL", "MASKING_WEBHOOK_URL", "MASKING_OUT_OF_SESSION_URL",
                                  "MASKING_AUDIT_CHECKPOINT_URL"})


def weak_secrets(settings: Settings) -> list[str]:
    """The secret settings, by name, that are empty, shorter than
    MIN_SECRET_LENGTH, or a value published in this repository."""
    named = settings_by_name(settings)
    return sorted(name for name in STRONG_SECRETS
                  if named[name] in PUBLISHED_SECRETS or len(named[name]) < MIN_SECRET_LENGTH)


def require_strong_secrets(settings: Settings) -> None:
    """Refuse to run a service with a secret anyone can know, outside the
    explicit development mode. The message names the settings, never a value."""
    weak = weak_secrets(settings)
    if weak and not settings.development:
        raise ConfigError(
            f"{', '.join(weak)}: empty, shorter than {MIN_SECRET_LENGTH} characters or a published default; "
            "set random values (`masking run` generates them), or MASKING_DEVELOPMENT=true on a development machine")
