"""Settings from MASKING_* variables, validated once, errors naming the variable."""
from pathlib import Path

import pytest

from bridge.config import ConfigError, Prompts, Settings


def test_empty_environment_gives_the_defaults():
    s = Settings.from_env({})
    assert s.database_url == "postgresql://127.0.0.1:5432/masking"
    assert s.ari_port == 8088
    assert s.asterisk.sip_port == 5060
    assert (s.asterisk.rtp_start, s.asterisk.rtp_end) == (10000, 10999)
    assert s.record_by_default is True
    assert s.recording_dir == Path(".run/recordings")
    assert s.default_region == "SG"
    assert s.prompts == Prompts()


def test_empty_values_keep_the_defaults():
    assert Settings.from_env({"MASKING_SIP_PORT": "", "MASKING_ARI_USER": ""}) == Settings.from_env({})


def test_int_override_reaches_the_asterisk_settings():
    assert Settings.from_env({"MASKING_SIP_PORT": "5080"}).asterisk.sip_port == 5080


@pytest.mark.parametrize(("raw", "expected"), [("0", False), ("false", False), ("NO", False), ("off", False),
                                               ("1", True), ("True", True), ("yes", True), (" on ", True)])
def test_bool_override_accepts_common_spellings(raw, expected):
    assert Settings.from_env({"MASKING_RECORD_BY_DEFAULT": raw}).record_by_default is expected


def test_path_override_becomes_a_path():
    s = Settings.from_env({"MASKING_RECORDING_DIR": "/srv/recordings"})
    assert s.recording_dir == Path("/srv/recordings")


def test_float_and_string_overrides():
    s = Settings.from_env({"MASKING_DB_TIMEOUT": "0.5", "MASKING_DEFAULT_REGION": "MY"})
    assert (s.db_timeout, s.default_region) == (0.5, "MY")


def test_prompt_override_uses_its_own_prefix():
    assert Settings.from_env({"MASKING_PROMPT_BUSY": "beep"}).prompts.busy == "beep"


def test_ari_url_is_built_from_host_and_port():
    assert Settings.from_env({"MASKING_ARI_PORT": "9000"}).ari_url == "http://127.0.0.1:9000"


@pytest.mark.parametrize(("var", "value"), [("MASKING_SIP_PORT", "70000"), ("MASKING_HTTP_PORT", "0"),
                                            ("MASKING_ARI_PORT", "-1")])
def test_out_of_range_port_is_an_error_naming_the_variable(var, value):
    with pytest.raises(ConfigError, match=var):
        Settings.from_env({var: value})


@pytest.mark.parametrize("start", ["10999", "12000"])
def test_rtp_range_must_not_be_empty_or_reversed(start):
    with pytest.raises(ConfigError, match="MASKING_RTP_END"):
        Settings.from_env({"MASKING_RTP_START": start})


def test_database_url_must_be_postgresql():
    with pytest.raises(ConfigError, match="MASKING_DATABASE_URL"):
        Settings.from_env({"MASKING_DATABASE_URL": "mysql://localhost/masking"})


def test_postgres_scheme_alias_is_accepted():
    assert Settings.from_env({"MASKING_DATABASE_URL": "postgres://h/db"}).database_url == "postgres://h/db"


@pytest.mark.parametrize(("var", "value"), [("MASKING_ARI_PORT", "eighty"), ("MASKING_RTP_START", "10k"),
                                            ("MASKING_DB_TIMEOUT", "fast"), ("MASKING_RECORD_BY_DEFAULT", "maybe")])
def test_malformed_value_is_an_error_naming_the_variable(var, value):
    with pytest.raises(ConfigError, match=var):
        Settings.from_env({var: value})


def test_non_positive_timeout_is_an_error():
    with pytest.raises(ConfigError, match="MASKING_DIAL_TIMEOUT"):
        Settings.from_env({"MASKING_DIAL_TIMEOUT": "0"})


