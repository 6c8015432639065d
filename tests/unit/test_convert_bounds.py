"""A crafted wait-audio upload cannot hold the service: rates outside what audio
uses are refused from the header, and the conversion runs in a child process
with a hard time bound, off the event loop and its GIL."""
from __future__ import annotations

import asyncio
import struct

import pytest

from bench.crafted_wav import crafted_wav
from bridge.recordings import convert
from bridge.recordings.convert import UnsupportedAudio, convert_off_loop, read_wav, to_asterisk_wav
from tests.unit.test_convert import wav


def header_with_rate(rate: int, frames: bytes = bytes(1600)) -> bytes:
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(frames), b"WAVE", b"fmt ", 16, 1, 1, rate,
                       (rate * 2) & 0xFFFFFFFF, 2, 16, b"data", len(frames)) + frames


def test_a_crafted_wav_claiming_a_4ghz_sample_rate_is_refused_as_unsupported_audio():
    with pytest.raises(UnsupportedAudio, match="sample rate"):
        to_asterisk_wav(crafted_wav(80))


@pytest.mark.parametrize("rate", [3999, 192001, 4_000_000_000])
def test_sample_rates_outside_4_to_192_khz_are_refused_from_the_header(rate):
    with pytest.raises(UnsupportedAudio, match="sample rate"):
        read_wav(header_with_rate(rate))


def test_the_highest_supported_rate_still_converts_keeping_its_length():
    converted, seconds = to_asterisk_wav(wav(192000, 1, 16, 0.05))
    assert abs(seconds - 0.05) < 0.001 and read_wav(converted).sample_rate == 8000


async def test_a_conversion_in_the_child_process_gives_what_the_module_gives():
    upload = wav(44100, 2, 24, 0.3)
    assert await convert_off_loop(upload, timeout=30) == to_asterisk_wav(upload)


async def test_the_child_process_refuses_what_the_module_refuses_with_its_reason():
    with pytest.raises(UnsupportedAudio, match="sample rate"):
        await convert_off_loop(crafted_wav(80), timeout=30)
    with pytest.raises(UnsupportedAudio, match="not a WAV"):
        await convert_off_loop(b"ID3\x04 an mp3", timeout=30)


async def test_a_conversion_past_its_time_bound_is_stopped_and_refused(monkeypatch):
    # A child that never answers stands in for a conversion that would take days.
    monkeypatch.setattr(convert, "CHILD_ARGS", ["-c", "import time; time.sleep(60)"])
    with pytest.raises(UnsupportedAudio, match="could not be converted within"):
        await asyncio.wait_for(convert_off_loop(wav(8000, 1, 16, 0.1), timeout=0.5), 20)

