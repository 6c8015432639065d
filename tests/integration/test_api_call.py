"""A business back end's view, end to end: API session, real call, signed webhooks, recording."""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bridge.webhooks import verify
from tests.integration.test_cli import masking
from tests.support.ports import free_port

DEFAULT_SECRET = "masking-dev-webhook-secret"  # the stack does not override it


class Receiver:
    """A business's webhook endpoint: records each request's body and headers."""

    def __init__(self):
        self.requests: list[tuple[dict, bytes]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def events(self) -> list[dict]:
        return [json.loads(body) for _, body in self.requests]

    def wait_for(self, event_type: str, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events():
                if event["type"] == event_type:
                    return event
            time.sleep(0.1)
        raise AssertionError(f"no {event_type} webhook; got {[e['type'] for e in self.events()]}")


@pytest.fixture(scope="module")
def api_token(stack) -> str:
    result = masking(stack, "apikeys", "create", "--name", "delivery-app", "--scope", "sessions",
                     "--scope", "numbers", "--scope", "recordings")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["token"]


def call_api(stack, token: str, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.settings.http_port}{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_business_creates_a_session_gets_signed_call_events_and_reads_the_recording(stack, place_call,
                                                                                          api_token):
    receiver = Receiver()
    status, _ = call_api(stack, api_token, "POST", "/v1/numbers", {"number": "+6564000001"})
    assert status == 201
    status, body = call_api(stack, api_token, "POST", "/v1/sessions", {
        "participant_a": "+6594000001", "participant_b": "+6584000001", "ttl_seconds": 600,
        "external_ref": "order-777", "webhook_url": receiver.url})
    assert status == 201, body
    session = json.loads(body)

    call = place_call("+6594000001", session["virtual_number"], uas="uas_answer.xml", talk_ms=2000)
    assert call.counterpart.succeeded, call.counterpart.output

    completed = receiver.wait_for("call.completed")
    types = [e["type"] for e in receiver.events()]
    assert types.index("call.ringing") < types.index("call.answered") < types.index("call.completed")
    for headers, body in receiver.requests:
        assert verify(DEFAULT_SECRET, headers["X-Masking-Timestamp"], body, headers["X-Masking-Signature"])
        for number in ("6594000001", "6584000001"):
            assert number.encode() not in body, "a participant's number reached a webhook body"
    data = completed["data"]
    assert data["session_id"] == session["id"] and data["external_ref"] == "order-777"
    assert data["disposition"] == "answered" and data["direction"] == "a_to_b" and data["recording_id"]

    status, body = call_api(stack, api_token, "GET", f"/v1/recordings/{data['recording_id']}")
    assert status == 200
    meta = json.loads(body)
    status, audio = call_api(stack, api_token, "GET", f"/v1/recordings/{data['recording_id']}/audio")
    assert status == 200 and audio[:4] == b"RIFF" and len(audio) == meta["bytes"]
    status, body = call_api(stack, api_token, "GET", f"/v1/calls?session_id={session['id']}")
    assert [c["disposition"] for c in json.loads(body)["calls"]] == ["answered"]


def test_a_session_expires_on_time_tells_the_business_and_its_callers_hear_the_prompt(stack, place_call,
                                                                                       api_token):
    receiver = Receiver()
    call_api(stack, api_token, "POST", "/v1/numbers", {"number": "+6564000002"})
    status, body = call_api(stack, api_token, "POST", "/v1/sessions", {
        "participant_a": "+6594000002", "participant_b": "+6584000002", "ttl_seconds": 1,
        "webhook_url": receiver.url})
    session = json.loads(body)

    expired = receiver.wait_for("session.expired", timeout=10)
    call = place_call("+6594000002", session["virtual_number"], uac="uac_rejected.xml",
                      uac_values={"final_status": 410, "tag": "expired-api"})

    assert expired["data"]["session_id"] == session["id"]
    assert call.caller.succeeded, call.caller.output
    assert call.caller_rtp.level > 100, "caller heard no prompt"
    status, body = call_api(stack, api_token, "GET", f"/v1/calls?session_id={session['id']}")
    rows = json.loads(body)["calls"]
    assert [(c["disposition"], c["reject_reason"]) for c in rows] == [("rejected", "session_expired")]
