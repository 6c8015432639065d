"""Attacks on what a crash or a failed step leaves on disk: nothing of a
recording may stay outside the sealed store, and no secret anyone can read in
this repository may guard the service.

The leftovers are the ones a real failure leaves (a download killed midway, a
fallback call whose collection failed, a delete that did not happen); the
service's sweep at start finds them in the real Asterisk's spool over ARI.
"""
from __future__ import annotations

import io
import math
import os
import struct
import time
import uuid
import wave
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tests.integration.conftest import new_parties, query
from tests.integration.test_cli import masking
from tests.integration.test_masked_call import sealed_audio


def tone_wav(seconds: float = 1.0) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / 8000)))
                               for n in range(int(8000 * seconds))))
    return out.getvalue()


def finished_call(stack, virtual_number: str, path: str, recorded: bool, disposition: str = "answered") -> uuid.UUID:
    """A call row as the service wrote it (the fallback path leaves the collection to `finish`)."""
    call_id, now = uuid.uuid4(), datetime.now(timezone.utc)
    node = f"{stack.settings.ari_url}/{stack.settings.ari_app}"
    query(stack.dsn, "INSERT INTO calls (id, virtual_number, caller_channel_id, started_at, answered_at, ended_at,"
                     " disposition, recorded, path, asterisk_node, session_id) SELECT $1, $2, 'gone', $3, $3, $4,"
                     " $5, $6, $7, $8, (SELECT id FROM masking_sessions WHERE virtual_number = $2 LIMIT 1)",
          call_id, virtual_number, now - timedelta(seconds=30), now - timedelta(seconds=20), disposition, recorded,
          path, node)
    return call_id


def wait_until(condition, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.2)
    return result


def test_leftovers_of_a_killed_download_and_a_failed_fallback_collection_are_sealed_or_removed_at_start(stack):
    parties = new_parties(stack)
    spool = stack.asterisk.recording_spool
    audio = tone_wav()
    # A fallback call whose recording `finish` could not collect: still in Asterisk's spool, plaintext.
    uncollected = finished_call(stack, parties.virtual_number, "agi", recorded=True)
    (spool / f"call-{uncollected}.wav").write_bytes(audio)
    # A call the caller opted out of recording on, whose file a failed delete left behind.
    opted_out = finished_call(stack, parties.virtual_number, "ari", recorded=False)
    (spool / f"call-{opted_out}.wav").write_bytes(audio)
    # A download killed midway (kill -9): half a plaintext file beside the store, an hour old.
    partial = Path(stack.settings.recording_dir) / "2026" / "12" / "04" / f"{uuid.uuid4()}.wav.partial"
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(audio[:3000])
    os.utime(partial, (time.time() - 3600, time.time() - 3600))

    stack.stop_service()
    stack.start_service()

    [recording] = wait_until(lambda: query(stack.dsn, "SELECT * FROM recordings WHERE call_id = $1", uncollected))
    assert sealed_audio(stack, recording) == audio  # sealed as it was, its plaintext gone
    wait_until(lambda: not (spool / f"call-{uncollected}.wav").exists() and not (spool / f"call-{opted_out}.wav").exists())
    assert query(stack.dsn, "SELECT * FROM recordings WHERE call_id = $1", opted_out) == []
    assert not partial.exists()
    plaintext = [p for p in Path(stack.settings.recording_dir).rglob("*") if p.is_file()
                 and audio[1000:1064] in p.read_bytes()]
    assert plaintext == []


def test_the_service_refuses_the_secrets_published_in_this_repository(stack):
    published = {"MASKING_ARI_PASSWORD": "change-me-ari", "MASKING_WEBHOOK_SECRET": "masking-dev-webhook-secret",
                 "MASKING_DEVELOPMENT": "false"}  # the test stack runs in development mode (plain-http receivers)

    refused = masking(stack, "serve", **published)
    refused_agi = masking(stack, "serve-agi", **published)

    for result in (refused, refused_agi):
        assert result.returncode == 2, result.stderr
        assert "MASKING_ARI_PASSWORD" in result.stderr and "MASKING_WEBHOOK_SECRET" in result.stderr
        assert "change-me" not in result.stderr and "dev-webhook" not in result.stderr
