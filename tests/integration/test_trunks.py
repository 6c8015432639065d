"""Real carrier trunks, rendered from a trunks file, with SIPp playing each carrier.

One stack describes what a deployment in a cloud would: two inbound carriers
known by their addresses (one over TLS, offering SRTP), an outbound trunk with
digest credentials that registers with its carrier's registrar, a second one
whose password is wrong, a third that asks for privacy, and a NAT: Asterisk
tells carriers outside `MASKING_LOCAL_NETS` the external address 127.0.0.200
(a loopback alias standing in for the public one) and listens on every
address, as a cloud VM does behind its 1:1 NAT. Every assertion reads what
the carrier's end got on the wire.
"""
from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.sessions.models import SessionRequest
from bridge.store import Store
from tests.integration.conftest import query, wait_for_call_row
from tests.support.carrier import CarrierSipp, PacketSniffer, SrtpSession, make_certificate, tls_sipp_command
from tests.support.ports import free_port
from tests.support.rtp import ALAW, RtpSniffer, rms
from tests.support.sipp import Sipp, render
from tests.support.stack import REPO, Stack, running_stack

USER, PASSWORD, REALM = "masking-sg", "s3cret-Trunk", "carrier.test"
EXTERNAL = "127.0.0.200"  # the "public" address behind the NAT
CARRIER_A, CARRIER_B, CARRIER_TLS, STRANGER = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.9"

TRUNKS = """
[defaults]
codecs = ["g722", "alaw", "ulaw"]

[[inbound]]
name = "carrier-a"
match = ["{a}", "{b}/32"]

[[inbound]]
name = "carrier-tls"
match = ["{tls_address}"]
transport = "tls"
srtp = "optional"

[[outbound]]
name = "carrier-out"
host = "127.0.0.1"
port = {out}
username = "{user}"
password_env = "CARRIER_TEST_PASSWORD"
register = true
registrar = "127.0.0.1:{registrar}"
from_domain = "{realm}"
session_timers = "always"
session_expires = 120

[[outbound]]
name = "carrier-refused"
host = "127.0.0.1"
port = {refused}
username = "{user}"
password = "not-the-password"
register = true
registrar = "127.0.0.1:{registrar_refused}"

[[outbound]]
name = "carrier-private"
host = "127.0.0.1"
port = {out}
privacy = "id"
"""


LOCAL_PJSIP = "; the operator's tweak of a rendered trunk\n[carrier-a](+)\ndtmf_mode = inband\n"
LOCAL_EXTENSIONS = "[operator-additions]\nexten => 100,1,NoOp(added by the operator)\n"


@dataclass
class Carrier:
    stack: Stack
    workdir: Path
    ports: dict[str, int]
    registrars: dict[str, Sipp]
    tls: tuple[Path, Path]


@pytest.fixture(scope="module")
def carrier(tmp_path_factory):
    try:
        tls_sipp_command()
    except FileNotFoundError as exc:
        pytest.fail(str(exc))
    work = tmp_path_factory.mktemp("carrier")
    ports = {name: free_port() for name in ("out", "refused", "registrar", "registrar_refused", "tls")}
    # The registrars listen before Asterisk starts: its first REGISTER finds them.
    registrars = {
        trunk: Sipp(work, render("uas_registrar.xml", work, tag=f"{trunk}-", realm=REALM, username=USER,
                                 password=PASSWORD), [], f"registrar-{trunk}", port=ports[port])
        for trunk, port in (("carrier-out", "registrar"), ("carrier-refused", "registrar_refused"))
    }
    (work / "trunks.toml").write_text(TRUNKS.format(a=CARRIER_A, b=CARRIER_B, tls_address=CARRIER_TLS, user=USER,
                                                    realm=REALM, **ports))
    cert, key = make_certificate(work)
    local = work / "asterisk-local"  # the operator's own additions
    local.mkdir()
    (local / "pjsip.conf").write_text(LOCAL_PJSIP)
    (local / "extensions.conf").write_text(LOCAL_EXTENSIONS)
    env = {
        "MASKING_LOCAL_CONFIG_DIR": str(local),
        "MASKING_TRUNKS_FILE": str(work / "trunks.toml"), "MASKING_OUTBOUND_PORT": str(ports["out"]),
        "MASKING_SIP_HOST": "0.0.0.0", "MASKING_SIP_TLS_PORT": str(ports["tls"]),
        "MASKING_TLS_CERT_FILE": str(cert), "MASKING_TLS_KEY_FILE": str(key),
        "MASKING_EXTERNAL_SIGNALING_ADDRESS": EXTERNAL, "MASKING_EXTERNAL_MEDIA_ADDRESS": EXTERNAL,
        "MASKING_LOCAL_NETS": "127.0.0.1/32",
    }
    try:
        for registrar in registrars.values():
            registrar.start()
        with pytest.MonkeyPatch.context() as patch:
            # password_env: read wherever the configuration is rendered (here, and `masking doctor`)
            patch.setenv("CARRIER_TEST_PASSWORD", PASSWORD)
            with running_stack(work, **env) as stack:
                yield Carrier(stack, work, ports, registrars, (cert, key))
    finally:
        for registrar in registrars.values():
            registrar.stop()


