"""Pure tones as G.711 a-law RTP captures for SIPp, so each party of a call
can say something the other cannot: a recording's channel is then told apart
by its pitch. Built from SIPp's own g711a.pcap (its packets, timing and
headers), with each packet's payload replaced by the tone."""
from __future__ import annotations

import math
import struct
from bisect import bisect_left
from pathlib import Path

from tests.support.rtp import ALAW
from tests.support.sipp import PCAP_DIR

_HEADERS = 14 + 20 + 8 + 12  # Ethernet, IPv4, UDP, RTP
_BY_LEVEL = sorted((value, byte) for byte, value in enumerate(ALAW))
_LEVELS = [value for value, _ in _BY_LEVEL]


def _alaw(sample: int) -> int:
    """The a-law byte nearest to a linear sample."""
    i = min(bisect_left(_LEVELS, sample), len(_LEVELS) - 1)
    if i and abs(_LEVELS[i - 1] - sample) < abs(_LEVELS[i] - sample):
        i -= 1
    return _BY_LEVEL[i][1]


def tone_pcap(hz: float, path: Path, amplitude: int = 8000) -> Path:
    """Write a capture of SIPp's g711a.pcap length carrying a pure `hz` tone."""
    data = (PCAP_DIR / "g711a.pcap").read_bytes()
    out, offset, n = [data[:24]], 24, 0
    while offset < len(data):
        length = struct.unpack_from("<I", data, offset + 8)[0]
        frame = bytearray(data[offset + 16:offset + 16 + length])
        payload = bytes(_alaw(round(amplitude * math.sin(2 * math.pi * hz * (n + k) / 8000)))
                        for k in range(length - _HEADERS))
        n += length - _HEADERS
        frame[_HEADERS:] = payload
        struct.pack_into(">H", frame, 40, 0)  # no UDP checksum: the payload changed
        out.append(data[offset:offset + 16] + bytes(frame))
        offset += 16 + length
    path.write_bytes(b"".join(out))
    return path


def tone_power(samples: list[int], hz: float, rate: int = 8000) -> float:
    """Goertzel: the power of `hz` in `samples` (compare two tones' powers)."""
    coefficient = 2 * math.cos(2 * math.pi * hz / rate)
    before = earlier = 0.0
    for sample in samples:
        before, earlier = sample + coefficient * before - earlier, before
    return (before * before + earlier * earlier - coefficient * before * earlier) / max(len(samples), 1)
