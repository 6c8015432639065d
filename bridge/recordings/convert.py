"""Audio a business uploads (wait audio), made playable by Asterisk.

Asterisk plays 8 kHz, 16-bit, mono WAV without transcoding. An upload may be
any PCM WAV (8 to 32 bits, up to 8 channels, 4 to 192 kHz): it is mixed down
and resampled here, in pure Python (no sox on the host), so the result is the
same everywhere. Long clips are refused: wait audio loops in front of a ringing
phone, it is not a podcast.

An upload is untrusted: its header is checked before any sample is decoded,
the work is linear in its size, and the service runs it in a child process
(`convert_off_loop`, this file run as a script) that is killed past a time
bound, so a crafted file can neither hold the event loop's GIL nor a CPU for
long. This module imports only the standard library, so the child starts fast.
"""
from __future__ import annotations

import asyncio
import struct
import sys
from dataclasses import dataclass
from itertools import accumulate

TARGET_RATE = 8000
MAX_SECONDS = 120
MIN_RATE, MAX_RATE = 4000, 192000
# The child: this file as a script, isolated from the environment (-I).
CHILD_ARGS = ["-I", __file__]
CHILD_MEMORY_BYTES = 2 * 1024 ** 3
CHILD_NICENESS = 10
EXIT_UNSUPPORTED = 2


class UnsupportedAudio(ValueError):
    """Not a PCM WAV this module can convert; the message says why."""


@dataclass(frozen=True)
class Pcm:
    sample_rate: int
    samples: list[int]  # mono, 16-bit range

    @property
    def duration_seconds(self) -> float:
        return len(self.samples) / self.sample_rate


def read_wav(blob: bytes, allow_empty: bool = False) -> Pcm:
    """Mono 16-bit-range samples of a PCM WAV (channels averaged)."""
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise UnsupportedAudio("not a WAV file (RIFF/WAVE)")
    offset, fmt, data = 12, None, None
    while offset + 8 <= len(blob):
        chunk_id, size = struct.unpack_from("<4sI", blob, offset)
        body = blob[offset + 8:offset + 8 + size]
        if chunk_id == b"fmt " and len(body) >= 16:
            fmt = struct.unpack_from("<HHIIHH", body)
        elif chunk_id == b"data":
            data = body
        offset += 8 + size + (size & 1)
    if fmt is None or data is None:
        raise UnsupportedAudio("a WAV file needs a fmt and a data chunk")
    encoding, channels, rate, _, _, bits = fmt
    if encoding not in (1, 0xFFFE) or bits not in (8, 16, 24, 32) or not 1 <= channels <= 8:
        raise UnsupportedAudio("only PCM WAV is supported (8, 16, 24 or 32 bits, 1 to 8 channels)")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise UnsupportedAudio(f"the sample rate must be between {MIN_RATE} and {MAX_RATE} Hz")
    width = bits // 8
    frames = len(data) // (width * channels)
    if frames == 0 and not allow_empty:
        raise UnsupportedAudio("the WAV file holds no audio")
    if frames / rate > MAX_SECONDS:
        raise UnsupportedAudio(f"wait audio may last at most {MAX_SECONDS} s")
    values = _decode(data[:frames * width * channels], width)
    mono = [sum(values[i:i + channels]) // channels for i in range(0, len(values), channels)]
    return Pcm(rate, mono)


def _decode(data: bytes, width: int) -> list[int]:
    """Samples scaled to the 16-bit range (8-bit WAV is unsigned, the rest signed)."""
    if width == 1:
        return [(b - 128) << 8 for b in data]
    if width == 2:
        return list(struct.unpack(f"<{len(data) // 2}h", data))
    if width == 4:
        return [v >> 16 for v in struct.unpack(f"<{len(data) // 4}i", data)]
    return [int.from_bytes(data[i:i + 3], "little", signed=True) >> 8 for i in range(0, len(data), 3)]


def resample(pcm: Pcm, rate: int = TARGET_RATE) -> Pcm:
    """Linear interpolation; when going down, each output sample averages the
    input samples it spans first (a box filter), which keeps aliasing out of
    speech and music well enough for a telephone line."""
    if pcm.sample_rate == rate:
        return pcm
    source, ratio = pcm.samples, pcm.sample_rate / rate
    if ratio > 1:
        # Each sample the mean of the `span` from it on (fewer at the end), from
        # running sums: linear in the input whatever the ratio.
        span, length = int(ratio), len(source)
        sums = list(accumulate(source, initial=0))
        source = [(sums[min(i + span, length)] - sums[i]) // (min(i + span, length) - i) for i in range(length)]
    count = int(len(pcm.samples) / ratio)
    out = []
    for n in range(count):
        position = n * ratio
        i = int(position)
        frac = position - i
        nxt = source[i + 1] if i + 1 < len(source) else source[i]
        out.append(int(source[i] + (nxt - source[i]) * frac))
    return Pcm(rate, out)


def write_wav(pcm: Pcm) -> bytes:
    clipped = [max(-32768, min(32767, s)) for s in pcm.samples]
    data = struct.pack(f"<{len(clipped)}h", *clipped)
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16, 1, 1,
                         pcm.sample_rate, pcm.sample_rate * 2, 2, 16, b"data", len(data))
    return header + data


def to_asterisk_wav(blob: bytes) -> tuple[bytes, float]:
    """(8 kHz 16-bit mono WAV, its duration in seconds)."""
    pcm = resample(read_wav(blob))
    return write_wav(pcm), pcm.duration_seconds


async def convert_off_loop(blob: bytes, timeout: float) -> tuple[bytes, float]:
    """`to_asterisk_wav` in a child process, killed after `timeout` seconds
    (UnsupportedAudio, as for anything it refuses)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, *CHILD_ARGS, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        converted, why = await asyncio.wait_for(child.communicate(blob), timeout)
    except TimeoutError:
        raise UnsupportedAudio(f"the audio could not be converted within {timeout:g} s") from None
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    if child.returncode == EXIT_UNSUPPORTED:
        raise UnsupportedAudio(why.decode("utf-8", "replace").strip()[:200] or "unsupported audio")
    if child.returncode != 0:
        raise UnsupportedAudio("the audio could not be converted")
    return converted, (len(converted) - 44) / 2 / TARGET_RATE


def _child() -> int:
    """Read an upload on stdin, write the converted WAV on stdout: the child's whole job."""
    import os
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_BYTES, CHILD_MEMORY_BYTES))
    os.nice(CHILD_NICENESS)  # calls in progress come first when the CPUs are busy
    try:
        converted, _ = to_asterisk_wav(sys.stdin.buffer.read())
    except UnsupportedAudio as exc:
        print(exc, file=sys.stderr)
        return EXIT_UNSUPPORTED
    except MemoryError:
        print("the audio is too large to convert", file=sys.stderr)
        return EXIT_UNSUPPORTED
    sys.stdout.buffer.write(converted)
    return 0


if __name__ == "__main__":
    sys.exit(_child())