def test_unknown_recording_format_is_an_error():
    with pytest.raises(ConfigError, match="MASKING_RECORDING_FORMAT"):
        Settings.from_env({"MASKING_RECORDING_FORMAT": "mp3"})


def test_unknown_recording_tap_is_an_error_and_mixmonitor_is_the_default():
    with pytest.raises(ConfigError, match="MASKING_RECORDING_TAP"):
        Settings.from_env({"MASKING_RECORDING_TAP": "bridge"})
    assert Settings.from_env({}).recording_tap == "mixmonitor"


def test_without_an_admin_url_migrations_use_the_one_database_url():
    settings = Settings.from_env({"MASKING_DATABASE_URL": "postgresql://masking_app@db/masking"})
    assert settings.migration_url == "postgresql://masking_app@db/masking"
    both = Settings.from_env({"MASKING_DATABASE_URL": "postgresql://masking_app@db/masking",
                              "MASKING_DATABASE_ADMIN_URL": "postgresql://postgres@db/masking"})
    assert (both.migration_url, both.database_url) == ("postgresql://postgres@db/masking",
                                                      "postgresql://masking_app@db/masking")


def test_an_admin_url_must_be_postgresql():
    with pytest.raises(ConfigError, match="MASKING_DATABASE_ADMIN_URL"):
        Settings.from_env({"MASKING_DATABASE_URL": "postgresql://app@db/masking",
                           "MASKING_DATABASE_ADMIN_URL": "mysql://root@db/masking"})


def test_audit_checkpoints_go_under_the_state_dir_unless_a_file_is_named():
    assert Settings.from_env({"MASKING_STATE_DIR": "/var/lib/masking"}).audit_checkpoint_path == \
        Path("/var/lib/masking/audit/checkpoints.jsonl")
    assert Settings.from_env({"MASKING_AUDIT_CHECKPOINT_FILE": "/srv/cp.jsonl"}).audit_checkpoint_path == \
        Path("/srv/cp.jsonl")


@pytest.mark.parametrize(("var", "value"), [("MASKING_AUDIT_CHECKPOINT_SECONDS", "-1"),
                                            ("MASKING_AUDIT_CHECKPOINT_SECONDS", "90000"),
                                            ("MASKING_AUDIT_CHECKPOINT_SYSLOG", "loghost"),
                                            ("MASKING_AUDIT_CHECKPOINT_SYSLOG", "loghost:0"),
                                            ("MASKING_AUDIT_CHECKPOINT_URL", "ftp://x/cp")])
def test_bad_audit_checkpoint_settings_are_errors_naming_the_variable(var, value):
    with pytest.raises(ConfigError, match=var):
        Settings.from_env({var: value})


def test_the_admin_url_is_a_secret_never_recorded():
    from bridge.config import SECRET_SETTINGS, UNDISCLOSED_SETTINGS

    assert "MASKING_DATABASE_ADMIN_URL" in SECRET_SETTINGS
    assert "MASKING_AUDIT_CHECKPOINT_URL" in UNDISCLOSED_SETTINGS


def test_the_event_loop_is_uvloop_unless_asyncio_is_asked_for():
    import asyncio

    import uvloop

    from bridge.cli import loop_factory

    assert Settings.from_env({}).event_loop == "uvloop"
    assert loop_factory("uvloop") is uvloop.new_event_loop and loop_factory("asyncio") is None
    with asyncio.Runner(loop_factory=loop_factory("uvloop")) as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop)
    with pytest.raises(ConfigError, match="MASKING_EVENT_LOOP"):
        Settings.from_env({"MASKING_EVENT_LOOP": "trio"})


def test_the_recording_spool_is_shared_only_when_named():
    assert Settings.from_env({}).shared_recording_spool is None
    assert Settings.from_env({"MASKING_ASTERISK_RECORDING_DIR": ""}).shared_recording_spool is None
    named = Settings.from_env({"MASKING_ASTERISK_RECORDING_DIR": "/var/spool/asterisk/recording"})
    assert named.shared_recording_spool == Path("/var/spool/asterisk/recording")
