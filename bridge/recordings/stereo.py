"""Two-channel recordings: each party on its own channel of one stereo WAV.

A dispute reviewer must hear who said what. Each leg is recorded on its own
(a snoop that hears only what that party says), and the two mono files are
merged here: the caller left, the counterpart right. The two recordings start
a few milliseconds apart; the one that started later is padded with silence
at its start by that difference (from Asterisk's RecordingStarted times), so
the channels line up.
"""
from __future__ import annotations

import struct
from datetime import datetime

from bridge.recordings.convert import Pcm, read_wav

RATE = 8000


class StereoMismatch(ValueError):
    """The two recordings cannot be merged (different sample rates)."""


def start_delays(left_started: datetime | None, right_started: datetime | None, rate: int = RATE) -> tuple[int, int]:
    """Samples of silence to put before each channel so they line up; (0, 0)
    when a start time is unknown (a call adopted after a restart)."""
    if left_started is None or right_started is None:
        return 0, 0
    gap = round((right_started - left_started).total_seconds() * rate)
    return (0, gap) if gap >= 0 else (-gap, 0)


def merge(left_wav: bytes, right_wav: bytes, delays: tuple[int, int] = (0, 0)) -> tuple[bytes, float]:
    """(a 16-bit stereo WAV with `left_wav` left and `right_wav` right, its duration)."""
    left, right = read_wav(left_wav, allow_empty=True), read_wav(right_wav, allow_empty=True)
    if left.sample_rate != right.sample_rate:
        raise StereoMismatch(f"sample rates differ: {left.sample_rate} and {right.sample_rate}")
    channels = [[0] * delays[0] + left.samples, [0] * delays[1] + right.samples]
    frames = max(len(c) for c in channels)
    for c in channels:
        c.extend([0] * (frames - len(c)))
    interleaved = [s for pair in zip(*channels) for s in pair]
    data = struct.pack(f"<{len(interleaved)}h", *interleaved)
    rate = left.sample_rate
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16, 1, 2, rate,
                         rate * 4, 4, 16, b"data", len(data))
    return header + data, frames / rate


def split(stereo_wav: bytes) -> tuple[Pcm, Pcm]:
    """The two channels of a stereo 16-bit WAV (for checks and tests)."""
    channels, rate = struct.unpack_from("<H", stereo_wav, 22)[0], struct.unpack_from("<I", stereo_wav, 24)[0]
    if channels != 2:
        raise StereoMismatch("not a two-channel WAV")
    data = stereo_wav[stereo_wav.index(b"data") + 8:]
    count = len(data) // 4 * 2
    samples = struct.unpack(f"<{count}h", data[:count * 2])
    return Pcm(rate, list(samples[0::2])), Pcm(rate, list(samples[1::2]))
