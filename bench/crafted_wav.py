"""How long a crafted wait-audio upload holds the service, and how long the
event loop stalls meanwhile (issue 13: a WAV header claiming a 4 GHz sample
rate made the conversion quadratic, in a thread holding the GIL).

    .venv/bin/python -m bench.crafted_wav [--kib 80] [--valid]

Prints the conversion's outcome and wall time, and the longest gap between
ticks of a 10 ms timer on the event loop while it ran. `--valid`: a real
8-bit mono WAV at 192 kHz of that size instead (the most work an upload
within the limits can ask for).
"""
from __future__ import annotations

import argparse
import asyncio
import struct
import time


def crafted_wav(kib: int, rate: int = 4_000_000_000) -> bytes:
    """8-bit mono PCM whose header claims `rate` samples a second (by default 4 GHz)."""
    frames = bytes(range(256)) * (kib * 1024 // 256)
    frames = frames[:kib * 1024 - 44]
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(frames), b"WAVE", b"fmt ", 16, 1, 1, rate,
                       rate & 0xFFFFFFFF, 1, 8, b"data", len(frames)) + frames


async def convert(blob: bytes):
    """The conversion as the API runs it."""
    try:
        from bridge.recordings.convert import convert_off_loop  # bounded, in a child process
    except ImportError:  # before issue 13: a thread of this process
        from bridge.recordings.convert import to_asterisk_wav
        return await asyncio.to_thread(to_asterisk_wav, blob)
    return await convert_off_loop(blob, timeout=10.0)


async def measure(blob: bytes) -> None:
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last - 0.01)
            last = now

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    try:
        converted, seconds = await convert(blob)
        outcome = f"converted: {len(converted)} bytes, {seconds:.3f} s of audio"
    except ValueError as exc:  # UnsupportedAudio
        outcome = f"refused: {exc}"
    elapsed = time.perf_counter() - started
    tick.cancel()
    print(f"{len(blob) // 1024} KiB WAV: {outcome}")
    print(f"wall time {elapsed:.3f} s; event loop: longest stall {max(gaps or [0]) * 1000:.1f} ms "
          f"over {len(gaps)} ticks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kib", type=int, default=80)
    parser.add_argument("--valid", action="store_true", help="a real 192 kHz WAV, not a crafted header")
    args = parser.parse_args()
    asyncio.run(measure(crafted_wav(args.kib, 192_000 if args.valid else 4_000_000_000)))


if __name__ == "__main__":
    main()
