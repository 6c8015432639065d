"""How a bridged call is recorded (bridge/calls/recording.py).

MixMonitor on the caller's channel, started over AMI, costs Asterisk what the
operator's own dialplan recording costs; a snoop channel per call about twice
that (bench/RESULTS.md). What is checked here is at the far end: which
channels Asterisk held while the parties talked, and the audio in the sealed
recording. A call that cannot have MixMonitor (AMI refused, or the operator
chose snoops) is still recorded, by a snoop.
"""
from __future__ import annotations

import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.conftest import new_parties, wait_for_call_row
from tests.integration.test_masked_call import assert_no_leftovers, recording_level

TALK_MS = 4000


def call_watching_channels(stack, place_call, parties, **kwargs):
    """Place a call and, while it lasts, note the ids of the channels Asterisk holds."""
    seen: set[str] = set()
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(place_call, parties.a, parties.virtual_number, uas="uas_answer.xml",
                             talk_ms=TALK_MS, **kwargs)
        while not future.done():
            seen |= {c["id"] for c in stack.ari("GET", "/channels")}
            time.sleep(0.2)
        return future.result(), seen


@pytest.fixture
def service_with(stack):
    """Restart the shared stack's service with some settings; the defaults after."""
    def restart(**overrides: str) -> None:
        stack.stop_service()
        stack.start_service(**overrides)
    yield restart
    stack.stop_service()
    stack.start_service()


def test_a_recorded_call_is_recorded_by_mixmonitor_with_no_channel_besides_the_two_parties(stack, place_call):
    stack.wait_ami()
    parties = new_parties(stack)

    call, seen = call_watching_channels(stack, place_call, parties)

    assert call.counterpart.succeeded, call.counterpart.output
    row = wait_for_call_row(stack, parties.virtual_number, with_recording=True)
    assert row["disposition"] == "answered" and row["recorded"]
    assert seen == {row["caller_channel_id"], row["callee_channel_id"]}, f"Asterisk also held {seen}"
    seconds, level = recording_level(stack, row["recording"])
    assert abs(seconds - TALK_MS / 1000) < 1.5 and level > 200, (seconds, level)
    assert_no_leftovers(stack)
    assert "recording.tap_fallback" not in stack.service_log.read_text()


@pytest.mark.parametrize("settings", [{"MASKING_RECORDING_TAP": "snoop"}, {"MASKING_AMI_PASSWORD": "not-the-secret"}],
                         ids=["snoop_chosen", "ami_refused"])
def test_a_call_that_cannot_have_mixmonitor_is_recorded_by_a_snoop(stack, place_call, service_with, settings):
    service_with(**settings)
    parties = new_parties(stack)

    call, seen = call_watching_channels(stack, place_call, parties)

    assert call.counterpart.succeeded, call.counterpart.output
    row = wait_for_call_row(stack, parties.virtual_number, with_recording=True)
    assert f"{row['id']}-snoop" in seen, "no snoop recorded the call"
    seconds, level = recording_level(stack, row["recording"])
    assert abs(seconds - TALK_MS / 1000) < 1.5 and level > 200, (seconds, level)
    assert_no_leftovers(stack)


def download_requests(stack) -> float:
    """Recording downloads over ARI so far, by the service's own counter."""
    with urllib.request.urlopen(f"http://{stack.settings.http_host}:{stack.settings.http_port}/metrics",
                                timeout=5) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("masking_ari_requests_total{")
               and 'operation="GET /recordings/stored/{id}/file"' in line)


@pytest.mark.parametrize("shared", ["asterisk", "", "elsewhere"], ids=["spool_shared", "over_ari", "wrong_folder"])
def test_a_recording_leaves_asterisk_sealed_whether_taken_from_its_spool_or_over_ari(
        stack, place_call, service_with, shared, tmp_path):
    """Sharing Asterisk's disk, the service seals the file where MixMonitor
    left it and removes it: no download. Not sharing it (or pointed at a
    folder Asterisk does not write), it downloads over ARI. Either way the
    audio is sealed and nothing of it stays in Asterisk's spool or in clear."""
    folder = {"asterisk": str(stack.asterisk.recording_spool), "": "", "elsewhere": str(tmp_path)}[shared]
    service_with(MASKING_ASTERISK_RECORDING_DIR=folder)
    stack.wait_ami()
    parties = new_parties(stack)

    call, _ = call_watching_channels(stack, place_call, parties)

    assert call.counterpart.succeeded, call.counterpart.output
    row = wait_for_call_row(stack, parties.virtual_number, with_recording=True)
    seconds, level = recording_level(stack, row["recording"])
    assert abs(seconds - TALK_MS / 1000) < 1.5 and level > 200, (seconds, level)
    assert (download_requests(stack) > 0) == (shared != "asterisk"), download_requests(stack)
    assert not [p.name for p in stack.asterisk.recording_spool.iterdir() if str(row["id"]) in p.name]
    kept = [p.name for p in stack.settings.recording_dir.rglob(f"*{row['id']}*") if p.is_file()]
    assert kept and all(name.endswith(".sealed") for name in kept), kept
    assert_no_leftovers(stack)
