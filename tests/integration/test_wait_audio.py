"""Wait audio: uploaded over the API, converted, heard by the caller while the
counterpart rings, in place of ringback."""
from __future__ import annotations

import json
import math
import struct
import urllib.error
import urllib.request

from tests.integration.conftest import wait_for_call_row
from tests.integration.test_api_call import api_token, call_api  # noqa: F401 (fixture)
from tests.integration.test_masked_call import assert_no_leftovers

TONE_HZ = 1000  # ringback in Singapore is 425 Hz: the two are told apart by pitch


def tone_wav(seconds: float, rate: int = 16000, channels: int = 2) -> bytes:
    """A WAV Asterisk cannot play as it is (16 kHz stereo): the service converts it."""
    frames = b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * TONE_HZ * n / rate))) * channels
                      for n in range(int(rate * seconds)))
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(frames), b"WAVE", b"fmt ", 16, 1, channels, rate,
                       rate * channels * 2, channels * 2, 16, b"data", len(frames)) + frames


def upload(stack, token: str, body: bytes, content_type: str = "audio/wav") -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.settings.http_port}/v1/wait-audio?name=jingle", method="POST", data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_caller_hears_the_uploaded_wait_audio_while_the_counterpart_rings(stack, place_call, api_token):
    status, audio = upload(stack, api_token, tone_wav(3.0))
    assert status == 201, audio
    assert abs(audio["duration_seconds"] - 3.0) < 0.05
    virtual, a, b = "+6567000001", "+6597000001", "+6587000001"
    assert call_api(stack, api_token, "POST", "/v1/numbers", {"number": virtual})[0] == 201
    status, body = call_api(stack, api_token, "POST", "/v1/sessions", {
        "participant_a": a, "participant_b": b, "purpose": "delivery_order", "virtual_number": virtual,
        "record": False, "wait_audio_id": audio["id"]})
    assert status == 201 and json.loads(body)["wait_audio_id"] == audio["id"], body

    # The counterpart rings for 2 s and answers in silence (no echo): all the
    # caller hears with sound in it is what played while it rang.
    call = place_call(a, virtual, uas="uas_ring_then_answer.xml", uas_values={"ring_ms": 2000}, uas_args=(),
                      talk_ms=1500)

    assert call.caller.succeeded, call.caller.output
    connected = call.caller.first("received", "SIP/2.0 200")
    assert call.caller_rtp.audio_between(call.caller.first("received", "SIP/2.0 183"), connected) > 50, \
        "the caller heard nothing while the counterpart rang"
    assert abs(call.caller_rtp.pitch() - 2 * TONE_HZ) < 150, "the caller heard something else than the upload"
    assert wait_for_call_row(stack, virtual)["disposition"] == "answered"
    assert_no_leftovers(stack)


def test_wait_audio_that_is_not_a_pcm_wav_is_refused_and_unknown_ids_are_refused_on_sessions(stack, api_token):
    assert upload(stack, api_token, b"ID3 not a wav")[1]["error"]["code"] == "unsupported_audio"
    assert upload(stack, api_token, tone_wav(0.1), content_type="audio/mpeg")[0] == 415
    status, body = call_api(stack, api_token, "POST", "/v1/sessions", {
        "participant_a": "+6597000002", "participant_b": "+6587000002", "purpose": "delivery_order",
        "wait_audio_id": "00000000-0000-4000-8000-000000000000"})
    assert status == 422 and json.loads(body)["error"]["field"] == "wait_audio_id"
