"""Uploaded wait audio becomes 8 kHz 16-bit mono WAV, whatever PCM WAV it was."""
import math
import struct

import pytest

from bridge.recordings.convert import MAX_SECONDS, Pcm, UnsupportedAudio, read_wav, to_asterisk_wav, write_wav


def wav(rate: int, channels: int, bits: int, seconds: float, frequency: float = 1000.0) -> bytes:
    frames = int(rate * seconds)
    width = bits // 8
    out = bytearray()
    for n in range(frames):
        value = math.sin(2 * math.pi * frequency * n / rate)
        for _ in range(channels):
            if bits == 8:
                out += bytes([int(128 + 100 * value)])
            else:
                out += int(value * (2 ** (bits - 1) - 1) * 0.8).to_bytes(width, "little", signed=True)
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(out), b"WAVE", b"fmt ", 16, 1, channels, rate,
                         rate * channels * width, channels * width, bits, b"data", len(out))
    return header + bytes(out)


def zero_crossings_per_second(pcm: Pcm) -> float:
    s = pcm.samples
    return sum(1 for a, b in zip(s, s[1:]) if (a < 0) != (b < 0)) / pcm.duration_seconds


@pytest.mark.parametrize(("rate", "channels", "bits"), [(8000, 1, 16), (16000, 2, 16), (44100, 2, 24),
                                                        (48000, 1, 32), (11025, 1, 8)])
def test_any_pcm_wav_becomes_8khz_mono_16bit_keeping_its_pitch_and_length(rate, channels, bits):
    converted, seconds = to_asterisk_wav(wav(rate, channels, bits, 0.5))

    pcm = read_wav(converted)
    assert converted[22:24] == b"\x01\x00" and pcm.sample_rate == 8000  # mono, 8 kHz
    assert struct.unpack_from("<H", converted, 34)[0] == 16
    assert abs(seconds - 0.5) < 0.01
    assert abs(zero_crossings_per_second(pcm) - 2000) < 60, "a 1 kHz tone must stay 1 kHz"
    assert max(abs(v) for v in pcm.samples) > 10000, "lost its level"


@pytest.mark.parametrize(("blob", "message"), [
    (b"ID3\x04 an mp3", "not a WAV"),
    (wav(8000, 1, 16, 0.1)[:36], "fmt and a data chunk"),
    (wav(8000, 1, 16, 0.0), "no audio"),
    (wav(8000, 1, 16, 0.1).replace(b"\x01\x00\x01\x00", b"\x06\x00\x01\x00", 1), "only PCM"),
])
def test_what_cannot_be_converted_is_refused_with_a_reason(blob, message):
    with pytest.raises(UnsupportedAudio, match=message):
        to_asterisk_wav(blob)


def test_audio_longer_than_the_limit_is_refused():
    long = write_wav(Pcm(4000, [0] * (4000 * (MAX_SECONDS + 1))))
    with pytest.raises(UnsupportedAudio, match="at most"):
        read_wav(long)
