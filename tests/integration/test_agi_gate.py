"""Attacks on the FastAGI fallback's port with a raw socket: whoever is not
Asterisk learns nothing and changes nothing.

Before the gate, anyone who reached the port and knew their own number and a
virtual number got `SET VARIABLE MASKING_DIAL "PJSIP/<counterpart>@..."`
back, and `finish` rewrote any call row it was given the id of.
"""
from __future__ import annotations

import socket
import uuid

from tests.integration.conftest import new_parties, query


def ask(stack, headers: dict[str, str], source: str = "127.0.0.1", answer_commands: int = 40) -> bytes:
    """Pose as Asterisk: send a FastAGI request, answer every command with
    success, and return all the server said before it closed."""
    with socket.create_connection(("127.0.0.1", stack.settings.agi_port), timeout=10,
                                  source_address=(source, 0)) as sock:
        sock.sendall("".join(f"{k}: {v}\n" for k, v in headers.items()).encode() + b"\n")
        said = b""
        for _ in range(answer_commands):
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            said += chunk
            sock.sendall(b"200 result=1\n" * chunk.count(b"\n"))
        return said


def route_request(parties, script: str) -> dict[str, str]:
    return {"agi_network": "yes", "agi_network_script": script, "agi_request": f"agi://x/{script}",
            "agi_channel": "PJSIP/carrier-in-00000001", "agi_uniqueid": "1700000000.1",
            "agi_callerid": parties.a, "agi_extension": parties.virtual_number}


def calls_on(stack, number: str) -> list[dict]:
    return query(stack.dsn, "SELECT * FROM calls WHERE virtual_number = $1", number)


def test_a_raw_client_without_the_secret_learns_no_counterpart_and_writes_no_row(stack):
    parties = new_parties(stack, record=False)

    for script in ("route", "route?key=", "route?key=guess", f"route?key={stack.settings.agi_secret[:-1]}"):
        said = ask(stack, route_request(parties, script))
        assert said == b"", f"{script}: the fallback answered a stranger"
    assert parties.b.lstrip("+") not in "".join(str(r) for r in calls_on(stack, parties.virtual_number))
    assert calls_on(stack, parties.virtual_number) == []


def test_a_client_from_an_address_not_allowed_is_refused_even_with_the_secret(stack):
    parties = new_parties(stack, record=False)

    said = ask(stack, route_request(parties, f"route?key={stack.settings.agi_secret}"), source="127.0.0.2")

    assert said == b"" and calls_on(stack, parties.virtual_number) == []


def test_asterisk_with_the_secret_is_served(stack):
    parties = new_parties(stack, record=False)

    said = ask(stack, route_request(parties, f"route?key={stack.settings.agi_secret}")).decode()

    assert f"PJSIP/{parties.b}@" in said  # what the dialplan dials: the gate lets Asterisk through
    assert len(calls_on(stack, parties.virtual_number)) == 1


def test_finish_cannot_rewrite_a_call_row_of_another_channel(stack):
    parties = new_parties(stack, record=False)
    victim = uuid.uuid4()
    query(stack.dsn, "INSERT INTO calls (id, virtual_number, caller_channel_id, started_at, disposition, path)"
                     " VALUES ($1, $2, 'PJSIP/real-caller', now(), 'answered', 'ari')", victim,
          parties.virtual_number)
    finish = {**route_request(parties, f"finish?key={stack.settings.agi_secret}"), "agi_extension": "h"}

    with socket.create_connection(("127.0.0.1", stack.settings.agi_port), timeout=10) as sock:
        sock.sendall("".join(f"{k}: {v}\n" for k, v in finish.items()).encode() + b"\n")
        answers = [str(victim), "BUSY", "", "17", ""]  # MASKING_CALL_ID, DIALSTATUS, ...
        for value in answers:
            sock.recv(4096)
            sock.sendall(f"200 result=1 ({value})\n".encode())
        sock.recv(4096)

    [row] = query(stack.dsn, "SELECT * FROM calls WHERE id = $1", victim)
    assert row["disposition"] == "answered" and row["dial_status"] is None and row["ended_at"] is None


def test_an_endless_request_is_cut_off_at_the_size_bound(stack):
    with socket.create_connection(("127.0.0.1", stack.settings.agi_port), timeout=10) as sock:
        try:
            for _ in range(64):
                sock.sendall(b"agi_padding: " + b"x" * 1024 + b"\n")
            closed = sock.recv(1) == b""
        except (BrokenPipeError, ConnectionResetError):
            closed = True
    assert closed


def test_the_bridges_ami_account_cannot_originate_a_call_or_run_commands(stack):
    with socket.create_connection((stack.settings.ami_host, stack.settings.ami_port), timeout=10) as sock:
        reader = sock.makefile("rb")
        reader.readline()  # the banner

        def block() -> str:
            lines = []
            while (line := reader.readline().decode().rstrip("\r\n")) != "" or not lines:
                if line:
                    lines.append(line)
            return "\n".join(lines)

        def action(**fields: str) -> str:
            """The response to the action (events the account may read are skipped)."""
            sock.sendall("".join(f"{k}: {v}\r\n" for k, v in fields.items()).encode() + b"\r\n")
            while not (answer := block()).startswith("Response:"):
                pass
            return answer

        login = action(Action="Login", Username=stack.settings.ami_user, Secret=stack.settings.ami_password)
        assert "Response: Success" in login
        originate = action(Action="Originate", Channel="Local/1@masking-inbound", Application="Wait", Data="1")
        command = action(Action="Command", Command="core show channels")
    assert "Permission denied" in originate and "Permission denied" in command


def test_notice_cannot_touch_a_call_that_is_not_a_recorded_fallback_call(stack):
    """`notice` (the counterpart's notice, from Dial's U()) named with another
    path's call id plays nothing, starts no recording and leaves the row alone."""
    parties = new_parties(stack)
    victim = uuid.uuid4()
    query(stack.dsn, "INSERT INTO calls (id, virtual_number, caller_channel_id, started_at, disposition, path,"
                     " recorded) VALUES ($1, $2, 'PJSIP/real-caller', now(), 'answered', 'ari', true)", victim,
          parties.virtual_number)
    notice = {**route_request(parties, f"notice?key={stack.settings.agi_secret}"), "agi_arg_1": str(victim)}

    said = ask(stack, notice)

    assert b"STREAM FILE" not in said and b'MASKING_RECORD "0"' in said
    [row] = query(stack.dsn, "SELECT * FROM calls WHERE id = $1", victim)
    assert row["recorded"] and row["notices"] in ("[]", []) and row["recording_opt_out"] is None
