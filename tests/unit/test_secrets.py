"""Secrets anyone can read in this repository are no secrets: the service
refuses them outside development, and `masking run` replaces them with random
ones it keeps (0600)."""
from __future__ import annotations

import stat

import pytest

from bridge.config import ConfigError, Settings, require_strong_secrets, weak_secrets
from bridge.stack.secrets import secrets_file, with_generated_secrets

STRONG = {"MASKING_ARI_PASSWORD": "a" * 24, "MASKING_AMI_PASSWORD": "b" * 24,
          "MASKING_WEBHOOK_SECRET": "c" * 24, "MASKING_AGI_SECRET": "d" * 24}


def test_the_defaults_and_the_example_files_values_are_all_refused():
    example = Settings.from_env({"MASKING_ARI_PASSWORD": "change-me-ari", "MASKING_AMI_PASSWORD": "change-me-ami"})

    assert weak_secrets(Settings()) == sorted(STRONG)
    assert weak_secrets(example) == sorted(STRONG)
    with pytest.raises(ConfigError) as refused:
        require_strong_secrets(example)
    assert "MASKING_ARI_PASSWORD" in str(refused.value) and "change-me" not in str(refused.value)


def test_a_short_secret_is_refused_and_strong_ones_pass():
    short = Settings.from_env({**STRONG, "MASKING_WEBHOOK_SECRET": "abc123"})

    assert weak_secrets(short) == ["MASKING_WEBHOOK_SECRET"]
    require_strong_secrets(Settings.from_env(STRONG))


def test_development_mode_accepts_the_defaults_explicitly():
    require_strong_secrets(Settings.from_env({"MASKING_DEVELOPMENT": "true"}))


def test_masking_run_generates_random_secrets_once_and_keeps_them_private(tmp_path):
    settings = Settings.from_env({"MASKING_STATE_DIR": str(tmp_path), "MASKING_ARI_PASSWORD": STRONG[
        "MASKING_ARI_PASSWORD"]})

    first, generated = with_generated_secrets(settings)
    again, generated_again = with_generated_secrets(settings)

    assert generated == ["MASKING_AGI_SECRET", "MASKING_AMI_PASSWORD", "MASKING_WEBHOOK_SECRET"]
    assert generated_again == [] and again == first
    assert first.ari_password == STRONG["MASKING_ARI_PASSWORD"]  # a strong one given is used as it is
    assert weak_secrets(first) == [] and len({first.ami_password, first.webhook_secret, first.agi_secret}) == 3
    assert stat.S_IMODE(secrets_file(settings).stat().st_mode) == 0o600