_serial = iter(range(2000, 3000))


def live_session(stack: Stack) -> tuple[str, str, str]:
    """A fresh virtual number with an unrecorded session: (virtual number, A, B)."""
    n = next(_serial)
    virtual, a, b = f"+656820{n:04d}", f"+659820{n:04d}", f"+658820{n:04d}"

    async def create():
        store = await Store.connect(stack.dsn, stack.keys)
        try:
            await store.numbers.add(virtual)
            await store.sessions.create(SessionRequest(a, b, ttl_seconds=3600, record=False, purpose="delivery_order"))
        finally:
            await store.close()

    asyncio.run(create())
    return virtual, a, b


@dataclass
class Call:
    caller: object
    counterpart: object | None
    caller_rtp: PacketSniffer
    counterpart_rtp: RtpSniffer | None


def call(carrier: Carrier, tmp_path: Path, address: str, virtual: str, caller_number: str, *,
         uac: str = "uac_call.xml", uas: str | None = "uas_answer.xml", uas_values: dict | None = None,
         tls: bool = False, talk_ms: int = 3000) -> Call:
    """A carrier at `address` delivers a call to the virtual number; the
    counterpart (a SIPp on the outbound trunk's port) answers it."""
    stack = carrier.stack
    counterpart = None
    if uas:
        counterpart = Sipp(tmp_path, render(uas, tmp_path, **(uas_values or {})), ["-rtp_echo", "-d", str(talk_ms)],
                           "counterpart", port=carrier.ports["out"]).start()
        time.sleep(0.2)  # SIPp binds its port
    target = f"127.0.0.1:{carrier.ports['tls'] if tls else stack.settings.asterisk.sip_port}"
    caller = CarrierSipp(tmp_path, render(uac, tmp_path), ["-s", virtual, "-key", "caller", caller_number,
                                                           "-d", str(talk_ms), target],
                         "caller", address, tls=carrier.tls if tls else None)
    caller_rtp = PacketSniffer(caller.media_port)
    counterpart_rtp = RtpSniffer(counterpart.media_port) if counterpart else None
    try:
        with caller_rtp:
            if counterpart_rtp:
                counterpart_rtp.__enter__()
            caller.start()
            caller_result = caller.wait(40)
            counterpart_result = counterpart.wait(10) if counterpart else None
    finally:
        if counterpart_rtp:
            counterpart_rtp.__exit__(None, None, None)
        caller.stop()
        if counterpart:
            counterpart.stop()
    return Call(caller_result, counterpart_result, caller_rtp, counterpart_rtp)


def messages(result, start: str, received: bool = True) -> list[str]:
    return [m.text for m in result.log() if m.received == received and m.text.startswith(start)]


def header(message: str, name: str) -> str | None:
    match = re.search(rf"^{name}:\s*(.*)$", message, re.M | re.I)
    return match.group(1).strip() if match else None


