"""Trunks from a trunks file into pjsip.conf: what each setting renders to, what
is refused and how the refusal reads, and that no trunk can drop a masking guarantee."""
from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from bridge import metrics
from bridge.ami import registration_states
from bridge.calls.decisions import call_time_limit
from bridge.calls.dial import masked_identity
from bridge.config import ConfigError, Settings
from bridge.stack.asterisk import (
    AsteriskInstall, NO_INCLUDES, cli_failure, copy_local_config, copy_tls_files, render_templates, template_values,
    with_local_includes,
)
from bridge.stack.trunks import TrunkError, load_plan, outbound_presentation, parse_plan
from tests.unit.test_dialplan import DIALPLAN, endpoints

FILE = """
[defaults]
codecs = ["alaw", "g722"]
rtp_timeout = 30

[[inbound]]
name = "singtel"
match = ["203.0.113.0/24", "198.51.100.7", "sip.carrier.example"]

[[inbound]]
name = "starhub"
match = "192.0.2.10"
transport = "tls"
srtp = "optional"
dtmf_mode = "info"

[[outbound]]
name = "carrier-out"
host = "sip.carrier.example"
port = 5061
transport = "tls"
username = "6560000000"
password = "pa55word"
realm = "carrier.example"
register = true
from_user = "6560000000"
session_timers = "always"
session_expires = 600

[[outbound]]
name = "backup"
host = "198.51.100.20"
privacy = "id"
pai = false
"""


def tls_settings(**asterisk) -> Settings:
    base = Settings()
    tls = {"sip_tls_port": 5061, "tls_cert_file": Path("/c.pem"), "tls_key_file": Path("/k.pem"), **asterisk}
    return replace(base, asterisk=replace(base.asterisk, **tls))


def write(tmp_path: Path, text: str) -> Settings:
    (tmp_path / "trunks.toml").write_text(text)
    settings = tls_settings(trunks_file=tmp_path / "trunks.toml")
    return settings


def rendered_pjsip(settings: Settings) -> str:
    values = template_values(settings, AsteriskInstall(root=Path("/"), module_dir="/x"), "/i")
    return render_templates(values, DIALPLAN)["pjsip.conf"]


def sections(pjsip: str, name: str) -> list[str]:
    """The bodies of every section called `name` (endpoint, aor, auth, registration...)."""
    return [part.split("\n\n")[0] for part in pjsip.split(f"\n[{name}]")[1:]]


def test_without_a_trunks_file_the_two_loopback_trunks_render_as_before():
    pjsip = rendered_pjsip(Settings())
    assert "[carrier-in]\ntype = identify\nendpoint = carrier-in\nmatch = 127.0.0.1" in pjsip
    assert "contact = sip:127.0.0.1:5070" in pjsip
    assert set(endpoints(pjsip)) == {"carrier-in", "carrier-out"}
    assert "transport-tls" not in pjsip.replace("no TLS transport", "")


def test_every_inbound_carrier_is_identified_by_each_of_its_addresses(tmp_path):
    pjsip = rendered_pjsip(write(tmp_path, FILE))
    identify = next(body for body in sections(pjsip, "singtel") if "type = identify" in body)
    assert [line for line in identify.splitlines() if line.startswith("match")] == ["match = 203.0.113.0/24", "match = 198.51.100.7",
                                         "match = sip.carrier.example"]
    assert "match = 192.0.2.10" in pjsip


def test_an_outbound_trunk_authenticates_registers_and_speaks_tls(tmp_path):
    pjsip = rendered_pjsip(write(tmp_path, FILE))
    endpoint = endpoints(pjsip)["carrier-out"]
    assert endpoint["outbound_auth"] == "carrier-out-auth" and endpoint["transport"] == "transport-tls"
    assert endpoint["from_user"] == "6560000000" and endpoint["timers"] == "always"
    assert endpoint["timers_sess_expires"] == "600"
    assert "contact = sip:sip.carrier.example:5061;transport=tls" in pjsip
    auth = sections(pjsip, "carrier-out-auth")[0]
    assert "username = 6560000000" in auth and "password = pa55word" in auth and "realm = carrier.example" in auth
    registration = next(body for body in sections(pjsip, "carrier-out") if "type = registration" in body)
    assert "server_uri = sip:sip.carrier.example:5061;transport=tls" in registration
    assert "client_uri = sip:6560000000@sip.carrier.example" in registration
    assert "outbound_auth = carrier-out-auth" in registration


def test_codecs_dtmf_srtp_and_rtp_timeouts_are_per_trunk_with_file_defaults(tmp_path):
    eps = endpoints(rendered_pjsip(write(tmp_path, FILE)))
    assert eps["singtel"]["allow"] == "alaw,g722" and eps["singtel"]["rtp_timeout"] == "30"
    assert eps["starhub"]["dtmf_mode"] == "info"
    assert eps["starhub"]["media_encryption"] == "sdes" and eps["starhub"]["media_encryption_optimistic"] == "yes"
    assert "media_encryption" not in eps["singtel"]


def test_a_trunk_asking_for_privacy_restricts_presentation_but_still_asserts_the_virtual_number(tmp_path):
    settings = write(tmp_path, FILE)
    eps = endpoints(rendered_pjsip(settings))
    assert eps["backup"]["trust_id_outbound"] == "yes" and eps["backup"]["send_pai"] == "no"
    assert eps["carrier-out"]["trust_id_outbound"] == "no" and eps["carrier-out"]["send_pai"] == "yes"
    # The presentation is set on each leg by the bridge once Asterisk made it,
    # never by the endpoint's set_var: that write races chan_pjsip's own
    # channel setup, and Asterisk 22.10 crashed on it under load.
    assert "set_var" not in eps["backup"]
    assert outbound_presentation(replace(settings, outbound_endpoint="backup")) == "prohib"
    assert outbound_presentation(settings) == ""
    assert masked_identity("+6560000001", "prohib")["CONNECTEDLINE(pres)"] == "prohib"
    assert "CONNECTEDLINE(pres)" not in masked_identity("+6560000001", "")


@pytest.mark.parametrize("option", ["send_rpid", "send_diversion", "send_connected_line", "trust_connected_line",
                                    "trust_id_inbound", "direct_media", "allow_transfer"])
def test_no_trunk_from_a_file_can_leak_an_identity_or_bypass_the_media_path(tmp_path, option):
    eps = endpoints(rendered_pjsip(write(tmp_path, FILE)))
    assert eps and all(ep[option] == "no" for ep in eps.values())


def test_the_tls_transport_and_nat_addresses_come_from_the_sites_settings(tmp_path):
    settings = tls_settings(external_signaling_address="203.0.113.5", external_media_address="203.0.113.6",
                            local_nets="10.0.0.0/8, 192.168.0.0/16")
    pjsip = rendered_pjsip(settings)
    tls = pjsip.split("[transport-tls]")[1].split("\n\n")[0]
    assert "protocol = tls" in tls and "bind = 127.0.0.1:5061" in tls and "method = tlsv1_2" in tls
    assert "cert_file = /i/etc/keys/tls.crt" in tls and "priv_key_file = /i/etc/keys/tls.key" in tls
    for transport in (tls, pjsip.split("[transport-udp]")[1].split("\n\n")[0]):
        assert "external_signaling_address = 203.0.113.5" in transport
        assert "external_media_address = 203.0.113.6" in transport
        assert "local_net = 10.0.0.0/8" in transport and "local_net = 192.168.0.0/16" in transport