def doctor(stack: Stack) -> tuple[int, dict[str, str]]:
    """`masking doctor` as an operator runs it: exit code and each check's line by name."""
    out = subprocess.run([sys.executable, "-m", "bridge.cli", "doctor"], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, **stack.env}, timeout=60)
    lines = {}
    for line in out.stdout.splitlines():
        match = re.match(r"(ok |FAIL) (.+?)  (.*)$", line)
        if match:
            lines[match.group(2).strip()] = f"{match.group(1).strip()} {match.group(3).strip()}"
    return out.returncode, lines


def metric(stack: Stack, name: str) -> str | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.settings.http_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return f"{float(match.group(1)):g}" if match else None  # prometheus-client writes 1.0


def wait_until(condition, timeout: float = 20, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def assert_no_leftovers(stack: Stack) -> None:
    channels, bridges = stack.leftovers()
    assert channels == [] and bridges == [], f"leaked: {channels} {bridges}"


# -- registration ------------------------------------------------------------------

def test_the_trunk_registers_after_a_digest_challenge_and_doctor_and_metrics_say_registered(carrier):
    registrar = carrier.registrars["carrier-out"].wait(30)

    challenged, authenticated = messages(registrar, "REGISTER")[:2]
    assert header(challenged, "Authorization") is None
    credentials = header(authenticated, "Authorization")
    assert credentials and f'username="{USER}"' in credentials and f'realm="{REALM}"' in credentials
    assert messages(registrar, "SIP/2.0 200", received=False), "the registrar did not accept the credentials"
    assert PASSWORD not in registrar.messages, "the password itself went on the wire"

    code, checks = doctor(carrier.stack)
    assert checks["registration carrier-out"].startswith("ok registered")
    assert wait_until(lambda: metric(carrier.stack, 'masking_trunk_registered{trunk="carrier-out"}') == "1")


def test_a_trunk_whose_password_the_registrar_refuses_shows_not_registered(carrier):
    registrar = carrier.registrars["carrier-refused"].wait(30)

    assert f'username="{USER}"' in header(messages(registrar, "REGISTER")[1], "Authorization")
    assert messages(registrar, "SIP/2.0 403", received=False), "the registrar accepted a wrong password"
    code, checks = doctor(carrier.stack)
    assert code != 0
    assert checks["registration carrier-refused"].startswith("FAIL not registered (Rejected)")
    assert wait_until(lambda: metric(carrier.stack, 'masking_trunk_registered{trunk="carrier-refused"}') == "0")


def test_doctor_lists_the_trunks_and_the_tls_certificate(carrier):
    _, checks = doctor(carrier.stack)
    assert checks["trunks"].startswith("ok in: carrier-a (udp) from 127.0.0.2, 127.0.0.3/32; carrier-tls (tls)")
    assert "counterparts dialed via carrier-out" in checks["trunks"]
    assert checks["tls"].startswith("ok certificate")
    assert "trunks loaded" not in checks, "Asterisk runs the trunks the file describes"


def test_the_operators_local_additions_are_loaded_and_never_overwritten(carrier):
    def cli(command: str) -> str:
        return subprocess.run([sys.executable, "-m", "bridge.cli", "asterisk", "cli", command], cwd=REPO,
                              capture_output=True, text=True, env={**os.environ, **carrier.stack.env}).stdout

    assert "added by the operator" in cli("dialplan show operator-additions")
    assert re.search(r"dtmf_mode\s*:\s*inband", cli("pjsip show endpoint carrier-a"))
    assert re.search(r"dtmf_mode\s*:\s*rfc4733", cli("pjsip show endpoint carrier-out")), "only what was added"
    carrier.stack.asterisk.render()  # as an update re-renders
    local = Path(carrier.stack.env["MASKING_LOCAL_CONFIG_DIR"])
    assert (local / "pjsip.conf").read_text() == LOCAL_PJSIP
    assert (local / "extensions.conf").read_text() == LOCAL_EXTENSIONS


# -- calls out: digest, identity, codecs, session timers ---------------------------

def test_the_counterpart_is_dialed_with_digest_credentials_and_sees_only_the_virtual_number(carrier, tmp_path):
    virtual, a, b = live_session(carrier.stack)
    result = call(carrier, tmp_path, CARRIER_A, virtual, a, uas="uas_auth_answer.xml",
                  uas_values={"realm": REALM, "username": USER, "password": PASSWORD})

    assert result.caller.succeeded, result.caller.output
    first, second = messages(result.counterpart, "INVITE")[:2]
    assert header(first, "Authorization") is None, "credentials sent before the challenge"
    credentials = header(second, "Authorization")
    assert credentials.startswith("Digest ") and f'username="{USER}"' in credentials and \
        f'realm="{REALM}"' in credentials and 'response="' in credentials
    assert messages(result.counterpart, "SIP/2.0 200", received=False), "the carrier refused the credentials"
    assert messages(result.counterpart, "BYE"), "the call was not released at its end"
    for invite in (first, second):
        assert virtual in header(invite, "From") and virtual in header(invite, "P-Asserted-Identity")
        assert header(invite, "Remote-Party-ID") is None and header(invite, "Diversion") is None
        assert a not in invite and a.lstrip("+") not in invite, "the caller's number reached the counterpart"
        assert header(invite, "Session-Expires") == "120" and "timer" in header(invite, "Supported")
        offered = re.search(r"^m=audio \d+ RTP/AVP ([\d ]+)$", invite, re.M).group(1).split()
        assert sorted(offered) == ["0", "101", "8", "9"], "the trunk's codecs (G.722, A-law, u-law) and DTMF only"
    row = wait_for_call_row(carrier.stack, virtual)
    assert (row["disposition"], row["hangup_by"]) == ("answered", "caller")
    assert_no_leftovers(carrier.stack)


@pytest.mark.parametrize("path", ["ari", "agi"])
def test_a_trunk_asking_for_privacy_gets_privacy_id_an_anonymous_from_and_the_virtual_number_in_pai(carrier,
                                                                                                     tmp_path, path):
    """On both call paths. The presentation is set on the leg Asterisk made
    (ARI) or handed to Dial (FastAGI), never by the endpoint's set_var, which
    crashed Asterisk under load (stack/trunks.py: outbound_presentation)."""
    stack = carrier.stack
    stack.stop_service()
    agi = None
    try:
        if path == "ari":
            stack.start_service(MASKING_OUTBOUND_ENDPOINT="carrier-private")
        else:  # the service stopped: the dialplan's fallback, `masking serve-agi`, carries the call
            log_path = tmp_path / "agi.log"
            with open(log_path, "wb") as log:
                agi = subprocess.Popen([sys.executable, "-m", "bridge.cli", "serve-agi"], cwd=REPO, stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env={**os.environ, **stack.env, "MASKING_OUTBOUND_ENDPOINT": "carrier-private"})
            deadline = time.monotonic() + 20
            while '"agi.listening"' not in log_path.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
        virtual, a, _ = live_session(stack)
        result = call(carrier, tmp_path, CARRIER_B, virtual, a)
    finally:
        if agi is not None:
            agi.terminate()
            agi.wait(timeout=20)
        stack.stop_service()
        stack.start_service()

    if path == "agi":
        assert wait_for_call_row(stack, virtual)["path"] == "agi"
    assert result.counterpart.succeeded, result.counterpart.output
    invite = messages(result.counterpart, "INVITE")[0]
    assert header(invite, "Privacy") == "id"
    assert "anonymous" in header(invite, "From").lower() and virtual not in header(invite, "From")
    assert virtual in header(invite, "P-Asserted-Identity")
    assert a not in invite and header(invite, "Remote-Party-ID") is None
    assert_no_leftovers(stack)


# -- NAT ------------------------------------------------------------------------

def test_a_carrier_outside_the_local_networks_is_given_the_external_address_and_audio_flows_both_ways(carrier,
                                                                                                      tmp_path):
    virtual, a, _ = live_session(carrier.stack)
    result = call(carrier, tmp_path, CARRIER_A, virtual, a, talk_ms=4000)

    assert result.caller.succeeded, result.caller.output
    answer = messages(result.caller, "SIP/2.0 200")[0]
    assert re.search(rf"^c=IN IP4 {re.escape(EXTERNAL)}$", answer, re.M), "SDP without the external address"
    assert EXTERNAL in header(answer, "Contact")
    invite = messages(result.counterpart, "INVITE")[0]
    assert re.search(r"^c=IN IP4 127\.0\.0\.1$", invite, re.M), "a local carrier must get the local address"
    assert EXTERNAL not in invite
    # The caller's audio went to the external address, reached the counterpart,
    # and came back (the counterpart echoes): both directions through the NAT.
    assert result.counterpart_rtp.packets > 50 and result.counterpart_rtp.level > 100
    assert result.caller_rtp.packets > 50 and result.caller_rtp.level > 100


def test_the_rendered_transports_carry_the_nat_settings(carrier):
    pjsip = (carrier.stack.asterisk.dir / "etc" / "pjsip.conf").read_text()
    for transport in ("transport-udp", "transport-tls"):
        section = pjsip.split(f"[{transport}]", 1)[1].split("\n\n", 1)[0]
        assert f"external_media_address = {EXTERNAL}" in section
        assert f"external_signaling_address = {EXTERNAL}" in section
        assert "local_net = 127.0.0.1/32" in section


# -- TLS and SRTP -----------------------------------------------------------------

def test_a_carrier_calling_over_tls_with_sdes_gets_srtp_and_reaches_the_counterpart(carrier, tmp_path):
    virtual, a, _ = live_session(carrier.stack)
    result = call(carrier, tmp_path, CARRIER_TLS, virtual, a, uac="uac_srtp.xml", uas="uas_answer_talking.xml",
                  tls=True, talk_ms=4000)

    assert result.caller.succeeded, result.caller.output
    invite = messages(result.caller, "INVITE", received=False)[0]
    assert invite.splitlines()[1].startswith("Via: SIP/2.0/TLS")
    answer = messages(result.caller, "SIP/2.0 200")[0]
    assert re.search(r"^m=audio \d+ RTP/SAVP 8", answer, re.M), "SRTP offered, plain RTP answered"
    key = re.search(r"^a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:(\S+)", answer, re.M)
    assert key, "no SDES key in the answer"
    assert result.counterpart.succeeded, "the counterpart was not connected and released"
    # What reached the caller is SRTP under the key Asterisk announced, and
    # carries the counterpart's voice once decrypted.
    srtp = SrtpSession(key.group(1))
    decrypted = [srtp.decrypt(packet) or srtp.decrypt(packet, rollover=1) for packet in result.caller_rtp.raw]
    assert result.caller_rtp.raw and all(payload is not None for payload in decrypted), "not SRTP under that key"
    voiced = [payload for payload in decrypted if rms([ALAW[byte] for byte in payload]) > 100]
    assert len(voiced) > 20, "no voice from the counterpart in the SRTP stream"
    row = wait_for_call_row(carrier.stack, virtual)
    assert row["disposition"] == "answered"
    assert_no_leftovers(carrier.stack)


# -- who may call in ----------------------------------------------------------------

@pytest.mark.parametrize("caller_number", ["+6599990001", "carrier-a"], ids=["a_number", "a_trunk_name_as_user"])
def test_a_call_from_an_address_on_no_list_is_refused_before_it_reaches_the_bridge(carrier, tmp_path,
                                                                                    caller_number):
    virtual, _, _ = live_session(carrier.stack)
    scenario = render("uac_rejected.xml", tmp_path, final_status="401")
    caller = CarrierSipp(tmp_path, scenario, ["-s", virtual, "-key", "caller", caller_number,
                                              f"127.0.0.1:{carrier.stack.settings.asterisk.sip_port}"],
                         "stranger", STRANGER).start()
    result = caller.wait(20)

    assert result.succeeded, f"not refused with 401: {result.output}"
    assert not messages(result, "SIP/2.0 18") and not messages(result, "SIP/2.0 200")
    time.sleep(1)
    assert query(carrier.stack.dsn, "SELECT id FROM calls WHERE virtual_number = $1", virtual) == []
    assert '"call.started"' not in "".join(line for line in carrier.stack.service_log.read_text().splitlines()
                                           if virtual in line)
    assert_no_leftovers(carrier.stack)