@pytest.mark.parametrize("text, message", [
    ('[[outbound]]\nname = "x"\nhost = "h"\npasword = "p"\n', "unknown key(s) pasword"),
    ('[[outbound]]\nname = "x"\nhost = "h"\ncodecs = ["g729"]\n', "codecs must be some of alaw, g722, ulaw"),
    ('[[outbound]]\nname = "x"\nhost = "h"\nregister = true\n', "register = true needs username and password"),
    ('[[outbound]]\nname = "x"\nhost = "h"\nusername = "u"\n', "username and password go together"),
    ('[[outbound]]\nname = "x"\nhost = "h"\npassword_env = "NOT_SET_ANYWHERE"\n', "NOT_SET_ANYWHERE, which is not set"),
    ('[[inbound]]\nname = "a"\nmatch = []\n[[outbound]]\nname = "x"\nhost = "h"\n', "match must list"),
    ('[[inbound]]\nname = "a"\nmatch = ["999.1.1.1"]\n[[outbound]]\nname = "x"\nhost = "h"\n', "'999.1.1.1'"),
    ('[[inbound]]\nname = "transport-udp"\nmatch = ["1.2.3.4"]\n', "name must be"),
    ('[[outbound]]\nname = "x"\nhost = "h"\nfrom_domain = "a\\n[evil]"\n', "from_domain must be text on one line"),
    ('[[outbound]]\nname = "x"\nhost = "h"\npassword = "p;x"\nusername = "u"\n', "password must be text"),
    ('[[outbound]]\nname = "x"\nhost = "h"\nport = 70000\n', "port must be a whole number from 1 to 65535"),
    ('[[inbound]]\nname = "a"\nmatch = ["1.2.3.4"]\n', "no [[outbound]] trunk"),
    ('inbound = "x"\n[[outbound]]\nname = "x"\nhost = "h"\n', "[[inbound]]"),
])
def test_a_mistake_in_the_trunks_file_is_refused_with_a_message_that_names_it(text, message):
    with pytest.raises(TrunkError) as refused:
        parse_plan(tomllib.loads(text), Settings(), env={})
    assert message in str(refused.value)


@pytest.mark.parametrize("text, message", [
    ('[[outbound]]\nname = "other"\nhost = "h"\n', "MASKING_OUTBOUND_ENDPOINT=carrier-out names no outbound trunk"),
    ('[[outbound]]\nname = "carrier-out"\nhost = "h"\n[[inbound]]\nname = "carrier-out"\nmatch = "1.2.3.4"\n',
     "used twice"),
    ('[[outbound]]\nname = "carrier-out"\nhost = "h"\nsrtp = "optional"\n', "srtp needs transport"),
])
def test_what_spans_trunks_or_settings_is_checked_too(tmp_path, text, message):
    with pytest.raises(TrunkError, match=message):
        load_plan(write(tmp_path, text), env={})


def test_a_tls_trunk_needs_the_sites_tls_port_and_certificate(tmp_path):
    (tmp_path / "t.toml").write_text('[[outbound]]\nname = "carrier-out"\nhost = "h"\ntransport = "tls"\n')
    settings = replace(Settings(), asterisk=replace(Settings().asterisk, trunks_file=tmp_path / "t.toml"))
    with pytest.raises(TrunkError, match="MASKING_SIP_TLS_PORT, MASKING_TLS_CERT_FILE"):
        load_plan(settings)


def test_an_unreadable_or_malformed_trunks_file_is_named(tmp_path):
    with pytest.raises(TrunkError, match="cannot read"):
        load_plan(replace(Settings(), asterisk=replace(Settings().asterisk, trunks_file=tmp_path / "none.toml")))
    with pytest.raises(TrunkError, match="not valid TOML"):
        load_plan(write(tmp_path, "[[outbound]\n"))


def test_a_password_can_come_from_the_environment_rather_than_the_file(tmp_path):
    settings = write(tmp_path, '[[outbound]]\nname = "carrier-out"\nhost = "h"\nusername = "u"\n'
                               'password_env = "TRUNK_SECRET"\n')
    assert load_plan(settings, env={"TRUNK_SECRET": "from-env"}).outbound[0].password == "from-env"


@pytest.mark.parametrize("env, message", [
    ({"MASKING_LOCAL_NETS": "10.0.0.0/8,not-a-net"}, "MASKING_LOCAL_NETS"),
    ({"MASKING_SIP_TLS_PORT": "70000"}, "MASKING_SIP_TLS_PORT"),
    ({"MASKING_SIP_TLS_PORT": "5061", "MASKING_TLS_CERT_FILE": "/c.pem"}, "needs MASKING_TLS_CERT_FILE and MASKING_TLS_KEY_FILE"),
    ({"MASKING_RTP_TIMEOUT": "-1"}, "MASKING_RTP_TIMEOUT"),
    ({"MASKING_MAX_CALL_SECONDS": "-5"}, "MASKING_MAX_CALL_SECONDS"),
    ({"MASKING_EXTERNAL_MEDIA_ADDRESS": "1.2.3.4\nbind=0.0.0.0"}, "MASKING_EXTERNAL_MEDIA_ADDRESS"),
])
def test_site_settings_are_validated_at_start(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_a_certificate_that_cannot_be_read_names_its_setting(tmp_path):
    with pytest.raises(ConfigError, match="MASKING_TLS_KEY_FILE: cannot read /no/such.key"):
        copy_tls_files(tls_settings(tls_cert_file=Path(__file__), tls_key_file=Path("/no/such.key")), tmp_path)


def test_every_rendered_file_includes_the_operators_own_but_asterisk_and_modules_conf(tmp_path):
    rendered = with_local_includes(render_templates(
        template_values(Settings(), AsteriskInstall(root=Path("/"), module_dir="/x"), "/i"), DIALPLAN))
    for name, text in rendered.items():
        if name in NO_INCLUDES:
            assert "#tryinclude" not in text
        else:
            assert text.rstrip().endswith(f"#tryinclude local/{name}")


def test_the_operators_local_files_are_copied_and_never_written(tmp_path):
    source, target = tmp_path / "local", tmp_path / "etc" / "local"
    source.mkdir()
    (source / "pjsip.conf").write_text("[carrier-out](+)\nsend_pai = no\n")
    copy_local_config(source, target, replace=True)
    (target / "stale.conf").write_text("left from before")
    copy_local_config(source, target, replace=True)
    assert sorted(p.name for p in target.iterdir()) == ["pjsip.conf"]
    assert (source / "pjsip.conf").read_text() == "[carrier-out](+)\nsend_pai = no\n"
    copy_local_config(tmp_path / "absent", tmp_path / "theirs", replace=False)
    assert not (tmp_path / "theirs").exists(), "an Asterisk run by the operator keeps its own local/"


@pytest.mark.parametrize("code, output, failure", [
    (0, "Asterisk 22.10.1 built by ...\n", None),
    (0, "No such command 'core show nonsense' (type 'core show help core show nonsense' for other possible "
        "commands)\n", "no such command"),
    (1, "Unable to connect to remote asterisk (does /x/run/asterisk.ctl exist?)\n", "not running"),
    (1, "", "not running"),
])
def test_why_an_asterisk_cli_command_did_not_run(code, output, failure):
    assert cli_failure(code, output) == failure


@pytest.mark.parametrize("session, maximum, limit", [(None, 0, None), (60, 0, 60), (None, 3600, 3600),
                                                      (60, 3600, 60), (7200, 3600, 3600)])
def test_a_calls_limit_is_the_sessions_bounded_by_the_maximum_call_duration(session, maximum, limit):
    assert call_time_limit(session, maximum) == limit


def test_registration_states_are_read_by_trunk_name_and_exported_as_a_gauge():
    events = [{"Response": "Success", "EventList": "start"},
              {"Event": "OutboundRegistrationDetail", "ObjectName": "carrier-out", "Status": "Registered"},
              {"Event": "AuthDetail", "ObjectName": "carrier-out-auth"},
              {"Event": "OutboundRegistrationDetail", "ObjectName": "backup", "Status": "Rejected"},
              {"Event": "OutboundRegistrationDetailComplete", "EventList": "Complete"}]
    states = registration_states(events)
    assert states == {"carrier-out": "Registered", "backup": "Rejected"}
    for trunk, status in states.items():  # as the AMI monitor publishes them
        metrics.trunk_registered.labels(trunk).set(1 if status == "Registered" else 0)
    text = metrics.render()[0].decode()
    assert 'masking_trunk_registered{trunk="backup"} 0.0' in text
    assert 'masking_trunk_registered{trunk="carrier-out"} 1.0' in text
